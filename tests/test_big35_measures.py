"""helper-35: with every bank active the record stage reads the whole arrays
instead of gathered copies; each figure is the gathered form's, bit for bit
(written out here from the definitions, with the active mask)."""

import numpy as np
import pytest

from finsim_mesa import FinancialModel, risk
from finsim_mesa.fastmath import mean, total
from finsim_mesa.measures import LIQUIDITY_CAP, RUNOFF, update_full


@pytest.mark.parametrize("defaults", [False, True])
def test_update_full_figures_are_the_masked_ones(defaults):
    m = FinancialModel(n_banks=120, scenario="systemic", rng=11, steps=30)
    m.run_for(5)
    L, s = m.ledger, m.sheets
    L.status[:] = 0
    if defaults:
        L.status[::7] = 1
    act = L.active
    assert (np.count_nonzero(act) == L.n) is not defaults
    update_full(m.measures, L, s, m.reference.assets0, m.reference.liquidity0, False)
    got = m.measures
    cr = s.capital_ratio[act]
    li = risk.liquidity_index(L.cash[act], (s.interbank_liabilities + RUNOFF * L.deposits)[act])
    want = {"total_equity": total(L.equity[act]), "mean_capital_ratio": mean(cr),
            "min_capital_ratio": float(np.minimum.reduce(cr)),
            "liquidity_index": min(li, LIQUIDITY_CAP)}
    for name, value in want.items():
        assert np.array([getattr(got, name)]).tobytes() == np.array([value]).tobytes(), name
