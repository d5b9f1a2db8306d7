"""helper-52 (issue 15, 100,000 banks): ``Ledger.rollover`` takes the renewed
loans' columns as copies of a slice when every due loan is rolled over and the
due loans are the book's first rows (the usual case), instead of gathering
them by index.

The reference is the former ``rollover`` (95c95ff), kept below: on copies of
the same ledger both must return the same columns (names, order, dtypes,
bytes) and leave the same book, for masks of the first rows and of rows
elsewhere, shares of 0 (loans not rolled), 1 and between, given as one number,
per loan of the book or per rolled loan, with and without CCPs, and an empty
mask; the columns returned must not share memory with the book (they are read
after it changes).
"""

from __future__ import annotations

import numpy as np
import pytest

from finsim_mesa import fastmath
from finsim_mesa.ledger import Ledger
from finsim_mesa.loans import masked_terms


def former_rollover(self: Ledger, mask, share, rate, maturity):
    lb = self.loans
    rows, m = fastmath.flatnonzero(mask), len(lb)
    at = fastmath.leading(rows)
    share = fastmath.clip(masked_terms(share, rows, m, "share"), 0.0, 1.0)
    rate = masked_terms(rate, rows, m, "rate")
    roll = lb.owed_at(at) * share
    rolled = fastmath.flatnonzero(roll > 0)
    pick = rows[rolled]
    out = {"lender": lb.lender[pick], "borrower": lb.borrower[pick], "amount": roll[rolled],
           "ccp": lb.ccp[pick]}
    if not pick.size:
        return out
    lb.principal[at] *= (kept := 1.0 - share)
    lb.accrued[at] *= kept
    lb.append(out["lender"], out["borrower"], out["amount"], rate[rolled],
              maturity, out["ccp"], lb.link_ids(False)[pick])
    return out


def _ledger(seed: int, ccp: bool) -> Ledger:
    rng = np.random.default_rng(seed)
    n, m = 12, 60
    L = Ledger(rng.random(n) * 100, rng.random((n, 1)), rng.random(n) * 50, np.ones(1))
    mat = np.sort(rng.integers(3, 8, m))  # maturity order: the due loans come first
    L.loans.append(rng.integers(0, n, m), rng.integers(0, n, m), rng.random(m) * 10,
                   rng.random(m) * 0.01, mat,
                   np.where(rng.random(m) < 0.4, rng.integers(0, 2, m), -1) if ccp else None)
    L.loans.accrued[:] = rng.random(m)
    L.loans.link_ids()
    return L


def _state(L: Ledger) -> tuple:
    lb = L.loans
    return tuple((getattr(lb, k).dtype.str, getattr(lb, k).tobytes()) for k in lb._ROWS)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ccp", [False, True])
@pytest.mark.parametrize("where", ["first", "elsewhere", "none"])
@pytest.mark.parametrize("shares", ["one", "ones", "zeros", "some", "book"])
def test_rollover_is_the_former_one(seed, ccp, where, shares):
    new = _ledger(seed, ccp)
    rng = np.random.default_rng(100 + seed)
    m = len(new.loans)
    if where == "first":
        mask = new.loans.maturity <= 4
    elif where == "elsewhere":
        mask = rng.random(m) < 0.3
        mask[0] = False  # (not the first rows)
    else:
        mask = np.zeros(m, dtype=bool)
    k = int(np.count_nonzero(mask))
    share = {"one": 0.7, "ones": np.ones(k), "zeros": np.zeros(k),
             "some": np.where(rng.random(k) < 0.5, 0.0, rng.random(k)),
             "book": rng.random(m)}[shares]
    rate = rng.random(k) * 0.02 if seed % 2 else 0.015
    old = _ledger(seed, ccp)
    want = former_rollover(old, mask, share, rate, 20)
    got = new.rollover(mask, share, rate, 20)
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype
        assert got[name].tobytes() == want[name].tobytes()
        assert not any(np.shares_memory(got[name], getattr(new.loans, row))
                       for row in new.loans._ROWS)
    assert _state(new) == _state(old)
    kept = {name: a.copy() for name, a in got.items()}
    new.loans.keep(np.arange(len(new.loans)) % 2 == 0)  # the book changes (compacted) ...
    new.loans.append(np.array([1]), np.array([2]), np.array([3.0]), np.array([0.1]), 30)
    assert all(got[k].tobytes() == kept[k].tobytes() for k in kept)  # ... the columns not


def test_the_usual_case_is_the_one_taken():
    L = _ledger(0, False)
    mask = L.loans.maturity <= 4
    assert isinstance(fastmath.leading(fastmath.flatnonzero(mask)), slice) and mask.any()
