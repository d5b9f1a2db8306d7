"""helper-71: the rule brain's block clipped by np.clip's ufunc in one pass (which may
keep a -0.0 that np.maximum makes +0.0; no row of the block is -0.0) — against the
former form (tests/support.py, as of 7c9fe3b) on observations full of signed zeros,
NaN, infinities and values that put actions exactly on their bounds, in float64,
float32 and long double."""

import numpy as np
import pytest
from support import former_rule_act

from finsim_mesa.agents.brains import RuleBasedBrain
from finsim_mesa.observation import OBS, OBS_DIM

_SPECIAL = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 0.2, 0.1, 0.8, 1.0, -1.0, 5e-324,
                     -5e-324, 0.12, 1.5, 0.6, 0.4])


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.longdouble])
@pytest.mark.parametrize("seed", range(4))
def test_rule_brain_is_the_former_on_special_observations(dtype, seed):
    rng = np.random.default_rng(seed)
    n = 400
    o = rng.choice(_SPECIAL, (n, OBS_DIM))
    o[: n // 2] = np.where(rng.random((n // 2, OBS_DIM)) < 0.5, o[: n // 2],
                           rng.uniform(-0.2, 1.2, (n // 2, OBS_DIM)))
    o[:4, OBS["liquidity_coverage"]] = 0.2  # coverage 1: lend and borrow exactly 0
    o[4:8, OBS["market_stress"]] = o[4:8, OBS["own_distress"]] = 0.4  # calm exactly 0
    o = np.asfortranarray(o.astype(dtype))
    brain = RuleBasedBrain(0.08)
    got = np.ascontiguousarray(brain.act(o))
    want = former_rule_act(brain, o)
    assert got.tobytes() == want.tobytes()
    assert np.count_nonzero(got == 0.0) > 0 and np.isnan(got).any()
