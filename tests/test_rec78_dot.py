"""helper-78: the record stage's dot products of two 1-D float64 vectors (DebtRank's
two sums in ``risk._rounds`` / ``risk._growing`` and ``measures.update_full``, the
stress index's weighted sum) as ``a.dot(b)`` instead of ``a @ b``: the same BLAS ddot
(NumPy's matmul of two vectors calls the dot loop), without matmul's ufunc layer
(~0.4 us a call at 30 banks); and ``fastmath.positive_mask``'s ``x > ZERO`` (the mask
``x > 0.0`` gives, 0.0 converted once). Checked against the former forms, kept here
(``@``, NumPy's ``x > 0``), and against SciPy's DebtRank (``risk.debtrank``)."""

import numpy as np
import pytest

from finsim_mesa import fastmath, risk
from finsim_mesa.model import FinancialModel


@pytest.fixture(autouse=True)
def _quiet():
    with np.errstate(all="ignore"):  # (inf and NaN operands)
        yield


SIZES = [*range(0, 40), 63, 64, 65, 127, 128, 129, 1000, 1023, 4097, 100_003]


def _bits(x) -> bytes:
    return np.float64(x).tobytes()  # (tells -0.0 from 0.0 and keeps NaN's payload)


def _vector(rng, n: int, kind: int) -> np.ndarray:
    if kind == 0:
        return rng.random(n)
    a = rng.standard_normal(n) * rng.choice([1e-300, 1e-8, 1.0, 1e8, 1e300], n)
    if n and kind == 2:
        a[rng.integers(0, n, 3)] = [np.nan, -0.0, 5e-324]
    if n and kind == 3:
        a[rng.integers(0, n)] = np.inf
    if kind == 4:  # signed zeros only
        a = rng.choice([0.0, -0.0], n)
    return a


def _dot(a, b) -> float:
    return float(a.dot(b)) + 0.0  # the form the record stage uses


@pytest.mark.parametrize("n", SIZES)
def test_dot_is_matmul_bit_for_bit(n):
    rng = np.random.default_rng(n)
    for kind in range(5):
        a, b = _vector(rng, n, kind), _vector(rng, n, (kind + 1) % 5)
        assert _bits(_dot(a, b)) == _bits(a @ b)
        assert _bits(_dot(b, a)) == _bits(b @ a)
        a.flags.writeable = False  # (DebtRank's economic values are read-only)
        assert _bits(_dot(a, b)) == _bits(a @ b)
        if n > 2:  # strided views
            k = (n - 1) // 2
            assert _bits(_dot(a[:2 * k:2], b[1::2][:k])) == _bits(a[:2 * k:2] @ b[1::2][:k])


def test_signed_zero_products():
    """One term: matmul gives 0.0 + x (+0.0 for a -0.0 product), ddot x itself."""
    for n in (1, 2, 3, 9):
        for a, b in ((-np.zeros(n), np.ones(n)), (np.zeros(n), -np.ones(n)),
                     (-np.zeros(n), -np.ones(n))):
            assert _bits(_dot(a, b)) == _bits(a @ b)
    v, h0 = np.array([1.0]), np.array([-0.0])
    rows = cols = np.zeros(0, dtype=np.int64)
    _, total, start, _ = risk._rounds(rows, cols, np.zeros(0), np.ones(1), h0, v, None, None)
    assert _bits(total) == _bits(float(v @ h0)) and _bits(start) == _bits(float(v @ h0))
    rows = cols = np.zeros(1, dtype=np.int64)  # a negative weight: _rounds' general path
    _, total, start, _ = risk._rounds(rows, cols, -np.ones(1), np.ones(1), h0, v, None, None)
    assert _bits(total) == _bits(float(v @ h0)) and _bits(start) == _bits(float(v @ h0))
    s = risk.stress_index(np.ones(1), np.ones(1), np.zeros(1, bool), h=np.array([-0.0]))
    assert _bits(s) == _bits(min(max(float(np.ones(1) @ np.array([-0.0]) / 1.0), 0.0), 1.0))


def _case(seed: int, n: int):
    rng = np.random.default_rng(seed)
    pairs = 4 * n
    rows_cols = np.unique(rng.integers(0, n, (pairs, 2)), axis=0)
    rows, cols = rows_cols[:, 0], rows_cols[:, 1]
    keep = rows != cols
    rows, cols = rows[keep], cols[keep]  # CSR order: by row, then column
    exposures = rng.random(rows.size) * 30.0
    equity = rng.random(n) * 20.0 + 1.0
    h0 = np.zeros(n)
    shocked = rng.choice(n, max(1, n // 5), replace=False)
    h0[shocked] = rng.random(shocked.size) * 0.6 + 0.01
    return rows, cols, exposures, equity, h0, rng.random(n) + 0.5


@pytest.mark.parametrize("n", [5, 30, 100, 1000])
@pytest.mark.parametrize("seed", range(6))
def test_rounds_sums_are_the_former_matmuls(n, seed):
    rows, cols, exposures, equity, h0, value = _case(seed, n)
    v = risk._values(None, value, n)
    h, total, start, _ = risk._rounds(rows, cols, exposures, equity, h0, v, None, None)
    assert _bits(total) == _bits(float(v @ h)) and _bits(start) == _bits(float(v @ h0))
    # and SciPy's DebtRank of the same matrix (its sums by matmul)
    E = np.zeros((n, n))
    E[rows, cols] = exposures
    ref = risk.debtrank(E, equity, h0, value=value)
    assert _bits(total) == _bits(ref.total) and h.tobytes() == ref.distress.tobytes()
    assert _bits(total - start) == _bits(ref.debtrank)


@pytest.mark.parametrize("n", [3, 30, 1000, 5000])
@pytest.mark.parametrize("given", [False, True])
def test_stress_index_is_the_former_matmul(n, given):
    rng = np.random.default_rng(n)
    for _ in range(5):
        e0 = rng.random(n) * 10.0 + 0.1
        e = e0 * (rng.random(n) * 1.4 - 0.2)
        d = rng.random(n) < 0.1
        w = rng.random(n) * 3.0 if given else None
        h = risk.distress(e, e0, d)
        ww = np.maximum(e0 if w is None else w, 0.0)
        want = min(max(float(ww @ h / ww.sum()), 0.0), 1.0)  # the former form
        assert _bits(risk.stress_index(e, e0, d, weights=w, h=h)) == _bits(want)
        assert _bits(risk.stress_index(e, e0, d, weights=w)) == _bits(want)


@pytest.mark.parametrize("n_banks,scenario", [(30, "systemic"), (100, "asset_crash"),
                                              (60, "normal")])
def test_record_debtrank_is_scipys(n_banks, scenario):
    """Each step's DebtRank sums (update_full's: the rounds', or v . h with nobody
    distressed) against SciPy's DebtRank of the step's exposures (sums by matmul)."""
    m = FinancialModel(n_banks=n_banks, scenario=scenario, brain="rule_based", rng=3,
                       steps=10**9, agent_collect_every=0)
    for _ in range(30):
        m.step()
        L = m.ledger
        h = risk.distress(L.equity, L.equity0, L.defaulted)
        E, present = L.loans.exposures(L.n)
        ref = risk.debtrank(E, L.equity0, h, value=m.reference.assets0, present=present)
        assert _bits(m.measures.debtrank_total) == _bits(ref.total)
        assert _bits(m.measures.debtrank) == _bits(ref.debtrank)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int64, np.int8])
@pytest.mark.parametrize("n", [1, 30, fastmath.LARGE + 1])
def test_positive_mask_any_dtype_is_numpys(dtype, n):
    rng = np.random.default_rng(n)
    for odd in (None, 0, -1, 1):
        x = (rng.random(n) * 100 + 1).astype(dtype)
        if odd is not None:
            x[n // 2] = odd
        if np.issubdtype(dtype, np.floating) and odd == 0:
            x[0] = -0.0
        want = x > 0.0  # the former form
        got = fastmath.positive_mask(x)
        assert got is None if want.all() else np.array_equal(got, want)
