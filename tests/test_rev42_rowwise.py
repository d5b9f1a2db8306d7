"""helper-42's review of the ``rowwise`` decide shortcut: the flag is read off
the brain's class, but an instance may carry an ``act`` of its own (a built-in
brain whose ``act`` a user replaced on the instance). Such an ``act`` is not
the class's row-by-row one: it must get the active banks' rows alone, as
before the shortcut, not every bank's row."""

import numpy as np

from finsim_mesa.agents.brains import ConstantBrain, RuleBasedBrain
from finsim_mesa.agents.brainset import BrainSet, _rowwise
from finsim_mesa.observation import OBS

WIDTH = max(OBS.values()) + 1


def _by_rows_seen(obs):
    """Each bank's actions from the number of rows it is shown (not row by row)."""
    return np.full((len(obs), 4), 1.0 / len(obs))


def test_an_act_set_on_the_instance_gets_the_active_rows_only():
    rng = np.random.default_rng(0)
    obs = np.asfortranarray(rng.random((12, WIDTH)))
    active = np.ones(12, dtype=bool)
    active[[1, 4, 5]] = False
    for brain in (RuleBasedBrain(), ConstantBrain([0, 1, 1, 0])):
        assert _rowwise(brain)  # the class's own act works row by row
        seen = []
        brain.act = lambda o, seen=seen: (seen.append(len(o)), _by_rows_seen(o))[1]
        assert not _rowwise(brain)
        got = BrainSet(brain, 12, "rule_based").decide(obs, active, [None] * 12, {})
        assert seen == [9]  # the nine active banks' rows, once
        want = np.zeros((12, 4))
        want[active] = 1.0 / 9
        assert got.tobytes() == want.tobytes()
