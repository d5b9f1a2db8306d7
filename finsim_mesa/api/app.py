"""The FastAPI application: simulations, metrics, scenarios, what-if,
recommendations, training and models over HTTP, and a WebSocket of per-step
metrics.

Every endpoint that acts on a simulation takes ``?sim_id=...``; without it, it
acts on the most recently created simulation. Start with ``finsim serve`` or
``uvicorn --factory finsim_mesa.api.app:create_app_from_env``. Handlers that
simulate are plain functions, so FastAPI runs them in its thread pool and a
long run never blocks other clients.

The endpoints live in :mod:`finsim_mesa.api.routes` (one router per area);
this module builds the application: its state, its routers and the mapping
of errors to status codes.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import finsim_mesa
from finsim_mesa.api.routes import ROUTERS
from finsim_mesa.api.sessions import ApiLimits, Conflict, NotFound, SessionStore
from finsim_mesa.api.training import LearnMissing, TrainingManager, learn_available
from finsim_mesa.errors import FinsimError
from finsim_mesa.scenarios import list_scenarios

__all__ = ["ERROR_STATUS", "create_app", "create_app_from_env"]

# exceptions a handler may raise and the status they are answered with (the
# most specific class wins: LearnMissing is a FinsimError); the body is
# {"detail": message}
ERROR_STATUS: dict[type[Exception], int] = {
    NotFound: 404,
    FileNotFoundError: 404,
    Conflict: 409,
    LearnMissing: 503,
    FinsimError: 422,
}


def _error(status: int):
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=status, content={"detail": str(exc).strip("'\"")})
    return handler


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
    app = FastAPI(title="finsim-mesa", version=finsim_mesa.__version__,
                  description="Financial contagion simulations (Mesa) over HTTP. Endpoints "
                              "that act on a simulation take ?sim_id=...; without it they act "
                              "on the most recently created one.")
    app.state.store = SessionStore(limits)
    app.state.training = TrainingManager(models_dir, available=learn)
    app.state.limits = limits
    # scenarios known to this service: the registered ones when it starts plus
    # those POSTed to /scenarios/set (kept here, not in the process-wide registry)
    app.state.scenarios = dict(list_scenarios())
    for exc, status in ERROR_STATUS.items():
        app.add_exception_handler(exc, _error(status))
    for router in ROUTERS:
        app.include_router(router)
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
