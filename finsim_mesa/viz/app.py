"""The live view: a Solara page a teacher can project.

Start it with ``finsim viz`` or ``solara run finsim_mesa.viz.app``; in a
notebook, ``make_page(model)`` shows a model you built.

* the network: banks sized by their total assets at the start and coloured by
  capital ratio; defaulted banks keep their size, grey with a white cross, and
  an orange ring in the step they fail; exchanges (squares) and CCPs
  (diamonds) with their membership lines; hover a bank for its balance sheet,
  click it to select it;
* the selected bank's balance sheet and its equity and cash over time;
* charts of defaults, asset prices (one line per asset class), DebtRank, the
  systemic-risk index and liquidity, and the exchanges and CCPs when they are on;
* a shock control applied to the running model(s), the parameters (changes
  apply at Reset) and a compare mode: two models, same seed, one parameter
  different, stepping together.

Each browser tab gets its own session (:class:`~finsim_mesa.viz.session.Session`):
its own model, which stops stepping when the tab goes. URL parameters preset
the form, e.g. ``/?n_banks=100&scenario=systemic&compare=fire+sales+on+/+off``.

Rendering: the charts are Vega-Lite drawn in the browser
(:mod:`finsim_mesa.viz.vega`); a step sends only the new data, never images.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import parse_qsl

import solara

from finsim_mesa.agents.brains import BRAINS
from finsim_mesa.config import TOPOLOGIES
from finsim_mesa.errors import FinsimError
from finsim_mesa.model import FinancialModel
from finsim_mesa.scenarios import list_scenarios
from finsim_mesa.viz import specs
from finsim_mesa.viz.controls import ParameterForm, RunControls
from finsim_mesa.viz.describe import scenario_background, scenario_events
from finsim_mesa.viz.frames import SHEET_FIELDS, Frame, dumps
from finsim_mesa.viz.session import COMPARISONS, Session
from finsim_mesa.viz.shock import ShockControl
from finsim_mesa.viz.vega import VegaChart

__all__ = ["NAME", "FinancialModelViz", "LiveView", "Page", "make_page", "model_params",
           "params_from_query"]

NAME = "finsim-mesa: financial contagion"


class FinancialModelViz(FinancialModel):
    """FinancialModel with one ``infrastructure`` switch for the app's checkbox
    (on = 2 exchanges and 1 CCP)."""

    def __init__(self, infrastructure: bool = False, **kwargs: Any) -> None:
        if infrastructure:
            kwargs.setdefault("n_exchanges", 2)
            kwargs.setdefault("n_ccps", 1)
        super().__init__(**kwargs)


def brain_choices() -> list[str]:
    """Brains offered in the app: the built-ins."""
    return list(BRAINS)


# Mesa's model_params format: SolaraViz(FinancialModelViz(...), model_params=model_params)
# works with it too
model_params: dict[str, Any] = {
    "n_banks": {"type": "SliderInt", "value": 30, "label": "Banks", "min": 5, "max": 200,
                "step": 5},
    "topology": {"type": "Select", "value": "barabasi_albert", "values": list(TOPOLOGIES),
                 "label": "Topology"},
    "scenario": {"type": "Select", "value": "normal", "values": list(list_scenarios()),
                 "label": "Scenario"},
    "brain": {"type": "Select", "value": "rule_based", "values": brain_choices(),
              "label": "Brain"},
    "infrastructure": {"type": "Checkbox", "value": False,
                       "label": "Exchanges and CCP (2 + 1)"},
    "rng": {"type": "SliderInt", "value": 42, "label": "Seed", "min": 0, "max": 999,
            "step": 1},
}

CSS = """
.finsim-subtitle { font-size: 17px; margin: 0 0 6px 2px; color: #37474f; }
.finsim-subtitle b { color: #000; }
.finsim-muted { color: #78909c; font-size: 15px; }
.finsim-headline { font-size: 15px; color: #263238; margin-left: 4px; }
.finsim-sidebar { width: 300px; flex: 0 0 300px; }
.finsim-status { display: block; margin-top: 6px; }
.finsim-sheet { border-collapse: collapse; font-size: 15px; margin-bottom: 6px; }
.finsim-sheet td, .finsim-sheet th { padding: 2px 10px 2px 0; text-align: right; }
.finsim-sheet td:first-child, .finsim-sheet th:first-child { text-align: left; }
.finsim-sheet td + td { white-space: nowrap; }
.finsim-legend { font-size: 14px; color: #37474f; max-width: 470px; margin-top: 30px; }
.finsim-sidebar .v-label, .finsim-sidebar .v-select__selection { font-size: 15px; }
/* Solara's "This website runs on Solara" corner banner covers the charts on a projector */
#app div:has(> b > a[href="https://solara.dev"]) { display: none; }
"""


def _parse(value: str, spec: dict[str, Any]) -> Any:
    kind = spec.get("type")
    if kind in ("SliderInt", "SliderFloat"):
        number = int(value) if kind == "SliderInt" else float(value)
        if not spec["min"] <= number <= spec["max"]:
            raise ValueError(f"must lie in {spec['min']}..{spec['max']}")
        return number
    if kind == "Checkbox":
        if value.lower() not in ("1", "0", "true", "false", "on", "off", "yes", "no"):
            raise ValueError("must be true or false")
        return value.lower() in ("1", "true", "on", "yes")
    if value not in spec["values"]:
        raise ValueError(f"choose one of {', '.join(map(str, spec['values']))}")
    return value


def params_from_query(search: str | None, user_params: dict[str, Any] = model_params
                      ) -> tuple[dict[str, Any], str, list[str]]:
    """The form's values from a URL query (``n_banks=100&scenario=systemic``):
    ``(params, compare, notes)``; a value that does not fit is left at its default
    and named in ``notes``."""
    params = {k: v["value"] for k, v in user_params.items() if isinstance(v, dict)}
    compare, notes = "", []
    for key, value in parse_qsl(search or ""):
        try:
            if key == "compare":
                if value not in COMPARISONS:
                    raise ValueError(f"choose one of {', '.join(COMPARISONS)}")
                compare = value
            elif key in params:
                params[key] = _parse(value, user_params[key])
            else:
                raise ValueError(f"unknown; known: {', '.join([*params, 'compare'])}")
        except ValueError as err:
            notes.append(f"URL parameter {key}={value!r} ignored: {err}")
    return params, compare, notes


@solara.component
def Header(frame: solara.Reactive[Frame], session: Session, notes: tuple[str, ...]) -> Any:
    """The line under the title: the scenario and its events; the tab's name."""
    generation = frame.value.generation
    spec = solara.use_memo(lambda: session.models[0].scenario_spec, [generation])
    events = ", ".join(scenario_events(spec)) or "no scheduled events"
    solara.Title(f"finsim-mesa · {spec.name}")
    runs = " vs ".join(r.label for r in frame.value.runs if r.label)
    solara.HTML(tag="div", unsafe_innerHTML=(
        f"<b>{escape(spec.name)}</b>: {escape(events)}"
        f"<span class='finsim-muted'>; {escape(', '.join(scenario_background(spec)))}</span>"
        + (f" &nbsp;·&nbsp; comparing <b>{escape(runs)}</b>" if runs else "")),
        classes=["finsim-subtitle"])
    for note in notes:
        solara.Warning(note, dense=True)


def _bank(selected: int | None, frame: Frame) -> int | None:
    """The selected bank's id, or None if there is no such bank."""
    n = len(frame.runs[0].defaulted)
    return int(selected) if selected is not None and 0 <= selected < n else None


@solara.component
def Networks(frame: solara.Reactive[Frame], selected: solara.Reactive[int],
             session: Session) -> Any:
    """One network per run; a click selects a bank."""
    f = frame.value
    compare = len(f.runs) > 1
    width, height = (400, 380) if compare else (450, 410)
    views = session.views
    spec = solara.use_memo(lambda: [specs.network_spec(
        v.exposure_max, v.model.config.capital_requirement, v.model.config.capital_ratio,
        v.model.router is not None, width, height) for v in views],
        [f.generation])

    def click(datum: dict[str, Any]) -> None:
        if datum.get("id") is not None:
            selected.set(int(datum["id"]))

    b = _bank(selected.value, f)
    with solara.Row(gap="8px", style="flex-wrap: wrap"):
        for k, (run, view) in enumerate(zip(f.runs, views, strict=True)):
            ring = dumps([] if b is None else [{"x": float(view.pos[b, 0]),
                                                "y": float(view.pos[b, 1]),
                                                "a": float(view.area[b])}])
            with solara.Column(gap="0px", style=f"flex: 0 0 auto; width: {width + 10}px"):
                solara.HTML(tag="div", classes=["finsim-headline"], unsafe_innerHTML=(
                    f"<b>{escape(run.label)}</b>: " if run.label else "") + escape(run.headline))
                VegaChart(spec[k], {**run.datasets, "selected": ring}, f"{f.stamp}-{b}",
                          title=f"network {k}", on_click=click)
    solara.HTML(tag="div", classes=["finsim-legend"], unsafe_innerHTML=(
        "circle area = bank's total assets at the start · colour = capital ratio · "
        "<b>grey with ✕</b> = defaulted · <b style='color:#ff6d00'>orange ring</b> = "
        "defaulted this step · <b style='color:#1565c0'>blue ring</b> = selected · "
        "grey line width = loan exposure · ■ exchange, ◆ CCP, dashed = membership"))


@solara.component
def Inspector(frame: solara.Reactive[Frame], selected: solara.Reactive[int],
              session: Session) -> Any:
    """The selected bank's balance sheet now and its equity and cash over time."""
    f = frame.value
    b = _bank(selected.value, f)
    compare = len(f.runs) > 1
    spec = solara.use_memo(lambda: specs.history_spec(
        int(session.models[0].config.steps), compare, runs=[v.label for v in session.views]),
        [f.generation])
    if b is None:
        n = len(f.runs[0].defaulted)
        with solara.Card(f"No bank {selected.value}", margin=0, style="width: 350px"):
            solara.Text(f"The banks are numbered 0 to {n - 1}: type one of these or click "
                        "a bank in the network.")
        return
    head = "".join(f"<th>{r.label}</th>" for r in f.runs) if compare else "<th></th>"
    state = "".join(f"<td>defaulted at step {r.default_step[b]}</td>" if r.defaulted[b]
                    else "<td>active</td>" for r in f.runs)
    rows = [f"<tr><td>state</td>{state}</tr>"]
    for key, words in SHEET_FIELDS.items():
        cells = "".join(f"<td>{r.sheets[key][b]:.1%}</td>" if key == "cr"
                        else f"<td>{r.sheets[key][b]:,.2f}</td>" for r in f.runs)
        rows.append(f"<tr><td>{words}</td>{cells}</tr>")
    history = dumps([{"step": t, "run": r.label, "equity": round(float(eq[b]), 3),
                      "cash": round(float(cash[b]), 3)}
                     for r in f.runs for t, eq, cash in r.history])
    with solara.Card(f"Bank {b}", margin=0, style="width: 350px"):
        solara.HTML(tag="table", classes=["finsim-sheet", f"finsim-bank-{b}"],
                    unsafe_innerHTML=f"<tr><th>money units</th>{head}</tr>" + "".join(rows))
        VegaChart(spec, {"history": history}, f"{f.stamp}-{b}", title="bank history")


@solara.component
def Dashboard(frame: solara.Reactive[Frame], session: Session) -> Any:
    """The time-series charts of all runs."""
    f = frame.value
    spec = solara.use_memo(lambda: specs.dashboard_spec(
        session.views[0].columns, int(session.models[0].config.steps), len(f.runs) > 1,
        congestion=session.models[0].config.congestion_threshold,
        runs=[v.label for v in session.views]),
        [f.generation])
    VegaChart(spec, {"series": f.series}, f.stamp, title="charts")


@solara.component
def LiveView(session: Session, user_params: dict[str, Any] | None = None,
             notes: tuple[str, ...] = ()) -> Any:
    """The whole page for ``session`` (see the module docstring)."""
    user_params = model_params if user_params is None else user_params
    frame = solara.use_reactive(session.latest)
    selected = solara.use_reactive(0)
    playing = solara.use_reactive(False)
    speed = solara.use_reactive(10)
    form = solara.use_reactive({k: session.params.get(k, v["value"])
                                for k, v in user_params.items() if isinstance(v, dict)})
    compare = solara.use_reactive(session.compare)
    applied = solara.use_reactive((dict(session.params), session.compare))
    error = solara.use_reactive("")

    def reset() -> None:
        playing.set(False)
        try:
            new = session.reset(form.value, compare.value)
        except FinsimError as err:
            error.set(f"Reset refused: {err}")
            return
        error.set("")
        applied.set((dict(session.params), session.compare))
        selected.set(min(selected.value, session.models[0].n_banks - 1))
        frame.set(new)

    solara.Style(CSS)
    with solara.AppBar():
        solara.AppBarTitle(NAME)
    with solara.Row(gap="14px", style="align-items: flex-start; padding: 6px 4px"):
        with solara.Column(gap="0px", classes=["finsim-sidebar"]):
            RunControls(session, frame, playing, speed, reset)
            ShockControl(session, frame, selected)
            ParameterForm(user_params, form, compare, applied)
            if error.value:
                solara.Error(error.value)
        with solara.Column(gap="6px", style="flex: 1 1 0; min-width: 0"):
            Header(frame, session, tuple(notes))
            with solara.Row(gap="12px", style="flex-wrap: wrap; align-items: flex-start"):
                with solara.Column(gap="0px"):
                    Networks(frame, selected, session)
                Inspector(frame, selected, session)
            Dashboard(frame, session)


@solara.component
def Page() -> Any:
    """What ``solara run finsim_mesa.viz.app`` serves: a new session per tab."""
    router = solara.use_router()

    def build() -> tuple[Session, tuple[str, ...]]:
        params, compare, notes = params_from_query(router.search)
        return Session(FinancialModelViz, params, compare), tuple(notes)

    session, notes = solara.use_memo(build, [])
    LiveView(session, notes=notes)


def make_page(model: FinancialModel | None = None, compare: str = "") -> Any:
    """The live view of ``model`` (default: one built from the app's defaults), for
    a notebook cell. Reset builds :class:`FinancialModelViz` models from the form."""
    params = {k: v["value"] for k, v in model_params.items()}
    if model is not None:
        cfg = model.config
        params |= {"n_banks": cfg.n_banks, "topology": cfg.topology, "brain": cfg.brain,
                   "scenario": model.scenario_spec.name, "infrastructure": cfg.infrastructure}
    session = Session(FinancialModelViz, params, compare, model=model)
    return LiveView(session)
