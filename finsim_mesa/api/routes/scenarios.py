"""Scenarios: the service's table, switching a simulation to one (by name or
a new definition) and applying a shock now."""

from __future__ import annotations

from fastapi import APIRouter

from finsim_mesa.api.deps import Scenarios, SimId, Store
from finsim_mesa.api.payloads import clean
from finsim_mesa.api.schemas import (
    Metrics,
    ScenarioInfo,
    ScenarioSetRequest,
    ShockRequest,
    ShockResponse,
    SimulationInfo,
)
from finsim_mesa.api.sessions import Conflict, Session, metrics_of
from finsim_mesa.errors import FinsimError
from finsim_mesa.scenarios import Scenario

__all__ = ["router"]

router = APIRouter()


def _resolve(req: ScenarioSetRequest, known: dict[str, Scenario]) -> Scenario:
    """The scenario a request names, or its new definition (then registered)."""
    if req.definition is None:
        if req.scenario not in known:
            raise FinsimError(f"scenario {req.scenario!r} is unknown; choose one of "
                              f"{', '.join(known)}")
        return known[req.scenario]
    try:
        spec = Scenario(**req.definition)
    except (TypeError, ValueError) as err:
        raise FinsimError(f"scenario definition is invalid: {err}") from None
    if spec.name in known and known[spec.name] != spec:
        raise Conflict(f"a different scenario named {spec.name!r} exists; choose "
                       "another name")
    known[spec.name] = spec
    return spec


def _switch(session: Session, spec: Scenario, restart: bool) -> None:
    with session.op_lock:
        session.params["scenario"] = spec
        if restart:
            session.reset()
        else:
            with session.state_lock:
                session.model.set_scenario(spec)
                session.latest = session.latest | {"scenario": spec.name}


@router.get("/scenarios", response_model=list[ScenarioInfo], tags=["scenarios"])
def scenarios(known: Scenarios) -> list[ScenarioInfo]:
    return [ScenarioInfo(name=n, description=s.description,
                         parameters=s.model_dump(exclude={"name", "description"}))
            for n, s in known.items()]


@router.post("/scenarios/set", response_model=SimulationInfo, tags=["scenarios"])
def set_scenario(req: ScenarioSetRequest, store: Store, known: Scenarios,
                 sim_id: SimId = None) -> SimulationInfo:
    """Switch the simulation to a scenario (by name, or a new definition that
    is registered under its name), from the next step or from a restart."""
    if (req.scenario is None) == (req.definition is None):
        raise FinsimError("give exactly one of 'scenario' (a name from GET /scenarios) "
                          "or 'definition' (a new scenario)")
    session = store.get(sim_id)
    _switch(session, _resolve(req, known), req.restart)
    return SimulationInfo(**session.info())


@router.post("/scenarios/shock", response_model=ShockResponse, tags=["scenarios"])
def shock(req: ShockRequest, store: Store, sim_id: SimId = None) -> ShockResponse:
    """Apply a shock now; it is resolved at the next clearing."""
    session = store.get(sim_id)
    with session.op_lock, session.state_lock:
        m = session.model
        m.apply_shock(req.kind, req.magnitude, req.banks)
        session.latest = metrics_of(m)
        return ShockResponse(sim_id=session.sim_id, step=m.t,
                             applied=clean(m.shock_log[-1]),
                             metrics=Metrics(sim_id=session.sim_id, **session.latest))
