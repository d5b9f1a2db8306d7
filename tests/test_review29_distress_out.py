"""``risk.distress(out=...)`` (2bffdb3) where ``out`` is, or overlaps, one of
its inputs, as NumPy's ufuncs allow (``np.divide(a, b, out=a)``): the zero fill
must not wipe the equity before it is read."""

import numpy as np
import pytest

from finsim_mesa import risk


def _distress_reference(e, e0, d):
    """The definition: clip(1 - E / E0, 0, 1) (0 where E0 <= 0 before the 1 - .), 1 if defaulted."""
    e, e0 = np.asarray(e, float), np.asarray(e0, float)
    q = np.zeros(e.shape)
    np.divide(e, e0, out=q, where=e0 > 0)
    h = np.minimum(np.maximum(1.0 - q, 0.0), 1.0)
    h[np.asarray(d, bool)] = 1.0
    return h


@pytest.mark.parametrize("alias", ["equity", "equity0", "equity_view"])
def test_distress_into_one_of_its_inputs(alias):
    rng = np.random.default_rng(5)
    e0 = rng.uniform(0.5, 2.0, 200)
    e0[::9] = 0.0
    e = e0 * rng.uniform(-0.5, 1.5, 200)
    d = rng.random(200) < 0.1
    want = _distress_reference(e, e0, d)
    if alias == "equity":
        got = risk.distress(e, e0, d, out=e)
        assert got is e
    elif alias == "equity0":
        got = risk.distress(e, e0, d, out=e0)
        assert got is e0
    else:  # a view of the same memory, not the same object
        got = risk.distress(e, e0, d, out=e[:])
    assert got.tobytes() == want.tobytes()


def test_distress_into_a_separate_out_is_the_reference():
    rng = np.random.default_rng(6)
    e0, e = rng.uniform(0.5, 2.0, 50), rng.normal(size=50)
    d = rng.random(50) < 0.2
    out = np.full(50, np.nan)
    assert risk.distress(e, e0, d, out=out) is out
    assert out.tobytes() == _distress_reference(e, e0, d).tobytes()
