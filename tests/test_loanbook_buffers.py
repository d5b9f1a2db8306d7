"""The loan book's capacity buffers are not state: whatever happens to an append,
the book's rows are its row arrays (issue 15's fast room check included)."""

import numpy as np
import pytest

from finsim_mesa.loans import LoanBook


def _one(v):
    return np.array([v])


def test_an_append_that_fails_after_the_buffers_grew_loses_no_later_update():
    """An append whose columns do not fit raises after ``_room`` grew the buffers;
    the book keeps its rows, and an in-place change of a row array afterwards
    (``accrue_interest`` adds to ``accrued``) survives the next append."""
    book = LoanBook()
    for _ in range(16):  # the first buffers (16 rows) exactly full
        book.append(_one(0), _one(1), _one(1.0), _one(0.01), _one(5))
    with pytest.raises(ValueError):
        book.append(np.array([0, 0]), _one(1), _one(1.0), _one(0.01), _one(5))
    assert len(book) == 16
    book.accrued += 0.5
    book.principal[3] = 7.0
    book.append(_one(2), _one(3), _one(2.0), _one(0.02), _one(6))
    assert len(book) == 17
    assert book.accrued.tolist() == [0.5] * 16 + [0.0]
    assert book.principal.tolist() == [1.0] * 3 + [7.0] + [1.0] * 12 + [2.0]
    assert book.lender.tolist() == [0] * 16 + [2]


def test_repaid_first_rows_move_the_head_not_the_rows():
    """The book in maturity order, the due loans repaid each step (the first
    rows), new loans appended: the rows equal plain arrays doing the same, the
    first rows are dropped by moving the view (the same buffer, no copy), and
    the rows move back to the buffers' start only now and then."""
    rng = np.random.default_rng(5)
    book, ref = LoanBook(), {f: np.zeros(0) for f in ("principal", "maturity")}
    moves = drops = 0
    for t in range(60):
        k = int(rng.integers(20, 60))
        book.append(rng.integers(0, 9, k), rng.integers(0, 9, k), rng.random(k),
                    np.full(k, 0.01), np.full(k, t + 4))
        ref["principal"] = np.concatenate([ref["principal"], book.principal[-k:]])
        ref["maturity"] = np.concatenate([ref["maturity"], np.full(k, t + 4)])
        due = book.maturity <= t
        if due.any():
            start, base = book.principal.__array_interface__["data"][0], book.principal.base
            book.keep(~due)
            drops += 1
            if book.principal.base is base:  # the same buffer: the view moved on
                assert (book.principal.__array_interface__["data"][0] - start
                        == 8 * int(due.sum()))
            else:
                moves += 1
            ref = {f: v[~due] for f, v in ref.items()}
        book.principal *= 1.01  # in place, as interest does
        ref["principal"] = ref["principal"] * 1.01
        assert np.array_equal(book.principal, ref["principal"])
        assert np.array_equal(book.maturity, ref["maturity"])
        assert all(getattr(book, f).size == len(book) for f in LoanBook._ROWS)
    assert drops > 50 and moves == 0  # dropping never copies
    assert book._spare.head > 0
