"""Service health and the simulations' life cycle: create, list, inspect,
delete, reset, step and run."""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from starlette.concurrency import run_in_threadpool

import finsim_mesa
from finsim_mesa.api.deps import Limits, Scenarios, SimId, Store, Training
from finsim_mesa.api.errors import responses
from finsim_mesa.api.limits import ApiLimits
from finsim_mesa.api.openapi import default_banks
from finsim_mesa.api.routing import FinsimRoute
from finsim_mesa.api.schemas import (
    Health,
    InitRequest,
    Metrics,
    ResetRequest,
    SimulationInfo,
    StepResponse,
)
from finsim_mesa.api.sessions import Session
from finsim_mesa.errors import FinsimError

__all__ = ["router"]

router = APIRouter(route_class=FinsimRoute)


async def _until_disconnect(request: Request, gone: threading.Event) -> None:
    """Set ``gone`` when the client closes the connection (a body it sends,
    which these endpoints do not read, is discarded)."""
    try:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                gone.set()
                return
    except Exception:  # a body past the size limit: the answer goes out regardless
        return


async def _advance(request: Request, session: Session, num_steps: int, limits: ApiLimits
                   ) -> StepResponse:
    """Step in a worker thread; stop stepping if the client goes away (nobody
    would read the answer, and other clients wait for the simulation)."""
    if num_steps > limits.max_steps_per_request:
        raise FinsimError(f"num_steps = {num_steps}: at most "
                          f"{limits.max_steps_per_request} per request; send several")
    gone = threading.Event()
    watcher = asyncio.ensure_future(_until_disconnect(request, gone))
    try:
        done = await run_in_threadpool(session.advance, num_steps, gone.is_set)
    finally:
        watcher.cancel()
    m = session.latest
    return StepResponse(sim_id=session.sim_id, steps_requested=num_steps, steps_run=done,
                        step=m["step"], running=m["running"],
                        metrics=Metrics(sim_id=session.sim_id, **m))


# ------------------------------------------------------------ service
@router.get("/health", response_model=Health, tags=["service"])
def health(request: Request, store: Store, training: Training) -> Health:
    """Always answered, with or without a token."""
    job = training.job["state"] if training.job else "idle"
    return Health(status="ok", version=finsim_mesa.__version__,
                  simulations=len(store.all()), streams=request.app.state.streams,
                  learn_available=bool(training.available()), training=job)


@router.get("/simulations", response_model=list[SimulationInfo], tags=["simulation"])
def simulations(store: Store) -> list[SimulationInfo]:
    """Every live simulation."""
    return [SimulationInfo(**s.info()) for s in store.all()]


# ------------------------------------------------------------ simulation
@router.post("/simulation/init", response_model=SimulationInfo, tags=["simulation"],
             responses=responses(409, 413, 422, 503))
def init(req: InitRequest, store: Store, limits: Limits, known: Scenarios) -> SimulationInfo:
    """Create a simulation; its id works on every endpoint (``?sim_id=``).

    Refused (422) over the server's limits, with the estimate: banks, links of
    the network (topology, ``mean_degree``, ``edges_per_node``, core settings)
    and memory; 409 when the server holds its most simulations or memory."""
    config = req.config.model_dump(exclude_unset=True)
    table = config.get("balance_sheets") is not None  # the table sets the banks
    n_banks = default_banks(limits) if req.n_banks is None else req.n_banks
    if n_banks > limits.max_banks:
        raise FinsimError(f"n_banks = {n_banks}: this server allows at most "
                          f"{limits.max_banks}")
    if req.steps is not None and req.steps > limits.max_episode_steps:
        raise FinsimError(f"steps = {req.steps}: episodes on this server are at most "
                          f"{limits.max_episode_steps} steps")
    params = ({} if table and req.n_banks is None else {"n_banks": n_banks}) | {
        "scenario": known.get(req.scenario), "brain": req.brain,
        "n_exchanges": req.n_exchanges, "n_ccps": req.n_ccps,
        "agent_collect_every": 0} | config
    for key in ("steps", "topology"):
        if getattr(req, key) is not None:
            params[key] = getattr(req, key)
    session = store.create(params, req.seed)
    return SimulationInfo(**session.info())


@router.get("/simulation", response_model=SimulationInfo, tags=["simulation"],
            responses=responses(404, 422))
def info(store: Store, sim_id: SimId = None) -> SimulationInfo:
    return SimulationInfo(**store.get(sim_id).info())


@router.delete("/simulation", response_model=SimulationInfo, tags=["simulation"],
               responses=responses(404, 422))
def delete(sim_id: Annotated[str, Query(max_length=64)], store: Store) -> SimulationInfo:
    """Drop a simulation (waits for a run in progress on it to finish); its
    streams end."""
    return SimulationInfo(**store.delete(sim_id).info())


@router.post("/simulation/reset", response_model=SimulationInfo, tags=["simulation"],
             responses=responses(404, 413, 422, 503))
def reset(store: Store, sim_id: SimId = None,
          req: Annotated[ResetRequest | None, Body()] = None) -> SimulationInfo:
    """Start the simulation again from step 0 (same parameters and brains)."""
    session = store.get(sim_id)
    session.reset(req.seed if req else None)
    return SimulationInfo(**session.info())


@router.post("/simulation/step", response_model=StepResponse, tags=["simulation"],
             responses=responses(404, 409, 422, 503))
async def step(request: Request, store: Store, limits: Limits, sim_id: SimId = None,
               num_steps: Annotated[int, Query(ge=1, description="steps to take")] = 1
               ) -> StepResponse:
    """Advance one step (or ``num_steps``)."""
    return await _advance(request, store.get(sim_id), num_steps, limits)


@router.post("/simulation/run", response_model=StepResponse, tags=["simulation"],
             responses=responses(404, 409, 422, 503))
async def run(request: Request,
              num_steps: Annotated[int, Query(ge=1, description="steps to run")],
              store: Store, limits: Limits, sim_id: SimId = None) -> StepResponse:
    """Run ``num_steps`` steps (stops early at the end of the episode, or when
    the client disconnects)."""
    return await _advance(request, store.get(sim_id), num_steps, limits)
