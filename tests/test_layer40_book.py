"""cleared_by_ccp's whole-book test read off the CCP column's extremes, and the
booked orders' one maturity, each against a plain reference."""

from __future__ import annotations

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.infrastructure.ccp import cleared_by_ccp
from finsim_mesa.ledger import Ledger
from finsim_mesa.loans import LoanBook


def loop(book, ids, n):
    """What each member owes each CCP in ``ids``, loan by loan in book order."""
    out = np.zeros((n, len(ids)))
    for r in range(len(book)):
        c = int(book.ccp[r])
        if c in ids:
            out[int(book.borrower[r]), ids.index(c)] += book.principal[r] + book.accrued[r]
    return out


@pytest.mark.parametrize("n_ccps", [0, 1, 2, 3])
@pytest.mark.parametrize("case", ["all", "some", "beyond", "empty"])
def test_cleared_by_ccp_equals_a_loop(n_ccps, case):
    rng = np.random.default_rng(n_ccps * 10 + len(case))
    n, m = 9, 0 if case == "empty" else 300
    lo = 0 if case == "all" else -1
    hi = n_ccps + (1 if case == "beyond" else 0)  # "beyond": ids no CCP has (C)
    ccp = rng.integers(lo, max(hi, lo + 1), m) if n_ccps or case != "all" else np.full(m, 0)
    book = LoanBook(lender=rng.integers(0, n, m), borrower=rng.integers(0, n, m),
                    principal=rng.exponential(1.0, m), accrued=rng.exponential(0.01, m),
                    rate=np.full(m, 0.01), maturity=np.full(m, 3), ccp=ccp)
    ids = list(range(n_ccps))
    got = cleared_by_ccp(book, ids, n)
    assert got.shape == (n, n_ccps)
    assert got.tobytes() == loop(book, ids, n).tobytes()


def test_booked_orders_get_np_fulls_maturity(monkeypatch):
    """The booking passes one maturity for all: the book holds what
    np.full(k, t + loan_maturity) gave (values and dtype)."""
    seen = []
    original = Ledger.lend

    def spy(self, lender, borrower, amount, rate, maturity, ccp=None, link=None):
        start = len(self.loans)
        original(self, lender, borrower, amount, rate, maturity, ccp, link)
        seen.append((maturity, self.loans.maturity[start:].copy()))

    monkeypatch.setattr(Ledger, "lend", spy)
    m = FinancialModel(n_banks=100, n_exchanges=2, n_ccps=1, rng=51)
    m.run_for(3)
    assert seen
    t0 = 1
    for t, (maturity, rows) in enumerate(seen, start=t0):
        want = np.full(rows.size, t + m.config.loan_maturity)
        assert np.ndim(maturity) == 0 and rows.dtype == want.dtype
        # consolidation may merge rows, never change a maturity
        assert set(rows.tolist()) <= set(want.tolist())
