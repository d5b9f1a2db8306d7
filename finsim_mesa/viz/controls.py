"""The sidebar of the live view: run controls and the parameters (the shock
control is :mod:`finsim_mesa.viz.shock`).

Handlers read the form's values when they run (from reactive variables, never
from a closure of an earlier render), and every change to a model goes through
the :class:`~finsim_mesa.viz.session.Session` and its lock.
"""

from __future__ import annotations

from typing import Any

import solara

from finsim_mesa.errors import FinsimError
from finsim_mesa.viz.frames import Frame
from finsim_mesa.viz.session import COMPARISONS, Player, Session, page_connected

__all__ = ["ParameterForm", "RunControls", "StepText", "current_context"]

NO_COMPARE = "no (one model)"


def current_context() -> Any:
    """The Solara kernel context of this page (None outside a Solara server)."""
    from solara.server import kernel_context

    return kernel_context.get_current_context() if kernel_context.has_current_context() \
        else None


@solara.component
def StepText(frame: solara.Reactive[Frame], steps: int) -> Any:
    """``Step: 12 of 100`` (and why the run stopped, if it did)."""
    f = frame.value
    end = "" if f.running else " — the episode is over (Reset to start again)"
    return solara.Text(f"Step: {f.t} of {steps}{end}", style="font-size: 17px")


@solara.component
def RunControls(session: Session, frame: solara.Reactive[Frame],
                playing: solara.Reactive[bool], speed: solara.Reactive[int],
                reset: Any) -> Any:
    """Reset, Play/Pause, Step, the speed and the step counter."""
    context = solara.use_memo(current_context, [])

    def play() -> Any:
        if not playing.value:
            return None

        def stopped(reason: str) -> None:
            if reason not in ("paused", "reset") and page_connected(context):
                playing.set(False)

        player = Player(session, frame.set, lambda: page_connected(context), stopped,
                        steps_per_second=speed.value).start()
        return player.stop  # on pause, speed change, reset, or the page closing

    solara.use_effect(play, [playing.value, speed.value])

    def step() -> None:
        if not playing.value:
            with session.lock:  # shown before any later frame (as the player does)
                frame.set(session.step())

    with solara.Card("Run", margin=0, style="margin-bottom: 8px"):
        with solara.Row(gap="6px"):
            solara.Button("Reset", on_click=reset, color="primary", outlined=True)
            solara.Button("❚❚ Pause" if playing.value else "▶ Play", color="primary",
                          on_click=lambda: playing.set(not playing.value),
                          disabled=not frame.value.running)
            solara.Button("Step", on_click=step, color="primary",
                          disabled=playing.value or not frame.value.running)
        StepText(frame, int(session.models[0].config.steps))
        solara.SliderInt(f"Speed: {speed.value} steps/s", value=speed, min=1, max=20)


def _input(name: str, spec: dict[str, Any], form: solara.Reactive[dict[str, Any]]) -> None:
    value = form.value.get(name, spec.get("value"))

    def set_value(v: Any) -> None:
        form.set({**form.value, name: v})

    label, kind = spec.get("label", name), spec.get("type")
    if kind == "SliderInt":
        solara.SliderInt(f"{label}: {value}", value=value, on_value=set_value,
                         min=spec["min"], max=spec["max"], step=spec.get("step", 1))
    elif kind == "SliderFloat":
        solara.SliderFloat(f"{label}: {value:g}", value=value, on_value=set_value,
                           min=spec["min"], max=spec["max"], step=spec.get("step", 0.01))
    elif kind == "Select":
        solara.Select(label, values=list(spec["values"]), value=value, on_value=set_value)
    elif kind == "Checkbox":
        solara.Checkbox(label=label, value=bool(value), on_value=set_value)
    else:
        raise FinsimError(f"model_params[{name!r}]: type {kind!r} is not supported here")


@solara.component
def ParameterForm(user_params: dict[str, Any], form: solara.Reactive[dict[str, Any]],
                  compare: solara.Reactive[str], applied: solara.Reactive[tuple]) -> Any:
    """The model's parameters and the compare mode; says which ones changed since
    the last Reset ("press Reset to apply")."""
    running_params, running_compare = applied.value
    with solara.Card("Model", margin=0):
        for name, spec in user_params.items():
            if isinstance(spec, dict) and "type" in spec:
                _input(name, spec, form)
        solara.Select("Compare side by side", values=[NO_COMPARE, *COMPARISONS],
                      value=compare.value or NO_COMPARE,
                      on_value=lambda v: compare.set("" if v == NO_COMPARE else v))
        changed = [spec.get("label", name) if isinstance(spec, dict) else name
                   for name, spec in user_params.items()
                   if form.value.get(name) != running_params.get(name)]
        if compare.value != running_compare:
            changed.append("compare")
        if changed:
            solara.Warning(f"Changed: {', '.join(changed)} — press Reset to apply.",
                           dense=True, classes=["finsim-changed"])
