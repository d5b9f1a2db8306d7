"""fastmath.positive_throughout and fastmath.sum_slack: the certificate and the bound
that the plain quotients (measures, market, observation) and the layer's
affordability and queue-fit shortcuts share (session 29)."""

import math

import numpy as np
import pytest

from finsim_mesa import fastmath


@pytest.mark.parametrize("n", [fastmath.LARGE - 1, fastmath.LARGE, 3 * fastmath.LARGE])
def test_positive_throughout_against_the_masked_quotient(n):
    rng = np.random.default_rng(n)
    num = rng.normal(size=n)
    for bad in (None, 0.0, -0.0, -1.0, np.nan, np.inf, 1e-320):
        den = rng.random(n) + 0.5
        if bad is not None:
            den[n // 2] = bad
        masked = np.divide(num, den, out=np.zeros(n), where=den > 0)
        ok = fastmath.positive_throughout(den)
        assert ok == (n >= fastmath.LARGE and bool((den > 0).all()))
        if ok:  # the certificate: the plain quotient is the masked one, bit for bit
            assert (num / den).tobytes() == masked.tobytes()
    assert not fastmath.positive_throughout(np.ones(0))


@pytest.mark.parametrize("k", [1, 2, 7, 1000, 20_000])
def test_sum_slack_covers_the_running_and_pairwise_sums(k):
    """Terms of every size: the running sum's last and NumPy's pairwise sum each
    differ from the exact total (math.fsum) by less than half the slack."""
    rng = np.random.default_rng(k)
    for scale in (1.0, 1e-300, 1e300 / k):
        x = rng.random(k) ** 8 * scale + scale * 1e-3
        exact = math.fsum(x.tolist())
        slack = fastmath.sum_slack(k, exact)
        assert abs(float(np.cumsum(x)[-1]) - exact) <= slack / 2
        assert abs(float(x.sum()) - exact) <= slack / 2
    assert fastmath.sum_slack(10, 2.0) == 4.0 * 12 * np.finfo(float).eps * 2.0
