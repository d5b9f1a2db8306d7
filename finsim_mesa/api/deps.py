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

from finsim_mesa.api.sessions import ApiLimits, SessionStore
from finsim_mesa.api.training import TrainingManager
from finsim_mesa.scenarios import Scenario

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


async def get_scenarios(conn: HTTPConnection) -> dict[str, Scenario]:
    """Scenarios known to this service: the registered ones when it started plus
    those POSTed to ``/scenarios/set`` (never the process-wide registry)."""
    return conn.app.state.scenarios


Store = Annotated[SessionStore, Depends(get_store)]
Training = Annotated[TrainingManager, Depends(get_training)]
Limits = Annotated[ApiLimits, Depends(get_limits)]
Scenarios = Annotated[dict[str, Scenario], Depends(get_scenarios)]

SimId = Annotated[str | None, Query(max_length=64, description="simulation id (default: the "
                                                                 "most recent simulation)")]
Steps = Annotated[int, Query(ge=1, le=1000, description="lookahead horizon in steps")]
Seeds = Annotated[int, Query(ge=1, le=1000, description="Monte-Carlo seeds")]
