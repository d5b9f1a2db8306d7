// MathJax 3 (SVG output) for the site, loaded from the site itself (assets/mathjax, copied at
// build time from the django-static-mathjax package): no CDN.
// Pages: pymdownx.arithmatex (generic) wraps formulas in .arithmatex.
// Notebooks: their Markdown cells keep $...$ and $$...$$ (.jp-MarkdownOutput).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex|jp-MarkdownOutput|jp-RenderedMarkdown"
  }
};

// Material's instant navigation replaces the page without reloading scripts
if (typeof document$ !== "undefined") {
  document$.subscribe(() => {
    if (window.MathJax && MathJax.startup && MathJax.typesetPromise) {
      if (MathJax.startup.output && MathJax.startup.output.clearCache) {
        MathJax.startup.output.clearCache();
      }
      MathJax.typesetClear();
      MathJax.texReset();
      MathJax.typesetPromise();
    }
  });
}
