"""helper-30's step shortcuts (issue 15) give what the plain formulas give, bit
for bit: each is checked against a reference written out here from its
definition, on inputs where it applies and where it must not."""

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.ledger import ACTIVE, DEFAULTED, Ledger
from finsim_mesa.loans import LoanBook


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return (a.dtype == b.dtype and a.shape == b.shape
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())


def _ledger(n: int = 7) -> Ledger:
    return Ledger(np.full(n, 5.0), np.ones((n, 1)), np.full(n, 3.0), np.ones(1))


@pytest.mark.parametrize("down", [[], [0], [2, 5], list(range(7))])
def test_status_masks_are_the_comparisons_with_the_two_statuses(down):
    L = _ledger()
    L.mark_default(np.array(down, dtype=np.int64), 3)
    assert _same_bits(L.active, L.status == ACTIVE)
    assert _same_bits(L.defaulted, L.status == DEFAULTED)
    # a status written from outside (a test, a user) is seen at once
    L.status[1] = DEFAULTED
    assert _same_bits(L.defaulted, L.status == DEFAULTED) and not L.active[1]
    # and the masks are new arrays each time: changing one changes nothing else
    a = L.active
    a[:] = False
    assert _same_bits(L.active, L.status == ACTIVE)


def test_append_with_one_maturity_for_all_is_the_array_of_it():
    one, each = LoanBook(), LoanBook()
    src, dst = np.array([0, 1, 2]), np.array([1, 2, 0])
    amt, rate = np.array([1.0, 2.0, 3.0]), np.array([0.01, 0.02, 0.03])
    one.append(src, dst, amt, rate, 9)
    each.append(src, dst, amt, rate, np.full(3, 9))
    for name in LoanBook._ROWS:
        assert _same_bits(getattr(one, name), getattr(each, name)), name


def test_act_splits_the_actions_as_column_products():
    """The act stage's four action columns (one product of the transposed
    actions with the active mask) are the columns times the mask, each."""
    m = FinancialModel(n_banks=20, brain="random", scenario="systemic", rng=3, steps=50)
    m.run_for(8)
    m.ledger.status[[2, 9]] = DEFAULTED
    actions = np.random.default_rng(0).random((20, 4))
    actions[4, 1] = np.nan  # NaN times an active 1 stays NaN, times 0 too
    m.ledger.status[4] = DEFAULTED
    rows = actions.T * m.ledger.active
    for i in range(4):
        assert _same_bits(rows[i], actions[:, i] * (m.ledger.status == ACTIVE))
