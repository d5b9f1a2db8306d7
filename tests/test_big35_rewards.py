"""helper-35: the rewards skip the masks when no bank is out (the usual case);
every figure is the masked form's, bit for bit (the former code, written out
here as the reference), with nobody, some and every bank out."""

import copy

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.rewards import update_rewards


def _masked(r, L, total_assets, sri_value, cfg, t):
    was_out = L.defaulted & (L.default_step < t)
    profit = (L.equity - r.equity_prev) / np.where(L.equity0 > 0, L.equity0, 1.0)
    liquidity = np.divide(L.cash, total_assets, out=np.zeros(L.n), where=total_assets > 0)
    default = (L.default_step == t).astype(float)
    sri = np.full(L.n, sri_value)
    comps = {"profit": profit, "liquidity": liquidity, "default": default, "system_risk": sri}
    for v in comps.values():
        v[was_out] = 0.0
    per_bank = (cfg.reward_profit_weight * profit + cfg.reward_liquidity_weight * liquidity
                - cfg.reward_default_penalty * default - cfg.reward_system_risk_weight * sri)
    live = ~was_out
    means = {name: float(np.mean(v[live])) if live.any() else 0.0 for name, v in comps.items()}
    return comps, per_bank, float(np.mean(per_bank[live])) if live.any() else 0.0, means


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
    comps, per_bank, mean_all, means = _masked(copy.deepcopy(m.reward), L, m.sheets.total_assets,
                                               0.37, m.config, t)
    update_rewards(r, L, m.sheets.total_assets, 0.37, m.config, t)
    assert r.per_bank.tobytes() == per_bank.tobytes()
    assert {k: v.tobytes() for k, v in r.components.items()} == {
        k: v.tobytes() for k, v in comps.items()}
    assert np.array([r.mean]).tobytes() == np.array([mean_all]).tobytes()
    for name, value in means.items():
        assert np.array([getattr(r, name)]).tobytes() == np.array([value]).tobytes(), name
    if out == "all":
        assert r.mean == 0.0
