"""helper-70 (issue 15): ``lending.roll_over`` takes the due loans as rows
(``observation.due_rows``) and, when a bank is out, keeps those whose two banks
are active by the status of the due loans' banks (a gather of the due rows, not
the mask over the whole book and its indices found again); with no due loan
touching a bank out (a resolved bank has none) every due row is kept as it is.

The reference is the former ``roll_over`` (c218bde), kept below: on copies of
the same ledger both must leave the same ledger, byte for byte, and return the
same columns, for nobody out, a bank out without due loans, and a bank out as
the lender or as the borrower of a due loan (the boundary: one due loan), with
the due loans first in the book or not."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from finsim_mesa import FinancialModel, lending
from finsim_mesa.fastmath import count_nonzero, flatnonzero, leading
from finsim_mesa.ledger import DEFAULTED
from finsim_mesa.loans import LoanBook
from finsim_mesa.observation import due_rows
from tests.support import ledger_bits


def former_roll_over(L, hoard, rate, spread, t, maturity):
    """lending.roll_over at c218bde."""
    lb = L.loans
    active = L.active
    if count_nonzero(active) == active.size:
        maturing = rows = due_rows(lb.maturity, t)
    else:
        maturing = lb.maturity <= t
        due = flatnonzero(maturing)
        maturing[due[~(active[lb.lender[due]] & active[lb.borrower[due]])]] = False
        rows = leading(flatnonzero(maturing))
    return L.rollover(maturing, 1.0 - hoard[lb.lender[rows]], rate + spread[lb.borrower[rows]],
                      maturity)


def _ledger(seed, **kw):
    m = FinancialModel(n_banks=40, brain="rule_based", rng=seed, **kw)
    m.run_for(12)
    return m.ledger, m.t + 1


def _same(L, t, seed, out=()):
    """Both forms on copies of ``L`` with the banks ``out`` in default."""
    a, b = copy.deepcopy(L), copy.deepcopy(L)
    for x in (a, b):
        x.status[list(out)] = DEFAULTED
    rng = np.random.default_rng(seed)
    hoard = rng.random(L.n) * (rng.random(L.n) < 0.5)
    spread = rng.random(L.n) * 1e-3
    got = lending.roll_over(a, hoard, 0.001, spread, t, t + 4)
    want = former_roll_over(b, hoard, 0.001, spread, t, t + 4)
    assert ledger_bits(a) == ledger_bits(b)
    assert list(got) == list(want)
    for key in want:
        assert got[key].dtype == want[key].dtype
        assert got[key].tobytes() == want[key].tobytes()
    return got


@pytest.mark.parametrize("kw", [dict(), dict(n_exchanges=2, n_ccps=1)])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_roll_over_is_the_former_one_with_banks_out_or_not(kw, seed):
    L, t = _ledger(seed, **kw)
    lb = L.loans
    due = flatnonzero(lb.maturity <= t)
    assert due.size > 1  # a step with loans to roll over
    banks_with_due = set(lb.lender[due].tolist()) | set(lb.borrower[due].tolist())
    idle = [i for i in range(L.n) if i not in banks_with_due]
    assert idle  # some bank has no due loan
    full = _same(L, t, seed)
    # a bank out without due loans: every due loan still rolled (same rows)
    assert _same(L, t, seed, idle[:1])["amount"].size == full["amount"].size
    lender, borrower = int(lb.lender[due[0]]), int(lb.borrower[due[-1]])
    for out in ([lender], [borrower], [lender, *idle[:2]]):
        got = _same(L, t, seed, out)
        assert got["amount"].size < full["amount"].size  # its due loans not rolled
        assert not np.isin(got["lender"], out).any() and not np.isin(got["borrower"], out).any()


def test_one_due_loan_with_its_borrower_out():
    """The boundary: one due loan, its borrower out: nothing rolled over, as before."""
    L, t = _ledger(4)
    lb = L.loans
    keep = lb.maturity > t
    keep[flatnonzero(~keep)[0]] = True  # the book keeps one due loan
    lb.keep(keep)
    (row,) = flatnonzero(lb.maturity <= t)
    assert _same(L, t, 4)["amount"].size == 1
    assert _same(L, t, 4, [int(lb.borrower[row])])["amount"].size == 0
    assert _same(L, t, 4, [int(lb.lender[row])])["amount"].size == 0


@pytest.mark.parametrize("kw", [dict(), dict(n_exchanges=2, n_ccps=1)])
def test_runs_with_the_former_roll_over_are_the_same(monkeypatch, kw):
    """Two models through defaults (the systemic scenario), one with the former
    roll_over, equal byte for byte step after step."""
    a = FinancialModel(n_banks=60, scenario="systemic", brain="rule_based", rng=6, **kw)
    b = FinancialModel(n_banks=60, scenario="systemic", brain="rule_based", rng=6, **kw)
    for _ in range(30):
        a.step()
        with monkeypatch.context() as mp:
            mp.setattr(lending, "roll_over", former_roll_over)
            b.step()
        assert ledger_bits(a.ledger) == ledger_bits(b.ledger)
    assert a.ledger.defaulted.any()


@pytest.mark.parametrize("seed", [1, 5])
def test_due_loans_not_first(seed):
    """A book whose due loans are not its first rows (due_rows gives their
    indices, not a slice): the same as the former form, banks out or not."""
    L, t = _ledger(seed)
    lb = L.loans
    perm = np.random.default_rng(seed).permutation(len(lb))
    for name in LoanBook._FIELDS:  # the rows replaced from outside, shuffled
        setattr(lb, name, getattr(lb, name)[perm].copy())
    due = flatnonzero(lb.maturity <= t)
    assert due.size > 2 and not isinstance(due_rows(lb.maturity, t), slice)
    full = _same(L, t, seed)
    for out in ([int(lb.lender[due[0]])], [int(lb.borrower[due[-1]])]):
        assert _same(L, t, seed, out)["amount"].size < full["amount"].size
