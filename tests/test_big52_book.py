"""helper-52 (issue 15, 100,000 banks): ``LoanBook.consolidate`` compares each
row's rate (and, when the block holds several maturities, its maturity) with
its group's read through the groups' own terms (``rate[first][inverse]``)
instead of through each row's group's first row (``rate[first[inverse]]``):
one gather less over the block, the same comparisons.

The reference is the former ``consolidate`` (95c95ff), kept below; both run on
copies of the same books, which must come out equal byte for byte: blocks
with and without merges, with CCPs, groups that mix rates or maturities
(left as they are), several maturities without mixing, NaN rates, linked
(the mark path) and unlinked rows (the sort path).
"""

from __future__ import annotations

import numpy as np
import pytest

from finsim_mesa.fastmath import count_nonzero
from finsim_mesa.loans import LoanBook


def former_consolidate(self: LoanBook, start: int) -> None:
    if len(self) - start < 2:
        return
    t = slice(start, None)
    groups = self._groups(t)
    if groups is None:
        return
    first, inverse = groups
    rate, mat = self.rate[t], self.maturity[t]
    lead = first[inverse]  # each row's group's first row
    if count_nonzero(rate != rate[lead]) or (
            mat.min() != mat.max() and count_nonzero(mat != mat[lead])):
        return
    merged = {
        "lender": self.lender[t][first], "borrower": self.borrower[t][first],
        "rate": rate[first], "maturity": mat[first], "ccp": self.ccp[t][first],
        "link": self.link_ids(assign=False)[t][first],
        "principal": np.bincount(inverse, weights=self.principal[t]),
        "accrued": np.bincount(inverse, weights=self.accrued[t]),
    }
    bufs, head = self._room(len(self))
    lo, hi = head + start, head + start + first.size
    for name in self._ROWS:
        bufs[name][lo:hi] = merged[name]
    self._rows(start + first.size)


def _state(book: LoanBook) -> tuple:
    return tuple((getattr(book, k).dtype.str, getattr(book, k).tobytes()) for k in book._ROWS)


def _book(seed: int, kind: str) -> tuple[LoanBook, int]:
    rng = np.random.default_rng(seed)
    lb = LoanBook()
    m0, k = 30, 200
    lb.append(rng.integers(0, 8, m0), rng.integers(0, 8, m0), rng.random(m0),
              np.full(m0, 0.02), 4)
    lender, borrower = rng.integers(0, 8, k), rng.integers(0, 8, k)
    rate = 0.01 + 0.001 * borrower  # one rate per borrower: pairs alike
    maturity = np.full(k, 9) if kind != "several" else 9 + (lender + borrower) % 3
    ccp = np.where(rng.random(k) < 0.3, rng.integers(0, 3, k), -1) if seed % 3 else None
    j = int(rng.integers(1, k))  # row j repeats row 0's pair
    lender[j], borrower[j] = lender[0], borrower[0]
    if ccp is not None:
        ccp[j] = ccp[0]
    rate[j] = rate[0]
    maturity[j] = maturity[0]
    if kind == "rate":
        rate[j] += 1e-12
    elif kind == "maturity":
        maturity[j] += 1
    elif kind == "nan":  # NaN differs from itself: its group is not merged, nor the block
        rate[borrower == borrower[0]] = np.nan
    lb.append(lender, borrower, rng.random(k) * 10, rate, maturity, ccp)
    lb.accrued[m0:] = rng.random(k)
    if seed % 2:
        lb.link_ids()  # linked rows: the mark path; unlinked: the sort path
    return lb, m0


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("kind", ["alike", "several", "rate", "maturity", "nan"])
def test_consolidate_is_the_former_one(seed, kind):
    book, start = _book(seed, kind)
    want = book.copy()
    former_consolidate(want, start)
    before = _state(book)
    book.consolidate(start)
    assert _state(book) == _state(want)
    merged = len(book) < len(before[0][1]) // 8
    assert merged == (kind in ("alike", "several"))  # the mixed blocks stay as they were
    if not merged:
        assert _state(book) == before


def test_consolidate_in_a_model_is_the_former_one(monkeypatch):
    from finsim_mesa import FinancialModel

    kw = dict(n_banks=120, scenario="systemic", rng=9, agent_collect_every=1)
    new = FinancialModel(**kw)
    new.run_for(25)
    monkeypatch.setattr(LoanBook, "consolidate", former_consolidate)
    old = FinancialModel(**kw)
    old.run_for(25)
    assert _state(new.ledger.loans) == _state(old.ledger.loans)
    assert new.datacollector.get_model_vars_dataframe().equals(
        old.datacollector.get_model_vars_dataframe())
