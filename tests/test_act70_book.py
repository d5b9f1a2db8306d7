"""helper-70 (issue 15): the loan book's buffers are also held as a tuple in
``LoanBook._ROWS`` order (``_Buffers.order``), so that ``_rows`` makes the row
arrays' views with one slice and names them in one assignment, and ``append``
and ``keep`` write through the tuple. The reference: plain arrays doing the
same operations (``np.concatenate``, boolean masks), and each row array the
view of its own buffer."""

from __future__ import annotations

import numpy as np
import pytest

from finsim_mesa.loans import LoanBook

_INT = ("lender", "borrower", "maturity", "ccp", "link")


def _views_are_the_buffers(book):
    spare = book._spare
    assert len(spare.order) == len(LoanBook._ROWS)
    for i, name in enumerate(LoanBook._ROWS):
        arr = getattr(book, name)
        assert spare.order[i] is spare.arrays[name]
        assert arr is spare.views[i] and arr.base is spare.arrays[name]
        assert not arr.size or arr.__array_interface__["data"][0] == (
            spare.arrays[name].__array_interface__["data"][0] + spare.head * arr.itemsize)
        assert arr.size == len(book)
        assert arr.dtype == (np.int64 if name in _INT else np.float64)
    assert book._linked[0] is book.lender and book._linked[1] is book.borrower


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_appends_keeps_and_removals_are_those_of_plain_arrays(seed):
    rng = np.random.default_rng(seed)
    book = LoanBook()
    ref = {name: np.zeros(0, dtype=np.int64 if name in _INT else float)
           for name in LoanBook._ROWS}
    for t in range(80):
        k = int(rng.integers(0, 40))
        new = {"lender": rng.integers(0, 9, k), "borrower": rng.integers(0, 9, k),
               "principal": rng.random(k), "accrued": np.zeros(k), "rate": rng.random(k),
               "maturity": np.full(k, t + int(rng.integers(1, 5))),
               "ccp": rng.integers(-1, 2, k), "link": rng.integers(-1, 30, k)}
        book.append(new["lender"], new["borrower"], new["principal"], new["rate"],
                    new["maturity"], new["ccp"], new["link"])
        ref = {name: np.concatenate([ref[name], new[name]]) for name in ref}
        _views_are_the_buffers(book)
        book.accrued += 0.25  # in place, as interest accrues
        ref["accrued"] = ref["accrued"] + 0.25
        choice = rng.integers(0, 3)
        if choice == 0:  # the due loans first (the head moves)
            m = len(book)
            keep = np.arange(m) >= int(rng.integers(0, m + 1))
        elif choice == 1:  # anywhere (compacted in place)
            keep = rng.random(len(book)) < 0.8
        else:
            keep = None
            rows = np.flatnonzero(rng.random(len(book)) < 0.2)
            book.remove(rows)
            mask = np.ones(len(ref["lender"]), dtype=bool)
            mask[rows] = False
            ref = {name: v[mask] for name, v in ref.items()}
        if keep is not None:
            book.keep(keep)
            ref = {name: v[keep] for name, v in ref.items()}
        _views_are_the_buffers(book)
        for name in LoanBook._ROWS:
            got = book.link if name == "link" else getattr(book, name)
            assert got.tobytes() == ref[name].tobytes(), (t, name)
