"""helper-35: the rewards skip the masks when no bank is out (the usual case);
every figure is the masked form's, bit for bit (the former code, support.masked_rewards,
as the reference), with nobody, some and every bank out."""

import copy

import numpy as np
import pytest
from support import masked_rewards

from finsim_mesa import FinancialModel
from finsim_mesa.rewards import update_rewards


@pytest.mark.parametrize("out", ["nobody", "some", "all"])
def test_rewards_are_the_masked_forms(out):
    m = FinancialModel(n_banks=80, scenario="systemic", rng=7, steps=30)
    m.run_for(4)
    L, t = m.ledger, m.t + 1
    if out == "nobody":
        L.status[:] = 0
    elif out == "some":
        L.status[::5] = 1
        L.default_step[::5] = t - 2
        L.default_step[1::10] = t  # defaulting now: not out, penalised
        L.status[1::10] = 1
    else:
        L.status[:] = 1
        L.default_step[:] = t - 1
    r = copy.deepcopy(m.reward)
    comps, per_bank, mean_all, means = masked_rewards(copy.deepcopy(m.reward), L,
                                                      m.sheets.total_assets, 0.37, m.config, t)
    update_rewards(r, L, m.sheets.total_assets, 0.37, m.config, t)
    assert r.per_bank.tobytes() == per_bank.tobytes()
    assert {k: v.tobytes() for k, v in r.components.items()} == {
        k: v.tobytes() for k, v in comps.items()}
    assert np.array([r.mean]).tobytes() == np.array([mean_all]).tobytes()
    for name, value in means.items():
        assert np.array([getattr(r, name)]).tobytes() == np.array([value]).tobytes(), name
    if out == "all":
        assert r.mean == 0.0
