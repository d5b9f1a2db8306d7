"""Decisions by lookahead: what-if comparisons and recommended actions. Neither
changes the simulation."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path

from finsim_mesa.agents.brains import BRAINS
from finsim_mesa.api.deps import Limits, Seeds, SimId, Steps, Store
from finsim_mesa.api.payloads import bank_ids, records
from finsim_mesa.api.schemas import (
    RecommendationResponse,
    RecommendationsResponse,
    WhatIfRequest,
    WhatIfResponse,
)
from finsim_mesa.api.sessions import ApiLimits, NotFound, Session
from finsim_mesa.errors import FinsimError

__all__ = ["router"]

router = APIRouter()


def _check_work(units: int, what: str, limits: ApiLimits) -> None:
    if units > limits.max_lookahead_work:
        raise FinsimError(f"{what} asks for {units} simulated steps in all (steps x seeds "
                          f"x variants), more than the server's {limits.max_lookahead_work};"
                          " use fewer steps or seeds")


def _brains(spec: dict[str, str] | None, n_banks: int) -> dict[int, str]:
    brains = bank_ids(spec, n_banks, "brains")
    for b, name in brains.items():
        if name not in BRAINS:
            raise FinsimError(f"brains[{b}] = {name!r}: choose one of {', '.join(BRAINS)}")
    return brains


def _recommendation(session: Session, bank_id: int, steps: int, seeds: int
                    ) -> RecommendationResponse:
    rec = session.model.recommend(bank_id, steps=steps, seeds=seeds)
    return RecommendationResponse(
        sim_id=session.sim_id, step=session.model.t, bank_id=rec.bank, action=rec.action,
        vector=list(rec.vector) if rec.vector is not None else None,
        expected_equity=rec.expected_equity, ci95=list(rec.ci95),
        default_probability=rec.default_probability, reason=rec.reason,
        table=records(rec.table))


@router.post("/what_if", response_model=WhatIfResponse, tags=["decisions"])
def what_if(req: WhatIfRequest, store: Store, limits: Limits, sim_id: SimId = None
            ) -> WhatIfResponse:
    """Look ahead under a shock, other brains or fixed actions against the
    no-change baseline on the same seeds; the simulation is not changed."""
    _check_work(req.steps * req.seeds * 2, "this what-if", limits)
    session = store.get(sim_id)
    with session.state_lock:
        m = session.model
        brains = _brains(req.brains, m.n_banks)
        res = m.what_if(req.steps, req.seeds,
                        shock=req.shock.model_dump() if req.shock else None,
                        brains=brains or None,
                        actions=bank_ids(req.actions, m.n_banks, "actions") or None,
                        bank=req.bank)
        return WhatIfResponse(sim_id=session.sim_id, step=m.t, horizon=res.steps,
                              seeds=res.seeds, summary=records(res.summary),
                              difference=records(res.difference))


@router.get("/recommendations/{bank_id}", response_model=RecommendationResponse,
            tags=["decisions"])
def recommend(bank_id: Annotated[int, Path(ge=0)], store: Store, limits: Limits,
              sim_id: SimId = None, steps: Steps = 10, seeds: Seeds = 10
              ) -> RecommendationResponse:
    """The best of the candidate actions for one bank, by lookahead."""
    from finsim_mesa.decision import CANDIDATES

    _check_work(steps * seeds * (len(CANDIDATES) + 1), "this recommendation", limits)
    session = store.get(sim_id)
    with session.state_lock:
        if bank_id >= session.model.n_banks:
            raise NotFound(f"bank {bank_id} does not exist (ids 0.."
                           f"{session.model.n_banks - 1})")
        return _recommendation(session, bank_id, steps, seeds)


@router.get("/recommendations", response_model=RecommendationsResponse, tags=["decisions"])
def recommend_all(store: Store, limits: Limits, sim_id: SimId = None, steps: Steps = 5,
                  seeds: Seeds = 3) -> RecommendationsResponse:
    """A recommendation for every bank not in default."""
    from finsim_mesa.decision import CANDIDATES

    session = store.get(sim_id)
    with session.state_lock:
        m = session.model
        live = np.flatnonzero(m.ledger.active).tolist()
        _check_work(steps * seeds * (len(CANDIDATES) + 1) * len(live),
                    f"recommendations for {len(live)} banks", limits)
        recs = [_recommendation(session, b, steps, seeds) for b in live]
        return RecommendationsResponse(
            sim_id=session.sim_id, step=m.t, recommendations=recs,
            skipped=np.flatnonzero(m.ledger.defaulted).tolist())
