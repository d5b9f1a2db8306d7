"""The FastAPI application: simulations, metrics, scenarios, what-if,
recommendations, training and models over HTTP, and a WebSocket of per-step
metrics.

Every endpoint that acts on a simulation takes ``?sim_id=...``; without it, it
acts on the most recently created simulation. Start with ``finsim serve`` or
``uvicorn --factory finsim_mesa.api.app:create_app_from_env``. Handlers that
simulate are plain functions, so FastAPI runs them in its thread pool and a
long run never blocks other clients.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Annotated, Any

import numpy as np
from fastapi import Body, FastAPI, Path, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

import finsim_mesa
from finsim_mesa.agents.brains import BRAINS
from finsim_mesa.api.payloads import bank_ids, clean, records, topology_payload
from finsim_mesa.api.schemas import (
    BankResponse,
    Health,
    InitRequest,
    Metrics,
    ModelInfo,
    ModelLoadRequest,
    ModelSaveRequest,
    RecommendationResponse,
    RecommendationsResponse,
    ResetRequest,
    RiskResponse,
    ScenarioInfo,
    ScenarioSetRequest,
    ShockRequest,
    ShockResponse,
    SimulationInfo,
    StepResponse,
    TopologyResponse,
    TrainRequest,
    TrainStatus,
    WhatIfRequest,
    WhatIfResponse,
)
from finsim_mesa.api.sessions import (
    ApiLimits,
    Conflict,
    NotFound,
    Session,
    SessionStore,
    metrics_of,
)
from finsim_mesa.api.training import LearnMissing, TrainingManager, learn_available
from finsim_mesa.config import ModelConfig
from finsim_mesa.errors import FinsimError
from finsim_mesa.observation import ACTION_NAMES, INFRA_OBS_FIELDS, OBS_FIELDS
from finsim_mesa.scenarios import Scenario, list_scenarios

__all__ = ["create_app", "create_app_from_env"]

SimId = Annotated[str | None, Query(max_length=64, description="simulation id (default: the "
                                                                 "most recent simulation)")]
Steps = Annotated[int, Query(ge=1, le=1000, description="lookahead horizon in steps")]
Seeds = Annotated[int, Query(ge=1, le=1000, description="Monte-Carlo seeds")]
_TOPLEVEL = {"num_banks", "scenario", "seed", "steps", "brain", "topology", "n_exchanges",
             "n_ccps", "config"}


def create_app(models_dir: str = "models", limits: ApiLimits | None = None,
               learn: Any = learn_available) -> FastAPI:
    """Build the service.

    Args:
        models_dir: folder of trained models (``finsim train --out``) and of the
            API's training jobs and registry.
        limits: server limits (sizes, steps per request, expiry).
        learn: callable telling whether the ``learn`` extra is installed.
    """
    limits = limits or ApiLimits()
    store = SessionStore(limits)
    training = TrainingManager(models_dir, available=learn)
    app = FastAPI(title="finsim-mesa", version=finsim_mesa.__version__,
                  description="Financial contagion simulations (Mesa) over HTTP. Endpoints "
                              "that act on a simulation take ?sim_id=...; without it they act "
                              "on the most recently created one.")
    # scenarios known to this service: the registered ones when it starts plus
    # those POSTed to /scenarios/set (kept here, not in the process-wide registry)
    known: dict[str, Scenario] = dict(list_scenarios())
    app.state.store, app.state.training, app.state.limits = store, training, limits
    app.state.scenarios = known

    # ------------------------------------------------------------ errors
    def _error(status: int):
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse(status_code=status, content={"detail": str(exc).strip("'\"")})
        return handler

    app.add_exception_handler(NotFound, _error(404))
    app.add_exception_handler(FileNotFoundError, _error(404))
    app.add_exception_handler(Conflict, _error(409))
    app.add_exception_handler(LearnMissing, _error(503))
    app.add_exception_handler(FinsimError, _error(422))

    # ------------------------------------------------------------ helpers
    def check_steps(num_steps: int) -> None:
        if num_steps > limits.max_steps_per_request:
            raise FinsimError(f"num_steps = {num_steps}: at most "
                              f"{limits.max_steps_per_request} per request; send several")

    def advance(session: Session, num_steps: int) -> StepResponse:
        check_steps(num_steps)
        with session.op_lock:
            if not session.model.running:
                raise Conflict(f"simulation {session.sim_id} has ended at step "
                               f"{session.model.t} (episode length or collapse); POST "
                               "/simulation/reset to start again")
            done = session.step(num_steps)
            m = session.latest
        return StepResponse(sim_id=session.sim_id, steps_requested=num_steps, steps_run=done,
                            step=m["step"], running=m["running"],
                            metrics=Metrics(sim_id=session.sim_id, **m))

    def check_work(units: int, what: str) -> None:
        if units > limits.max_lookahead_work:
            raise FinsimError(f"{what} asks for {units} simulated steps in all (steps x seeds "
                              f"x variants), more than the server's {limits.max_lookahead_work};"
                              " use fewer steps or seeds")

    def recommendation(session: Session, bank_id: int, steps: int, seeds: int
                       ) -> RecommendationResponse:
        rec = session.model.recommend(bank_id, steps=steps, seeds=seeds)
        return RecommendationResponse(
            sim_id=session.sim_id, step=session.model.t, bank_id=rec.bank, action=rec.action,
            vector=list(rec.vector) if rec.vector is not None else None,
            expected_equity=rec.expected_equity, ci95=list(rec.ci95),
            default_probability=rec.default_probability, reason=rec.reason,
            table=records(rec.table))

    # ------------------------------------------------------------ service
    @app.get("/health", response_model=Health, tags=["service"])
    def health() -> Health:
        job = training.job["state"] if training.job else "idle"
        return Health(status="ok", version=finsim_mesa.__version__,
                      simulations=len(store.all()), learn_available=bool(training.available()),
                      training=job)

    @app.get("/simulations", response_model=list[SimulationInfo], tags=["simulation"])
    def simulations() -> list[SimulationInfo]:
        """Every live simulation."""
        return [SimulationInfo(**s.info()) for s in store.all()]

    # ------------------------------------------------------------ simulation
    @app.post("/simulation/init", response_model=SimulationInfo, tags=["simulation"])
    def init(req: InitRequest) -> SimulationInfo:
        """Create a simulation; its id works on every endpoint (``?sim_id=``)."""
        if req.num_banks > limits.max_banks:
            raise FinsimError(f"num_banks = {req.num_banks}: this server allows at most "
                              f"{limits.max_banks}")
        if req.scenario not in known:
            raise FinsimError(f"scenario {req.scenario!r} is unknown; choose one of "
                              f"{', '.join(known)} (or define your own with POST "
                              "/scenarios/set)")
        if req.brain not in BRAINS:
            raise FinsimError(f"brain {req.brain!r} is unknown; choose one of "
                              f"{', '.join(BRAINS)} (trained policies: POST /models/load)")
        clash = sorted(set(req.config) & (_TOPLEVEL | {"n_banks"}))
        if clash:
            raise FinsimError(f"config repeats {clash}: give them as top-level fields")
        unknown = sorted(set(req.config) - set(ModelConfig.model_fields))
        if unknown:
            raise FinsimError(f"config has unknown fields {unknown}; GET /docs or `finsim "
                              "config` lists the fields")
        params = {"n_banks": req.num_banks, "scenario": known[req.scenario], "brain": req.brain,
                  "n_exchanges": req.n_exchanges, "n_ccps": req.n_ccps,
                  "agent_collect_every": 0} | req.config
        for key in ("steps", "topology"):
            if getattr(req, key) is not None:
                params[key] = getattr(req, key)
        session = store.create(params, req.seed)
        return SimulationInfo(**session.info())

    @app.get("/simulation", response_model=SimulationInfo, tags=["simulation"])
    def info(sim_id: SimId = None) -> SimulationInfo:
        return SimulationInfo(**store.get(sim_id).info())

    @app.delete("/simulation", response_model=SimulationInfo, tags=["simulation"])
    def delete(sim_id: Annotated[str, Query(max_length=64)]) -> SimulationInfo:
        """Drop a simulation (waits for a run in progress on it to finish)."""
        session = store.get(sim_id)
        with session.op_lock:
            store.delete(session.sim_id)
        return SimulationInfo(**session.info())

    @app.post("/simulation/reset", response_model=SimulationInfo, tags=["simulation"])
    def reset(sim_id: SimId = None,
              req: Annotated[ResetRequest | None, Body()] = None) -> SimulationInfo:
        """Start the simulation again from step 0 (same parameters and brains)."""
        session = store.get(sim_id)
        with session.op_lock:
            session.reset(req.seed if req else None)
        return SimulationInfo(**session.info())

    @app.post("/simulation/step", response_model=StepResponse, tags=["simulation"])
    def step(sim_id: SimId = None,
             num_steps: Annotated[int, Query(ge=1, description="steps to take")] = 1
             ) -> StepResponse:
        """Advance one step (or ``num_steps``)."""
        return advance(store.get(sim_id), num_steps)

    @app.post("/simulation/run", response_model=StepResponse, tags=["simulation"])
    def run(num_steps: Annotated[int, Query(ge=1, description="steps to run")],
            sim_id: SimId = None) -> StepResponse:
        """Run ``num_steps`` steps (stops early at the end of the episode)."""
        return advance(store.get(sim_id), num_steps)

    # ------------------------------------------------------------ metrics
    @app.get("/metrics", response_model=Metrics, tags=["metrics"])
    async def metrics(sim_id: SimId = None) -> Any:
        """Figures after the last step; never waits for a run in progress."""
        session = store.get(sim_id)
        return Metrics(sim_id=session.sim_id, **session.latest)

    @app.get("/metrics/history", response_model=list[Metrics], tags=["metrics"])
    def history(sim_id: SimId = None,
                since: Annotated[int, Query(ge=0, description="records after this "
                                                              "sequence number")] = 0,
                limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[Any]:
        """Per-step figures recorded so far (the stream's records)."""
        session = store.get(sim_id)
        rows = [r for r in list(session.log) if r["seq"] > since][:limit]
        return [Metrics(**{k: v for k, v in r.items() if k != "seq"}) for r in rows]

    @app.get("/metrics/risk", response_model=RiskResponse, tags=["metrics"])
    def risk_metrics(sim_id: SimId = None,
                     top: Annotated[int, Query(ge=1, le=100)] = 5) -> RiskResponse:
        """Systemic-risk measures and the most systemic banks now."""
        session = store.get(sim_id)
        with session.state_lock:
            m = session.model
            return RiskResponse(
                sim_id=session.sim_id, step=m.t, debtrank=m.debtrank,
                debtrank_total=m.debtrank_total, systemic_risk_index=m.systemic_risk_index,
                liquidity_index=m.liquidity_index, stress_index=m.stress_index,
                contagion_depth=int(m.contagion_depth), n_defaults=int(m.n_defaults),
                default_rate=m.default_rate, most_systemic=clean(m.systemic_ranking(top)))

    @app.get("/metrics/bank/{bank_id}", response_model=BankResponse, tags=["metrics"])
    def bank_metrics(bank_id: Annotated[int, Path(ge=0)], sim_id: SimId = None
                     ) -> BankResponse:
        """One bank's balance sheet, observation, last action and reward."""
        session = store.get(sim_id)
        with session.state_lock:
            m = session.model
            if bank_id >= m.n_banks:
                raise NotFound(f"bank {bank_id} does not exist (ids 0..{m.n_banks - 1})")
            L = m.ledger
            fields = OBS_FIELDS + (INFRA_OBS_FIELDS if m.config.infrastructure else ())
            obs = m.observations[bank_id] if m.observations.shape[0] else []
            return BankResponse(
                sim_id=session.sim_id, step=m.t, bank_id=bank_id,
                brain=m.brain_names[bank_id], defaulted=bool(L.defaulted[bank_id]),
                default_step=int(L.default_step[bank_id]) if L.defaulted[bank_id] else None,
                balance_sheet=clean(m.banks[bank_id].balance_sheet()),
                equity_initial=float(L.equity0[bank_id]),
                debtrank=float(m.debtrank_per_bank()[bank_id]),
                last_action=dict(zip(ACTION_NAMES, map(float, m.actions[bank_id]),
                                     strict=True)),
                last_reward=float(m.rewards[bank_id]),
                observation={name: float(v) for (name, _), v in zip(fields, obs, strict=False)})

    # ------------------------------------------------------------ scenarios
    @app.get("/scenarios", response_model=list[ScenarioInfo], tags=["scenarios"])
    def scenarios() -> list[ScenarioInfo]:
        return [ScenarioInfo(name=n, description=s.description,
                             parameters=s.model_dump(exclude={"name", "description"}))
                for n, s in known.items()]

    @app.post("/scenarios/set", response_model=SimulationInfo, tags=["scenarios"])
    def set_scenario(req: ScenarioSetRequest, sim_id: SimId = None) -> SimulationInfo:
        """Switch the simulation to a scenario (by name, or a new definition that
        is registered under its name), from the next step or from a restart."""
        if (req.scenario is None) == (req.definition is None):
            raise FinsimError("give exactly one of 'scenario' (a name from GET /scenarios) "
                              "or 'definition' (a new scenario)")
        session = store.get(sim_id)
        if req.definition is not None:
            try:
                spec = Scenario(**req.definition)
            except (TypeError, ValueError) as err:
                raise FinsimError(f"scenario definition is invalid: {err}") from None
            if spec.name in known and known[spec.name] != spec:
                raise Conflict(f"a different scenario named {spec.name!r} exists; choose "
                               "another name")
            known[spec.name] = spec
        else:
            if req.scenario not in known:
                raise FinsimError(f"scenario {req.scenario!r} is unknown; choose one of "
                                  f"{', '.join(known)}")
            spec = known[req.scenario]
        with session.op_lock:
            session.params["scenario"] = spec
            if req.restart:
                session.reset()
            else:
                with session.state_lock:
                    session.model.set_scenario(spec)
                    session.latest = session.latest | {"scenario": spec.name}
        return SimulationInfo(**session.info())

    @app.post("/scenarios/shock", response_model=ShockResponse, tags=["scenarios"])
    def shock(req: ShockRequest, sim_id: SimId = None) -> ShockResponse:
        """Apply a shock now; it is resolved at the next clearing."""
        session = store.get(sim_id)
        with session.op_lock, session.state_lock:
            m = session.model
            m.apply_shock(req.kind, req.magnitude, req.banks)
            session.latest = metrics_of(m)
            return ShockResponse(sim_id=session.sim_id, step=m.t,
                                 applied=clean(m.shock_log[-1]),
                                 metrics=Metrics(sim_id=session.sim_id, **session.latest))

    # ------------------------------------------------------------ decisions
    @app.post("/what_if", response_model=WhatIfResponse, tags=["decisions"])
    def what_if(req: WhatIfRequest, sim_id: SimId = None) -> WhatIfResponse:
        """Look ahead under a shock, other brains or fixed actions against the
        no-change baseline on the same seeds; the simulation is not changed."""
        check_work(req.steps * req.seeds * 2, "this what-if")
        session = store.get(sim_id)
        with session.state_lock:
            m = session.model
            brains = bank_ids(req.brains, m.n_banks, "brains")
            for b, name in brains.items():
                if name not in BRAINS:
                    raise FinsimError(f"brains[{b}] = {name!r}: choose one of "
                                      f"{', '.join(BRAINS)}")
            res = m.what_if(req.steps, req.seeds,
                            shock=req.shock.model_dump() if req.shock else None,
                            brains=brains or None,
                            actions=bank_ids(req.actions, m.n_banks, "actions") or None,
                            bank=req.bank)
            return WhatIfResponse(sim_id=session.sim_id, step=m.t, horizon=res.steps,
                                  seeds=res.seeds, summary=records(res.summary),
                                  difference=records(res.difference))

    @app.get("/recommendations/{bank_id}", response_model=RecommendationResponse,
             tags=["decisions"])
    def recommend(bank_id: Annotated[int, Path(ge=0)], sim_id: SimId = None,
                  steps: Steps = 10, seeds: Seeds = 10) -> RecommendationResponse:
        """The best of the candidate actions for one bank, by lookahead."""
        from finsim_mesa.decision import CANDIDATES

        check_work(steps * seeds * (len(CANDIDATES) + 1), "this recommendation")
        session = store.get(sim_id)
        with session.state_lock:
            if bank_id >= session.model.n_banks:
                raise NotFound(f"bank {bank_id} does not exist (ids 0.."
                               f"{session.model.n_banks - 1})")
            return recommendation(session, bank_id, steps, seeds)

    @app.get("/recommendations", response_model=RecommendationsResponse, tags=["decisions"])
    def recommend_all(sim_id: SimId = None, steps: Steps = 5, seeds: Seeds = 3
                      ) -> RecommendationsResponse:
        """A recommendation for every bank not in default."""
        from finsim_mesa.decision import CANDIDATES

        session = store.get(sim_id)
        with session.state_lock:
            m = session.model
            live = np.flatnonzero(m.ledger.active).tolist()
            check_work(steps * seeds * (len(CANDIDATES) + 1) * len(live),
                       f"recommendations for {len(live)} banks")
            recs = [recommendation(session, b, steps, seeds) for b in live]
            return RecommendationsResponse(
                sim_id=session.sim_id, step=m.t, recommendations=recs,
                skipped=np.flatnonzero(m.ledger.defaulted).tolist())

    # ------------------------------------------------------------ network
    @app.get("/network/topology", response_model=TopologyResponse, tags=["network"])
    def topology(sim_id: SimId = None) -> TopologyResponse:
        """Nodes with their state and edges with exposures, for a graph widget."""
        session = store.get(sim_id)
        with session.state_lock:
            return TopologyResponse(sim_id=session.sim_id, step=session.model.t,
                                    **topology_payload(session.model))

    # ------------------------------------------------------------ training
    @app.post("/train/start", response_model=TrainStatus, tags=["training"])
    def train_start(req: TrainRequest) -> Any:
        """Start a MAPPO training job in the background (one at a time)."""
        training.require()
        if req.episodes > limits.max_train_episodes:
            raise FinsimError(f"episodes = {req.episodes}: at most "
                              f"{limits.max_train_episodes} per job")
        if req.num_banks > limits.max_train_banks:
            raise FinsimError(f"num_banks = {req.num_banks}: at most "
                              f"{limits.max_train_banks} for training")
        bad = [s for s in req.scenarios if s not in list_scenarios()]
        if bad:
            raise FinsimError(f"scenarios {bad} are unknown for training; choose from "
                              f"{', '.join(list_scenarios())}")
        try:
            return training.start(req.model_dump())
        except RuntimeError as err:
            raise Conflict(str(err)) from None

    @app.get("/train/status", response_model=TrainStatus, tags=["training"])
    def train_status() -> Any:
        """State, progress, latest rewards and evaluation of the current job."""
        return training.status()

    @app.post("/train/stop", response_model=TrainStatus, tags=["training"])
    def train_stop() -> Any:
        """Ask the job to stop after the current update (its policy is saved)."""
        try:
            return training.stop()
        except RuntimeError as err:
            raise Conflict(str(err)) from None

    # ------------------------------------------------------------ models
    @app.get("/models", response_model=list[ModelInfo], tags=["models"])
    def models() -> Any:
        """Saved policies: registry versions and model folders."""
        return training.list()

    @app.post("/models/save", response_model=ModelInfo, tags=["models"])
    def models_save(req: ModelSaveRequest) -> Any:
        """Save the training job's latest policy as a new registry version."""
        try:
            metric = req.metric
            if metric is None and training.job is not None:
                metric = training.job.get("eval_reward")
            saved = training.save(req.name, metric)
        except RuntimeError as err:
            raise Conflict(str(err)) from None
        return ModelInfo(name=f"{saved['model']}/{saved['version']}", kind="registry",
                         model_id=saved["model"], version=saved["version"], metric=metric,
                         created=None, episode=None)

    @app.post("/models/load", response_model=SimulationInfo, tags=["models"])
    def models_load(req: ModelLoadRequest, sim_id: SimId = None) -> SimulationInfo:
        """Let a saved policy decide for the simulation's banks from the next step."""
        training.require()
        session = store.get(sim_id)
        brain = training.resolve(req.model, req.version)
        brain.deterministic = req.deterministic
        with session.op_lock, session.state_lock:
            m = session.model
            if req.banks is None:
                spec: Any = brain
            else:
                ids = bank_ids({str(b): brain for b in req.banks}, m.n_banks, "banks")
                current = {i: b for i, b in enumerate(m.brains)}
                spec = [ids.get(i, current[i]) for i in range(m.n_banks)]
            m.set_brains(spec)
            session.brain_spec, session.policy = spec, req.model
        return SimulationInfo(**session.info())

    # ------------------------------------------------------------ stream
    @app.websocket("/simulation/stream")
    async def stream(ws: WebSocket, sim_id: str | None = None, since: int = 0,
                     max_messages: int | None = None) -> None:
        """Per-step metrics as JSON messages, from sequence number ``since`` on
        (each record has ``seq``, ``sim_id`` and the fields of GET /metrics)."""
        await ws.accept()
        try:
            session = store.get(sim_id)
        except NotFound as err:
            await ws.send_json({"error": str(err).strip("'\"")})
            await ws.close(code=4404)
            return
        sent, seq = 0, max(int(since), 0)
        try:
            while max_messages is None or sent < max_messages:
                log = session.log
                if log and log[-1]["seq"] > seq:
                    start = max(0, len(log) - (log[-1]["seq"] - seq))
                    for rec in list(itertools.islice(log, start, None)):
                        if rec["seq"] <= seq:
                            continue
                        await ws.send_json(clean(rec))
                        seq, sent = rec["seq"], sent + 1
                        if max_messages is not None and sent >= max_messages:
                            break
                else:
                    await asyncio.sleep(0.02)
            await ws.close()
        except WebSocketDisconnect:
            return

    return app


def create_app_from_env() -> FastAPI:
    """``create_app`` configured by ``FINSIM_MODELS_DIR`` and ``FINSIM_MAX_*``
    variables (``finsim serve`` sets them; uvicorn's ``--reload`` needs a factory)."""
    limits = ApiLimits()
    for field in ("max_banks", "max_steps_per_request", "max_simulations"):
        raw = os.environ.get(f"FINSIM_{field.upper()}")
        if raw:
            setattr(limits, field, int(raw))
    raw = os.environ.get("FINSIM_IDLE_TTL_S")
    if raw:
        limits.idle_ttl_s = float(raw)
    return create_app(os.environ.get("FINSIM_MODELS_DIR", "models"), limits)
