"""The student documentation site (mkdocs.yml, docs/): it builds with warnings as
errors, works offline, and its generated tables say what the code says.

The build test needs the ``docs`` extra (``pip install -e ".[docs]"``) and skips
without it; CI's leg 1 installs it (``.ci/run``).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOOKS = ROOT / "docs" / "hooks"
DOCS_MODULES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python",
                "mkdocs_jupyter", "mathjax")
EXTERNAL = re.compile(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="(?:https?:)?//', re.I)


def _need_docs_extra() -> None:
    for name in DOCS_MODULES:
        pytest.importorskip(name, reason="the docs extra is not installed: "
                                         "pip install -e '.[docs]'")


def _text(html: str) -> str:
    """The visible text of a page, tags removed, whitespace collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built by ``mkdocs build --strict`` (stored notebooks, no outputs)."""
    _need_docs_extra()
    out = tmp_path_factory.mktemp("site")
    env = {k: v for k, v in os.environ.items() if k != "FINSIM_EXECUTED_NOTEBOOKS"}
    env["NO_MKDOCS_2_WARNING"] = "1"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out


@pytest.mark.slow
def test_every_page_of_the_navigation_is_built(site: Path) -> None:
    import yaml

    class _Loader(yaml.SafeLoader):  # mkdocs.yml may hold !!python tags; none needed here
        pass

    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_Loader)

    def pages(nav: Any) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [p for item in nav for p in pages(item)]
        return [p for v in nav.values() for p in pages(v)]

    wanted = pages(config["nav"])
    assert len(wanted) >= 30
    missing = [p for p in wanted if not (site / re.sub(r"\.(md|ipynb)$", ".html", p)).is_file()]
    assert not missing, missing
    # the course pack is there as pages: all eight notebooks and their solutions
    nb_pages = sorted(p.name for p in (site / "notebooks").rglob("*.html"))
    assert len([p for p in nb_pages if re.match(r"\d\d_", p)]) == 16, nb_pages


@pytest.mark.slow
def test_the_site_loads_nothing_from_outside(site: Path) -> None:
    """Everything a page loads is on the site: MathJax included (a classroom
    without internet, or the site opened from the disk)."""
    pages = list(site.rglob("*.html"))
    assert len(pages) > 30
    for page in pages:
        html = page.read_text(encoding="utf-8")
        ext = EXTERNAL.search(html)
        assert ext is None, f"{page.relative_to(site)} loads {html[ext.start():ext.start() + 120]}"
        for src in re.findall(r'<script\b[^>]*\bsrc="([^"]+)"', html):
            src_path = src.split("?")[0]
            target = (site / src_path.lstrip("/") if src_path.startswith("/")  # 404.html
                      else page.parent / src_path).resolve()
            assert target.is_file(), f"{page.relative_to(site)}: script {src} is not on the site"
    assert (site / "assets" / "mathjax" / "tex-svg.js").stat().st_size > 500_000
    assert (site / "reference" / "redoc.standalone.js").is_file()


@pytest.mark.slow
def test_formulas_reach_the_pages_for_mathjax(site: Path) -> None:
    html = (site / "model" / "clearing.html").read_text(encoding="utf-8")
    blocks = re.findall(r'class="arithmatex">(.*?)</(?:div|span)>', html, re.S)
    assert len(blocks) >= 5
    assert any(r"\bar p_i" in unescape(b) and r"\Pi_{ij}" in unescape(b) for b in blocks)
    risk = unescape((site / "model" / "risk.html").read_text(encoding="utf-8"))
    assert "Battiston" in risk and "not the differential variant" in risk


@pytest.mark.slow
def test_generated_tables_follow_the_code(site: Path) -> None:
    from finsim_mesa.cli import COMMANDS
    from finsim_mesa.config import ModelConfig
    from finsim_mesa.risk import SRI_WEIGHTS
    from finsim_mesa.scenarios import list_scenarios

    params = _text((site / "parameters.html").read_text(encoding="utf-8"))
    for name in ModelConfig.model_fields:
        assert f" {name} " in f" {params} ", f"parameter {name} missing from parameters.html"
    # a row: name, default, unit, range, meaning — check two against the code's values
    assert re.search(rf"capital_requirement {ModelConfig().capital_requirement:g} share \(0–1\)",
                     params), "capital_requirement row"
    assert re.search(rf"n_banks {ModelConfig().n_banks} banks", params), "n_banks row"
    scen = _text((site / "scenarios.html").read_text(encoding="utf-8"))
    for name, sc in list_scenarios().items():
        assert name in scen
        if sc.crash_step is not None:
            assert f"step {sc.crash_step} price crash" in scen, name
    risk = _text((site / "model" / "risk.html").read_text(encoding="utf-8"))
    for part, weight in SRI_WEIGHTS.items():
        assert f"{part} {weight:g}" in risk, part
    cli = _text((site / "cli.html").read_text(encoding="utf-8"))
    for command in COMMANDS:
        assert f"finsim {command}" in cli, command


# ------------------------------------------------------------------ the hooks
@pytest.fixture
def tables(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(HOOKS))
    return importlib.import_module("reference_tables")


def test_a_parameter_without_a_unit_stops_the_build(tables: Any) -> None:
    field = SimpleNamespace(annotation=float, description="how bold the banks feel")
    with pytest.raises(tables.DocsError, match="boldness has no unit"):
        tables.unit_of("boldness", field)
    assert tables.unit_of("steps", field) == "steps"


def test_every_parameter_has_a_unit_and_a_group(tables: Any) -> None:
    from finsim_mesa.config import ModelConfig

    grouped = [n for _, names in tables.config_groups() for n in names]
    assert sorted(grouped) == sorted(ModelConfig.model_fields)
    for name, field in ModelConfig.model_fields.items():
        assert tables.unit_of(name, field), name
        assert field.description, f"ModelConfig.{name} has no description"


def test_a_timeline_reads_like_the_shock_engine(tables: Any) -> None:
    from finsim_mesa.scenarios import Scenario

    sc = Scenario(name="t", description="d", price_volatility=0.02, crash_step=20,
                  crash_magnitude=0.1, default_step=15, default_count=2,
                  default_target="largest", funding_stress=0.05,
                  funding_stress_probability=0.2, funding_start=10, funding_end=30,
                  shock_probability=0.0)
    events = tables.timeline(sc)
    assert [when for when, _ in events] == ["every step", "steps 10–30", "step 15", "step 20"]
    assert "the 2 largest active banks forced into default" in events[2][1]
    assert "fall by 0.1" in events[3][1]


def test_a_timeline_says_what_the_model_does(tables: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The events the scenarios page lists happen in a run, at the steps it says."""
    import numpy as np

    import finsim_mesa.scenarios as registry
    from finsim_mesa import FinancialModel
    from finsim_mesa.scenarios import Scenario, register_scenario

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    sc = register_scenario(Scenario(name="docs_timeline", price_volatility=0.0,
                                    shock_probability=0.0, crash_step=6, crash_magnitude=0.1,
                                    default_step=4, default_count=2, default_target="largest"))
    assert tables.timeline(sc)[1:] == [
        ("step 4", "the 2 largest active banks forced into default (resolved at the clearing)"),
        ("step 6", "price crash: all asset classes and its fundamental value fall by 0.1")]
    model = FinancialModel(n_banks=12, scenario="docs_timeline", rng=3)
    largest = set(np.argsort(model.ledger.total_assets())[-2:].tolist())
    model.run_for(7)
    assert set(np.flatnonzero(model.ledger.default_step == 4).tolist()) == largest
    assert model.ledger.defaulted.sum() == 2
    price = model.datacollector.get_model_vars_dataframe()["price"].to_numpy()
    assert np.all(price[:4] == 1.0)  # no noise, nothing sold before the defaults
    assert price[6] / price[5] == pytest.approx(0.9, abs=0.005)  # the crash (+ small impact)
    assert price[5] / price[4] == pytest.approx(1.0, abs=0.01)


def test_an_external_script_is_a_strict_build_failure(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    monkeypatch.syspath_prepend(str(HOOKS))
    hooks = importlib.import_module("finsim_docs")
    page = SimpleNamespace(file=SimpleNamespace(src_uri="notebooks/x.ipynb"))
    cdn = ('<script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/MathJax.js">'
           '</script><p>text</p>')
    with caplog.at_level(logging.WARNING, logger="mkdocs.hooks.finsim"):
        out = hooks.on_post_page(cdn, page, {})
    assert "cdnjs" not in out and "<p>text</p>" in out  # nbconvert's MathJax is removed
    assert not caplog.records
    other = '<link rel="stylesheet" href="https://fonts.example.org/a.css"><p>x</p>'
    with caplog.at_level(logging.WARNING, logger="mkdocs.hooks.finsim"):
        hooks.on_post_page(other, SimpleNamespace(file=SimpleNamespace(src_uri="index.md")), {})
    # mkdocs --strict turns every warning into a failed build
    assert any("outside the site" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_formulas_are_typeset_in_a_browser(site: Path) -> None:
    """Opened from the disk in Chromium, with no network: MathJax (from the site)
    typesets the pages' formulas and the notebooks' Markdown math, without errors."""
    import shutil

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    counts: dict[str, tuple[int, int]] = {}
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu",
                                          "--disable-dev-shm-usage"])
        page = browser.new_page()
        page.route("http*://**", lambda route: (outside.append(route.request.url),
                                                 route.abort()))
        for name in ("model/clearing.html", "model/risk.html", "parameters.html",
                     "notebooks/02_contagion_by_hand.html"):
            page.goto((site / name).as_uri())
            page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise"
                                   " && document.querySelector('mjx-container')",
                                   timeout=30_000)
            page.evaluate("MathJax.startup.promise")
            counts[name] = page.evaluate(
                "[document.querySelectorAll('mjx-container').length,"
                " document.querySelectorAll('mjx-merror, [data-mjx-error]').length]")
        browser.close()
    assert not outside, outside
    for name, (typeset, errors) in counts.items():
        assert errors == 0, (name, errors)
        assert typeset >= (2 if name == "parameters.html" else 20), (name, typeset)


def test_readme_links_the_site_pages_and_the_notebooks() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(((?:docs|notebooks)/[^)#\s]*)\)", readme)
    broken = [link for link in links if not (ROOT / link).exists()]
    assert not broken, broken
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"notebooks/{nb.name}" in links, f"README does not link {nb.name}"
    for page in ("getting-started", "parameters", "scenarios", "cli", "rest-api", "brains",
                 "model/clearing", "model/market", "model/risk", "model/rewards"):
        assert f"docs/{page}.md" in links, f"README does not link docs/{page}.md"


@pytest.mark.slow
def test_the_python_examples_on_the_pages_run(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ```python block of the students' pages runs (the blocks of one page in
    order, in one namespace, in an empty folder); docs/design.md is the developers'."""
    import finsim_mesa.scenarios as registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # pages register some
    monkeypatch.chdir(tmp_path)
    pages = sorted(p for p in (ROOT / "docs").rglob("*.md") if p.name != "design.md")
    ran = 0
    for page in pages:
        namespace: dict[str, Any] = {"__name__": "__docs__"}
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text("utf-8"),
                                             re.S)):
            exec(compile(block, f"{page.relative_to(ROOT)} block {i}", "exec"), namespace)
            ran += 1
    assert ran >= 5
