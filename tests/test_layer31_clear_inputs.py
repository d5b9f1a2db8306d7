"""The clear stage with CCPs: the clearing system handed to Eisenberg–Noe is
the one the book describes, checked loan by loan against a plain reference
(every due loan cleared and nobody in resolution — the shortcut — and the
general cases: bilateral loans beside cleared ones, banks in resolution)."""

from __future__ import annotations

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa import resolution as R


def _reference_legs(lb, due, n):
    """(debtor, creditor, amount) of each due loan's legs, loop by loop: a
    bilateral loan is one leg, a cleared one two (borrower -> CCP, CCP -> lender)."""
    bil, borrower_legs, ccp_legs = [], [], []
    owed = lb.principal + lb.accrued
    for j in np.flatnonzero(due):
        b, l_, c = int(lb.borrower[j]), int(lb.lender[j]), int(lb.ccp[j])
        if c < 0:
            bil.append((b, l_, owed[j]))
        else:
            borrower_legs.append((b, n + c, owed[j]))
            ccp_legs.append((n + c, l_, owed[j]))
    return bil + borrower_legs + ccp_legs


CASES = [
    dict(n_banks=40, n_exchanges=2, n_ccps=1, brain="rule_based", rng=3),  # the shortcut
    dict(n_banks=40, n_exchanges=3, n_ccps=2, ccp_clearing_share=0.5, brain="greedy",
         scenario="systemic", rng=9),  # bilateral beside cleared, defaults
    dict(n_banks=60, n_exchanges=2, n_ccps=1, scenario="systemic", brain="random", rng=4),
]


@pytest.mark.parametrize("kw", CASES)
def test_ccp_clearing_inputs_match_a_loan_by_loan_reference(kw, monkeypatch):
    m = FinancialModel(steps=10**9, **kw)
    n, C = m.n_banks, kw["n_ccps"]
    seen = {"shortcut": 0, "general": 0, "resolving": 0}
    real_clear_due, real_clear_legs = R.clear_due, R.clear_legs
    call = {}

    def spy_due(L, cfg, due, ext_due, resolving, *args):
        lb = L.loans
        call["legs"] = _reference_legs(lb, due, n)
        call["owed"] = (lb.principal + lb.accrued)[due].copy()
        call["resolving"] = resolving.copy()
        call["ext_due"] = ext_due.copy()
        call["L"], call["cfg"] = L, cfg
        cleared = lb.ccp[due] >= 0
        key = "shortcut" if cleared.all() and not resolving.any() else "general"
        seen[key] += 1
        seen["resolving"] += int(resolving.any())
        router = m.router
        before = router.transactions()
        borrower, lender = lb.borrower[due].copy(), lb.lender[due].copy()
        out = real_clear_due(L, cfg, due, ext_due, resolving, *args)
        rows = router.audit().iloc[before:]
        rows = rows[rows.kind == "repayment"]  # one per due loan, in book order
        assert rows.sender.tolist() == borrower.tolist()
        assert rows.receiver.tolist() == lender.tolist()
        amount, owed = rows.amount.to_numpy(), call["owed"]
        ref = np.where(amount >= owed * (1 - 1e-12), "paid",
                       np.where(amount > 0, "partial", "unpaid"))
        plain = ~resolving[borrower]  # (a member in resolution: its leg after set-off)
        assert rows.outcome.astype(str).to_numpy()[plain].tolist() == ref[plain].tolist()
        return out

    def spy_legs(rows, cols, vals, e, ext, alpha, beta, forced):
        L, cfg, res = call["L"], call["cfg"], call["resolving"]
        want = call["legs"]
        got = list(zip(rows.tolist(), cols.tolist(), vals.tolist(), strict=True))
        assert [(a, b) for a, b, _ in got] == [(a, b) for a, b, _ in want]
        for (a, _, v), (_, _, w) in zip(got, want, strict=True):
            if a < n and res[a]:  # a member in resolution: its leg after set-off
                assert -1e-12 <= v <= w * (1 + 1e-12)
            else:
                assert v == w
        liquid = L.holdings @ (L.prices * (1 - cfg.liquidation_discount))
        assert np.allclose(e[:n], np.maximum(L.cash + liquid, 0.0), rtol=1e-12, atol=0)
        for c in range(C):  # capital, survivors' fund, what was seized from defaulters
            ref = (L.ccp_capital[c] + L.fund[~res, c].sum()
                   + (L.margin[res, c] + L.fund[res, c]).sum())
            assert e[n + c] == pytest.approx(max(ref, 0.0), rel=1e-12, abs=1e-9)
        assert ext.tolist() == call["ext_due"].tolist() + [0.0] * C
        assert forced.tolist() == res.tolist() + [False] * C
        assert np.all(np.asarray(alpha)[n:] == 1) and np.all(np.asarray(beta)[n:] == 1)
        assert np.all(np.asarray(alpha)[:n] == cfg.default_cost_alpha)
        assert np.all(np.asarray(beta)[:n] == cfg.default_cost_beta)
        return real_clear_legs(rows, cols, vals, e, ext, alpha=alpha, beta=beta, forced=forced)

    monkeypatch.setattr(R, "clear_due", spy_due)
    monkeypatch.setattr(R, "clear_legs", spy_legs)
    # the general path's inputs: settle_in_full (which now takes most clearings with
    # CCPs too, tested against clear_due in test_layer43_settle.py) is not tried
    monkeypatch.setattr(R, "settle_in_full", lambda *a: False)
    for _ in range(25):
        if not m.running:
            break
        m.step()
    assert seen["shortcut"] + seen["general"] > 0
    if kw.get("ccp_clearing_share", 1.0) < 1.0:
        assert seen["general"] > 0  # the general path ran where it must
    else:
        assert seen["shortcut"] > 0  # the shortcut ran where it applies
    if kw.get("scenario") == "systemic":
        assert seen["resolving"] > 0


@pytest.mark.parametrize("n_ccps", [1, 2])
def test_waterfalls_of_loans_paid_in_full_take_nothing(n_ccps):
    """What the clear stage skips when every borrower paid in full and nobody is
    in resolution: the waterfalls would find no loss, use no capital, charge no
    member and record nothing."""
    from finsim_mesa.infrastructure import layer

    m = FinancialModel(n_banks=30, n_exchanges=2, n_ccps=n_ccps, rng=5)
    m.run_for(3)
    L, lb = m.ledger, m.ledger.loans
    cleared = lb.ccp >= 0
    owed = lb.principal + lb.accrued
    zeros = np.zeros((L.n, n_ccps))
    before = [(len(c.waterfalls), c.capital_used, c.fund_used) for c in m.ccps]
    capital, charges = layer.run_waterfalls(L, m.ccps, cleared, owed.copy(), zeros, zeros,
                                            np.zeros(L.n, dtype=bool), m.t, owed)
    assert cleared.any()
    assert capital.tolist() == [0.0] * n_ccps and not charges.any()
    assert [(len(c.waterfalls), c.capital_used, c.fund_used) for c in m.ccps] == before
