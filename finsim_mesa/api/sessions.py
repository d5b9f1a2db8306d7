"""Simulations held by the API: one :class:`Session` per simulation id.

Concurrency: each session has two locks. ``op_lock`` serialises whatever
changes the simulation (steps, runs, reset, shocks, scenario or brain
changes), so concurrent steps never interleave and a run's steps are
consecutive. ``state_lock`` is held only while one step changes the model
and while a reader looks at it, so readers (bank metrics, topology) wait at
most one step, never a whole run. Lookahead (what-if, recommendations) takes
a copy of the state under ``state_lock`` and simulates on a copy of the model
without any lock (:meth:`Session.lookahead_model`). ``GET /metrics`` reads the
snapshot published after every step and takes no lock at all.

Every change goes through one of the methods of :class:`Session` that take
``op_lock`` (``advance``, ``reset``, ``switch_scenario``, ``shock``,
``set_brains``); each ends by calling :meth:`Session.changed`, which tells the
listeners of :class:`SessionStore` (``store.listeners``) what was done, as do
``create`` and ``delete``. That is the one place to hook anything that must
see every change (a journal, say).
"""

from __future__ import annotations

import copy
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from finsim_mesa.agents.brains import BRAINS
from finsim_mesa.api.errors import Conflict, NotFound
from finsim_mesa.api.limits import ApiLimits, NetworkEstimate, estimate_network
from finsim_mesa.api.payloads import asset_classes_of, clean, metrics_of
from finsim_mesa.errors import ConfigError
from finsim_mesa.model import FinancialModel
from finsim_mesa.scenarios import Scenario

__all__ = ["ApiLimits", "Conflict", "Listener", "NotFound", "Session", "SessionStore",
           "metrics_of"]

# called after every change, while the change is held (``op_lock``): (session,
# operation, arguments); operations are "init", "step", "reset", "scenario",
# "shock", "brains" and "delete". A listener that raises fails the request (the
# change is made; the journal then refuses further changes, see journal.py).
Listener = Callable[["Session", str, dict[str, Any]], None]


def _detached_brains(model: FinancialModel) -> list[Any]:
    """Per-bank brain specs for a copy of ``model``: built-in brains by name,
    any other brain (a loaded policy) as a deep copy, so that nothing the copy
    does (binding its generator, say) reaches the live model's brains."""
    memo: dict[int, Any] = {}
    specs: list[Any] = []
    for brain in model.brains.per_bank:
        name = getattr(brain, "name", None)
        if name in BRAINS and type(brain) is BRAINS[name]:
            specs.append(name)
        else:
            specs.append(copy.deepcopy(brain, memo))
    return specs


class Session:
    """One simulation: the model, how it was made, its locks and its metric log."""

    def __init__(self, sim_id: str, params: dict[str, Any], seed: int, history: int,
                 estimate: NetworkEstimate | None = None,
                 changed: Listener | None = None) -> None:
        self.sim_id = sim_id
        self.params = params
        self.seed = seed
        self.estimate = estimate or estimate_network(params)
        self.created = time.time()
        self.last_used = self.created
        self.op_lock = threading.Lock()
        self.state_lock = threading.Lock()
        self.closed = threading.Event()  # set when deleted or expired (streams end)
        self.log: deque[dict[str, Any]] = deque(maxlen=history)
        self.steps_total = 0  # steps taken since init, across resets (streams use it)
        self.policy: str | None = None
        self.brain_spec: Any = None  # brains set after init (a loaded policy); kept on reset
        self.refusal: Exception | None = None  # set: every change is refused with it
        self._changed = changed
        self.model = self._build(seed)
        self.latest = metrics_of(self.model)

    def _build(self, seed: int, params: dict[str, Any] | None = None) -> FinancialModel:
        model = FinancialModel(rng=seed, **(self.params if params is None else params))
        if self.brain_spec is not None:
            model.set_brains(self.brain_spec)
        return model

    def touch(self) -> None:
        self.last_used = time.time()

    def set_listener(self, changed: Listener | None) -> None:
        """Who is told of this simulation's changes (None: nobody, e.g. while a
        journal is replayed into it)."""
        self._changed = changed

    def _writable(self) -> None:
        if self.refusal is not None:
            raise self.refusal

    def changed(self, op: str, **args: Any) -> None:
        """Tell the store's listeners that ``op`` changed this simulation."""
        self.touch()
        if self._changed is not None:
            self._changed(self, op, args)

    # ------------------------------------------------------------ changes
    def advance(self, count: int, should_stop: Callable[[], bool] | None = None) -> int:
        """Take up to ``count`` steps (fewer if the episode ends or
        ``should_stop()`` turns true, e.g. the client went away); returns how
        many were taken.

        Raises:
            Conflict: the episode is already over.
        """
        with self.op_lock:
            self._writable()
            if not self.model.running:
                raise Conflict(f"simulation {self.sim_id} has ended at step {self.model.t} "
                               "(episode length or collapse); POST /simulation/reset to start "
                               "again")
            done = self._step(count, should_stop)
            self.changed("step", requested=count, done=done)
            return done

    def _step(self, count: int, should_stop: Callable[[], bool] | None) -> int:
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
        return done

    def reset(self, seed: int | None = None) -> None:
        """A fresh model with the same parameters and brains (and seed unless given)."""
        with self.op_lock:
            self._writable()
            self._reset(seed)
            self.changed("reset", seed=self.seed)

    def _reset(self, seed: int | None, model: FinancialModel | None = None) -> None:
        model = model or self._build(self.seed if seed is None else seed)
        with self.state_lock:
            self.model = model
            self.seed = self.seed if seed is None else seed
            self.latest = metrics_of(model)

    def switch_scenario(self, spec: Scenario, restart: bool) -> None:
        """Run under ``spec`` from the next step, or from a restart (same seed).

        The simulation is first built anew under ``spec`` (the restart, or a
        check that a later reset can rebuild it), so a scenario that does not
        fit the model (e.g. names an asset class it lacks) is refused here and
        changes nothing."""
        with self.op_lock:
            self._writable()
            params = self.params | {"scenario": spec}
            fresh = self._build(self.seed, params)  # ConfigError: nothing changed
            self.params = params
            if restart:
                self._reset(None, fresh)
            else:
                with self.state_lock:
                    self.model.set_scenario(spec)
                    self.latest = self.latest | {"scenario": spec.name}
            self.changed("scenario", scenario=spec, restart=restart)

    def shock(self, kind: str, magnitude: float, banks: list[int] | None) -> dict[str, Any]:
        """Apply a shock now (resolved at the next clearing); returns what was applied."""
        with self.op_lock:
            self._writable()
            with self.state_lock:
                m = self.model
                m.apply_shock(kind, magnitude, banks)
                self.latest = metrics_of(m)
                applied = clean(m.shock_log[-1])
            self.changed("shock", kind=kind, magnitude=magnitude, banks=banks)
        return applied

    def set_brains(self, brain: Any, banks: list[int] | None, policy: str,
                   source: dict[str, Any] | None = None) -> None:
        """Hand ``banks`` (None: all) to ``brain`` from the next step; a reset keeps it.
        ``source`` says how to load ``brain`` again (model, version, deterministic,
        weights digest: what the journal needs to rebuild it)."""
        with self.op_lock:
            self._writable()
            with self.state_lock:
                m = self.model
                if banks is None:
                    spec: Any = brain
                else:
                    chosen = set(banks)
                    spec = [brain if i in chosen else b
                            for i, b in enumerate(m.brains.per_bank)]
                m.set_brains(spec)
                self.brain_spec, self.policy = spec, policy
            self.changed("brains", policy=policy, banks=banks, source=source)

    # ------------------------------------------------------------ reading
    def lookahead_model(self) -> FinancialModel:
        """A copy of the model now (same configuration, network, scenario,
        brains and state) to look ahead on without holding any lock: the
        state is copied under ``state_lock`` (arrays, cheap), the copy is
        built after it is released."""
        with self.state_lock:
            m = self.model
            snap = m.snapshot()
            brains = _detached_brains(m)
            spec = m.scenario_spec
        twin = m.twin(brain=brains)
        if twin.scenario_spec is not spec:
            twin.set_scenario(spec)
        twin.restore(snap)
        return twin

    def info(self) -> dict[str, Any]:
        with self.state_lock:  # a consistent view: at most one step's wait
            m = self.model
            classes = asset_classes_of(m)
        return {"sim_id": self.sim_id, "seed": self.seed, "n_banks": m.n_banks,
                "num_banks": m.n_banks, "scenario": m.scenario_name,
                "brain": str(self.params.get("brain")), "policy": self.policy, "step": m.t,
                "episode_steps": m.config.steps, "running": bool(m.running),
                "n_exchanges": m.config.n_exchanges, "n_ccps": m.config.n_ccps,
                "links": int(m.graph.number_of_edges()),
                "memory_mb_estimate": round(self.estimate.memory_mb, 3),
                "asset_classes": classes, "balance_sheets": m.config.balance_sheets,
                "deleveraging_rule": m.config.deleveraging_rule,
                "sale_order": m.config.sale_order,
                "created": self.created,
                "idle_seconds": round(time.time() - self.last_used, 3)}


class SessionStore:
    """Simulations by id, the most recent one, limits, expiry and the
    listeners told of every change."""

    def __init__(self, limits: ApiLimits) -> None:
        self.limits = limits
        self._sessions: dict[str, Session] = {}
        self._next = 1  # number of the next simulation id (sim-N-xxxxxx)
        self._lock = threading.Lock()
        self._building_mb = 0.0  # memory of simulations being built now
        self.latest_id: str | None = None
        self.listeners: list[Listener] = []

    def _notify(self, session: Session, op: str, args: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(session, op, args)

    def check_size(self, params: dict[str, Any]) -> NetworkEstimate:
        """The estimate of the model ``params`` would build, checked against the
        per-simulation limits.

        Raises:
            ConfigError: too many banks or links, or too much memory (the
                message gives the estimate and the limit).
        """
        lim = self.limits
        est = estimate_network(params)
        if est.banks > lim.max_banks:
            raise ConfigError(f"n_banks = {est.banks}: this server allows at most "
                              f"{lim.max_banks}")
        if est.links > lim.max_links:
            raise ConfigError(f"this network would have about {est.links:,} links "
                              f"({params.get('topology') or 'barabasi_albert'}, {est.banks} "
                              f"banks), more than the server's {lim.max_links:,}; lower "
                              "mean_degree, edges_per_node or core_density")
        if est.memory_mb > lim.max_model_mb:
            raise ConfigError(f"this simulation would need about {est.memory_mb:,.0f} MB, more "
                              f"than the server's {lim.max_model_mb:,.0f} MB per simulation; "
                              "use fewer banks, links or asset classes")
        return est

    def create(self, params: dict[str, Any], seed: int | None) -> Session:
        """Build and register a simulation.

        Raises:
            ConfigError: the simulation is too large (:meth:`check_size`) or the
                model refuses its parameters.
            Conflict: the server holds its limit of simulations or of memory.
        """
        est = self.check_size(params)
        self.expire()
        with self._lock:
            if len(self._sessions) >= self.limits.max_simulations:
                raise Conflict(
                    f"the server holds {len(self._sessions)} simulations, its limit; "
                    "DELETE /simulation?sim_id=... one you no longer need, or wait "
                    f"until idle ones expire ({self.limits.idle_ttl_s:g} s)")
            held = sum(s.estimate.memory_mb for s in self._sessions.values()) + self._building_mb
            if held + est.memory_mb > self.limits.max_total_model_mb:
                raise Conflict(
                    f"the live simulations need about {held:,.0f} MB and this one about "
                    f"{est.memory_mb:,.0f} MB, more than the server's "
                    f"{self.limits.max_total_model_mb:,.0f} MB in all; delete one first")
            sim_id = f"sim-{self._next}-{secrets.token_hex(3)}"
            self._next += 1
            self._building_mb += est.memory_mb
        try:
            if seed is None:
                seed = int(np.random.SeedSequence().entropy % 2**32)  # reported to the client
            session = Session(sim_id, params, seed, self.limits.history, est, self._notify)
            with session.op_lock:  # recorded (journal) before anyone can reach it
                session.changed("init", params=params, seed=seed)
            with self._lock:
                self._sessions[sim_id] = session
                self.latest_id = sim_id
        finally:
            with self._lock:
                self._building_mb -= est.memory_mb
        return session

    def reserve(self, sim_id: str) -> None:
        """Never hand out ``sim_id`` (or a lower number): an id found in the data
        folder, served again or not."""
        head, _, rest = sim_id.partition("-")
        number = rest.partition("-")[0]
        if head == "sim" and number.isdigit():
            with self._lock:
                self._next = max(self._next, int(number) + 1)

    def adopt(self, session: Session) -> None:
        """Serve a simulation rebuilt from its journal (start-up), under its own id;
        from now on its changes reach the listeners."""
        self.reserve(session.sim_id)
        session.set_listener(self._notify)
        session.touch()
        with self._lock:
            self._sessions[session.sim_id] = session
            self.latest_id = session.sim_id

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

    def delete(self, sim_id: str) -> Session:
        """Drop a simulation (after a run in progress on it ends); its streams end."""
        session = self.get(sim_id)
        with session.op_lock:
            with self._lock:
                if self._sessions.pop(session.sim_id, None) is None:
                    raise NotFound(f"simulation {sim_id!r} not found")
                if self.latest_id == session.sim_id:
                    self.latest_id = next(reversed(self._sessions), None)
            session.closed.set()
            self._notify(session, "delete", {})
        return session

    def all(self) -> list[Session]:
        self.expire()
        with self._lock:
            return list(self._sessions.values())

    def expire(self) -> list[str]:
        """Drop simulations idle longer than the limit (never one that is running)."""
        now = time.time()
        with self._lock:
            gone = [s for s in self._sessions.values()
                    if now - s.last_used > self.limits.idle_ttl_s and not s.op_lock.locked()]
            for s in gone:
                del self._sessions[s.sim_id]
                s.closed.set()
            if self.latest_id in {s.sim_id for s in gone}:
                self.latest_id = next(reversed(self._sessions), None)
        for s in gone:
            self._notify(s, "delete", {"expired": True})
        return [s.sim_id for s in gone]
