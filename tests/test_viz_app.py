"""The Solara app without a browser: the page element, its components rendered
with solara's test renderer (widgets driven by setting values and clicking),
and the static figures of ``finsim_mesa.viz.plots`` checked against the model's
data."""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import pytest

solara = pytest.importorskip("solara")

import ipyvuetify as vw  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from finsim_mesa.agents.brains import BRAINS  # noqa: E402
from finsim_mesa.config import TOPOLOGIES  # noqa: E402
from finsim_mesa.measures import MODEL_REPORTERS  # noqa: E402
from finsim_mesa.scenarios import list_scenarios  # noqa: E402
from finsim_mesa.scenarios.engine import SHOCK_KINDS  # noqa: E402

with warnings.catch_warnings():  # Mesa's ComponentsView trips solara's rules-of-hooks check
    warnings.simplefilter("ignore", UserWarning)
    from mesa.visualization.solara_viz import ModelController, ModelCreator, SolaraViz
    from mesa.visualization.utils import force_update

    from finsim_mesa.viz import app, plots


PARAMS = {"n_banks", "topology", "scenario", "brain", "infrastructure", "rng"}
SERIES_TITLES = ["asset price (start = 1)", "defaults", "systemic-risk index",
                 "liquidity index"]
SERIES_COLUMNS = ["price", "n_defaults", "systemic_risk_index", "liquidity_index"]


# ------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def crisis():
    """A small run with defaults, exchanges and a CCP: read-only for the tests."""
    m = app.FinancialModelViz(infrastructure=True, n_banks=20, scenario="systemic", rng=2)
    m.run_for(25)
    assert 0 < int(m.ledger.defaulted.sum()) < m.n_banks  # grey and coloured banks both
    return m


@pytest.fixture
def render():
    """``render(element)`` -> render context; closed after the test."""
    contexts = []

    def _render(element):
        _, rc = solara.render(element, handle_error=False)
        contexts.append(rc)
        return rc

    yield _render
    for rc in contexts:
        rc.close()


def _markdown(rc) -> str:
    """The HTML of the solara.Markdown widgets under ``rc``, joined."""
    templates = [t.widget.template for t in rc.find(vw.VuetifyTemplate)]
    return "\n".join(t for t in templates if isinstance(t, str) and "solara-markdown" in t)


def _table(html: str) -> dict[str, float]:
    """The bank inspector's two-column table as {item: value}."""
    cells = re.findall(r"<td>([^<]*)</td>\s*<td>([^<]*)</td>", html)
    return {k: float(v.replace(",", "")) for k, v in cells}


def _enter(text_field, value: Any) -> None:
    """Type into a solara InputInt and press enter (it commits on enter/blur)."""
    text_field.v_model = str(value)
    text_field.fire_event("keyup.enter", None)


def _button(rc, label: str):
    return rc.find(vw.Btn, children=[label]).widget


def _figures(monkeypatch) -> list[Figure]:
    """Record every figure handed to solara.FigureMatplotlib from now on."""
    seen: list[Figure] = []
    original = solara.FigureMatplotlib

    def spy(figure, *args, **kwargs):
        seen.append(figure)
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(solara, "FigureMatplotlib", spy)
    return seen


def _ydata(ax, n: int = 0) -> np.ndarray:
    return np.asarray(ax.lines[n].get_ydata(), dtype=float)


# ------------------------------------------------------- parameters, model


def test_model_params_declare_the_controls():
    p = app.model_params
    assert set(p) == PARAMS
    assert {k: v["type"] for k, v in p.items()} == {
        "n_banks": "SliderInt", "topology": "Select", "scenario": "Select",
        "brain": "Select", "infrastructure": "Checkbox", "rng": "SliderInt"}
    assert p["topology"]["values"] == list(TOPOLOGIES)
    # the registry is process-wide (other tests register scenarios): the page lists
    # what was registered when it was built, built-ins included
    assert set(p["scenario"]["values"]) <= set(list_scenarios())
    assert {"normal", "liquidity_crisis", "asset_crash", "systemic"} <= set(p["scenario"]["values"])
    assert p["brain"]["values"] == app.brain_choices()
    for key in ("topology", "scenario", "brain"):
        assert p[key]["value"] in p[key]["values"]
    for key in ("n_banks", "rng"):
        assert p[key]["min"] <= p[key]["value"] <= p[key]["max"]
        assert (p[key]["value"] - p[key]["min"]) % p[key]["step"] == 0
    assert p["infrastructure"]["value"] is False


def test_brain_choices_are_the_builtin_brains():
    choices = app.brain_choices()
    assert choices == list(BRAINS)
    assert len(set(choices)) == len(choices)
    assert {"rule_based", "greedy", "passive", "random"} <= set(choices)


def test_app_params_build_valid_models():
    defaults = {k: v["value"] for k, v in app.model_params.items()}
    m = app.FinancialModelViz(**defaults)
    assert m.n_banks == 30 and m.router is None
    assert m.config.topology == "barabasi_albert" and m.config.scenario == "normal"
    assert m.exchanges == [] and m.ccps == []
    for key in ("topology", "scenario", "brain"):
        for value in app.model_params[key]["values"]:
            x = app.FinancialModelViz(**(defaults | {key: value, "n_banks": 10}))
            assert x.n_banks == 10 and getattr(x.config, key) == value


def test_infrastructure_switch_builds_two_exchanges_and_one_ccp():
    on = app.FinancialModelViz(infrastructure=True, n_banks=10, rng=1)
    assert on.router is not None
    assert len(on.exchanges) == 2 and len(on.ccps) == 1
    assert [type(a).__name__ for a in on.agents].count("Bank") == 10
    # explicit counts win over the switch's defaults
    three = app.FinancialModelViz(infrastructure=True, n_exchanges=3, n_banks=10, rng=1)
    assert len(three.exchanges) == 3 and len(three.ccps) == 1
    off = app.FinancialModelViz(infrastructure=False, n_banks=10, rng=1)
    assert off.router is None and len(off.exchanges) == 0 and len(off.ccps) == 0


# ------------------------------------------------------------- the page


def test_make_page_is_a_solaraviz_for_the_model():
    m = app.FinancialModelViz(n_banks=10, rng=1)
    page = app.make_page(m)
    assert page.component.f is SolaraViz.f
    assert page.args[0] is m
    assert page.kwargs["model_params"] is app.model_params
    assert page.kwargs["name"] == "finsim-mesa: financial contagion"
    comps = page.kwargs["components"]
    assert len(comps) == 8
    assert comps[0] is app.NetworkView
    assert comps[5] is app.InfrastructureCharts
    assert comps[6] is app.ShockControl and comps[7] is app.BankInspector
    # the four live charts: Mesa plot components on page 0 for these measures
    measures = []
    for fn, page_index in comps[1:5]:
        assert page_index == 0
        measures.append(fn(m).args[1])  # PlotMatplotlib(model, measure)
    assert measures == ["n_defaults", "price",
                        {"debtrank_total": "tab:red", "systemic_risk_index": "tab:purple"},
                        "liquidity_index"]
    for measure in measures:
        assert set([measure] if isinstance(measure, str) else measure) <= set(MODEL_REPORTERS)
    # the module-level page is built from the app's defaults
    assert isinstance(app.page.args[0], app.FinancialModelViz)
    assert app.page.args[0].n_banks == app.model_params["n_banks"]["value"]


def test_page_renders_every_component(render):
    m = app.FinancialModelViz(n_banks=10, rng=1)
    rc = render(app.make_page(m))
    titles = [c.widget.children for c in rc.find(vw.CardTitle)]
    assert titles == [["Shock"], ["Bank 0"]]
    grid = rc.find(vw.VuetifyTemplate, events=["layout_updated"]).widget
    assert len(grid.items) == 8  # one cell per component
    images = [w for w in grid.items if type(w).__name__ == "Image"]
    assert len(images) == 5  # network + four charts
    assert all(len(w.value) > 1000 for w in images)
    markdown = [w.template for w in grid.items if type(w).__name__ == "VuetifyTemplate"]
    assert len(markdown) == 1 and "Exchanges and CCPs are off" in markdown[0]
    assert _button(rc, "Apply shock") is not None


def test_controls_reset_builds_the_chosen_model(render):
    """Mesa's parameter inputs and Reset button, fed with the app's model_params."""
    model = solara.reactive(app.FinancialModelViz(n_banks=10, rng=1))

    @solara.component
    def Controls():
        params = solara.use_reactive({})
        ModelController(model, model_parameters=params,  # wired as SolaraViz does
                        play_interval=solara.use_reactive(100),
                        render_interval=solara.use_reactive(1),
                        use_threads=solara.use_reactive(False))
        ModelCreator(model, app.model_params, model_parameters=params)

    rc = render(Controls())
    sliders = {s.widget.label: s.widget for s in rc.find(vw.Slider)}
    assert set(sliders) == {"Banks", "Seed"}
    selects = {s.widget.label: s.widget for s in rc.find(vw.Select)}
    assert {k: v.items for k, v in selects.items()} == {
        "Topology": list(TOPOLOGIES), "Scenario": list(list_scenarios()),
        "Brain": app.brain_choices()}
    box = rc.find(vw.Checkbox).widget
    assert box.label == "Exchanges and CCP (2 + 1)" and box.v_model is False

    _button(rc, "Step").click()
    assert model.value.t == 1

    sliders["Banks"].v_model = 15
    selects["Topology"].v_model = "erdos_renyi"
    box.v_model = True
    _button(rc, "Reset").click()
    new = model.value
    assert isinstance(new, app.FinancialModelViz) and new.t == 0
    assert new.n_banks == 15 and new.config.topology == "erdos_renyi"
    assert len(new.exchanges) == 2 and len(new.ccps) == 1


# ------------------------------------------------------------ components


def test_network_view_draws_the_model(crisis):
    el = app.NetworkView(crisis)
    assert el.component.f is solara.FigureMatplotlib.f
    fig = el.args[0]
    assert fig.axes[0].get_title().startswith(f"step {crisis.t}: "
                                              f"{int(crisis.ledger.defaulted.sum())} defaults")


def test_infrastructure_charts(crisis):
    off = app.InfrastructureCharts(app.FinancialModelViz(n_banks=10, rng=1))
    assert off.component.f is solara.Markdown.f
    assert "off" in off.args[0]

    el = app.InfrastructureCharts(crisis)
    assert el.component.f is solara.FigureMatplotlib.f
    fig = el.args[0]
    df = crisis.datacollector.get_model_vars_dataframe()
    ex, cc = fig.axes
    assert ex.get_title() == "exchanges" and cc.get_title() == "central counterparties"
    np.testing.assert_allclose(_ydata(ex, 0), df["exchange_utilisation"])
    assert list(ex.lines[1].get_ydata()) == [crisis.config.congestion_threshold] * 2
    assert [ln.get_label() for ln in cc.lines] == ["margin posted", "default fund used",
                                                   "uncovered loss"]
    for n, col in enumerate(["margin_posted", "default_fund_used", "uncovered_loss"]):
        np.testing.assert_allclose(_ydata(cc, n), df[col])
    assert df["margin_posted"].iloc[1:].gt(0).any()  # the CCP was actually used


def test_shock_control_defaults_the_chosen_bank(render):
    m = app.FinancialModelViz(n_banks=10, rng=1)
    rc = render(app.ShockControl(m))
    kind = rc.find(vw.Select).widget
    assert kind.items == list(SHOCK_KINDS) and kind.v_model == "price_crash"
    assert rc.find(vw.Slider).widget.v_model == 0.2

    kind.v_model = "default"
    _enter(rc.find(vw.TextField).widget, 3)
    _button(rc, "Apply shock").click()
    assert np.flatnonzero(m.ledger.defaulted).tolist() == [3]
    assert m.banks[3].defaulted
    assert "Applied default (magnitude 0.2, bank 3) at step 0: 1 defaults now" in _markdown(rc)

    m.step()  # resolved at the next clearing: the measures see it
    assert m.ledger.defaulted[3] and m.measures.n_defaults >= 1


def test_shock_control_price_crash_and_refusal(render):
    m = app.FinancialModelViz(n_banks=10, rng=1)
    rc = render(app.ShockControl(m))
    rc.find(vw.Slider).widget.v_model = 0.3
    _button(rc, "Apply shock").click()
    assert m.market.price_index == pytest.approx(0.7)
    assert m.measures.asset_price == pytest.approx(0.7)
    assert "Applied price_crash (magnitude 0.3) at step 0" in _markdown(rc)
    assert "price 0.700" in _markdown(rc)

    rc.find(vw.Select).widget.v_model = "default"
    _enter(rc.find(vw.TextField).widget, 99)  # no such bank: refused, nothing changes
    _button(rc, "Apply shock").click()
    assert "Shock refused:" in _markdown(rc)
    assert not m.ledger.defaulted.any()


def test_bank_inspector_shows_the_chosen_bank(render, monkeypatch):
    seen = _figures(monkeypatch)
    m = app.FinancialModelViz(n_banks=10, rng=1)
    rc = render(app.BankInspector(m))
    assert rc.find(vw.CardTitle).widget.children == ["Bank 0"]
    table = _table(_markdown(rc))
    sheet = m.banks[0].balance_sheet()
    assert list(table) == list(sheet)
    for k, v in sheet.items():
        assert table[k] == pytest.approx(v, abs=5e-4)
    assert table["cash"] == pytest.approx(float(m.banks[0].cash), abs=5e-4)
    assert seen == []  # no history before the first step

    _enter(rc.find(vw.TextField, label="Bank id").widget, 4)
    assert rc.find(vw.CardTitle).widget.children == ["Bank 4"]
    table = _table(_markdown(rc))
    assert table["equity"] == pytest.approx(m.banks[4].balance_sheet()["equity"], abs=5e-4)
    assert table["cash"] != pytest.approx(m.banks[0].balance_sheet()["cash"], abs=5e-4)

    _enter(rc.find(vw.TextField, label="Bank id").widget, 999)  # clipped to the last bank
    assert rc.find(vw.CardTitle).widget.children == [f"Bank {m.n_banks - 1}"]

    # after some steps and a redraw: the bank's equity and cash over time
    _enter(rc.find(vw.TextField, label="Bank id").widget, 4)
    m.run_for(5)
    force_update()
    assert seen, "no history figure after stepping"
    ax = seen[-1].axes[0]
    assert [ln.get_label() for ln in ax.lines] == ["equity", "cash"]
    assert list(ax.lines[0].get_xdata()) == list(range(6))
    bank = m.banks[4].balance_sheet()
    assert _ydata(ax, 0)[-1] == pytest.approx(bank["equity"])
    assert _ydata(ax, 1)[-1] == pytest.approx(bank["cash"])
    hist = m.datacollector.get_agent_vars_dataframe().xs(m.banks[4].unique_id,
                                                        level="AgentID")
    np.testing.assert_allclose(_ydata(ax, 0), hist["equity"])
    assert _table(_markdown(rc))["equity"] == pytest.approx(bank["equity"], abs=5e-4)


# ------------------------------------------------------- static figures


def test_timeseries_dashboard_plots_the_model_columns(crisis):
    df = crisis.datacollector.get_model_vars_dataframe()
    fig = plots.timeseries_dashboard(crisis)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == SERIES_TITLES
    assert [ax.get_xlabel() for ax in fig.axes] == ["", "", "step", "step"]
    for ax, col in zip(fig.axes, SERIES_COLUMNS, strict=True):
        np.testing.assert_allclose(ax.lines[0].get_xdata(), df.index)
        np.testing.assert_allclose(_ydata(ax), df[col])
    np.testing.assert_array_equal(_ydata(fig.axes[1]), df.n_defaults)
    assert _ydata(fig.axes[1])[-1] == crisis.measures.n_defaults
    risk = fig.axes[2]
    np.testing.assert_allclose(_ydata(risk, 1), df.debtrank_total)
    assert [t.get_text() for t in risk.get_legend().get_texts()] == ["composite index",
                                                                     "DebtRank total"]
    # the same figure from the DataFrame alone
    again = plots.timeseries_dashboard(df)
    for a, b in zip(fig.axes, again.axes, strict=True):
        np.testing.assert_array_equal(a.lines[0].get_ydata(), b.lines[0].get_ydata())


def test_network_snapshot_encodes_the_banks(crisis):
    fig = plots.network_snapshot(crisis)
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # network + colour bar
    ax, bar = fig.axes
    assert bar.get_ylabel() == "capital ratio"
    n_def = int(crisis.ledger.defaulted.sum())
    assert ax.get_title() == (f"step {crisis.t}: {n_def} defaults (grey), colour = "
                              "capital ratio, size = assets")
    edges = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(edges) == 1
    assert len(edges[0].get_segments()) == crisis.ledger.exposure_matrix().nnz
    banks = next(c for c in ax.collections
                 if isinstance(c, PathCollection) and len(c.get_offsets()) == crisis.n_banks)
    colour = np.ma.filled(banks.get_array().astype(float), np.nan)
    np.testing.assert_array_equal(np.isnan(colour), crisis.ledger.defaulted)
    alive = ~crisis.ledger.defaulted
    np.testing.assert_allclose(colour[alive],
                               np.clip(crisis.sheets.capital_ratio[alive], 0, 0.3))
    grey = banks.to_rgba(np.array([np.nan]))[0]
    np.testing.assert_allclose(grey[:3], [0x55 / 255] * 3)
    sizes = banks.get_sizes()
    assert int(np.argmax(sizes)) == int(np.argmax(crisis.sheets.total_assets))
    assert sizes.max() == pytest.approx(420)
    assert sorted(t.get_text() for t in ax.texts) == ["C0", "X0", "X1"]


def test_risk_dashboard_shows_the_model():
    # no exchanges/CCP here: with them, per-bank DebtRank counts bilateral exposures only
    m = app.FinancialModelViz(n_banks=20, rng=2)
    m.run_for(10)
    scores = m.debtrank_per_bank()
    assert np.count_nonzero(scores) > 15
    fig = plots.risk_dashboard(m)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    bars, hist, scatter = fig.axes
    assert [ax.get_title() for ax in fig.axes] == [
        "DebtRank if the bank defaulted alone (top 15)", "capital ratios (active banks)",
        "interbank exposure by size"]
    widths = np.array([p.get_width() for p in bars.patches])
    labels = [int(t.get_text()) for t in bars.get_yticklabels()]
    assert len(widths) == len(labels) == 15
    np.testing.assert_allclose(widths, scores[labels])  # each bar is its bank's score
    np.testing.assert_allclose(np.sort(widths), np.sort(scores)[-15:])  # the top 15
    assert labels[-1] == int(np.argmax(scores))  # the largest on top
    counts = sum(p.get_height() for p in hist.patches)
    assert counts == int(m.ledger.active.sum())
    assert hist.lines[0].get_xdata()[0] == m.config.capital_requirement
    assert scatter.get_xlabel() == "total assets"
    assert scatter.get_ylabel() == "interbank assets"
    np.testing.assert_allclose(scatter.collections[0].get_offsets(),
                               np.column_stack([m.sheets.total_assets,
                                                m.sheets.interbank_assets]))


def test_run_figure_is_dashboard_plus_network(crisis):
    df = crisis.datacollector.get_model_vars_dataframe()
    fig = plots.run_figure(crisis)
    assert isinstance(fig, Figure) and len(fig.axes) == 6  # 4 series, network, colour bar
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:4] == SERIES_TITLES
    assert titles[4].startswith(f"step {crisis.t}: ")
    assert fig.axes[5].get_ylabel() == "capital ratio"
    for ax, col in zip(fig.axes[:4], SERIES_COLUMNS, strict=True):
        np.testing.assert_allclose(_ydata(ax), df[col])


def test_the_usual_mesa_pattern_works_with_a_plain_model():
    """SolaraViz(FinancialModel(...), model_params=...) — Mesa 3.3 refused a model
    whose catch-all keyword parameter was not literally named ``kwargs``."""
    import inspect

    from mesa.visualization import solara_viz

    from finsim_mesa import FinancialModel

    check = getattr(solara_viz, "_check_model_params", None)
    if check is not None:  # Mesa 3.3 checks the model's parameters this way
        check(FinancialModel.__init__, app.model_params)
    params = inspect.signature(FinancialModel.__init__).parameters
    catch_all = [p for p in params.values() if p.kind == p.VAR_KEYWORD]
    assert [p.name for p in catch_all] == ["kwargs"]
    page = solara_viz.SolaraViz(FinancialModel(n_banks=8, rng=1),
                                model_params=app.model_params)
    solara.render(page, handle_error=False)
