"""The service's endpoints, one ``APIRouter`` per area.

:func:`finsim_mesa.api.app.create_app` includes :data:`ROUTERS` in this
order (it is the order of the paths in the OpenAPI schema). Handlers reach
the service's state through the dependencies in :mod:`finsim_mesa.api.deps`.
"""

from __future__ import annotations

from finsim_mesa.api.routes import (
    decisions,
    metrics,
    scenarios,
    simulation,
    stream,
    topology,
    training,
)

__all__ = ["ROUTERS"]

ROUTERS = (simulation.router, metrics.router, scenarios.router, decisions.router,
           topology.router, training.router, stream.router)
