"""fastmath.clip / mean give NumPy's values bit for bit (independent reference: NumPy)."""

import numpy as np
import pytest

from finsim_mesa.fastmath import clip, mean


@pytest.mark.parametrize("seed", range(5))
def test_clip_equals_numpy_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(257) * 3
    x[::17] = np.nan
    x[::23] = np.inf
    x[1::29] = -np.inf
    for lo, hi in ((0.0, 1.0), (-1, 1), (0, 2), (-0.5, -0.5)):
        want, got = np.clip(x, lo, hi), clip(x, lo, hi)
        assert want.dtype == got.dtype
        np.testing.assert_array_equal(want, got)  # NaN at the same places, equal elsewhere
    assert clip(np.float64(2.5), 0, 1) == 1.0 and type(clip(2.5, 0, 1)) is np.float64
    ints = np.arange(-3, 4)
    assert np.array_equal(clip(ints, 0.0, 1.0), np.clip(ints, 0.0, 1.0))


@pytest.mark.parametrize("n", [1, 2, 7, 30, 129, 1000, 10_001])
def test_mean_equals_numpy_bit_for_bit(n):
    x = np.random.default_rng(n).lognormal(size=n) * 1e3
    assert mean(x) == float(np.mean(x))  # the same pairwise sum, the same division
    assert mean(x.reshape(1, -1)) == float(np.mean(x))
