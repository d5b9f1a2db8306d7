"""One visitor's models and what changes them: reset, step, shock, play.

A :class:`Session` belongs to one browser tab (the page creates it per tab):
its models (one, or two side by side in compare mode: same seed, one
parameter different), a lock that every change takes, and the frames the
page draws (:class:`~finsim_mesa.viz.frames.Frame`, built under that lock so
that the page never reads a model while it steps).

A :class:`Player` steps a session in a thread of its own until it is paused,
the episode ends, the session is reset, or the page that started it is gone
(closed, or its connection lost): a closed tab never keeps a model stepping on
the server.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from finsim_mesa.errors import FinsimError
from finsim_mesa.model import FinancialModel
from finsim_mesa.scenarios.engine import make_shock
from finsim_mesa.viz.describe import describe_shock
from finsim_mesa.viz.frames import Frame, ModelView, dumps

__all__ = ["COMPARISONS", "Player", "Session", "page_connected"]

log = logging.getLogger(__name__)

Params = dict[str, Any]


def _fire_sales(p: Params) -> tuple[str, Params, str]:
    return "fire sales on", p | {"forced_deleveraging": False}, "fire sales off"


def _infrastructure(p: Params) -> tuple[str, Params, str]:
    on = bool(p.get("infrastructure", False))
    words = ("with exchanges and CCP", "without exchanges and CCP")
    return words[not on], p | {"infrastructure": not on}, words[on]


def _cautious(p: Params) -> tuple[str, Params, str]:
    other = "rule_based" if p.get("brain") == "conservative" else "conservative"
    return f"{p.get('brain', 'rule_based')} banks", p | {"brain": other}, f"{other} banks"


def _no_impact(p: Params) -> tuple[str, Params, str]:
    return "price impact 0.2", p | {"price_impact": 0.0}, "no price impact"


# what the compare control offers: name -> params -> (label A, params of B, label B)
COMPARISONS: dict[str, Callable[[Params], tuple[str, Params, str]]] = {
    "fire sales on / off": _fire_sales,
    "with / without exchanges and CCP": _infrastructure,
    "another brain (conservative)": _cautious,
    "fire-sale price impact on / off": _no_impact,
}


class Session:
    """The models one page shows and every change to them.

    Args:
        factory: builds a model from keyword parameters (the app's model class).
        params: the model's parameters.
        compare: a key of :data:`COMPARISONS`, or "" for one model.
        model: a model to show instead of building one (``params`` then only
            serve Reset).
    """

    def __init__(self, factory: Callable[..., FinancialModel], params: Mapping[str, Any],
                 compare: str = "", model: FinancialModel | None = None) -> None:
        self.factory = factory
        self.lock = threading.RLock()
        self.generation = 0
        self._stamps = itertools.count(1)
        self.models: list[FinancialModel] = []
        self.views: list[ModelView] = []
        self.params: Params = {}
        self.compare = ""
        self.latest: Frame | None = None
        self.reset(params, compare, model)

    # ------------------------------------------------------------------ changes
    def reset(self, params: Mapping[str, Any], compare: str = "",
              model: FinancialModel | None = None) -> Frame:
        """New model(s) from ``params`` (and the comparison), built with the same seed.

        Raises:
            FinsimError: the parameters do not make a model (nothing changes then).
        """
        params = dict(params)
        if compare and compare not in COMPARISONS:
            raise FinsimError(f"compare = {compare!r}: choose one of {', '.join(COMPARISONS)}")
        if compare:
            label_a, params_b, label_b = COMPARISONS[compare](params)
            models = [self.factory(**params), self.factory(**params_b)]
            labels = [label_a, label_b]
        else:
            models, labels = [model if model is not None else self.factory(**params)], [""]
        views = [ModelView(models[0], labels[0])]
        for m, label in zip(models[1:], labels[1:], strict=True):
            same = (m.graph.number_of_nodes() == models[0].graph.number_of_nodes()
                    and set(m.graph.edges()) == set(models[0].graph.edges()))  # same seed
            views.append(ModelView(m, label, pos=views[0].pos if same else None))
        with self.lock:
            self.models, self.views = models, views
            self.params, self.compare = params, compare
            self.generation += 1
            return self.frame("")

    def step(self) -> Frame:
        """Every model that can still run steps once (the last message stays)."""
        with self.lock:
            for m in self.models:
                if m.running:
                    m.step()
            return self.frame()

    def shock(self, kind: str, magnitude: float, bank: int | None,
              asset: str | None = None) -> Frame:
        """Apply a shock to every model now; the frame's message says what each model
        recorded in its shock log (or why the shock was refused: nothing changes then).

        Args:
            kind: a key of :data:`~finsim_mesa.scenarios.engine.SHOCK_KINDS`.
            magnitude: its size (share of prices, deposits or equity).
            bank: the bank hit (None = all active banks; needed for loss and default).
            asset: the asset class a price crash hits (None = all).
        """
        with self.lock:
            banks = None if bank is None else [int(bank)]
            try:
                for m in self.models:  # checked on every model before any changes
                    make_shock(kind, magnitude, banks, m.n_banks, asset, m.market.names)
            except FinsimError as err:
                return self.frame(f"Shock refused: {err}")
            parts = []
            for m, view in zip(self.models, self.views, strict=True):
                m.apply_shock(kind, magnitude=magnitude, banks=banks, asset=asset)
                who = f"{view.label}: " if view.label else ""
                parts.append(f"{who}{int(m.ledger.defaulted.sum())} defaults now, price index "
                             f"{m.market.price_index:.3f}")
            what = describe_shock(self.models[0].shock_log[-1])
            return self.frame(f"Applied {what} — {'; '.join(parts)}")

    # ------------------------------------------------------------------ reading
    def frame(self, message: str | None = None) -> Frame:
        """The models' state now, as the page draws it (``message``: None keeps the
        last one)."""
        with self.lock:
            runs = tuple(v.frame() for v in self.views)
            rows = [row for v in self.views for row in v.series_rows()]
            if message is None:
                message = self.latest.message if self.latest is not None else ""
            frame = Frame(next(self._stamps), self.generation, runs, dumps(rows), message)
            self.latest = frame
            return frame


def page_connected(context: Any = None) -> bool:
    """Whether the Solara page of ``context`` (a kernel context; default: the current
    one) is still there: False once it is closed or every connection to it is lost.
    True outside a Solara server (a notebook, a test renderer)."""
    try:
        from solara.server import kernel_context
    except ImportError:  # pragma: no cover - solara is a dependency
        return True
    if context is None:
        context = kernel_context.get_current_context() if kernel_context.has_current_context() \
            else None
    if context is None:
        return True
    if context.closed_event.is_set():
        return False
    statuses = list(context.page_status.values())
    return not statuses or kernel_context.PageStatus.CONNECTED in statuses


class Player:
    """Steps ``session`` in a thread, about ``steps_per_second`` a second, and hands
    each frame to ``publish`` (under the session's lock, so a frame of a model
    that was reset meanwhile is never published).

    It stops when :meth:`stop` is called, the episode is over, the session is
    reset, or ``connected()`` turns False (the page is gone); then it calls
    ``on_stop(reason)``.
    """

    def __init__(self, session: Session, publish: Callable[[Frame], None],
                 connected: Callable[[], bool] = page_connected,
                 on_stop: Callable[[str], None] | None = None,
                 steps_per_second: float = 10.0) -> None:
        self.session, self.publish, self.connected = session, publish, connected
        self.on_stop = on_stop
        self.interval = 1.0 / max(float(steps_per_second), 0.1)
        self.reason = ""
        self.steps = 0
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="finsim-player", daemon=True)

    def start(self) -> Player:
        """Start stepping (returns self)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the thread to stop after the step under way (does not wait)."""
        self._halt.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end."""
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Whether the thread still runs."""
        return self._thread.is_alive()

    def _run(self) -> None:
        s = self.session
        generation, reason = s.generation, "paused"
        while not self._halt.is_set():
            start = time.monotonic()
            if not self.connected():
                reason = "the page is gone"
                break
            with s.lock:
                if s.generation != generation:
                    reason = "reset"
                    break
                frame = s.step()
                self.steps += 1
                self.publish(frame)
            if not frame.running:
                reason = "the episode is over"
                break
            self._halt.wait(max(0.0, self.interval - (time.monotonic() - start)))
        if reason == "paused" and not self.connected():
            reason = "the page is gone"  # stopped because the page's session closed
        self.reason = reason
        log.info("finsim viz: playing stopped after %d steps at step %d: %s", self.steps,
                 s.latest.t if s.latest else -1, reason)
        if self.on_stop is not None:
            self.on_stop(reason)

