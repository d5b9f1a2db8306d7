"""fastmath.positive_mask: the one test behind the plain-quotient shortcuts (sheets'
capital ratio, the fire-sale ratio, the observation's totals, coverage and
counterparty stress): None exactly when every entry is > 0, else the mask x > 0."""

import numpy as np
import pytest

from finsim_mesa import fastmath


@pytest.mark.parametrize("n", [1, 30, fastmath.LARGE - 1, fastmath.LARGE, 2 * fastmath.LARGE])
@pytest.mark.parametrize("odd", [None, 0.0, -0.0, -1.0, np.nan, -np.inf, 5e-324, np.inf])
def test_positive_mask_is_none_or_the_mask(n, odd):
    x = np.random.default_rng(n).random(n) + 0.5
    if odd is not None:
        x[n // 2] = odd
    got = fastmath.positive_mask(x)
    want = x > 0  # NumPy's own test: NaN and -0.0 are not > 0
    if want.all():
        assert got is None
        a = np.arange(n, dtype=float) - 3.0  # the plain quotient is the masked one's
        assert (a / x).tobytes() == np.divide(a, x, out=np.zeros(n), where=want).tobytes()
    else:
        assert got is not None and got.dtype == bool and np.array_equal(got, want)


def test_empty_is_none():
    assert fastmath.positive_mask(np.zeros(0)) is None
