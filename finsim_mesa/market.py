"""Asset prices, fire-sale price impact, interest rates and forced deleveraging.

Price dynamics of each illiquid asset class (per step):

* exogenous: ``log p ← log p + κ (log F − log p) + σ ε`` with ``ε ~ N(0, 1)``
  drawn from the model's generator (κ = ``mean_reversion``, σ the scenario's
  volatility, ``F`` the fundamental value);
* impact of aggregate sales (Cifuentes, Ferrucci & Shin 2005, exponential
  inverse demand): ``p ← p · exp(−impact · q / Q)`` where ``q`` is the number
  of units sold this step and ``Q`` the units outstanding at the start;
* a floor at ``price_floor`` × the initial price.

A crash lowers price *and* fundamental (a lasting repricing); fire-sale
discounts are temporary and revert at rate κ.
"""

from __future__ import annotations

from math import isfinite
from typing import TYPE_CHECKING, Any

import numpy as np

from finsim_mesa.accounting import values
from finsim_mesa.config import ModelConfig
from finsim_mesa.deleveraging import leverage_loop, sale_units
from finsim_mesa.fastmath import ZERO, clip, count_nonzero, mean, positive_mask, total
from finsim_mesa.ledger import Ledger
from finsim_mesa.portfolios import class_names, depths, impacts

if TYPE_CHECKING:
    from finsim_mesa.state import StepFlows

__all__ = ["Market", "capped_share", "deleveraging_units", "fire_sale_loop", "fire_sales",
           "sell_to_market",
           "set_prices"]



def capped_share(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """The share of ``whole`` that ``part`` covers, in [0, 1], elementwise: 1 where
    ``part >= whole`` or nothing is needed (``whole <= 0``), ``max(part, 0) /
    whole`` otherwise. It divides only where ``0 < whole`` and ``part < whole``,
    so neither a zero nor a tiny denominator nor a round-off negative ``part``
    (cash of −1e-16 after a payment) can give inf or NaN."""
    out = np.ones_like(part, dtype=float)
    m = (part < whole) & (whole > 0)
    out[m] = np.maximum(part[m], 0.0) / whole[m]
    return out


def sell_to_market(ledger: Ledger, flows: StepFlows, units: np.ndarray, prices: np.ndarray,
                   kind: str) -> None:
    """Sell ``units`` (n, k) to buyers outside the system at ``prices`` (k,) and count
    them in ``flows.units_sold`` for this step's price impact (the price stage)."""
    if count_nonzero(units):
        ledger.sell_assets(units, prices, kind=kind)
        flows.units_sold += np.add.reduce(units, axis=0)  # units.sum(axis=0) without its wrapper


def set_prices(ledger: Ledger, market: Market, prices: np.ndarray) -> None:
    """New market prices, shape (k,): holdings are marked to them (P&L to equity)."""
    ledger.revalue(prices)
    market.set_prices(prices)


class Market:
    """Prices of ``k`` illiquid assets and the interbank rate.

    Args:
        cfg: model configuration (impact, floor, rates, mean reversion, asset classes).
        units_held: shape (k,), units held by all banks at the start (the market
            depth in the impact function, unless an asset class gives its own).
        prices: shape (k,), initial prices (default 1).
    """

    def __init__(self, cfg: ModelConfig, units_held: np.ndarray,
                 prices: np.ndarray | None = None) -> None:
        k = cfg.n_assets
        self.cfg = cfg
        p0 = np.ones(k) if prices is None else np.asarray(prices, dtype=float)
        self.initial_prices, self.prices, self.fundamentals = p0.copy(), p0.copy(), p0.copy()
        self.units_outstanding = depths(cfg.asset_classes, units_held)
        self.impact = impacts(cfg.asset_classes, k, cfg.price_impact)  # per class
        self.names = class_names(cfg.asset_classes, k)
        self.sale_ranks = (np.array([c.liquidity_rank for c in cfg.asset_classes])
                           if cfg.sale_order == "liquidity" and cfg.asset_classes else None)
        self.last_return = 0.0
        self.rate = cfg.base_rate

    @property
    def floor(self) -> np.ndarray:
        """shape (k,): lowest admissible prices."""
        return self.cfg.price_floor * self.initial_prices

    @property
    def price_index(self) -> float:
        """Mean price relative to the initial price (1 = unchanged)."""
        p, p0 = self.prices, self.initial_prices
        if p.size == 1 == p0.size and p0.item():  # one class: the one quotient, in Python
            # floats (NumPy's division; its sum of one term adds it to +0.0: a zero's sign)
            return p.item() / p0.item() + 0.0  # (a zero p0: NumPy's inf or NaN, below)
        return mean(p / p0)

    def exogenous_prices(self, volatility: float, rng: np.random.Generator) -> np.ndarray:
        """Next prices from mean reversion and volatility, shape (k,) (not applied)."""
        one = self.prices.size == 1  # (one draw: the value standard_normal(1) holds, as a float)
        eps = rng.standard_normal() if one else rng.standard_normal(self.prices.size)
        logp = np.log(self.prices)
        if one and self.fundamentals.size == 1:  # one class: the same arithmetic on
            # Python floats (IEEE doubles, the same operations in the same order as
            # NumPy's elementwise ones); NumPy's log and exp of the arrays as below
            x = logp.item()
            logp[0] = x + (self.cfg.mean_reversion * (np.log(self.fundamentals).item() - x)
                           + volatility * eps)
        else:
            logp += self.cfg.mean_reversion * (np.log(self.fundamentals) - logp) + volatility * eps
        return np.maximum(np.exp(logp), self.floor)

    def crash_prices(self, magnitude: float, assets: np.ndarray | None = None) -> np.ndarray:
        """Prices after a crash of ``magnitude`` in [0, 1); also lowers fundamentals."""
        factor = np.ones(self.prices.size)
        factor[slice(None) if assets is None else assets] = 1.0 - magnitude
        self.fundamentals = self.fundamentals * factor
        return np.maximum(self.prices * factor, self.floor)

    def impact_prices(self, units_sold: np.ndarray) -> np.ndarray:
        """Prices after selling ``units_sold`` (k,) this step, shape (k,) (not applied)."""
        frac = np.asarray(units_sold, dtype=float) / self.units_outstanding
        return np.maximum(self.prices * np.exp(-self.impact * frac), self.floor)

    def set_prices(self, prices: np.ndarray) -> None:
        """Accept new prices (the ledger must be revalued with the same prices)."""
        old = self.price_index
        self.prices = np.asarray(prices, dtype=float).copy()
        self.last_return = float(np.log(max(self.price_index, 1e-12) / max(old, 1e-12)))

    #: the state's arrays (numbers: a step's snapshot copies their bytes, stepcopy.StepNumbers)
    _ARRAYS = ("prices", "fundamentals", "units_outstanding", "initial_prices")

    def snapshot(self) -> dict[str, Any]:
        """Copies of the market's state."""
        return {**{key: getattr(self, key).copy() for key in self._ARRAYS},
                "last_return": self.last_return, "rate": self.rate}

    def restore(self, state: dict[str, Any]) -> None:
        """Put a :meth:`snapshot` back."""
        for key in self._ARRAYS:
            setattr(self, key, state[key].copy())
        self.last_return, self.rate = state["last_return"], state["rate"]

    def interbank_rate(self, stress: float) -> float:
        """Interbank rate per step at market ``stress`` in [0, 1]."""
        # NumPy's clip of a float, min(max(x, lo), hi) (NaN kept), without NumPy scalars
        self.rate = self.cfg.base_rate + self.cfg.rate_stress_spread * min(max(float(stress),
                                                                              0.0), 1.0)
        return self.rate


def deleveraging_units(
    equity: np.ndarray, rwa: np.ndarray, holdings: np.ndarray, prices: np.ndarray,
    target: float, eligible: np.ndarray, rank: np.ndarray | None = None,
) -> np.ndarray:
    """Units each bank must sell to bring equity / RWA back to ``target``.

    Selling value ``x`` of illiquid assets (risk weight 1) for cash (weight 0)
    lowers RWA by ``x``: the ratio reaches ``target`` when
    ``x = RWA − equity / target``. Banks with non-positive equity sell all.
    Sales are pro rata across asset classes (or by ``rank``, lowest first).
    Returns shape (n, k).
    """
    worth = values(holdings, prices)
    need = np.where(equity > 0, rwa - equity / target, worth)
    need = clip(need, 0.0, worth) * eligible
    if rank is not None:  # the most liquid classes first
        return sale_units(holdings, prices, need, rank)
    frac = np.divide(need, worth, out=np.zeros_like(need), where=worth > 0)
    return holdings * frac[:, None]


def fire_sales(ledger: Ledger, market: Market, cfg: ModelConfig, units_sold: np.ndarray,
               t: int) -> tuple[np.ndarray, int]:
    """This step's fire sales under ``cfg.deleveraging_rule``: ``capital`` runs
    :func:`fire_sale_loop`, ``threshold`` and ``leverage_targeting`` run
    :func:`finsim_mesa.deleveraging.leverage_loop`. Returns (units sold per bank
    (n, k), rounds)."""
    if cfg.deleveraging_rule == "capital":
        return fire_sale_loop(ledger, market, cfg, units_sold, t)
    return leverage_loop(ledger, market, cfg, units_sold, t, market.sale_ranks)


def fire_sale_loop(
    ledger: Ledger, market: Market, cfg: ModelConfig, units_sold: np.ndarray, t: int = 0,
) -> tuple[np.ndarray, int]:
    """Price impact of this step's sales, then rounds of forced deleveraging on
    risk-weighted capital (the Cifuentes–Ferrucci–Shin spiral).

    Each round the market clears: prices fall with all units sold so far this
    step (``p = p_start · exp(−impact · Σq / Q)``), holdings are marked to the
    new prices, and the orders placed in the previous round execute at the mid
    price of this clearing, ``(p_old + p_new) / 2`` — so a seller bears part of
    the impact of its own sale, as in the reference stress-test model (selling
    at the price before one's own impact let a bank that sold everything escape
    the fall it caused). Then banks below ``capital_requirement`` place orders
    to get back to ``capital_requirement × (1 + deleveraging_buffer)`` at the
    new prices; a bank in breach with no equity left fails instead (resolution
    sells its assets).

    Args:
        units_sold: shape (k,), units already sold this step (voluntary and
            liquidations), before any impact.
        t: this step (the default step recorded).

    Returns:
        (forced units sold per bank, shape (n, k); number of deleveraging rounds).
    """
    start_prices = market.prices.copy()
    sold = np.asarray(units_sold, dtype=float).copy()  # units of each class, all rounds
    forced = np.zeros(ledger.holdings.shape)  # (np.zeros_like's dtype and order: float, C)
    orders = None  # placed in the last round, executed in this one
    target = cfg.capital_requirement * (1.0 + cfg.deleveraging_buffer)
    rounds = 0
    interbank = None  # the lenders' interbank assets: no round changes the loan book
    for _ in range(cfg.fire_sale_rounds + 1):
        if orders is not None:
            sold += np.add.reduce(orders, axis=0)  # orders.sum(axis=0), without its wrapper
            old = ledger.prices.copy()
        if count_nonzero(sold):
            prices = np.maximum(start_prices * np.exp(-market.impact * sold
                                                      / market.units_outstanding), market.floor)
        else:  # nothing sold: exp(-impact · ±0 / depth) is 1 (finite impacts, depths > 0)
            prices = np.maximum(start_prices, market.floor)
        if orders is None and _unchanged(ledger, market, prices):  # (nothing sold yet)
            market.last_return = 0.0  # (log(x / x) for the finite price index x)
        else:
            ledger.revalue(prices)
            market.set_prices(prices)
        if orders is not None:  # (their sum was > 1e-12: some are not 0)
            ledger.sell_assets(orders, 0.5 * (old + prices), kind="forced_sales")
            forced += orders
            orders = None
        if not cfg.forced_deleveraging or rounds == cfg.fire_sale_rounds:
            break
        if interbank is None:
            interbank = ledger.interbank_assets()
        rwa = ledger.risk_weighted_assets(cfg.interbank_risk_weight, interbank)
        eq = ledger.equity
        # every RWA > 0 (found by the minimum in a large system, else by the mask's
        # count): the quotient without the mask (the same values, ~1 us less at 30 banks)
        if (pos := positive_mask(rwa)) is None:
            ratio = eq / rwa
        else:
            ratio = np.empty(eq.shape)  # np.full_like(eq, np.inf) in two C calls
            ratio.fill(np.inf)
            np.divide(eq, rwa, out=ratio, where=pos)  # (ZERO: 0.0, converted once)
        breach = ledger.active & (ratio < cfg.capital_requirement)
        if not count_nonzero(breach):  # nobody below the requirement: none fails or sells
            break
        ledger.mark_default(breach & (eq <= ZERO), t)
        breach &= eq > ZERO
        if not count_nonzero(breach):
            break
        orders = deleveraging_units(eq, rwa, ledger.holdings, prices, target, breach,
                                    market.sale_ranks)
        if total(orders) <= 1e-12:
            break
        rounds += 1
    return forced, rounds


def _unchanged(ledger: Ledger, market: Market, prices: np.ndarray) -> bool:
    """Whether ``ledger.revalue(prices)`` and ``market.set_prices(prices)`` would change no
    bit but the market's last return (to 0.0): one class, ``prices`` the bits both hold, a
    finite price index, finite holdings (each change is holdings x +0.0 = ±0.0) and no
    equity of -0.0 (-0.0 + 0.0 is +0.0; any other equity plus ±0.0 is itself)."""
    b, eq = prices.tobytes(), ledger.equity
    return (prices.size == 1 and b == ledger.prices.tobytes() == market.prices.tobytes()
            and isfinite(market.price_index) and isfinite(total(ledger.holdings))
            and (not count_nonzero(z := eq == ZERO) or not count_nonzero(np.signbit(eq[z]))))
