"""The settle stage's shortcuts in the infrastructure layer, each against the
general computation it replaces."""

from __future__ import annotations

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.infrastructure.layer import stable_order


@pytest.mark.parametrize(("n", "size"), [(1, 5), (7, 0), (1000, 1700), (65536, 3000),
                                         (65537, 3000), (200_000, 5000)])
def test_stable_order_is_numpys_stable_argsort(n, size):
    """Radix sort of 16-bit keys (n <= 65536) or the 64-bit merge sort beyond:
    the permutation np.argsort(kind="stable") gives, ties in input order."""
    rng = np.random.default_rng(n + size)
    ids = rng.integers(0, n, size)
    if size:
        ids[: size // 3] = n - 1  # many ties, and the largest id (65535 / 65536)
    got = stable_order(ids, n)
    want = np.argsort(ids, kind="stable")
    assert got.tolist() == want.tolist()
    # and against a plain reference: sorted by key, then by position
    assert got.tolist() == sorted(range(size), key=lambda j: (int(ids[j]), j))


def test_margin_calls_everybody_can_pay_and_some_cannot():
    """call_margin's shortcut (nobody short: every call paid in full, 'posted')
    and its general path (short members sell, pay part, default) record what a
    plain reading of the ledger gives: margin after = the requirement for those
    who paid, the audit's received = the call for 'posted' rows."""
    from finsim_mesa.infrastructure import layer

    for cash_scale, expect_short in ((1e6, False), (0.0, True)):
        m = FinancialModel(n_banks=40, n_exchanges=2, n_ccps=1, rng=6)
        m.run_for(2)
        L = m.ledger
        L.cash[:] = cash_scale  # plenty for every call, or none
        if expect_short:
            L.holdings *= 0.0  # nothing to sell: short members pay what cash they have
        rate = min(1.0, 2 * m.margin_rate)  # margin rate up: calls for cleared borrowers
        req = layer.requirements(m.ccps, rate)
        before = len(m.router._audit)
        margin0 = L.margin.copy()
        layer.call_margin(L, m.ccps, m.router, rate, m.config, m._sell, m.t)
        new = m.router._audit[before:]
        calls = [r for r in new if r["kind"][0] == 3]
        assert calls, "margin was called"
        rows = {k: np.concatenate([r[k] for r in calls]) for k in calls[0]}
        posted = rows["outcome"] == 7
        if expect_short:
            assert (~posted).any() and L.defaulted.any()
        else:
            assert posted.all()
            called = (req - margin0)[:, 0]
            members = rows["sender"]
            assert np.array_equal(rows["amount"], called[members])
            assert np.array_equal(rows["received"], rows["amount"])
            assert np.array_equal(L.margin[members, 0], margin0[members, 0] + called[members])
