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
