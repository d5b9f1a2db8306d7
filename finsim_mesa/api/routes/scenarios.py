"""Scenarios: the service's table, switching a simulation to one (by name or
a new definition) and applying a shock now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from finsim_mesa.api.deps import Scenarios, SimId, Store
from finsim_mesa.api.errors import responses
from finsim_mesa.api.routing import FinsimRoute
from finsim_mesa.api.schemas import (
    Metrics,
    ScenarioInfo,
    ScenarioSetRequest,
    ShockRequest,
    ShockResponse,
    SimulationInfo,
)

__all__ = ["router"]

router = APIRouter(route_class=FinsimRoute)


@router.get("/scenarios", response_model=list[ScenarioInfo], tags=["scenarios"])
def scenarios(known: Scenarios) -> list[ScenarioInfo]:
    """The built-in scenarios and those defined by clients."""
    return [ScenarioInfo(name=n, description=s.description,
                         parameters=s.model_dump(exclude={"name", "description"}))
            for n, s in known.snapshot().items()]


@router.post("/scenarios/set", response_model=SimulationInfo, tags=["scenarios"],
             responses=responses(404, 409, 413, 422, 503))
def set_scenario(req: ScenarioSetRequest, store: Store, known: Scenarios,
                 sim_id: SimId = None) -> SimulationInfo:
    """Switch the simulation to a scenario (by name, or a new definition that
    is registered under its name), from the next step or from a restart.

    409: a different scenario has that name, or the server holds its most
    client-defined scenarios."""
    session = store.get(sim_id)
    if req.definition is not None:
        spec = known.add(req.definition.as_scenario())
    else:
        spec = known.get(req.scenario)
    session.switch_scenario(spec, req.restart)
    return SimulationInfo(**session.info())


@router.post("/scenarios/shock", response_model=ShockResponse, tags=["scenarios"],
             responses=responses(404, 413, 422, 503))
def shock(req: Annotated[ShockRequest, Body()], store: Store, sim_id: SimId = None
          ) -> ShockResponse:
    """Apply a shock now; it is resolved at the next clearing. Bank ids must
    exist in the simulation (422 otherwise)."""
    session = store.get(sim_id)
    applied = session.shock(req.kind, req.magnitude, req.banks)
    return ShockResponse(sim_id=session.sim_id, step=session.latest["step"], applied=applied,
                         metrics=Metrics(sim_id=session.sim_id, **session.latest))
