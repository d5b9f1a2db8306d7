"""Review of issue 15's read-only brains (helper-27): a user's subclass of a
built-in brain that overrides ``act`` and writes into its observations gets its
own copy, as every brain did before (``reads_only`` is a class's own setting)."""

import numpy as np

from finsim_mesa import FinancialModel
from finsim_mesa.agents.brains import RuleBasedBrain
from finsim_mesa.observation import OBS


class _DampedInPlace(RuleBasedBrain):
    """Halves the stress it sees, in its input, then follows the rules."""

    name = "damped"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[np.ndarray] = []

    def act(self, observations):
        observations[:, OBS["market_stress"]] *= 0.5
        observations[:, OBS["counterparty_stress"]] *= 0.5
        self.seen.append(observations)
        return super().act(observations)


class _DampedOnACopy(_DampedInPlace):
    """The same rules on its own copy: the reference."""

    def act(self, observations):
        return super().act(np.array(observations, order="F"))


def _data(m: FinancialModel) -> np.ndarray:
    return m.datacollector.get_model_vars_dataframe().to_numpy()


def test_a_subclass_that_writes_into_its_observations_gets_a_copy():
    kw = dict(n_banks=40, scenario="systemic", rng=3)
    writer, reference = _DampedInPlace(), _DampedOnACopy()
    m, ref = FinancialModel(brain=writer, **kw), FinancialModel(brain=reference, **kw)
    m.run_for(6)  # before the fix: "ValueError: output array is read-only" at once
    ref.run_for(6)
    assert m.t == ref.t == 6
    assert np.array_equal(_data(m), _data(ref), equal_nan=True)
    # the model's own matrix is not the one the brain wrote into
    assert np.array_equal(m.decisions.observations, ref.decisions.observations)
    assert not np.shares_memory(writer.seen[-1], m.decisions.observations)
    # the brain really wrote (stress is not zero in this scenario), into its copy
    col = OBS["market_stress"]
    assert np.any(m.decisions.observations[:, col] > 0)
    assert np.array_equal(writer.seen[-1][:, col], 0.5 * m.decisions.observations[:, col])


def test_a_brain_set_pickled_under_its_old_module_loads():
    """Pickles made before BrainSet moved to brainset.py name it
    ``finsim_mesa.agents.brains.BrainSet``; they still load, and the old import works."""
    import pickle

    from finsim_mesa.agents import brains
    from finsim_mesa.agents.brainset import BrainSet

    assert brains.BrainSet is BrainSet
    m = FinancialModel(n_banks=20, brain=["greedy", "rule_based"] * 10, rng=2)
    m.run_for(2)
    blob = pickle.dumps(m.brains, protocol=0)  # text: the class's module is a line
    new = b"cfinsim_mesa.agents.brainset\nBrainSet\n"
    old = b"cfinsim_mesa.agents.brains\nBrainSet\n"
    assert blob.count(new) == 1
    back = pickle.loads(blob.replace(new, old))
    assert type(back) is BrainSet and back.names == m.brains.names
    obs = m.observe()
    assert np.array_equal(back.decide(obs, m.ledger.active, m.banks, {}),
                          m.brains.decide(obs, m.ledger.active, m.banks, {}))
