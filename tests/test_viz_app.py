"""The live view without a browser: the page rendered with solara's test renderer
(widgets driven by setting values and clicking), the session and player that
change the models, the frames and Vega-Lite specs checked against the model's
own data, the scenario's words; and the static figures of
``finsim_mesa.viz.plots``."""

from __future__ import annotations

import json
import threading
import time
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
from finsim_mesa.errors import FinsimError  # noqa: E402
from finsim_mesa.scenarios import Scenario, list_scenarios  # noqa: E402
from finsim_mesa.scenarios.engine import SHOCK_KINDS  # noqa: E402

with warnings.catch_warnings():  # Mesa's ComponentsView trips solara's rules-of-hooks check
    warnings.simplefilter("ignore", UserWarning)
    from finsim_mesa.viz import app, plots, specs
    from finsim_mesa.viz.describe import (
        describe_scenario,
        describe_shock,
        percent,
        scenario_events,
    )
    from finsim_mesa.viz.frames import SHEET_FIELDS, ModelView, series_columns
    from finsim_mesa.viz.session import COMPARISONS, Player, Session
    from finsim_mesa.viz.shock import ShockForm
    from finsim_mesa.viz.vega import LiveVega


PARAMS = {"n_banks", "topology", "scenario", "brain", "infrastructure", "rng"}
SERIES_TITLES = ["asset price (start = 1)", "defaults", "systemic-risk index",
                 "liquidity index"]
SERIES_COLUMNS = ["price", "n_defaults", "systemic_risk_index", "liquidity_index"]
SHEET_KEYS = {"ta": "total_assets", "cash": "cash", "sec": "securities",
              "oth": "other_assets", "iba": "interbank_assets", "dep": "deposits",
              "ibl": "interbank_liabilities", "eq": "equity", "cr": "capital_ratio"}


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


def _button(rc, label: str):
    return rc.find(vw.Btn, children=[label]).widget


def _enter(text_field, value: Any) -> None:
    """Type into a solara InputInt and press enter (it commits on enter/blur)."""
    text_field.v_model = str(value)
    text_field.fire_event("keyup.enter", None)


def _charts(rc) -> dict[str, LiveVega]:
    return {w.widget.title: w.widget for w in rc.find(LiveVega)}


def _rows(widget: LiveVega, name: str) -> list[dict[str, Any]]:
    return json.loads(widget.datasets[name])


def _texts(rc) -> str:
    """Every text the page shows (Text, HTML and alert widgets), joined."""
    out = []
    for w in rc.find(vw.Html):
        out += [c for c in w.widget.children if isinstance(c, str)]
    for w in rc.find(solara.widgets.HTML):
        out.append(w.widget.unsafe_innerHTML or "")
    for w in rc.find(vw.Alert):
        out += [c for c in w.widget.children if isinstance(c, str)]
    return "\n".join(out)


def _ydata(ax, n: int = 0) -> np.ndarray:
    return np.asarray(ax.lines[n].get_ydata(), dtype=float)


def _wait(condition, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


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
    assert p["brain"]["values"] == app.brain_choices() == list(BRAINS)
    for key in ("topology", "scenario", "brain"):
        assert p[key]["value"] in p[key]["values"]
    for key in ("n_banks", "rng"):
        assert p[key]["min"] <= p[key]["value"] <= p[key]["max"]
        assert (p[key]["value"] - p[key]["min"]) % p[key]["step"] == 0
    assert p["infrastructure"]["value"] is False


def test_infrastructure_switch_builds_two_exchanges_and_one_ccp():
    on = app.FinancialModelViz(infrastructure=True, n_banks=10, rng=1)
    assert on.router is not None
    assert len(on.exchanges) == 2 and len(on.ccps) == 1
    three = app.FinancialModelViz(infrastructure=True, n_exchanges=3, n_banks=10, rng=1)
    assert len(three.exchanges) == 3 and len(three.ccps) == 1  # explicit counts win
    off = app.FinancialModelViz(infrastructure=False, n_banks=10, rng=1)
    assert off.router is None and off.exchanges == [] and off.ccps == []


def test_url_parameters_preset_the_form():
    params, compare, notes = app.params_from_query(
        "n_banks=100&scenario=systemic&infrastructure=true&compare=fire+sales+on+/+off")
    assert params == {"n_banks": 100, "topology": "barabasi_albert", "scenario": "systemic",
                      "brain": "rule_based", "infrastructure": True, "rng": 42}
    assert compare == "fire sales on / off" and notes == []
    params, compare, notes = app.params_from_query(
        "n_banks=100000&topology=star&rng=x&colour=red&compare=nonsense")
    assert params == app.params_from_query("")[0]  # every bad value left at its default
    assert compare == "" and len(notes) == 5
    assert "n_banks='100000' ignored: must lie in 5..200" in notes[0]
    assert "topology='star' ignored: choose one of barabasi_albert" in notes[1]
    assert "colour='red' ignored: unknown" in notes[3]


# ------------------------------------------------------------ words


def test_scenario_timeline_is_derived_from_the_fields():
    spec = Scenario(name="drill", crash_step=30, crash_magnitude=0.1, default_step=5,
                    default_count=3, default_target="smallest", funding_stress=0.02,
                    funding_stress_probability=0.5, funding_start=12, price_volatility=0.02)
    assert scenario_events(spec) == ["three smallest banks fail at step 5",
                                     "funding run from step 12",
                                     "10% price crash at step 30"]  # in step order
    assert describe_scenario(spec) == (
        "drill: three smallest banks fail at step 5, funding run from step 12, "
        "10% price crash at step 30; in the run each bank has a 50% chance a step to lose "
        "2% of deposits, price noise 2% a step")
    one = Scenario(name="one", default_step=2, default_count=1, default_target="random")
    assert scenario_events(one) == ["a random bank fails at step 2"]
    calm = Scenario(name="calm", price_volatility=0.005)
    assert describe_scenario(calm) == "calm: no scheduled events; price noise 0.5% a step"
    systemic = list_scenarios()["systemic"]
    assert describe_scenario(systemic).startswith(
        "systemic: two largest banks fail at step 15, funding run steps 15–70, "
        "5% price crash at step 20;")


def test_shock_records_in_words():
    assert percent(0.05) == "5%" and percent(0.125) == "12.5%" and percent(1e-9) == "0%"
    assert describe_shock({"step": 4, "kind": "default", "magnitude": 0.0, "banks": [3],
                           "asset": None}) == "default on bank 3 at step 4"
    assert describe_shock({"step": 7, "kind": "price_crash", "magnitude": 0.3,
                           "banks": [0, 1], "asset": "bonds"}) == (
        "price crash of 30% of the price on bonds at step 7")
    assert describe_shock({"step": 1, "kind": "loss", "magnitude": 0.5, "banks": [],
                           "asset": None}) == (
        "loss of 50% of equity (no active bank: nothing changed) at step 1")


# ------------------------------------------------------------ frames, specs


def test_frame_shows_every_bank_as_the_model_has_it(crisis):
    view = ModelView(crisis)
    run = view.frame()
    nodes = json.loads(run.datasets["nodes"])
    assert [r["id"] for r in nodes] == list(range(crisis.n_banks))
    for bank, rec in zip(crisis.banks, nodes, strict=True):
        sheet = bank.balance_sheet()
        for key, name in SHEET_KEYS.items():
            assert rec[key] == pytest.approx(sheet[name], abs=0.006), (bank.bank_id, key)
        assert (rec["st"] != "active") == bank.defaulted
        assert rec["name"] == f"bank {bank.bank_id}"
    assert set(SHEET_FIELDS) == set(SHEET_KEYS)
    # size = total assets at the start: the largest bank has the largest symbol
    areas = np.array([r["a"] for r in nodes])
    assert int(np.argmax(areas)) == int(np.argmax(crisis.reference.assets0))
    assert np.all(np.diff(areas[np.argsort(crisis.reference.assets0)]) >= -0.1)
    # loan edges: one per exposure, width = the exposure
    edges = json.loads(run.datasets["edges"])
    exp = crisis.ledger.exposure_matrix().tocoo()
    assert len(edges) == exp.nnz
    np.testing.assert_allclose(sorted(e["w"] for e in edges), sorted(exp.data), atol=6e-4)
    # membership: every bank to its exchange, each exchange to the CCP (the Mesa grid)
    links = json.loads(run.datasets["links"])
    kinds = [link["kind"] for link in links]
    assert kinds.count("member of an exchange") == crisis.n_banks
    assert kinds.count("exchange clears through a CCP") == len(crisis.exchanges) == 2
    infra = json.loads(run.datasets["infra"])
    assert [r["kind"] for r in infra] == ["exchange", "exchange", "CCP"]
    assert sum(r["members"] for r in infra[:2]) == crisis.n_banks
    assert infra[2]["margin"] == pytest.approx(crisis.ccps[0].margin_held, abs=0.006)


def test_new_defaults_are_marked_for_one_step_and_keep_their_size():
    m = app.FinancialModelViz(n_banks=30, scenario="systemic", rng=3)
    view = ModelView(m)
    area0 = [r["a"] for r in json.loads(view.frame().datasets["nodes"])]
    m.run_for(15)  # the scenario defaults the two largest banks at step 15
    run = view.frame()
    largest = set(np.argsort(-m.reference.assets0)[:2].tolist())
    fresh = set(np.flatnonzero(m.ledger.default_step == 15).tolist())
    assert largest <= fresh and set(run.new_defaults) == fresh
    nodes = json.loads(run.datasets["nodes"])
    assert {r["id"] for r in nodes if r["new"]} == fresh
    assert all(nodes[i]["st"] == "defaulted this step" for i in fresh)
    assert [run.default_step[i] for i in sorted(fresh)] == [15] * len(fresh)
    assert run.default_step.count(-1) == m.n_banks - int(m.ledger.defaulted.sum())
    n_def = int(m.ledger.defaulted.sum())
    assert run.headline == (f"{n_def} of 30 banks defaulted · price index "
                            f"{m.measures.asset_price:.3f} · DebtRank "
                            f"{m.datacollector.model_vars['debtrank_total'][-1]:.3f}")
    m.step()
    nodes = json.loads(view.frame().datasets["nodes"])
    assert not any(nodes[i]["new"] for i in fresh)  # one step only
    assert all(nodes[i]["st"] == "defaulted" for i in fresh)
    assert [r["a"] for r in nodes] == area0  # defaulted banks keep their size


def test_series_rows_are_the_datacollector_columns(crisis):
    view = ModelView(crisis, label="A")
    rows = view.series_rows()
    df = crisis.datacollector.get_model_vars_dataframe()
    assert [r["step"] for r in rows] == list(range(len(df))) == list(range(crisis.t + 1))
    assert {r["run"] for r in rows} == {"A"}
    for col in series_columns(crisis):
        np.testing.assert_allclose([r[col] for r in rows], df[col], atol=1e-5)
    assert "exchange_utilisation" in view.columns and "margin_posted" in view.columns


def test_charts_name_their_axes_in_words():
    cols = series_columns(app.FinancialModelViz(n_banks=10, rng=1))
    spec = specs.dashboard_spec(cols, steps=100, compare=False)
    titles = [c["title"]["text"] for c in spec["concat"]]
    assert titles == ["Defaults", "Asset prices", "DebtRank", "Systemic-risk index",
                      "Liquidity"]  # no exchange/CCP charts without the layer
    axes = [c["layer"][0]["encoding"]["y"]["title"] for c in spec["concat"]]
    assert axes[0] == "defaults (banks)"
    assert axes[2] == "DebtRank (share of system value lost)"
    assert all(c["layer"][0]["encoding"]["x"]["title"] == "step" for c in spec["concat"])
    assert spec["data"] == {"name": "series"} and "v5" in spec["$schema"]
    with_classes = specs.chart_list([*cols, "price_bonds", "price_loans"])
    prices = next(words for title, _, words in with_classes if title == "Asset prices")
    assert prices == {"price": "price index", "price_bonds": "bonds", "price_loans": "loans"}


def test_several_asset_classes_get_a_price_line_each():
    m = app.FinancialModelViz(n_banks=12, rng=1, n_assets=3)
    names = m.market.names
    assert len(names) == 3
    view = ModelView(m)
    assert [c for c in view.columns if c.startswith("price_")] == [f"price_{c}"
                                                                  for c in names]
    m.apply_shock("price_crash", 0.5, asset=names[1])
    m.step()
    last = view.series_rows()[-1]
    assert last[f"price_{names[1]}"] < 0.7 < last[f"price_{names[0]}"]


# ------------------------------------------------------------ session, player


def _session(**params: Any) -> Session:
    return Session(app.FinancialModelViz, {"n_banks": 12, "rng": 5} | params)


def test_session_steps_and_shocks_exactly_what_it_is_told():
    s = _session()
    f0 = s.latest
    f1 = s.step()
    assert f1.t == 1 == s.models[0].t and f1.stamp > f0.stamp
    f2 = s.shock("default", 0.0, 4)
    assert s.models[0].shock_log[-1] == {"step": 1, "kind": "default", "magnitude": 0.0,
                                         "banks": [4], "source": "user", "asset": None}
    assert np.flatnonzero(s.models[0].ledger.defaulted).tolist() == [4]
    assert f2.message.startswith("Applied default on bank 4 at step 1 — 1 defaults now")
    assert f2.runs[0].defaulted[4] and f2.t == 1  # the frame shows it before the next step
    f3 = s.shock("loss", 0.3, 99)  # no such bank: refused, nothing changes
    assert f3.message.startswith("Shock refused: bank ids must lie in 0..11")
    assert len(s.models[0].shock_log) == 1
    assert s.step().message == s.latest.message  # the last message stays while stepping


def test_price_crash_hits_the_price_by_the_size_shown():
    s = _session()
    before = s.models[0].market.price_index
    f = s.shock("price_crash", 0.25, None)
    assert s.models[0].market.price_index == pytest.approx(0.75 * before)
    assert "price crash of 25% of the price on all asset classes at step 0" in f.message


def test_compare_builds_twins_that_differ_in_one_parameter():
    s = Session(app.FinancialModelViz, {"n_banks": 15, "rng": 9, "scenario": "systemic"},
                compare="fire sales on / off")
    a, b = s.models
    assert a.config.forced_deleveraging and not b.config.forced_deleveraging
    diff = {k for k, v in a.config.model_dump().items() if b.config.model_dump()[k] != v}
    assert diff == {"forced_deleveraging"}
    assert set(a.graph.edges()) == set(b.graph.edges())  # same seed: same network
    np.testing.assert_array_equal(a.ledger.equity, b.ledger.equity)
    assert s.views[0].pos is s.views[1].pos  # drawn the same way
    assert [r.label for r in s.latest.runs] == ["fire sales on", "fire sales off"]
    for _ in range(3):
        s.step()
    assert a.t == b.t == 3
    s.shock("default", 0.0, 2)
    assert a.ledger.defaulted[2] and b.ledger.defaulted[2]  # both models are hit
    rows = json.loads(s.latest.series)
    assert [r["run"] for r in rows] == ["fire sales on"] * 4 + ["fire sales off"] * 4
    infra = Session(app.FinancialModelViz, {"n_banks": 10, "rng": 1},
                    compare="with / without exchanges and CCP")
    assert [m.router is not None for m in infra.models] == [False, True]
    assert [r.label for r in infra.latest.runs] == ["without exchanges and CCP",
                                                    "with exchanges and CCP"]
    with pytest.raises(FinsimError, match="compare = 'x': choose one of"):
        s.reset({"n_banks": 10}, compare="x")
    assert set(COMPARISONS) >= {"fire sales on / off", "with / without exchanges and CCP"}


def test_player_steps_until_told_and_publishes_under_the_lock():
    s = _session()
    seen: list[tuple[int, bool]] = []

    def publish(frame):
        seen.append((frame.t, s.lock._is_owned()))

    p = Player(s, publish, connected=lambda: True, steps_per_second=50).start()
    _wait(lambda: len(seen) >= 5)
    p.stop()
    p.join(5)
    assert not p.alive and p.reason == "paused"
    assert [t for t, _ in seen] == list(range(1, len(seen) + 1))
    assert all(locked for _, locked in seen)


def test_player_stops_when_the_page_is_gone():
    s = _session()
    page = threading.Event()
    page.set()
    reasons: list[str] = []
    p = Player(s, lambda f: None, connected=page.is_set, on_stop=reasons.append,
               steps_per_second=100).start()
    _wait(lambda: s.models[0].t >= 3)
    page.clear()  # the tab closed
    p.join(5)
    t = s.models[0].t
    time.sleep(0.1)
    assert not p.alive and reasons == ["the page is gone"] and s.models[0].t == t


def test_player_stops_at_reset_and_at_the_end_of_the_episode():
    s = _session(steps=4)
    p = Player(s, lambda f: None, connected=lambda: True, steps_per_second=100).start()
    p.join(5)
    assert p.reason == "the episode is over" and s.models[0].t == 4
    s = _session()
    frames = []
    p = Player(s, frames.append, connected=lambda: True, steps_per_second=20).start()
    _wait(lambda: len(frames) >= 2)
    s.reset({"n_banks": 10, "rng": 1})
    p.join(5)
    assert p.reason == "reset" and all(f.generation == 1 for f in frames)
    assert s.models[0].t == 0 and s.generation == 2


# ------------------------------------------------------------ the page


def test_page_shows_network_charts_inspector_and_controls(render):
    m = app.FinancialModelViz(n_banks=10, rng=1)
    rc = render(app.make_page(m))
    charts = _charts(rc)
    assert set(charts) == {"network 0", "bank history", "charts"}
    nodes = _rows(charts["network 0"], "nodes")
    assert len(nodes) == 10 and nodes[3]["eq"] == pytest.approx(m.banks[3].equity, abs=0.006)
    spec = json.loads(charts["charts"].spec)
    assert spec["concat"][0]["layer"][0]["encoding"]["y"]["title"] == "defaults (banks)"
    assert [c.widget.children for c in rc.find(vw.CardTitle)] == [["Run"], ["Shock"],
                                                                   ["Model"], ["Bank 0"]]
    sliders = [s.widget.label for s in rc.find(vw.Slider)]
    assert sliders == ["Speed: 10 steps/s", "Banks: 10", "Seed: 42"]
    form = rc.find(ShockForm).widget
    assert [k["value"] for k in form.kinds] == list(SHOCK_KINDS)
    assert [k["text"] for k in form.kinds] == ["price crash", "funding run", "loss", "default"]
    assert form.assets == []  # one asset class: no asset menu
    text = _texts(rc)
    assert "Step: 0 of 100" in text
    assert "<b>normal</b>: no scheduled events" in text  # the line under the title
    assert "press Reset" not in text


def test_step_sends_new_data_not_a_new_chart(render):
    m = app.FinancialModelViz(n_banks=10, rng=1)
    rc = render(app.make_page(m))
    before = {k: (w.spec, dict(w.datasets)) for k, w in _charts(rc).items()}
    _button(rc, "Step").click()
    assert m.t == 1 and "Step: 1 of 100" in _texts(rc)
    for title, w in _charts(rc).items():
        spec, data = before[title]
        assert w.spec == spec  # the chart is not rebuilt...
        assert w.datasets["__stamp"] != data["__stamp"]  # ...its data are new
    series = _rows(_charts(rc)["charts"], "series")
    assert [r["step"] for r in series] == [0, 1]
    assert series[1]["price"] == pytest.approx(m.measures.asset_price, abs=1e-5)


def _apply(form: ShockForm, **values: Any) -> None:
    """Click Apply as the browser does: with the values the form shows."""
    shown = {"kind": form.kind, "size": form.size, "bank": form.bank, "asset": form.asset}
    form.vue_apply(shown | values)


def test_clicking_a_bank_selects_it_for_the_shock_and_the_inspector(render):
    m = app.FinancialModelViz(n_banks=10, rng=1)
    rc = render(app.make_page(m))
    charts = _charts(rc)
    charts["network 0"].vue_vega_click({"id": 6, "kind": None})  # what the browser sends
    form = rc.find(ShockForm).widget
    assert form.bank == "6"  # the shock control shows the selected bank
    assert [c.widget.children for c in rc.find(vw.CardTitle)][-1] == ["Bank 6"]
    ring = _rows(_charts(rc)["network 0"], "selected")
    node = _rows(_charts(rc)["network 0"], "nodes")[6]
    assert (ring[0]["x"], ring[0]["y"]) == pytest.approx((node["x"], node["y"]), abs=1e-4)
    assert f"{m.banks[6].equity:,.2f}" in _texts(rc)
    _apply(form, kind="default")
    assert np.flatnonzero(m.ledger.defaulted).tolist() == [6]
    assert "Applied default on bank 6 at step 0" in _texts(rc)
    assert "<td>state</td><td>defaulted at step 0</td>" in _texts(rc)  # the inspector
    assert "1 of 10 banks defaulted" in _texts(rc)  # the headline over the network
    charts["network 0"].vue_vega_click({"id": None, "kind": "CCP"})  # not a bank: no change
    assert form.bank == "6"


def test_shock_applies_what_the_form_shows(render):
    m = app.FinancialModelViz(n_banks=10, rng=1)
    rc = render(app.make_page(m))
    form = rc.find(ShockForm).widget
    form.bank = "3"  # typed in the browser: the bank is selected
    assert [c.widget.children for c in rc.find(vw.CardTitle)][-1] == ["Bank 3"]
    equity = m.ledger.equity[3]
    # the click carries the form: loss, 50 %, bank 5 (typed just before the click,
    # not yet synced) -- that is what is applied
    _apply(form, kind="loss", size=0.5, bank="5")
    assert m.shock_log[-1] | {"step": 0} == {"step": 0, "kind": "loss", "magnitude": 0.5,
                                             "banks": [5], "source": "user", "asset": None}
    assert m.ledger.equity[3] == equity
    assert "Applied loss of 50% of equity on bank 5 at step 0" in _texts(rc)
    assert [c.widget.children for c in rc.find(vw.CardTitle)][-1] == ["Bank 5"]
    _apply(form, kind="default", bank="42")  # no such bank: refused, inspector says so
    assert "Shock refused: bank ids must lie in 0..9" in _texts(rc)
    assert [c.widget.children for c in rc.find(vw.CardTitle)][-1] == ["No bank 42"]
    _apply(form, kind="default", bank="two")
    assert "Shock refused: bank 'two' is not a bank number" in _texts(rc)
    _apply(form, kind="price_crash", size=0.3, bank="two")  # a crash needs no bank
    assert m.market.price_index == pytest.approx(0.7)
    assert len(m.shock_log) == 2


def test_changed_parameters_wait_for_reset(render):
    rc = render(app.make_page(app.FinancialModelViz(n_banks=10, rng=1)))
    sliders = {s.widget.label: s.widget for s in rc.find(vw.Slider)}
    sliders["Banks: 10"].v_model = 15
    rc.find(vw.Select, label="Topology").widget.v_model = "erdos_renyi"
    assert "Changed: Banks, Topology — press Reset to apply." in _texts(rc)
    assert _rows(_charts(rc)["network 0"], "nodes")[-1]["id"] == 9  # not yet
    _button(rc, "Reset").click()
    assert "press Reset" not in _texts(rc)
    nodes = _rows(_charts(rc)["network 0"], "nodes")
    assert len(nodes) == 15 and "Step: 0 of 100" in _texts(rc)
    rc.find(vw.Select, label="Compare side by side").widget.v_model = "fire sales on / off"
    assert "Changed: compare — press Reset to apply." in _texts(rc)
    _button(rc, "Reset").click()
    assert set(_charts(rc)) == {"network 0", "network 1", "bank history", "charts"}
    assert "comparing <b>fire sales on vs fire sales off</b>" in _texts(rc)


def test_play_steps_in_the_background_and_pause_stops_it(render):
    m = app.FinancialModelViz(n_banks=10, rng=1)
    rc = render(app.make_page(m))
    _button(rc, "▶ Play").click()
    _wait(lambda: m.t >= 3)
    _wait(lambda: "Step: 3" in _texts(rc) or m.t > 3)
    _button(rc, "❚❚ Pause").click()
    time.sleep(0.3)
    t = m.t
    time.sleep(0.3)
    assert m.t == t  # paused: no more steps
    _wait(lambda: f"Step: {t} of 100" in _texts(rc))


def test_closing_the_page_stops_its_player(render):
    m = app.FinancialModelViz(n_banks=10, rng=1)
    rc = render(app.make_page(m))
    _button(rc, "▶ Play").click()
    _wait(lambda: m.t >= 2)
    rc.close()  # what Solara does when the tab's session closes
    time.sleep(0.3)
    t = m.t
    time.sleep(0.3)
    assert m.t == t


def test_each_page_gets_its_own_model(render):
    """``solara run`` renders ``Page`` once per browser tab: each has its own session."""
    sessions = []
    original = app.LiveView

    def spy(session, *args, **kwargs):
        sessions.append(session)
        return original(session, *args, **kwargs)

    app.LiveView = spy
    try:
        rc1, rc2 = render(app.Page()), render(app.Page())
    finally:
        app.LiveView = original
    a, b = sessions[0], sessions[-1]
    assert a is not b and a.models[0] is not b.models[0]
    _button(rc1, "Step").click()
    assert a.models[0].t == 1 and b.models[0].t == 0
    assert "Step: 0 of 100" in _texts(rc2)


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




def test_a_typed_bank_survives_redraws_while_playing(render):
    """Defect 1's mechanism: each redraw while playing re-sent every widget's value,
    putting back the bank number the user had just replaced."""
    m = app.FinancialModelViz(n_banks=10, rng=1)
    rc = render(app.make_page(m))
    form = rc.find(ShockForm).widget
    _button(rc, "▶ Play").click()
    _wait(lambda: m.t >= 2)
    form.bank = "3"  # what the browser sends as the user types
    start = m.t
    _wait(lambda: m.t >= start + 3)  # several redraws later
    assert form.bank == "3"
    _apply(form, kind="default")
    _button(rc, "❚❚ Pause").click()
    assert m.shock_log[-1]["banks"] == [3] and m.ledger.defaulted[3]
