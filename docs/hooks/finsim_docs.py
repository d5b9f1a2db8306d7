"""MkDocs hooks of the finsim-mesa documentation (``hooks:`` in mkdocs.yml).

* The pages document this checkout: its root goes first on ``sys.path``.
* ``<!-- finsim: NAME -->`` in a page is replaced by the generated table NAME
  (:mod:`reference_tables`: parameters, scenarios, ...; :mod:`interface_tables`: CLI, REST API).
* The notebooks of ``notebooks/`` become pages under ``notebooks/``: the copies
  executed by the tests when ``FINSIM_EXECUTED_NOTEBOOKS`` names their folder
  (so CI runs each notebook once), else the stored notebooks without outputs.
* Offline: MathJax comes from the ``django-static-mathjax`` package (MathJax 3,
  copied into ``assets/mathjax``), the REST API's ReDoc page from
  ``fastapi-offline``; the CDN scripts nbconvert puts on notebook pages are
  removed, and any other script or stylesheet from outside the site is a
  warning (so ``--strict`` fails).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

HOOKS = Path(__file__).resolve().parent
ROOT = HOOKS.parents[1]
sys.path.insert(0, str(HOOKS))  # MkDocs puts sys.path back after loading this file
import reference_tables  # noqa: E402

log = logging.getLogger("mkdocs.hooks.finsim")
NOTEBOOKS = ROOT / "notebooks"
EXECUTED_ENV = "FINSIM_EXECUTED_NOTEBOOKS"
MARKER = re.compile(r"<!--\s*finsim:\s*([\w-]+)\s*-->")
# what nbconvert's notebook template puts on a page: MathJax (from a CDN, or an
# empty src) with its configuration, and a loader that imports mermaid from a CDN
# when a notebook has diagrams (ours have none). The site loads its own MathJax.
NB_CDN = [
    re.compile(r'<script[^>]*src="(?:https://[^"]*mathjax[^"]*)?"[^>]*>\s*</script>', re.I),
    re.compile(r'<!-- MathJax configuration -->\s*<script type="text/x-mathjax-config">'
               r'.*?</script>', re.S),
    re.compile(r'<script type="module">(?:(?!</script>).)*?mermaid.*?</script>', re.S),
]
EXTERNAL_ASSET = re.compile(r'<(?:script|link|img|iframe)[^>]+(?:src|href)="(?:https?:)?//[^"]+"'
                            r'|import\(\s*["\'](?:https?:)?//[^"\']+', re.I)
_schema: dict[str, Any] = {}
_stages: list[Path] = []


def on_config(config: Any) -> Any:
    if str(ROOT) not in sys.path:  # document this checkout, not an installed copy
        sys.path.insert(0, str(ROOT))
    import finsim_mesa

    where = Path(finsim_mesa.__file__).resolve().parent
    if where != ROOT / "finsim_mesa":
        log.warning(f"documenting finsim_mesa from {where}, not from this checkout {ROOT}")
    return config


REDOC_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>finsim-mesa REST API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body {{ margin: 0; }}</style></head>
<body><div id="redoc"></div>
<script src="redoc.standalone.js"></script>
<script>
Redoc.init({spec}, {{hideDownloadButton: false}}, document.getElementById("redoc"));
</script>
</body></html>
"""


@event_priority(100)  # before mkdocs-jupyter turns .ipynb files into pages
def on_files(files: Files, config: Any) -> Files:
    # notebooks: staged under one folder (mkdocs-jupyter needs real files in a src_dir)
    executed = os.environ.get(EXECUTED_ENV)
    stage = Path(tempfile.mkdtemp(prefix="finsim-docs-"))
    _stages.append(stage)
    used = 0
    for nb in sorted(NOTEBOOKS.rglob("*.ipynb")):
        rel = nb.relative_to(NOTEBOOKS).as_posix()
        src = nb
        if executed and (Path(executed) / rel).is_file():
            src, used = Path(executed) / rel, used + 1
        target = stage / "notebooks" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
        files.append(File(f"notebooks/{rel}", src_dir=str(stage), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    if executed:
        log.info(f"notebooks: {used} executed copies from {executed}")
    # the REST API's OpenAPI document and an offline ReDoc page for it
    from finsim_mesa.api.docs import static_dir

    spec = json.dumps(schema(), indent=1)
    files.append(File.generated(config, "reference/openapi.json", content=spec))
    files.append(File.generated(config, "reference/redoc.standalone.js",
                                abs_src_path=str(static_dir() / "redoc.standalone.js")))
    files.append(File.generated(config, "reference/rest-api-redoc.html",
                                content=REDOC_PAGE.format(spec=spec.replace("</", "<\\/"))))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in reference_tables.TABLES:
            raise reference_tables.DocsError(f"{page.file.src_uri}: unknown table {name!r}; "
                                             f"known: {', '.join(reference_tables.TABLES)}")
        if name == "rest-api":
            return reference_tables.table_rest_api(schema())
        return reference_tables.TABLES[name]()

    return MARKER.sub(fill, markdown)


def schema() -> dict[str, Any]:
    """The OpenAPI document (built once per build)."""
    if not _schema:
        _schema.update(reference_tables.openapi_schema())
    return _schema


def on_post_page(output: str, page: Any, config: Any) -> str:
    if page.file.src_uri.endswith(".ipynb"):
        for pattern in NB_CDN:
            output = pattern.sub("", output)
    for m in EXTERNAL_ASSET.finditer(output):
        log.warning(f"{page.file.src_uri}: loads {m.group(0)[:120]} from outside the site "
                    "(the site must work offline)")
    return output


def on_post_build(config: Any) -> None:
    _copy_mathjax(Path(config["site_dir"]) / "assets" / "mathjax")
    while _stages:
        shutil.rmtree(_stages.pop(), ignore_errors=True)


def _copy_mathjax(dest: Path) -> None:
    try:
        import mathjax  # the django-static-mathjax package: MathJax 3, static files only
    except ImportError as err:
        raise reference_tables.DocsError(
            "MathJax is missing: pip install -e '.[docs]' (django-static-mathjax)") from err
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    # SVG output: the glyphs are paths in the page, so formulas also show on pages
    # opened from the disk (browsers refuse web fonts from file:// URLs)
    shutil.copy2(es5 / "tex-svg.js", dest / "tex-svg.js")
    for sub in ("input", "ui", "a11y", "adaptors"):
        shutil.copytree(es5 / sub, dest / sub)


