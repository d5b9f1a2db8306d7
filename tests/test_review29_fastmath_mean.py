"""fastmath.mean is ``float(np.mean(x))`` for every float array, NumPy's
subclasses included: ``np.add.reduce`` (26e4302) keeps a ``np.matrix`` 2-D, so
the mean of SciPy's sparse sums (``csr.sum(axis=0)``, a 1 x n matrix) raised
TypeError where ``x.sum()`` gave the number."""

import numpy as np
import pytest
import scipy.sparse as sp

from finsim_mesa.fastmath import mean


def _bits(v: float) -> bytes:
    return np.float64(v).tobytes()


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix itself
@pytest.mark.parametrize("axis", [0, 1, None])
def test_mean_of_a_sparse_sum_is_numpys(axis):
    rng = np.random.default_rng(axis or 7)
    a = sp.random(40, 30, density=0.2, random_state=1, format="csr") * rng.normal()
    x = a.sum(axis=axis) if axis is not None else np.asmatrix(a.toarray())
    assert isinstance(x, np.matrix)
    got = mean(x)
    assert type(got) is float
    assert _bits(got) == _bits(float(np.mean(x)))
    assert _bits(got) == _bits(float(np.mean(np.asarray(x))))  # the same pairwise sum


def test_mean_of_arrays_unchanged():
    rng = np.random.default_rng(3)
    for x in (rng.normal(size=1001), rng.normal(size=(7, 9)), rng.normal(size=(9, 7)).T,
              rng.normal(size=50)[::3], np.array([-0.0]), np.array([np.nan, 1.0])):
        assert _bits(mean(x)) == _bits(float(np.mean(x)))
