"""The FastAPI application: simulations, metrics, scenarios, what-if,
recommendations, training and models over HTTP, and a WebSocket of per-step
metrics.

Every endpoint that acts on a simulation takes ``?sim_id=...``; without it, it
acts on the most recently created simulation. Start with ``finsim serve`` or
``uvicorn --factory finsim_mesa.api.app:create_app_from_env``. Handlers that
simulate are plain functions (or hand their work to a worker thread), so a
long run never blocks other clients.

The endpoints live in :mod:`finsim_mesa.api.routes` (one router per area);
this module builds the application: its state, its routers, its middleware
(token, OPTIONS, body size), the mapping of errors to status codes
(:mod:`finsim_mesa.api.errors`) and its OpenAPI document
(:mod:`finsim_mesa.api.openapi`).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI

import finsim_mesa
from finsim_mesa.api.docs import install_docs
from finsim_mesa.api.errors import ERROR_STATUS, MethodTable, install_error_handlers
from finsim_mesa.api.journal import Journal
from finsim_mesa.api.limits import ApiLimits
from finsim_mesa.api.middleware import BearerAuth, BodyLimit, Options
from finsim_mesa.api.openapi import DESCRIPTION, install_openapi
from finsim_mesa.api.replay import restore
from finsim_mesa.api.routes import ROUTERS
from finsim_mesa.api.scenario_table import ScenarioTable
from finsim_mesa.api.sessions import SessionStore
from finsim_mesa.api.training import TrainingManager, learn_available
from finsim_mesa.errors import ConfigError
from finsim_mesa.scenarios import list_scenarios

__all__ = ["ERROR_STATUS", "TOKEN_ENV", "create_app", "create_app_from_env"]

TOKEN_ENV = "FINSIM_API_TOKEN"


def create_app(models_dir: str = "models", limits: ApiLimits | None = None,
               learn: Any = learn_available, token: str | None = None,
               data_dir: str | Path | None = None) -> FastAPI:
    """Build the service.

    With ``data_dir``, simulations survive a restart: the service takes the
    folder's lock (:class:`~finsim_mesa.api.journal.JournalError` if another
    server holds it), rebuilds the simulations journaled there
    (``app.state.replay`` reports what it found; :mod:`finsim_mesa.api.replay`)
    and journals every change from now on. Without it they live in memory.

    Args:
        models_dir: folder of trained models (``finsim train --out``) and of the
            API's training jobs and registry.
        limits: server limits (sizes, steps per request, expiry).
        learn: callable telling whether the ``learn`` extra is installed.
        token: if given, every request but ``GET /health`` needs
            ``Authorization: Bearer <token>``.
        data_dir: the data folder of the journal (None: no journal).
    """
    limits = limits or ApiLimits()
    if token is not None and not token.strip():
        raise ConfigError("token: give a non-empty token (or none)")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if app.state.journal is not None:
            app.state.journal.close()  # lets go of the data folder

    app = FastAPI(title="finsim-mesa", version=finsim_mesa.__version__,
                  description=DESCRIPTION, docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.store = store = SessionStore(limits)
    app.state.training = training = TrainingManager(models_dir, available=learn)
    app.state.limits = limits
    app.state.streams = 0  # WebSocket streams open now (routes/stream.py counts them)
    # scenarios known to this service: the registered ones when it starts plus
    # those POSTed to /scenarios/set (kept here, not in the process-wide registry)
    app.state.scenarios = table = ScenarioTable(list_scenarios(), limits.max_scenarios)
    app.state.journal = app.state.replay = None
    if data_dir is not None:
        app.state.journal = journal = Journal(data_dir)
        app.state.replay = restore(journal, store, table,
                                   training.brain_for if training.available() else None)
        store.listeners.append(journal.listen)
        table.on_add = journal.save_scenario
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    install_docs(app)
    install_openapi(app, limits, token)
    app.state.methods = MethodTable([route for router in ROUTERS for route in router.routes]
                                    + list(app.router.routes))
    # added last = outermost: the token is checked before anything else
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(Options, methods=app.state.methods.allowed)
    app.add_middleware(BearerAuth, token=token)
    return app


def create_app_from_env() -> FastAPI:
    """``create_app`` configured by ``FINSIM_MODELS_DIR``, ``FINSIM_DATA_DIR`` (empty
    or unset: no journal), ``FINSIM_MAX_*``, ``FINSIM_IDLE_TTL_S`` and
    ``FINSIM_API_TOKEN`` (``finsim serve`` sets them; uvicorn's ``--reload``
    needs a factory)."""
    limits = ApiLimits()
    for field in ("max_banks", "max_steps_per_request", "max_simulations"):
        raw = os.environ.get(f"FINSIM_{field.upper()}")
        if raw:
            setattr(limits, field, int(raw))
    raw = os.environ.get("FINSIM_IDLE_TTL_S")
    if raw:
        limits.idle_ttl_s = float(raw)
        if not math.isfinite(limits.idle_ttl_s) or limits.idle_ttl_s <= 0:
            raise ConfigError(f"FINSIM_IDLE_TTL_S={raw}: give a finite number of seconds > 0")
    return create_app(os.environ.get("FINSIM_MODELS_DIR", "models"), limits,
                      token=os.environ.get(TOKEN_ENV) or None,
                      data_dir=os.environ.get("FINSIM_DATA_DIR") or None)
