"""Deleveraging on leverage (equity / total assets): the threshold and
leverage-targeting rules of system-wide stress tests.

The price stage runs :func:`leverage_loop` when ``deleveraging_rule`` is
``threshold`` or ``leverage_targeting`` (the ``capital`` rule, on risk-weighted
capital, is :func:`finsim_mesa.market.fire_sale_loop`). It follows the
order-book clearing of Farmer, Kleinnijenhuis, Nahai-Williamson & Wetzer
(2020, the reference implementation ox-inet-resilience/firesale_stresstest),
for ``fire_sale_rounds`` rounds:

1. banks that defaulted in the previous round put all their securities up
   for sale;
2. the market clears every order at once: each class's price falls to
   ``p · exp(−impact · q / Q)`` for the ``q`` units of it sold in the round
   (``Q`` its depth), holdings are marked to the new prices, and the orders
   execute at the mid price ``(p_old + p_new) / 2``;
3. each bank looks at its leverage ``λ = E / A``: below ``leverage_min`` it
   defaults (its securities go up for sale next round); otherwise, below
   ``leverage_buffer`` (threshold) or ``leverage_target`` (leverage
   targeting) it deleverages by ``A − E / leverage_target``: it repays its
   funding loan with cash first (``repay_funding_first``) and puts up for sale
   securities worth the rest it cannot pay from cash — pro rata by market
   value, or the most liquid class first (``sale_order``). Those orders clear
   next round.

The reference's price impact is stated per 5% of the market sold: a price
impact ``i`` there is ``impact = −ln(1 − i) / 0.05`` here (``i = 1%`` →
``0.2010``). Money in currency units; shapes: ``n`` banks, ``k`` classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from finsim_mesa.fastmath import ZERO, count_nonzero

if TYPE_CHECKING:
    from finsim_mesa.config import ModelConfig
    from finsim_mesa.ledger import Ledger
    from finsim_mesa.market import Market

__all__ = ["impact_per_5pct", "leverage", "leverage_loop", "sale_units"]


def impact_per_5pct(i: float) -> float:
    """The exponential impact that lowers a price by ``i`` for each 5% of the
    market sold (the convention of the reference stress-test model)."""
    return float(-np.log(1.0 - i) / 0.05)


def leverage(L: Ledger) -> np.ndarray:
    """shape (n,): equity / total assets (−inf for a bank with no assets)."""
    assets = L.total_assets()
    return np.divide(L.equity, assets, out=np.full(L.n, -np.inf), where=assets > ZERO)


def sale_units(holdings: np.ndarray, prices: np.ndarray, value: np.ndarray,
               rank: np.ndarray | None) -> np.ndarray:
    """Units to sell, shape (n, k), to raise ``value`` (n,) at ``prices`` (k,): pro
    rata by market value, or — with ``rank`` (k,) — the lowest rank first."""
    worth = holdings * prices
    total = worth.sum(axis=1)
    value = np.minimum(np.maximum(value, ZERO), total)  # (max with +0.0: exact in any dtype)
    if rank is None:
        share = np.divide(value, total, out=np.zeros_like(value), where=total > 0)
        return holdings * share[:, None]
    units = np.zeros_like(holdings)
    left = value.copy()
    for j in np.argsort(rank, kind="stable"):
        take = np.minimum(left, worth[:, j])
        units[:, j] = np.divide(take, prices[j], out=np.zeros_like(take),
                                where=prices[j] > 0)
        left -= take
    return units


def leverage_loop(L: Ledger, market: Market, cfg: ModelConfig, units_sold: np.ndarray,
                  t: int, rank: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Rounds of clearing, defaults and deleveraging on leverage (module docstring).

    Args:
        units_sold: shape (k,), units already sold this step (their impact comes
            with the first clearing).
        t: this step (the default step recorded).
        rank: shape (k,), liquidity ranks when ``sale_order`` is ``liquidity``.

    Returns:
        (units sold in the loop per bank, shape (n, k); rounds run).
    """
    n, k = L.holdings.shape
    orders = np.zeros((n, k))
    forced = np.zeros((n, k))
    fresh = np.zeros(n, dtype=bool)  # defaulted last round: liquidate now
    earlier = np.asarray(units_sold, dtype=float).copy()
    target = cfg.leverage_target
    bar = cfg.leverage_buffer if cfg.deleveraging_rule == "threshold" else target
    rounds = 0
    for _ in range(cfg.fire_sale_rounds):
        rounds += 1
        orders[fresh] = L.holdings[fresh]
        q = orders.sum(axis=0) + earlier
        earlier = np.zeros(k)
        old = L.prices.copy()
        new = np.maximum(old * np.exp(-market.impact * q / market.units_outstanding),
                         market.floor)
        L.revalue(new)
        market.set_prices(new)
        if count_nonzero(orders):
            L.sell_assets(orders, 0.5 * (old + new), kind="forced_sales")
            forced += orders
            orders = np.zeros((n, k))
        lev = leverage(L)
        active = L.active
        fresh = active & (lev < cfg.leverage_min)
        L.mark_default(fresh, t)
        acting = active & ~fresh & (lev < bar) & cfg.forced_deleveraging
        if not (count_nonzero(acting) or count_nonzero(fresh)):
            break
        amount = np.where(acting, L.total_assets() - L.equity / target, ZERO)  # (float64)
        amount = np.maximum(amount, ZERO)
        if cfg.repay_funding_first:  # cash repays the funding loan; sell what it cannot
            cash = np.maximum(L.cash, ZERO)
            pay = np.minimum(np.minimum(amount, cash), L.funding)
            L.repay_funding(pay)
            amount, cash = amount - pay, cash - pay
            raise_value = np.where(cash < amount, amount - cash, ZERO)
        else:
            raise_value = amount
        orders = sale_units(L.holdings, L.prices, raise_value, rank)
    return forced, rounds
