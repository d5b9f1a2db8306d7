"""The step's fast paths (issue 15) give what the general code gives.

Each shortcut is checked against an independent reference: Mesa's own
DataCollector loop, a Python loop over the loan book, the arithmetic of the
set-off it skips, NumPy's generic functions.
"""

import numpy as np
import pytest
from mesa.datacollection import DataCollector

from finsim_mesa import FinancialModel
from finsim_mesa.infrastructure import layer
from finsim_mesa.infrastructure.ccp import cleared_by_ccp
from finsim_mesa.ledger import ACTIVE
from finsim_mesa.loans import LoanBook
from finsim_mesa.measures import FinsimDataCollector, make_reporters


# ------------------------------------------------------------ the model's data rows
@pytest.mark.parametrize("extra", [None, "lambda", "attribute"])
@pytest.mark.parametrize("infra, assets", [(False, 1), (True, 2)])
def test_model_rows_equal_mesas_own_loop(infra, assets, extra):
    """FinsimDataCollector reads reporters with a path by one attrgetter and
    appends scalars without deepcopy; Mesa's DataCollector, given the same
    reporters, must record the same values of the same types, step by step.
    A lambda (no path) and an attribute-name reporter (Mesa's own loop) too."""
    kw = dict(n_exchanges=2, n_ccps=1) if infra else {}
    m = FinancialModel(n_banks=20, scenario="systemic", n_assets=assets, rng=3, **kw)
    reporters = make_reporters(infra, m.market.names)  # price_<class> columns with 2
    if extra == "lambda":
        reporters["twice_t"] = lambda model: 2 * model.t
    elif extra == "attribute":
        reporters["t"] = "t"
    ours = FinsimDataCollector(agent_every=0, model_reporters=dict(reporters))
    ref = DataCollector(model_reporters=dict(reporters))
    for _ in range(12):
        m.step()
        ours.collect(m)
        ref.collect(m)
    assert ours.model_vars.keys() == ref.model_vars.keys()
    for column, want in ref.model_vars.items():
        got = ours.model_vars[column]
        assert [type(v) for v in got] == [type(v) for v in want], column
        assert got == want, column
    assert getattr(ours, "_collection_steps", None) == getattr(ref, "_collection_steps", None)


# ------------------------------------------------------------ CCP books
def _book(rng: np.random.Generator, m: int, n: int) -> LoanBook:
    lender = rng.integers(0, n, m)
    borrower = (lender + rng.integers(1, n, m)) % n
    book = LoanBook(lender, borrower, rng.lognormal(size=m), rng.random(m) * 0.1,
                    np.full(m, 0.01), np.full(m, 5), rng.integers(-1, 3, m))
    book.accrued = rng.random(m)
    return book


@pytest.mark.parametrize("ids", [[0, 1, 2], [0, 1], [2, 0], [1], []])
def test_cleared_by_ccp_equals_a_loop_over_the_book(ids):
    """What each member owes each CCP in ``ids`` (in that column order), against
    a Python loop adding the loans in book order (the same sums, bit for bit)."""
    rng = np.random.default_rng(len(ids))
    n, book = 9, _book(rng, 300, 9)
    want = np.zeros((n, len(ids)))
    for k in range(len(book)):
        if book.ccp[k] in ids:
            want[book.borrower[k], ids.index(book.ccp[k])] += book.principal[k] + book.accrued[k]
    got = cleared_by_ccp(book, ids, n)
    assert got.shape == (n, len(ids)) and np.array_equal(got, want)


def test_seize_collateral_with_nobody_in_resolution_sets_nothing_off():
    """With no member in resolution nothing is seized and every leg is what is
    owed; the ledger is as the two moves of zeros leave it: margin, fund and
    CCP cash unchanged, cash ``x - (-0.0)`` (a -0.0 becomes +0.0)."""
    m = FinancialModel(n_banks=20, scenario="systemic", n_exchanges=2, n_ccps=2, rng=5)
    m.run_for(4)
    L, lb = m.ledger, m.ledger.loans
    L.cash[3] = -0.0
    before = {k: getattr(L, k).copy() for k in ("cash", "margin", "fund", "ccp_cash")}
    cleared = lb.ccp >= 0
    assert cleared.any()
    seized_m, seized_f, leg = layer.seize_collateral(L, lb, cleared, np.zeros(L.n, dtype=bool))
    assert not seized_m.any() and not seized_f.any() and seized_m.shape == (L.n, 2)
    assert leg.tobytes() == lb.owed.tobytes()
    for k in ("margin", "fund", "ccp_cash"):
        assert getattr(L, k).tobytes() == before[k].tobytes(), k
    assert L.cash.tobytes() == (before["cash"] - np.full(L.n, -0.0)).tobytes()
    assert not np.signbit(L.cash[3])


# ------------------------------------------------------------ small shortcuts
def test_mark_default_of_nobody_changes_nothing():
    m = FinancialModel(n_banks=10, rng=1)
    status, step = m.ledger.status.copy(), m.ledger.default_step.copy()
    for nobody in (np.zeros(10, dtype=bool), np.zeros(0, dtype=np.int64), []):
        new = m.ledger.mark_default(nobody, 3)
        assert new.size == 0 and new.dtype == np.flatnonzero([True]).dtype
    assert np.array_equal(m.ledger.status, status)
    assert np.array_equal(m.ledger.default_step, step)
    new = m.ledger.mark_default(np.arange(10) == 4, 3)
    assert new.tolist() == [4] and m.ledger.status[4] != ACTIVE
    with pytest.raises(IndexError):  # a mask of the wrong length, even of nobody
        m.ledger.mark_default(np.zeros(3, dtype=bool), 3)


def test_a_step_interrupted_by_a_base_exception_is_rolled_back():
    """The transaction (a class since issue 15) rolls back anything raised,
    KeyboardInterrupt included, and lets it through."""

    class Interrupts:
        name = "interrupts"

        def act(self, obs):
            raise KeyboardInterrupt

    m = FinancialModel(n_banks=12, scenario="systemic", rng=4)
    m.run_for(3)
    snap, rows, t = m.snapshot(), len(m.datacollector.model_vars["price"]), m.t
    m.set_brains(Interrupts())
    with pytest.raises(KeyboardInterrupt):
        m.step()
    assert m.t == t and len(m.datacollector.model_vars["price"]) == rows
    later = m.snapshot()
    assert later["ledger"]["cash"].tobytes() == snap["ledger"]["cash"].tobytes()
    assert later["rng"] == snap["rng"] and later["random"] == snap["random"]


def test_owed_at_is_the_whole_books_owed_gathered():
    rng = np.random.default_rng(4)
    k = 40
    lb = LoanBook(rng.integers(0, 9, k), rng.integers(0, 9, k), rng.random(k) * 10,
                  rng.random(k), np.full(k, 0.01), rng.integers(1, 5, k))
    mask = rng.random(k) < 0.4
    rows = np.flatnonzero(mask)
    for sel in (rows, mask, rows[:0]):
        got = lb.owed_at(sel)
        assert got.tobytes() == lb.owed[sel].tobytes()
