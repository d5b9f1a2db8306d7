"""helper-42's review: resolution.settle_in_full against the general clearing
(resolution.clear_due with Ledger.settle) where an obligation is −inf.

p̄'s test fails for NaN and +inf obligations, but a −inf one (a deposit or a
loan edited to −inf) passes it: the general path then posts the write-off
``owed − paid`` = −inf − (−inf) = NaN to equity, where the shortcut's one
``+= 0.0`` left equity as it was. The shortcut must decline such a clearing
(the general path decides, as before it existed)."""

import copy

import numpy as np
import pytest
from support import ledger_bits, stages_until_clear

from finsim_mesa import FinancialModel
from finsim_mesa.ledger import Ledger
from finsim_mesa.resolution import clear_due, settle_in_full

# -inf and NaN in a ledger are the point here: NumPy's invalid-value warnings are expected
pytestmark = pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")


def _before_clear(seed: int) -> FinancialModel:
    m = FinancialModel(n_banks=30, brain="rule_based", scenario="liquidity_crisis", rng=seed,
                       steps=10**9, agent_collect_every=0)
    m.run_for(2)
    stages_until_clear(m)
    return m


def _general(L: Ledger, cfg, due, ext_due, t) -> Ledger:
    G = copy.deepcopy(L)
    clear_due(G, cfg, due.copy(), ext_due.copy(), np.zeros(L.n, dtype=bool),
              lambda *a: None, t, [], None)
    return G


@pytest.mark.parametrize("where", ["external", "loan"])
def test_minus_inf_obligation_settles_as_the_general_path(where):
    m = _before_clear(3)
    L, cfg = m.ledger, m.config
    due = L.loans.maturity <= m.t
    ext_due = np.minimum(m.flows.withdrawals, L.deposits)
    assert settle_in_full(copy.deepcopy(L), cfg, due.copy(), ext_due.copy())  # applies as is
    if where == "external":
        ext_due[4] = -np.inf  # e.g. deposits edited to -inf: min(withdrawal, deposits)
    else:
        rows = np.flatnonzero(due)
        assert rows.size
        L.loans.principal[rows[0]] = -np.inf
    general = _general(L, cfg, due, ext_due, m.t)
    assert np.isnan(general.equity).any()  # the write-off -inf - (-inf) is NaN there
    fast = copy.deepcopy(L)
    before = ledger_bits(fast)
    if settle_in_full(fast, cfg, due.copy(), ext_due.copy()):
        assert ledger_bits(fast) == ledger_bits(general)
    else:
        assert ledger_bits(fast) == before  # declined: nothing done


def test_a_run_with_minus_inf_deposits_is_the_general_path(monkeypatch):
    """Whole steps from the same edited state, with and without the shortcut."""
    import finsim_mesa.resolution as R

    def run():
        m = FinancialModel(n_banks=29, brain="greedy", scenario="normal", rng=18, steps=50)
        m.ledger.deposits[5] = -np.inf
        m.ledger.equity[28] = np.nan
        m.run_for(2)
        return ledger_bits(m.ledger)

    fast = run()
    monkeypatch.setattr(R, "settle_in_full", lambda *a: False)
    assert fast == run()
