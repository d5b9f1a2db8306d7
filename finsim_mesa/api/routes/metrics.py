"""Figures of a simulation: the latest step, the per-step history, systemic
risk and one bank."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from finsim_mesa.api.deps import SimId, Store
from finsim_mesa.api.errors import NotFound, responses
from finsim_mesa.api.payloads import clean, holdings_of
from finsim_mesa.api.routing import FinsimRoute
from finsim_mesa.api.schemas import BankResponse, Metrics, RiskResponse
from finsim_mesa.observation import ACTION_NAMES, observation_names

__all__ = ["router"]

router = APIRouter(route_class=FinsimRoute, responses=responses(404, 422))


@router.get("/metrics", response_model=Metrics, tags=["metrics"])
async def metrics(store: Store, sim_id: SimId = None) -> Any:
    """Figures after the last step; never waits for a run in progress."""
    session = store.get(sim_id)
    return Metrics(sim_id=session.sim_id, **session.latest)


@router.get("/metrics/history", response_model=list[Metrics], tags=["metrics"])
def history(store: Store, sim_id: SimId = None,
            since: Annotated[int, Query(ge=0, description="records after this "
                                                          "sequence number")] = 0,
            limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[Any]:
    """Per-step figures recorded so far (the stream's records)."""
    session = store.get(sim_id)
    rows = [r for r in list(session.log) if r["seq"] > since][:limit]
    return [Metrics(**{k: v for k, v in r.items() if k != "seq"}) for r in rows]


@router.get("/metrics/risk", response_model=RiskResponse, tags=["metrics"])
def risk_metrics(store: Store, sim_id: SimId = None,
                 top: Annotated[int, Query(ge=1, le=100)] = 5) -> RiskResponse:
    """Systemic-risk measures and the most systemic banks now."""
    session = store.get(sim_id)
    with session.state_lock:
        m, r = session.model, session.model.measures
        return RiskResponse(
            sim_id=session.sim_id, step=m.t, debtrank=clean(r.debtrank),
            debtrank_total=clean(r.debtrank_total),
            systemic_risk_index=clean(r.systemic_risk_index),
            liquidity_index=clean(r.liquidity_index), stress_index=clean(r.stress_index),
            contagion_depth=int(m.flows.contagion_depth), n_defaults=int(r.n_defaults),
            default_rate=clean(r.default_rate), most_systemic=clean(m.systemic_ranking(top)))


@router.get("/metrics/bank/{bank_id}", response_model=BankResponse, tags=["metrics"])
def bank_metrics(bank_id: Annotated[int, Path(ge=0)], store: Store, sim_id: SimId = None
                 ) -> BankResponse:
    """One bank's balance sheet, observation, last action and reward."""
    session = store.get(sim_id)
    with session.state_lock:
        m = session.model
        if bank_id >= m.n_banks:
            raise NotFound(f"bank {bank_id} does not exist (ids 0..{m.n_banks - 1})")
        L = m.ledger
        names = observation_names(m.config, m.market.names)
        obs = m.decisions.observations[bank_id]
        return BankResponse(
            sim_id=session.sim_id, step=m.t, bank_id=bank_id,
            brain=m.brains.names[bank_id], defaulted=bool(L.defaulted[bank_id]),
            default_step=int(L.default_step[bank_id]) if L.defaulted[bank_id] else None,
            balance_sheet=clean(m.banks[bank_id].balance_sheet()),
            equity_initial=clean(float(L.equity0[bank_id])),
            debtrank=clean(float(m.debtrank_per_bank()[bank_id])),
            last_action=clean(dict(zip(ACTION_NAMES, map(float, m.decisions.actions[bank_id]),
                                       strict=True))),
            last_reward=clean(float(m.reward.per_bank[bank_id])),
            observation=clean({name: float(v) for name, v in zip(names, obs, strict=True)}),
            holdings=holdings_of(m, bank_id))
