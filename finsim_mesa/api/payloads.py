"""JSON payloads built from a model: plain Python values (no NaN/inf, no numpy
scalars), bank-id keyed request parts, and the network topology."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from finsim_mesa.errors import FinsimError
from finsim_mesa.measures import INFRA_REPORTERS, MODEL_REPORTERS, report

__all__ = ["asset_classes_of", "bank_ids", "clean", "holdings_of", "metrics_of",
           "records", "topology_payload"]


def clean(v: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None, recursively."""
    if isinstance(v, dict):
        return {str(k): clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def metrics_of(model: Any) -> dict[str, Any]:
    """The model-level figures of the current step (what ``GET /metrics`` returns):
    the reporters of :data:`MODEL_REPORTERS` (and of the infrastructure layer),
    and ``prices``: each asset class's price relative to its initial price, by
    class name (the DataCollector's ``price_<class>`` columns; ``price`` is their
    mean)."""
    market = model.market
    out: dict[str, Any] = {"step": model.t, "running": bool(model.running),
                           "collapsed": bool(model.collapsed), "scenario": model.scenario_name,
                           "prices": {name: clean(float(p / p0)) for name, p, p0 in zip(
                               market.names, market.prices, market.initial_prices,
                               strict=True)}}
    for key in MODEL_REPORTERS:
        out[key] = clean(report(model, key))
    if model.config.infrastructure:
        out["infrastructure"] = {k: clean(report(model, k)) for k in INFRA_REPORTERS}
    else:
        out["infrastructure"] = None
    return out


def asset_classes_of(model: Any) -> list[dict[str, Any]]:
    """Each asset class of ``model``, in the order of the holdings' columns:
    ``name``, ``initial_price`` and ``price`` (money per unit),
    ``relative_price`` (price / initial price, as in ``prices`` of the
    metrics), ``price_impact`` (``p <- p exp(-impact q / Q)``), ``market_depth``
    ``Q`` and ``units_held`` (units, by all banks now) and ``liquidity_rank``
    (order of sale under ``sale_order = "liquidity"``; null without
    ``asset_classes``)."""
    market, classes = model.market, model.config.asset_classes
    held = model.ledger.holdings.sum(axis=0)
    return [clean({"name": name, "initial_price": float(market.initial_prices[j]),
                   "price": float(market.prices[j]),
                   "relative_price": float(market.prices[j] / market.initial_prices[j]),
                   "price_impact": float(market.impact[j]),
                   "market_depth": float(market.units_outstanding[j]),
                   "units_held": float(held[j]),
                   "liquidity_rank": classes[j].liquidity_rank if classes else None})
            for j, name in enumerate(market.names)]


def holdings_of(model: Any, bank: int) -> dict[str, dict[str, Any]]:
    """One bank's securities by asset class name: ``units`` and ``value``
    (units x price now, money; they add up to the balance sheet's
    ``securities``)."""
    units, prices = model.ledger.holdings[bank], model.market.prices
    return {name: clean({"units": float(units[j]), "value": float(units[j] * prices[j])})
            for j, name in enumerate(model.market.names)}


def records(df: Any) -> list[dict[str, Any]]:
    return [clean(r) for r in df.to_dict(orient="records")]


def bank_ids(raw: dict[str, Any] | None, n: int, what: str) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for k, v in (raw or {}).items():
        try:
            i = int(k)
        except ValueError:
            raise FinsimError(f"{what}: key {k!r} is not a bank id (use '0'..'{n - 1}')") \
                from None
        if not 0 <= i < n:
            raise FinsimError(f"{what}: bank {i} does not exist (ids 0..{n - 1})")
        out[i] = v
    return out


def topology_payload(m: Any) -> dict[str, list[dict[str, Any]]]:
    """Nodes (banks with balance sheet, exchanges, CCPs) and edges (loans lender ->
    borrower with exposure in money, cleared loans via the CCP node, exchange
    membership and clearing links) of a model now."""
    L = m.ledger
    nodes: list[dict[str, Any]] = []
    for i, bank in enumerate(m.banks):
        nodes.append({"id": i, "type": "bank", "label": f"bank {i}", "brain": m.brains.names[i]}
                     | clean(bank.balance_sheet()) | {"defaulted": bool(L.defaulted[i])})
    for ex in m.exchanges:
        nodes.append({"id": int(ex.node), "type": "exchange",
                      "label": f"exchange {ex.exchange_id}", "exchange_id": ex.exchange_id,
                      "fees_earned": float(L.exchange_cash[ex.exchange_id])})
    for c in m.ccps:
        nodes.append({"id": int(c.node), "type": "ccp", "label": f"CCP {c.ccp_id}",
                      "ccp_id": c.ccp_id, "margin_held": float(c.margin_held),
                      "default_fund": float(c.default_fund), "capital": float(c.capital)})
    exp = L.exposure_matrix(bilateral_only=m.config.infrastructure).tocoo()
    edges = [{"source": int(i), "target": int(j), "type": "loan", "exposure": float(v)}
             for i, j, v in zip(exp.row, exp.col, exp.data, strict=True) if v > 0]
    if m.router is not None:
        for b, x in enumerate(m.router.bank_exchange):
            edges.append({"source": b, "target": int(m.exchanges[x].node), "type": "member",
                          "exposure": 0.0})
        for x, c in enumerate(m.router.exchange_ccp):
            if c < 0:  # exchanges without a CCP settle bilaterally: no clearing link
                continue
            edges.append({"source": int(m.exchanges[x].node), "target": int(m.ccps[c].node),
                          "type": "clears_at", "exposure": 0.0})
        owed = L.loans.owed
        for k in np.unique(L.loans.ccp[L.loans.ccp >= 0]) if len(L.loans) else []:
            sel = L.loans.ccp == k
            node = int(m.ccps[int(k)].node)
            for who, col in (("borrower", L.loans.borrower), ("lender", L.loans.lender)):
                amt = np.bincount(col[sel], weights=owed[sel], minlength=m.n_banks)
                for b in np.flatnonzero(amt > 0):
                    src, dst = (node, int(b)) if who == "borrower" else (int(b), node)
                    edges.append({"source": src, "target": dst, "type": "cleared_loan",
                                  "exposure": float(amt[b])})
    return {"nodes": nodes, "edges": edges}
