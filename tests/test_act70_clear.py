"""helper-70 (issue 15), the clear stage's per-step tests in fewer NumPy calls:

* ``resolution._holds_unsellable`` with one asset class compares two counts
  (banks holding something, banks worth something) instead of gathering the
  holdings of the banks worth nothing: ``liquid`` is the holdings valued, and
  ``0 × price`` is never > 0, so the second set is inside the first. Checked
  against the former form (c218bde, kept below) on holdings with zeros, −0.0,
  negative and NaN entries at prices 0, > 0, inf and NaN, and several classes;
* ``clear_and_resolve`` finds the banks to resolve as ``status > resolved``
  (statuses ACTIVE 0 and DEFAULTED 1): ``defaulted & ~resolved``, checked on
  every state of runs through defaults, with and without the layer, whose
  ledgers equal, byte for byte, those of runs with the former test;
* ``new_loans`` with nothing to match returns the same empty columns.
"""

from __future__ import annotations

import numpy as np
import pytest

from finsim_mesa import FinancialModel, lending, resolution
from finsim_mesa.accounting import values
from finsim_mesa.ledger import ACTIVE, DEFAULTED
from tests.support import ledger_bits


def former_holds_unsellable(holdings, liquid):
    """resolution._holds_unsellable at c218bde."""
    if np.count_nonzero(liquid > 0.0) == liquid.size:
        return False
    return bool(np.count_nonzero(holdings[~(liquid > 0.0)]))


def test_holds_unsellable_is_the_former_form():
    rng = np.random.default_rng(70)
    specials = np.array([0.0, -0.0, -1.0, np.nan, np.inf, 2.0])
    seen = set()
    for trial in range(3000):
        n, k = int(rng.integers(1, 9)), (1 if trial % 4 else int(rng.integers(2, 4)))
        holdings = rng.lognormal(size=(n, k)) * (rng.random((n, k)) < 0.6)
        odd = rng.random((n, k)) < 0.15
        holdings[odd] = rng.choice(specials, int(odd.sum()))
        prices = rng.choice(np.array([0.0, 0.5, 1.3, np.inf, np.nan]), k,
                            p=[0.15, 0.3, 0.35, 0.1, 0.1])
        with np.errstate(invalid="ignore"):  # (inf x 0: NaN, as the model would value it)
            liquid = values(holdings, prices)
        got = resolution._holds_unsellable(holdings, liquid)
        assert got is former_holds_unsellable(holdings, liquid) or (
            got == former_holds_unsellable(holdings, liquid))
        seen.add((k == 1, bool(got), bool(np.all(liquid > 0))))
    # both answers met with one class and with several, and the all-worth shortcut
    assert {(True, True, False), (True, False, False), (True, False, True),
            (False, True, False), (False, False, False)} <= seen


@pytest.mark.parametrize("kw", [dict(), dict(n_exchanges=2, n_ccps=1)])
def test_runs_with_the_former_tests_are_the_same(monkeypatch, kw):
    a = FinancialModel(n_banks=80, scenario="systemic", brain="rule_based", rng=4, **kw)
    b = FinancialModel(n_banks=80, scenario="systemic", brain="rule_based", rng=4, **kw)
    real, seen = resolution.clear_and_resolve, []

    def spy(L, *args):  # the states clear_and_resolve starts from
        assert set(np.unique(L.status).tolist()) <= {ACTIVE, DEFAULTED}
        want = L.defaulted & ~L.resolved
        assert np.array_equal(L.status > L.resolved, want)
        seen.append(bool(want.any()))
        return real(L, *args)

    for _ in range(40):
        with monkeypatch.context() as mp:
            mp.setattr(resolution, "clear_and_resolve", spy)
            a.step()
        with monkeypatch.context() as mp:
            mp.setattr(resolution, "_holds_unsellable", former_holds_unsellable)
            b.step()
        assert ledger_bits(a.ledger) == ledger_bits(b.ledger)
        assert a.flows.contagion_depth == b.flows.contagion_depth
    assert any(seen) and not all(seen) and a.ledger.resolved.any()


def test_nothing_to_match_gives_the_same_empty_columns():
    m = FinancialModel(n_banks=20, brain="rule_based", rng=3)
    m.run_for(3)
    n = m.ledger.n
    for lend, borrow in ((np.zeros(n), np.ones(n)), (np.ones(n), np.zeros(n))):
        got = lending.new_loans(m.ledger, m.network, lend, np.zeros(n), borrow, m.config)
        assert [(g.dtype, g.shape) for g in got] == [(np.dtype(np.int64), (0,))] * 2 + [
            (np.dtype(float), (0,)), (np.dtype(np.int64), (0,))]
