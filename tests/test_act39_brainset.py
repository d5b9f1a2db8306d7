"""helper-39's decide-stage shortcut (issue 15): a built-in brain that acts on
each row alone (``rowwise``) gets every bank's row when some banks are out,
and their actions are zeroed; the actions must be what the former path (the
active rows copied out, the others zeros) gives, bit for bit, with the same
errors, also where an inactive bank's row makes the brain fail."""

import numpy as np
import pytest

from finsim_mesa.agents.brains import (
    ConservativeBrain,
    ConstantBrain,
    GreedyBrain,
    MyopicBrain,
    PassiveBrain,
    RuleBasedBrain,
)
from finsim_mesa.agents.brainset import BrainSet, _rowwise
from finsim_mesa.errors import BrainError
from finsim_mesa.observation import OBS

WIDTH = max(OBS.values()) + 1


def _former(brain):
    """The same brain through the former path: its class without ``rowwise`` in
    its own body (a subclass inherits neither flag; ``reads_only`` restated)."""
    plain = type("Plain" + type(brain).__name__, (type(brain),), {"reads_only": True})
    other = plain.__new__(plain)
    other.__dict__.update(vars(brain))
    assert not _rowwise(other)
    return other


def _outcome(brain, obs, active, overrides):
    try:
        got = BrainSet(brain, len(obs), "rule_based").decide(obs, active, [None] * len(obs),
                                                            overrides)
    except BrainError as err:
        return "error", str(err).replace("Plain", "")
    assert got.flags.c_contiguous and got.shape == (len(obs), 4)
    return "ok", got.tobytes()


BRAINS = [RuleBasedBrain(0.05), MyopicBrain(), GreedyBrain(), ConservativeBrain(0.08),
          PassiveBrain(), ConstantBrain([0.1, 0.0, 1.0, 0.5])]


@pytest.mark.parametrize("brain", BRAINS, ids=lambda b: type(b).__name__)
def test_every_row_gives_the_former_actions(brain):
    assert _rowwise(brain)
    rng = np.random.default_rng(3)
    kinds = set()
    for trial in range(150):
        n = int(rng.integers(1, 30))
        obs = np.asfortranarray(rng.normal(0.3, 0.5, (n, WIDTH)))
        active = rng.random(n) < rng.choice([0.3, 0.8, 1.0])
        if trial % 3 == 1:  # an inactive bank's row the brain cannot act on
            out = np.flatnonzero(~active)
            if out.size:
                obs[out[0], rng.integers(0, WIDTH)] = rng.choice([np.nan, np.inf, -np.inf])
        if trial % 7 == 2:  # an active bank's row too: the same error either way
            obs[rng.integers(0, n), rng.integers(0, WIDTH)] = np.nan
        overrides = {}
        if trial % 5 == 0:
            overrides = {int(rng.integers(0, n)): rng.random(4)}
        ref = _outcome(_former(brain), obs, active, overrides)
        assert _outcome(brain, obs, active, overrides) == ref
        kinds.add(ref[0])
    assert "ok" in kinds


def test_only_the_declaring_classes_and_whole_groups_take_it():
    class Sub(RuleBasedBrain):  # a subclass may change act: no rowwise
        pass

    assert not _rowwise(Sub())
    calls = []

    class Counting(RuleBasedBrain):
        reads_only = True
        rowwise = True

        def act(self, observations):
            calls.append(len(observations))
            return super().act(observations)

    brain = Counting()
    obs = np.asfortranarray(np.random.default_rng(0).random((6, WIDTH)))
    active = np.array([True, False, True, True, False, True])
    BrainSet(brain, 6, "rule_based").decide(obs, active, [None] * 6, {})
    assert calls == [6]  # every row, once
    calls.clear()
    # two brains: each gets its own active rows, as always
    BrainSet([brain] * 3 + [PassiveBrain()] * 3, 6, "rule_based").decide(
        obs, active, [None] * 6, {})
    assert calls == [2]
    calls.clear()
    # a row-major matrix: the former path
    BrainSet(brain, 6, "rule_based").decide(np.ascontiguousarray(obs), active, [None] * 6, {})
    assert calls == [4]
