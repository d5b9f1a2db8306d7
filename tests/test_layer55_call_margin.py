"""helper-55 (issue 15): call_margin's delta computed in place and one CCP's
need read off its column, checked bit for bit against the former form (kept
here) on twin models: margin returned, called, called from members short of
cash (fire sales and defaults), with one CCP and with two."""

from __future__ import annotations

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.accounting import values
from finsim_mesa.infrastructure import layer
from finsim_mesa.infrastructure.layer import _cells, requirements
from finsim_mesa.infrastructure.router import OUTCOMES
from finsim_mesa.market import capped_share


def former_call_margin(L, ccps, router, rate, cfg, sell, t):  # 95c95ff
    active = L.active
    node0 = cfg.n_banks + cfg.n_exchanges
    delta = (requirements(ccps, rate) - L.margin) * active[:, None]
    back = np.minimum(delta, 0.0)
    auditing = router.auditing
    if np.count_nonzero(back):
        L.move_to_ccp("margin", back)
        if auditing:
            i, c, f = _cells(back)
            returned = -back.ravel()[f]
            router.record("margin_return", node0 + c, i, returned, returned,
                          router.bank_exchange[i], c, 0.0, 0, "returned", t)
    call = np.maximum(delta, 0.0)
    need = call.sum(axis=1)
    called = float(need.sum())
    if not np.count_nonzero(need):
        return called
    short = np.maximum(need - L.cash, 0.0)
    if not np.count_nonzero(short):
        L.move_to_ccp("margin", call)
        if auditing:
            i, c, f = _cells(call)
            called_f = call.ravel()[f]
            router.record("margin_call", i, node0 + c, called_f, called_f,
                          router.bank_exchange[i], c, 0.0, 0, "posted", t)
        return called
    i, c, f = _cells(call)
    fire_price = L.prices * (1 - cfg.liquidation_discount)
    liquid = values(L.holdings, fire_price)
    sell(L.holdings * capped_share(short, liquid)[:, None], fire_price, "margin_sales")
    frac = capped_share(L.cash, need)
    pay = call * frac[:, None]
    L.move_to_ccp("margin", pay)
    outcome = np.where(frac[i] < 1 - 1e-12, OUTCOMES.index("short"), OUTCOMES.index("posted"))
    router.record("margin_call", i, node0 + c, call.ravel()[f], pay.ravel()[f],
                  router.bank_exchange[i], c, 0.0, 0, outcome, t)
    L.mark_default((need > 0) & (frac < 1 - 1e-12) & active, t)
    return called


def _twins(n_ccps: int):
    kw = dict(n_banks=80, n_exchanges=2, n_ccps=n_ccps, scenario="systemic", brain="greedy",
              agent_collect_every=0, steps=10**6, rng=11)
    if n_ccps > 1:
        kw.update(venue_rule="random", ccp_clearing_share=0.7)
    a, b = FinancialModel(**kw), FinancialModel(**kw)
    for m in (a, b):
        m.run_for(10)
        gone = np.zeros(m.ledger.n, dtype=bool)
        gone[[3, 40]] = True  # two banks in default: the active mask matters
        m.ledger.mark_default(gone, m.t)
    return a, b


def _state(m: FinancialModel) -> list[bytes]:
    L = m.ledger
    audit = [col.tobytes() for rec in m.router._audit for col in rec.values()]
    return [L.margin.tobytes(), L.cash.tobytes(), L.ccp_cash.tobytes(), L.holdings.tobytes(),
            L.active.tobytes(), np.asarray(L.prices).tobytes(), *audit]


@pytest.mark.parametrize("n_ccps", [1, 2])
@pytest.mark.parametrize("case", ["return", "call", "short"])
def test_call_margin_equals_former_form_bit_for_bit(n_ccps, case):
    a, b = _twins(n_ccps)
    assert _state(a) == _state(b)
    assert not a.ledger.active.all()
    scale = {"return": 0.5, "call": 1.5, "short": 5.0}[case]
    results = []
    for m, f in ((a, layer.call_margin), (b, former_call_margin)):
        L = m.ledger
        if case == "short":  # members short of cash: fire sales, short payments, defaults
            L.cash *= 0.05
            L.holdings *= 0.01
        called = f(L, m.ccps, m.router, m.margin_rate * scale, m.config, m._sell, m.t)
        results.append(np.float64(called).tobytes())
    assert results[0] == results[1]
    assert _state(a) == _state(b)
    if case == "short":
        assert b.ledger.margin.sum() > 0 and any(
            (rec["outcome"] == OUTCOMES.index("short")).any() for rec in b.router._audit)
