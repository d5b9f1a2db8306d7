"""Review of issue 15's loan book (helper-27): the buffers with a head offset and
the link-rank merge, on the edge cases a run's fingerprint does not reach —
row arrays replaced from outside, an append that fails after the rows moved
back to the buffers' start, copies taken while the head is off zero."""

import numpy as np
import pytest

from finsim_mesa.loans import LoanBook


def _add(lb: LoanBook, lo: int, hi: int) -> None:
    k = hi - lo
    lb.append(np.arange(lo, hi) % 7, np.arange(lo, hi) % 5 + 7, np.arange(lo, hi) + 1.0,
              np.full(k, 0.01), np.arange(lo, hi))


def _rows(lb: LoanBook) -> dict[str, list]:
    return {name: getattr(lb, name).tolist() for name in lb._FIELDS}


def _by_pair(lb: LoanBook) -> dict[tuple[int, int], float]:
    """What each (lender, borrower) pair is owed: a loop over the rows."""
    out: dict[tuple[int, int], float] = {}
    for i, j, p, a in zip(lb.lender.tolist(), lb.borrower.tolist(), lb.principal.tolist(),
                          lb.accrued.tolist(), strict=True):
        out[i, j] = out.get((i, j), 0.0) + (p + a)
    return out


def test_rows_replaced_from_outside_are_merged_and_summed_by_their_new_pairs():
    lb = LoanBook()
    lb.append(np.array([0, 1, 2]), np.array([1, 2, 0]), np.array([1.0, 2.0, 3.0]),
              np.full(3, 0.01), np.full(3, 5))
    lb.link_ids()  # ids of (0, 1), (1, 2), (2, 0)
    # a user rewires the book: same number of rows, other pairs
    lb.lender, lb.borrower = np.array([0, 0, 0]), np.array([1, 1, 2])
    src, dst = np.array([0, 0, 1, 2]), np.array([1, 2, 2, 0])
    assert lb.held_on(src, dst).tolist() == [3.0, 3.0, 0.0, 0.0]
    lb.consolidate(0)  # rows 0 and 1 are one pair now: one loan
    assert _rows(lb)["lender"] == [0, 0] and _rows(lb)["borrower"] == [1, 2]
    assert lb.principal.tolist() == [3.0, 3.0]
    assert lb.held_on(src, dst).tolist() == [3.0, 3.0, 0.0, 0.0]
    rows, cols, owed, present = lb.exposure_entries()
    by_entry = {(int(i), int(j)): float(v) for i, j, v in zip(rows, cols, owed, strict=True)}
    assert {k: v for k, v in by_entry.items() if v} == _by_pair(lb)
    assert present.tolist() == [bool(by_entry[int(i), int(j)]) for i, j in zip(rows, cols,
                                                                             strict=True)]


def test_a_replaced_row_array_in_a_book_with_a_head_offset():
    lb = LoanBook()
    _add(lb, 0, 50)
    _add(lb, 50, 90)
    lb.link_ids()
    lb.keep(np.arange(90) >= 40)  # head 40
    lb.borrower = lb.borrower[::-1].copy()  # same size, other pairs
    _add(lb, 90, 95)
    lb.consolidate(45)
    assert lb.held_on(np.array([3]), np.array([9])).tolist() == [_by_pair(lb).get((3, 9), 0.0)]
    pairs = _by_pair(lb)
    src = np.array([i for i, _ in pairs])
    dst = np.array([j for _, j in pairs])
    assert lb.held_on(src, dst).tolist() == list(pairs.values())


def _book_with_head() -> LoanBook:
    lb = LoanBook()
    _add(lb, 0, 50)  # capacity 100
    _add(lb, 50, 90)
    lb.keep(np.arange(90) >= 40)  # the first 40 repaid: head 40, 50 rows
    return lb


@pytest.mark.parametrize("bad", ["rate", "maturity"])
def test_an_append_that_fails_after_the_rows_moved_back_leaves_the_book_as_it_was(bad):
    lb = _book_with_head()
    before = _rows(lb)
    cols = dict(lender=np.zeros(12, int), borrower=np.ones(12, int), amount=np.ones(12),
                rate=np.ones(12), maturity=np.ones(12, int))
    cols[bad] = np.ones(3)  # a wrong length: the append fails after its room was made
    with pytest.raises(ValueError):
        lb.append(**cols)  # 62 rows > 100 - 40: the rows move back to the buffers' start
    assert _rows(lb) == before
    _add(lb, 90, 92)
    after = _rows(lb)
    assert {k: v[:50] for k, v in after.items()} == before
    assert after["principal"][50:] == [91.0, 92.0]


def test_copies_taken_with_a_head_offset_then_both_appended_to():
    lb = _book_with_head()
    lb.link_ids()
    snap = lb.copy()
    _add(lb, 90, 130)  # moves / grows the original's buffers
    _add(snap, 200, 215)
    snap.keep(np.arange(len(snap)) >= 10)
    _add(snap, 215, 216)
    ref = _book_with_head()
    _add(ref, 90, 130)
    assert _rows(lb) == _rows(ref)
    assert _rows(snap)["principal"] == [*range(51, 91), *range(201, 217)]
    assert lb.link_ids().tolist() == lb.links.ids(lb.lender, lb.borrower).tolist()
    assert snap.link_ids().tolist() == snap.links.ids(snap.lender, snap.borrower).tolist()
