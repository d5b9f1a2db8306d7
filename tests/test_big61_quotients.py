"""helper-61: plain quotients where every divisor is positive — the sheets'
capital ratio (every bank active, RWA > 0) and the fire-sale loop's capital
ratio (RWA > 0), from 4,096 banks — against the former masked forms kept here,
bit for bit, with defaulted banks, zero, negative and NaN divisors (small
models with the threshold lowered, and one of 5,000 banks as it is)."""

import numpy as np
import pytest

from finsim_mesa import FinancialModel, fastmath, measures
from finsim_mesa.fastmath import ZERO, count_nonzero, total
from finsim_mesa.market import deleveraging_units, fire_sale_loop
from finsim_mesa.state import Sheets


def _former_fire_sale_loop(
    ledger, market, cfg, units_sold, t=0,
):
    """market.fire_sale_loop at 7c9fe3b (the former form)."""
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
        ratio = np.empty(eq.shape)  # np.full_like(eq, np.inf) in two C calls
        ratio.fill(np.inf)
        np.divide(eq, rwa, out=ratio, where=rwa > ZERO)  # (ZERO: 0.0, converted once)
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


def _model(n=200, seed=3, **kw):
    m = FinancialModel(n_banks=n, scenario="systemic", brain="rule_based", rng=seed,
                       agent_collect_every=0, **kw)
    m.run_for(3)
    return m


def _edit(m, kind):
    L = m.ledger
    if kind == "defaults":
        L.status[[1, 5, 9]] = 1
    elif kind == "zero":
        L.holdings[4] = 0.0
        L.other_assets[4] = 0.0
        L.loans.principal[L.loans.lender == 4] = 0.0
        L.loans.accrued[L.loans.lender == 4] = 0.0
        L.equity[4] = -1.0  # no RWA, no equity: no breach (not a default here)
    elif kind == "negative":
        L.other_assets[6] = -1e9
        L.equity[6] = -1.0  # RWA < 0: no breach (-1 / -1e9 would be one)
    elif kind == "nan":
        L.other_assets[8] = np.nan


KINDS = ["none", "defaults", "zero", "negative", "nan"]


@pytest.fixture(params=["lowered", "as_is"])
def size(request, monkeypatch):
    """Small models with the plain quotients' threshold lowered, or 5,000 banks."""
    if request.param == "lowered":
        monkeypatch.setattr(fastmath, "LARGE", 1)  # (fastmath.positive_throughout's)
        return 300
    return 5000


@pytest.mark.parametrize("kind", KINDS)
def test_capital_ratio_is_the_masked_quotient(kind, size):
    m = _model(size)
    _edit(m, kind)
    L = m.ledger
    s = Sheets()
    measures.refresh_sheets(s, L, m.config.interbank_risk_weight)
    rwa = s.rwa
    want = np.divide(L.equity, rwa, out=np.zeros(L.n), where=(rwa > ZERO) & L.active)
    assert s.capital_ratio.tobytes() == want.tobytes()
    assert (kind == "none") == bool(np.all(rwa > 0) and not count_nonzero(L.status))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("requirement", [0.06, 0.11])
def test_fire_sale_loop_is_the_former(kind, requirement, size):
    """The whole loop (defaults marked, orders, prices) as the former gives it."""
    m = _model(size, 4, capital_requirement=requirement)
    _edit(m, kind)
    if requirement > 0.1:  # banks in breach: orders, rounds, defaults
        m.ledger.equity[10:40] *= np.linspace(-0.2, 0.8, 30)
    snap = m.snapshot()
    sold = np.array([5.0])
    got = fire_sale_loop(m.ledger, m.market, m.config, sold, m.t)
    got_state = (m.ledger.snapshot(), m.market.snapshot())
    m.restore(snap)
    want = _former_fire_sale_loop(m.ledger, m.market, m.config, sold, m.t)
    want_state = (m.ledger.snapshot(), m.market.snapshot())
    assert got[0].tobytes() == want[0].tobytes() and got[1] == want[1]
    for a, b in zip(got_state, want_state, strict=True):
        for k in a:
            if isinstance(a[k], np.ndarray):
                assert a[k].tobytes() == b[k].tobytes(), k
    assert requirement < 0.1 or got[1] > 0
