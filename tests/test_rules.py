"""Banks a student can program: per-bank brains and the bank's handles."""

import numpy as np
import pandas as pd
import pytest

from finsim_mesa import Brain, BrainError, FinancialModel
from finsim_mesa.agents.bank import Action, Bank
from finsim_mesa.agents.rules import PerBankBrain
from finsim_mesa.observation import OBS, OBS_FIELDS


class SellWhenWeak(PerBankBrain):
    """The teaching example: one bank at a time."""

    def decide(self, bank):
        o = bank.observation
        if o["capital_ratio"] < 0.11:
            return (0.0, 0.5, 1.0, 0.0)
        if o["liquidity_coverage"] < 0.3:
            return (0.0, 0.2, 0.0, 1.0)
        return (0.5 * (1 - o["market_stress"]), 0.0, 0.0, 0.0)


class SellWhenWeakVectorised(Brain):
    """The same rule for all banks at once."""

    name = "sell_when_weak_vec"

    def act(self, obs):
        cr, cov = obs[:, OBS["capital_ratio"]], obs[:, OBS["liquidity_coverage"]]
        weak, short = cr < 0.11, (cr >= 0.11) & (cov < 0.3)
        calm = ~weak & ~short
        a = np.zeros((len(obs), 4))
        a[weak] = (0.0, 0.5, 1.0, 0.0)
        a[short] = (0.0, 0.2, 0.0, 1.0)
        a[calm, 0] = 0.5 * (1 - obs[calm, OBS["market_stress"]])
        return a


@pytest.mark.parametrize("kw", [dict(scenario="systemic"),
                                dict(scenario="systemic", n_exchanges=2, n_ccps=1)])
def test_per_bank_rule_equals_its_vectorised_twin(kw):
    runs = []
    for brain in (SellWhenWeak(), SellWhenWeakVectorised()):
        m = FinancialModel(n_banks=25, brain=brain, rng=5, **kw)
        actions = []
        for _ in range(30):
            m.step()
            actions.append(m.decisions.actions.copy())
        runs.append((m.datacollector.get_model_vars_dataframe(),
                     m.datacollector.get_agent_vars_dataframe(), np.stack(actions)))
    (df_a, ag_a, act_a), (df_b, ag_b, act_b) = runs
    pd.testing.assert_frame_equal(df_a, df_b, check_exact=True)
    pd.testing.assert_frame_equal(ag_a, ag_b, check_exact=True)
    np.testing.assert_array_equal(act_a, act_b)
    # the rule really took every branch (else the comparison proves little)
    flat = act_a.reshape(-1, 4)
    assert (flat[:, 2] == 1.0).any() and (flat[:, 3] == 1.0).any() and (flat[:, 0] > 0).any()


def test_a_plain_function_is_a_brain_and_sees_its_bank():
    seen = []

    def hoard_if_neighbours_fail(bank):
        seen.append(bank.bank_id)
        failing = sum(n.defaulted for n in bank.neighbors())
        return (0.0, 1.0 if failing else 0.0, 0.0, 0.0)

    brain = PerBankBrain(hoard_if_neighbours_fail)
    assert brain.name == "hoard_if_neighbours_fail"
    m = FinancialModel(n_banks=12, brain={0: brain, 1: brain, "default": "passive"}, rng=1)
    m.step()
    assert seen == [0, 1]  # called for its own banks only, in id order
    assert m.banks[0].brain == "hoard_if_neighbours_fail" and m.banks[5].brain == "passive"


def test_bank_handles():
    m = FinancialModel(n_banks=15, n_exchanges=1, n_ccps=1, rng=2)
    b = m.banks[4]
    linked = {j for j in m.graph.neighbors(4)}
    assert {n.bank_id for n in b.neighbors()} == linked
    assert all(isinstance(n, Bank) for n in b.neighbors())
    # with the infrastructure, its exchange is a neighbour on the grid too
    names = {type(a).__name__ for a in b.neighbors(include_infrastructure=True)}
    assert "Exchange" in names
    assert b.last_action == Action(0.0, 0.0, 0.0, 0.0)
    m.step()
    obs = b.observation
    assert list(obs) == [name for name, _ in OBS_FIELDS] + list(obs)[len(OBS_FIELDS):]
    assert obs["capital_ratio"] == m.decisions.observations[4, OBS["capital_ratio"]]
    assert obs["exchange_congestion"] == m.decisions.observations[4, OBS["exchange_congestion"]]
    with pytest.raises(TypeError):
        obs["capital_ratio"] = 1.0  # read-only
    assert tuple(b.last_action) == tuple(m.decisions.actions[4])
    assert b.last_action.hoard == m.decisions.actions[4, 1]


def test_bad_decisions_name_the_brain_and_the_bank():
    m = FinancialModel(n_banks=6, brain=PerBankBrain(lambda bank: (1, 2)), rng=1)
    with pytest.raises(BrainError, match=r"decided .* for bank 0; return four numbers"):
        m.step()
    m = FinancialModel(n_banks=6, brain=PerBankBrain(lambda bank: (0, 0, 2.0, 0),
                                                      name="eager"), rng=1)
    with pytest.raises(BrainError, match="brain 'eager' returned actions outside"):
        m.step()
    with pytest.raises(NotImplementedError, match="define decide"):
        FinancialModel(n_banks=6, brain=PerBankBrain(), rng=1).step()
    with pytest.raises(TypeError, match="decide must be a function"):
        PerBankBrain(decide=3)
    with pytest.raises(BrainError, match="decides per bank"):
        SellWhenWeak().act(np.zeros((2, 16)))


def test_per_bank_brain_in_what_if_and_recommendation():
    m = FinancialModel(n_banks=20, scenario="liquidity_crisis", brain=SellWhenWeak(), rng=3)
    m.run_for(8)
    res = m.what_if(steps=3, seeds=2, shock={"kind": "price_crash", "magnitude": 0.2}, bank=1)
    assert set(res.runs.variant) == {"baseline", "hypothetical"}
    rec = m.recommend(int(np.flatnonzero(m.ledger.active)[0]), steps=2, seeds=2)
    assert "own_brain" in set(rec.table.action)
