"""Service health and the simulations' life cycle: create, list, inspect,
delete, reset, step and run."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

import finsim_mesa
from finsim_mesa.agents.brains import BRAINS
from finsim_mesa.api.deps import Limits, Scenarios, SimId, Store, Training
from finsim_mesa.api.schemas import (
    Health,
    InitRequest,
    Metrics,
    ResetRequest,
    SimulationInfo,
    StepResponse,
)
from finsim_mesa.api.sessions import ApiLimits, Conflict, Session
from finsim_mesa.config import ModelConfig
from finsim_mesa.errors import FinsimError
from finsim_mesa.scenarios import Scenario

__all__ = ["router"]

router = APIRouter()

_TOPLEVEL = {"num_banks", "scenario", "seed", "steps", "brain", "topology", "n_exchanges",
             "n_ccps", "config"}


def _check_names(req: InitRequest, known: dict[str, Scenario]) -> None:
    if req.scenario not in known:
        raise FinsimError(f"scenario {req.scenario!r} is unknown; choose one of "
                          f"{', '.join(known)} (or define your own with POST "
                          "/scenarios/set)")
    if req.brain not in BRAINS:
        raise FinsimError(f"brain {req.brain!r} is unknown; choose one of "
                          f"{', '.join(BRAINS)} (trained policies: POST /models/load)")


def _check_config(config: dict) -> None:
    clash = sorted(set(config) & (_TOPLEVEL | {"n_banks"}))
    if clash:
        raise FinsimError(f"config repeats {clash}: give them as top-level fields")
    unknown = sorted(set(config) - set(ModelConfig.model_fields))
    if unknown:
        raise FinsimError(f"config has unknown fields {unknown}; GET /docs or `finsim "
                          "config` lists the fields")


def _advance(session: Session, num_steps: int, limits: ApiLimits) -> StepResponse:
    if num_steps > limits.max_steps_per_request:
        raise FinsimError(f"num_steps = {num_steps}: at most "
                          f"{limits.max_steps_per_request} per request; send several")
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


# ------------------------------------------------------------ service
@router.get("/health", response_model=Health, tags=["service"])
def health(store: Store, training: Training) -> Health:
    job = training.job["state"] if training.job else "idle"
    return Health(status="ok", version=finsim_mesa.__version__,
                  simulations=len(store.all()), learn_available=bool(training.available()),
                  training=job)


@router.get("/simulations", response_model=list[SimulationInfo], tags=["simulation"])
def simulations(store: Store) -> list[SimulationInfo]:
    """Every live simulation."""
    return [SimulationInfo(**s.info()) for s in store.all()]


# ------------------------------------------------------------ simulation
@router.post("/simulation/init", response_model=SimulationInfo, tags=["simulation"])
def init(req: InitRequest, store: Store, limits: Limits, known: Scenarios) -> SimulationInfo:
    """Create a simulation; its id works on every endpoint (``?sim_id=``)."""
    if req.num_banks > limits.max_banks:
        raise FinsimError(f"num_banks = {req.num_banks}: this server allows at most "
                          f"{limits.max_banks}")
    _check_names(req, known)
    _check_config(req.config)
    params = {"n_banks": req.num_banks, "scenario": known[req.scenario], "brain": req.brain,
              "n_exchanges": req.n_exchanges, "n_ccps": req.n_ccps,
              "agent_collect_every": 0} | req.config
    for key in ("steps", "topology"):
        if getattr(req, key) is not None:
            params[key] = getattr(req, key)
    session = store.create(params, req.seed)
    return SimulationInfo(**session.info())


@router.get("/simulation", response_model=SimulationInfo, tags=["simulation"])
def info(store: Store, sim_id: SimId = None) -> SimulationInfo:
    return SimulationInfo(**store.get(sim_id).info())


@router.delete("/simulation", response_model=SimulationInfo, tags=["simulation"])
def delete(sim_id: Annotated[str, Query(max_length=64)], store: Store) -> SimulationInfo:
    """Drop a simulation (waits for a run in progress on it to finish)."""
    session = store.get(sim_id)
    with session.op_lock:
        store.delete(session.sim_id)
    return SimulationInfo(**session.info())


@router.post("/simulation/reset", response_model=SimulationInfo, tags=["simulation"])
def reset(store: Store, sim_id: SimId = None,
          req: Annotated[ResetRequest | None, Body()] = None) -> SimulationInfo:
    """Start the simulation again from step 0 (same parameters and brains)."""
    session = store.get(sim_id)
    with session.op_lock:
        session.reset(req.seed if req else None)
    return SimulationInfo(**session.info())


@router.post("/simulation/step", response_model=StepResponse, tags=["simulation"])
def step(store: Store, limits: Limits, sim_id: SimId = None,
         num_steps: Annotated[int, Query(ge=1, description="steps to take")] = 1
         ) -> StepResponse:
    """Advance one step (or ``num_steps``)."""
    return _advance(store.get(sim_id), num_steps, limits)


@router.post("/simulation/run", response_model=StepResponse, tags=["simulation"])
def run(num_steps: Annotated[int, Query(ge=1, description="steps to run")],
        store: Store, limits: Limits, sim_id: SimId = None) -> StepResponse:
    """Run ``num_steps`` steps (stops early at the end of the episode)."""
    return _advance(store.get(sim_id), num_steps, limits)
