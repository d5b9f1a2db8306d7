"""Decisions by lookahead: what-if comparisons and recommended actions. Neither
changes the simulation, and neither holds it: each works on a copy of the
state taken when the request arrives (:meth:`Session.lookahead_model`), so
steps and readers go on meanwhile.

The work of one request is bounded: ``steps x seeds x variants`` fits the
server's ``max_lookahead_work`` for every request the schema allows (the
bounds of ``steps`` and ``seeds`` come from it), and ``GET /recommendations``
answers for as many banks as fit in it, then says where to go on
(``next_start``).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path, Query

from finsim_mesa.api.deps import Limits, Seeds, SimId, Steps, Store
from finsim_mesa.api.errors import NotFound, responses
from finsim_mesa.api.limits import LookaheadBounds
from finsim_mesa.api.openapi import lookahead_limits
from finsim_mesa.api.payloads import bank_ids, clean, records
from finsim_mesa.api.routing import FinsimRoute
from finsim_mesa.api.schemas import (
    RecommendationResponse,
    RecommendationsResponse,
    WhatIfRequest,
    WhatIfResponse,
)
from finsim_mesa.errors import FinsimError
from finsim_mesa.model import FinancialModel

__all__ = ["router"]

router = APIRouter(route_class=FinsimRoute, responses=responses(404, 422))


def _bounded(steps: int | None, seeds: int | None, b: LookaheadBounds) -> tuple[int, int]:
    """``steps`` and ``seeds`` (None: the default), checked against the bounds."""
    steps = b.default_steps if steps is None else steps
    seeds = b.default_seeds if seeds is None else seeds
    if steps > b.steps or seeds > b.seeds:
        raise FinsimError(f"steps = {steps}, seeds = {seeds}: this server's lookahead work "
                          f"limit allows at most {b.steps} steps and {b.seeds} seeds here")
    return steps, seeds


def _variants() -> int:
    """Variants simulated per seed for a recommendation: each candidate and the
    bank's own brain."""
    from finsim_mesa.decision import CANDIDATES

    return len(CANDIDATES) + 1


def _recommendation(sim_id: str, model: FinancialModel, bank_id: int, steps: int, seeds: int
                    ) -> RecommendationResponse:
    rec = model.recommend(bank_id, steps=steps, seeds=seeds)
    return RecommendationResponse(
        sim_id=sim_id, step=model.t, bank_id=rec.bank, action=rec.action,
        vector=list(map(float, rec.vector)) if rec.vector is not None else None,
        expected_equity=clean(float(rec.expected_equity)), ci95=clean(list(rec.ci95)),
        default_probability=clean(float(rec.default_probability)), reason=rec.reason,
        table=records(rec.table))


@router.post("/what_if", response_model=WhatIfResponse, tags=["decisions"],
             responses=responses(413))
def what_if(req: WhatIfRequest, store: Store, limits: Limits, sim_id: SimId = None
            ) -> WhatIfResponse:
    """Look ahead under a shock, other brains or fixed actions against the
    no-change baseline on the same seeds; the simulation is not changed.
    Bank ids must exist in the simulation (422 otherwise)."""
    steps, seeds = _bounded(req.steps, req.seeds, lookahead_limits(limits, "what_if"))
    session = store.get(sim_id)
    m = session.lookahead_model()
    res = m.what_if(steps, seeds, shock=req.shock.as_dict() if req.shock else None,
                    brains=bank_ids(req.brains, m.n_banks, "brains") or None,
                    actions=bank_ids(req.actions, m.n_banks, "actions") or None,
                    bank=req.bank)
    return WhatIfResponse(sim_id=session.sim_id, step=m.t, horizon=res.steps,
                          seeds=res.seeds, summary=records(res.summary),
                          difference=records(res.difference))


@router.get("/recommendations/{bank_id}", response_model=RecommendationResponse,
            tags=["decisions"])
def recommend(bank_id: Annotated[int, Path(ge=0)], store: Store, limits: Limits,
              sim_id: SimId = None, steps: Steps = None, seeds: Seeds = None
              ) -> RecommendationResponse:
    """The best of the candidate actions for one bank, by lookahead."""
    steps, seeds = _bounded(steps, seeds, lookahead_limits(limits, "recommend"))
    session = store.get(sim_id)
    n = session.model.n_banks
    if bank_id >= n:
        raise NotFound(f"bank {bank_id} does not exist (ids 0..{n - 1})")
    return _recommendation(session.sim_id, session.lookahead_model(), bank_id, steps, seeds)


@router.get("/recommendations", response_model=RecommendationsResponse, tags=["decisions"])
def recommend_all(store: Store, limits: Limits, sim_id: SimId = None, steps: Steps = None,
                  seeds: Seeds = None,
                  start: Annotated[int, Query(ge=0, description="first bank id to answer "
                                                                "(next_start of the last "
                                                                "answer)")] = 0
                  ) -> RecommendationsResponse:
    """A recommendation for every bank not in default, from ``start`` on, for
    as many banks as fit in the server's work limit (``next_start`` says where
    the rest begin)."""
    b = lookahead_limits(limits, "recommend_all")
    steps, seeds = _bounded(steps, seeds, b)
    session = store.get(sim_id)
    m = session.lookahead_model()
    live = [i for i in np.flatnonzero(m.ledger.active).tolist() if i >= start]
    per_bank = steps * seeds * _variants()
    fit = max(1, limits.max_lookahead_work // per_bank)
    recs = [_recommendation(session.sim_id, m, i, steps, seeds) for i in live[:fit]]
    return RecommendationsResponse(
        sim_id=session.sim_id, step=m.t, recommendations=recs,
        skipped=np.flatnonzero(m.ledger.defaulted).tolist(),
        next_start=live[fit] if len(live) > fit else None)
