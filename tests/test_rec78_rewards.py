"""helper-78: update_rewards reads its block's rows by index (unpacking the array
itself iterates it: ~1 us more in a step at 30 banks) and divides the five row sums
by the banks still in as Python floats (one ufunc call fewer). The rewards are
checked bit for bit against the former form (support.masked_rewards) in
tests/test_small38_record.py; here, the quotients against NumPy's ``sums / k``."""

import numpy as np
import pytest
from test_small38_record import _bits, _reward_case

from finsim_mesa.rewards import update_rewards


@pytest.mark.parametrize("k", [1, 2, 3, 7, 30, 99, 1000, 99_999, 2**53 - 1])
def test_python_quotients_are_numpys(k):
    rng = np.random.default_rng(k % 1000)
    sums = rng.standard_normal(2000) * 10.0 ** rng.integers(-300, 300, 2000)
    sums[:6] = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324]
    with np.errstate(all="ignore"):
        want = sums / k  # the former form: the row sums' array / k
    got = [x / k for x in sums.tolist()]
    assert _bits(got) == _bits(want)


@pytest.mark.parametrize("n", [5, 9, 30, 100])
@pytest.mark.parametrize("out", ["nobody", "some", "all_but_one"])
def test_means_are_each_rows_own_mean(n, out):
    m, L, ta, t = _reward_case(n, out, seed=78 + n)
    r = m.reward
    update_rewards(r, L, ta, 0.25, m.config, t)
    keep = ~(L.defaulted & (L.default_step < t))
    for name in ("profit", "liquidity", "default", "system_risk"):
        row = r.components[name][keep]
        assert _bits(getattr(r, name)) == _bits(float(np.mean(row)))  # NumPy's own mean
    assert _bits(r.mean) == _bits(float(np.mean(r.per_bank[keep])))
