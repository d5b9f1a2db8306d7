"""The interbank network as nodes and edges, for a graph widget."""

from __future__ import annotations

from fastapi import APIRouter

from finsim_mesa.api.deps import SimId, Store
from finsim_mesa.api.errors import responses
from finsim_mesa.api.payloads import topology_payload
from finsim_mesa.api.routing import FinsimRoute
from finsim_mesa.api.schemas import TopologyResponse

__all__ = ["router"]

router = APIRouter(route_class=FinsimRoute)


@router.get("/network/topology", response_model=TopologyResponse, tags=["network"],
            responses=responses(404, 422))
def topology(store: Store, sim_id: SimId = None) -> TopologyResponse:
    """Nodes with their state and edges with exposures, for a graph widget."""
    session = store.get(sim_id)
    with session.state_lock:
        return TopologyResponse(sim_id=session.sim_id, step=session.model.t,
                                **topology_payload(session.model))
