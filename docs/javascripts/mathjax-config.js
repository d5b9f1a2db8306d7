// MathJax 3 (SVG output) for the site, loaded from the site itself (assets/mathjax, copied at
// build time from the django-static-mathjax package): no CDN.
// Only two kinds of element are typeset, so a "$" anywhere else is left alone:
// * pages: pymdownx.arithmatex (generic) wraps each formula in .arithmatex, as \( \) or \[ \];
// * notebooks: their Markdown cells (.jp-MarkdownOutput) keep $...$ and $$...$$.
// (A class filter such as ignoreHtmlClass ".*|" would also skip the <p> inside a notebook's
// Markdown cell: MathJax applies it to every descendant.)
const FINSIM_MATH = [".arithmatex", ".jp-MarkdownOutput"];

window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true
  },
  startup: {
    elements: FINSIM_MATH
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
      MathJax.typesetPromise(FINSIM_MATH.flatMap((s) => [...document.querySelectorAll(s)]));
    }
  });
}
