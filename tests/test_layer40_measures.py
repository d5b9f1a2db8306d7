"""update_infrastructure's figures against plain references: the netting
efficiency from the record stage's sheets (a whole book cleared by one CCP)
against a loan-by-loan loop in book order, and every figure against the
former per-property form."""

from __future__ import annotations

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.infrastructure.ccp import netting_efficiency
from finsim_mesa.state import Measures


def loop_efficiency(lb, c, n):
    """Multilateral netting efficiency of CCP ``c``: each member's assets and
    liabilities summed loan by loan in book order, then net; plain Python."""
    assets, liabilities, gross = [0.0] * n, [0.0] * n, []
    for i in range(len(lb)):
        if int(lb.ccp[i]) != c:
            continue
        owed = float(lb.principal[i] + lb.accrued[i])
        assets[int(lb.lender[i])] += owed
        liabilities[int(lb.borrower[i])] += owed
        gross.append(owed)
    total = float(np.array(gross).sum()) if gross else 0.0
    if total <= 0:
        return 0.0
    short = float(np.array([max(-(a - b), 0.0) for a, b in zip(assets, liabilities,
                                                                strict=True)]).sum())
    return 1.0 - short / total


@pytest.mark.parametrize("kw", [dict(n_banks=300, n_exchanges=2, n_ccps=1, rng=4),
                                dict(n_banks=300, scenario="systemic", n_exchanges=2, n_ccps=1,
                                     rng=5),
                                dict(n_banks=80, n_exchanges=3, n_ccps=2,
                                     ccp_clearing_share=0.5, rng=6)])
def test_netting_efficiency_from_the_sheets_equals_a_loop(kw):
    m = FinancialModel(**kw)
    seen_whole = False
    for _ in range(12):
        m.step()
        lb, n = m.ledger.loans, m.n_banks
        for c in m.ccps:
            want = loop_efficiency(lb, c.ccp_id, n)
            with_sheets = netting_efficiency(lb, c.ccp_id, n, m.sheets)
            assert with_sheets == want  # (bincount sums in book order, as the loop)
            # bit for bit the per-CCP property (summed from the book) and the measure
            assert with_sheets == c.netting_efficiency
            seen_whole |= bool(np.all(lb.ccp == c.ccp_id))
        assert m.measures.netting_efficiency == np.mean([c.netting_efficiency for c in m.ccps])
    assert seen_whole == (kw.get("ccp_clearing_share", 1.0) == 1.0)


def test_stale_sheets_are_not_read_for_a_partly_cleared_book():
    """With bilateral loans in the book the sheets (all loans) are not the CCP's
    book: they must not be used (garbage sheets change nothing)."""
    m = FinancialModel(n_banks=80, n_exchanges=2, n_ccps=1, ccp_clearing_share=0.5, rng=8)
    m.run_for(5)
    lb = m.ledger.loans
    assert (lb.ccp < 0).any()
    want = m.ccps[0].netting_efficiency
    m.sheets.interbank_assets = np.full(80, 1e9)
    assert netting_efficiency(lb, 0, 80, m.sheets) == want


@pytest.mark.parametrize("kw", [dict(n_banks=200, n_exchanges=2, n_ccps=1, rng=9),
                                dict(n_banks=60, scenario="systemic", n_exchanges=3, n_ccps=2,
                                     ccp_clearing_share=0.5, venue_rule="random",
                                     exchange_capacity=0.0005, rng=17)])
def test_update_infrastructure_equals_the_per_property_form(kw):
    """Each figure as the exchanges' and CCPs' properties give it (the former form)."""
    from finsim_mesa.measures import update_infrastructure

    m = FinancialModel(**kw)
    for _ in range(10):
        m.step()
        got = Measures()
        update_infrastructure(got, m.ledger, m.exchanges, m.ccps, m.router, m.t, m.sheets)
        ex, cc = m.exchanges, m.ccps
        want = {
            "exchange_utilisation": float(np.mean([e.utilisation for e in ex])),
            "congested_exchanges": int(sum(e.congested for e in ex)),
            "order_backlog": float(np.sum([e.backlog for e in ex])),
            "orders_expired": float(np.sum([e.expired for e in ex])),
            "margin_posted": float(m.ledger.margin.sum()),
            "netting_efficiency": float(np.mean([c.netting_efficiency for c in cc])),
            "default_fund_used": float(np.sum([c.fund_used for c in cc])),
            "uncovered_loss": float(np.sum([c.uncovered for c in cc])),
            "routed_transactions": m.router.transactions(m.t)}
        for k, v in want.items():
            assert getattr(got, k) == v and type(getattr(got, k)) is type(v), k
            assert getattr(m.measures, k) == v, k


def test_update_infrastructure_before_any_step_of_an_exchange():
    """An exchange without history reads 0 / False, as its properties do."""
    from finsim_mesa.measures import update_infrastructure

    m = FinancialModel(n_banks=30, n_exchanges=2, n_ccps=1, rng=3)
    for e in m.exchanges:
        e.queue.history.clear()
    got = Measures()
    update_infrastructure(got, m.ledger, m.exchanges, m.ccps, m.router, m.t)
    assert (got.exchange_utilisation, got.congested_exchanges, got.orders_expired) == (
        0.0, 0, 0.0)
    assert got.netting_efficiency == m.ccps[0].netting_efficiency
