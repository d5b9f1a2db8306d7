"""What the routers share: the service's state, kept in ``app.state`` by
:func:`finsim_mesa.api.app.create_app`, as FastAPI dependencies, and the
query parameters several endpoints take.

The dependencies are ``async`` so FastAPI resolves them on the event loop,
not in its thread pool: ``GET /metrics`` still answers while every worker
thread is busy with a long run.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query
from starlette.requests import HTTPConnection

from finsim_mesa.api.limits import ApiLimits
from finsim_mesa.api.scenario_table import ScenarioTable
from finsim_mesa.api.sessions import SessionStore
from finsim_mesa.api.training import TrainingManager

__all__ = ["Limits", "Scenarios", "Seeds", "SimId", "Steps", "Store", "Training"]


async def get_store(conn: HTTPConnection) -> SessionStore:
    """The simulations of this service."""
    return conn.app.state.store


async def get_training(conn: HTTPConnection) -> TrainingManager:
    """The training jobs and saved models of this service."""
    return conn.app.state.training


async def get_limits(conn: HTTPConnection) -> ApiLimits:
    """This service's limits."""
    return conn.app.state.limits


async def get_scenarios(conn: HTTPConnection) -> ScenarioTable:
    """Scenarios known to this service: the registered ones when it started plus
    those POSTed to ``/scenarios/set`` (never the process-wide registry)."""
    return conn.app.state.scenarios


Store = Annotated[SessionStore, Depends(get_store)]
Training = Annotated[TrainingManager, Depends(get_training)]
Limits = Annotated[ApiLimits, Depends(get_limits)]
Scenarios = Annotated[ScenarioTable, Depends(get_scenarios)]

SimId = Annotated[str | None, Query(max_length=64, description="simulation id (default: the "
                                                                 "most recent simulation)")]
# lookahead query parameters: their bounds and defaults come from the server's
# work limit (finsim_mesa.api.openapi.lookahead_limits), None means the default
Steps = Annotated[int | None, Query(ge=1, description="lookahead horizon in steps (bounded by "
                                                      "the server's work limit)")]
Seeds = Annotated[int | None, Query(ge=1, description="Monte-Carlo seeds (bounded alike)")]
