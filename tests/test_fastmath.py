"""fastmath.clip / mean / flatnonzero give NumPy's values bit for bit (independent
reference: NumPy)."""

import numpy as np
import pytest

from finsim_mesa.fastmath import clip, flatnonzero, mean


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


@pytest.mark.parametrize("shape", [(0,), (1,), (31,), (1000,), (7, 5), (3, 0)])
def test_flatnonzero_equals_numpy(shape):
    x = np.random.default_rng(sum(shape)).random(shape)
    for a in (x > 0.5, x > 2.0, x >= 0.0, np.where(x > 0.3, x, 0.0), (x > 0.5).astype(np.int8)):
        want, got = np.flatnonzero(a), flatnonzero(a)
        assert got.dtype == want.dtype and np.array_equal(got, want)
    strided = (x > 0.5).T if x.ndim == 2 else (x > 0.5)[::3]  # not contiguous
    assert np.array_equal(flatnonzero(strided), np.flatnonzero(strided))
    assert np.array_equal(flatnonzero([0, 2, 0, 1]), [1, 3])  # not an array: converted


def test_flatnonzero_of_matrices_masked_arrays_and_scalars_equals_numpy():
    """np.ravel flattens a np.matrix (what SciPy's sparse ``sum(axis=...)``
    returns) as an array and keeps a masked array's mask; a 0-d input is one
    entry. (review: ``matrix.ravel()`` is 1 x n, so ``nonzero()[0]`` gave row
    indices, all zeros.)"""
    import scipy.sparse as sp

    sums = sp.csr_matrix(np.array([[0.0, 1.0], [0.0, 0.0], [2.0, 0.0]])).sum(axis=1)
    masked = np.ma.array([0, 1, 2, 0, 3], mask=[0, 0, 1, 0, 0])
    for a in (sums, sums.T, masked, np.float64(0.0),
              np.array(True), 5, np.array([0.0, -0.0, np.nan, 1e-300])):
        want, got = np.flatnonzero(a), flatnonzero(a)
        assert type(got) is type(want) and got.dtype == want.dtype
        assert np.array_equal(got, want), (a, got, want)


def test_leading_is_a_slice_exactly_when_the_rows_are_the_first_k():
    from finsim_mesa.fastmath import flatnonzero, leading

    x = np.arange(10.0) * 1.5
    for mask in ([1, 1, 1, 0, 0, 0, 0, 0, 0, 0], [0] * 10, [1] * 10,
                 [1, 1, 0, 1, 0, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0, 0, 0],
                 [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]):
        rows = flatnonzero(np.array(mask, dtype=bool))
        at = leading(rows)
        first_k = rows.size == 0 or np.array_equal(rows, np.arange(rows.size))
        assert isinstance(at, slice) == first_k, mask
        if not first_k:
            assert at is rows
        assert np.array_equal(x[at], x[rows])  # the same values either way
        y, z = x.copy(), x.copy()
        y[at] *= 0.5
        z[rows] *= 0.5
        assert np.array_equal(y, z)


@pytest.mark.parametrize("x", [np.arange(0), np.array([-0.0]), np.linspace(-3, 7, 37),
                               np.random.default_rng(5).random(1001) * 1e6,
                               np.random.default_rng(6).random((9, 13)),
                               np.array([1.0, np.nan, 2.0]), np.array([np.inf, 1.0])])
def test_total_is_the_float_of_numpys_sum(x):
    from finsim_mesa.fastmath import total

    got, want = total(x), float(x.sum())
    assert type(got) is float
    assert repr(got) == repr(want)  # the same bits (signs of zero, NaN)

