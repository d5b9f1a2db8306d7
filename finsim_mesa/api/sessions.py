"""Simulations held by the API: one :class:`Session` per simulation id.

Concurrency: each session has two locks. ``op_lock`` serialises whatever
changes the simulation (steps, runs, reset, shocks, scenario or brain
changes), so concurrent steps never interleave and a run's steps are
consecutive. ``state_lock`` is held only while one step changes the model
and while a reader looks at it, so readers (bank metrics, topology, what-if)
wait at most one step, never a whole run. ``GET /metrics`` reads the
snapshot published after every step and takes no lock at all.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from finsim_mesa.api.payloads import clean
from finsim_mesa.errors import ConfigError
from finsim_mesa.measures import INFRA_REPORTERS, MODEL_REPORTERS, report
from finsim_mesa.model import FinancialModel

__all__ = ["ApiLimits", "NotFound", "Session", "SessionStore"]


class NotFound(LookupError):
    """No such simulation (never created, deleted or expired)."""


class Conflict(RuntimeError):
    """The request does not fit the simulation's state (e.g. its episode is over)."""


@dataclass
class ApiLimits:
    """Server-side limits (all requests beyond them are answered 422/429).

    Attributes:
        max_banks: most banks in one simulation.
        max_steps_per_request: most steps one ``/simulation/run`` may ask for.
        max_simulations: most simulations held at once.
        idle_ttl_s: a simulation not used for this many seconds is dropped.
        max_lookahead_work: most (steps x seeds x variants) of one what-if or
            recommendation request.
        max_train_episodes: most episodes one ``/train/start`` may ask for.
        max_train_banks: most banks in a training environment.
        history: per-step metric records kept per simulation for streams.
    """

    max_banks: int = 2000
    max_steps_per_request: int = 5000
    max_simulations: int = 32
    idle_ttl_s: float = 3600.0
    max_lookahead_work: int = 20_000
    max_train_episodes: int = 20_000
    max_train_banks: int = 200
    history: int = 10_000


def metrics_of(model: FinancialModel) -> dict[str, Any]:
    """The model-level figures of the current step (what ``GET /metrics`` returns)."""
    out: dict[str, Any] = {"step": model.t, "running": bool(model.running),
                           "collapsed": bool(model.collapsed), "scenario": model.scenario_name}
    for key in MODEL_REPORTERS:
        out[key] = clean(report(model, key))
    if model.config.infrastructure:
        out["infrastructure"] = {k: clean(report(model, k)) for k in INFRA_REPORTERS}
    else:
        out["infrastructure"] = None
    return out


class Session:
    """One simulation: the model, how it was made, its locks and its metric log."""

    def __init__(self, sim_id: str, params: dict[str, Any], seed: int, history: int) -> None:
        self.sim_id = sim_id
        self.params = params
        self.seed = seed
        self.created = time.time()
        self.last_used = self.created
        self.op_lock = threading.Lock()
        self.state_lock = threading.Lock()
        self.log: deque[dict[str, Any]] = deque(maxlen=history)
        self.steps_total = 0  # steps taken since init, across resets (streams use it)
        self.policy: str | None = None
        self.brain_spec: Any = None  # brains set after init (a loaded policy); kept on reset
        self.model = self._build(seed)
        self.latest = metrics_of(self.model)

    def _build(self, seed: int) -> FinancialModel:
        model = FinancialModel(rng=seed, **self.params)
        if self.brain_spec is not None:
            model.set_brains(self.brain_spec)
        return model

    def touch(self) -> None:
        self.last_used = time.time()

    def reset(self, seed: int | None = None) -> None:
        """A fresh model with the same parameters and brains (and seed unless given)."""
        model = self._build(self.seed if seed is None else seed)
        with self.state_lock:
            self.model = model
            self.seed = self.seed if seed is None else seed
            self.latest = metrics_of(model)

    def step(self, count: int, should_stop: Callable[[], bool] | None = None) -> int:
        """Advance up to ``count`` steps (fewer if the episode ends); returns how
        many were taken. Caller holds ``op_lock``."""
        done = 0
        for _ in range(count):
            if should_stop is not None and should_stop():
                break
            with self.state_lock:
                if not self.model.running:
                    break
                self.model.step()
                self.latest = metrics_of(self.model)
            self.steps_total += 1
            self.log.append({"seq": self.steps_total, "sim_id": self.sim_id} | self.latest)
            done += 1
            time.sleep(0)  # let a reader waiting on state_lock in before the next step
        self.touch()
        return done

    def info(self) -> dict[str, Any]:
        m = self.model
        return {"sim_id": self.sim_id, "seed": self.seed, "num_banks": m.n_banks,
                "scenario": m.scenario_name, "brain": str(self.params.get("brain")),
                "policy": self.policy, "step": m.t, "episode_steps": m.config.steps,
                "running": bool(m.running), "n_exchanges": m.config.n_exchanges,
                "n_ccps": m.config.n_ccps, "created": self.created,
                "idle_seconds": round(time.time() - self.last_used, 3)}


class SessionStore:
    """Simulations by id, the most recent one, limits and expiry."""

    def __init__(self, limits: ApiLimits) -> None:
        self.limits = limits
        self._sessions: dict[str, Session] = {}
        self._order = itertools.count(1)
        self._lock = threading.Lock()
        self.latest_id: str | None = None

    def create(self, params: dict[str, Any], seed: int | None) -> Session:
        self.expire()
        with self._lock:
            if len(self._sessions) >= self.limits.max_simulations:
                raise ConfigError(
                    f"the server holds {len(self._sessions)} simulations, its limit; "
                    "DELETE /simulation?sim_id=... one you no longer need, or wait "
                    f"until idle ones expire ({self.limits.idle_ttl_s:g} s)")
            sim_id = f"sim-{next(self._order)}-{secrets.token_hex(3)}"
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % 2**32)  # reported back to the client
        session = Session(sim_id, params, seed, self.limits.history)
        with self._lock:
            self._sessions[sim_id] = session
            self.latest_id = sim_id
        return session

    def get(self, sim_id: str | None) -> Session:
        self.expire()
        with self._lock:
            key = sim_id or self.latest_id
            if key is None:
                raise NotFound("no simulation yet: POST /simulation/init first")
            session = self._sessions.get(key)
        if session is None:
            raise NotFound(f"simulation {key!r} not found (never created, deleted or expired "
                           f"after {self.limits.idle_ttl_s:g} s idle); GET /simulations lists "
                           "the live ones")
        session.touch()
        return session

    def delete(self, sim_id: str) -> None:
        with self._lock:
            if self._sessions.pop(sim_id, None) is None:
                raise NotFound(f"simulation {sim_id!r} not found")
            if self.latest_id == sim_id:
                self.latest_id = next(reversed(self._sessions), None)

    def all(self) -> list[Session]:
        self.expire()
        with self._lock:
            return list(self._sessions.values())

    def expire(self) -> list[str]:
        """Drop simulations idle longer than the limit (never one that is running)."""
        now = time.time()
        with self._lock:
            gone = [k for k, s in self._sessions.items()
                    if now - s.last_used > self.limits.idle_ttl_s and not s.op_lock.locked()]
            for k in gone:
                del self._sessions[k]
            if self.latest_id in gone:
                self.latest_id = next(reversed(self._sessions), None)
        return gone
