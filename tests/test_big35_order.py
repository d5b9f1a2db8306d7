"""helper-35: ``fastmath.stable_order`` (NumPy's 16-bit radix sort, in one or two
passes) is ``np.argsort(kind="stable")`` of the same ids, and the clearing that
sorts its legs with it gives the same bits as with NumPy's own stable sort."""

import numpy as np
import pytest

from finsim_mesa import clearing
from finsim_mesa.clearing import clear_legs
from finsim_mesa.fastmath import stable_order


@pytest.mark.parametrize(("n", "dtype"), [  # every size with every id dtype it fits in
    (n, dtype) for n in [1, 2, 300, 1 << 16, (1 << 16) + 1, 100_000, 1 << 24, (1 << 24) + 1,
                         5_000_000_000]
    for dtype in (np.int64, np.int32, np.intp) if n <= np.iinfo(dtype).max])
def test_stable_order_is_numpys_stable_argsort(n, dtype):
    rng = np.random.default_rng(n % 1000)
    for size in (0, 1, 7, 5000):
        ids = rng.integers(0, n, size).astype(dtype)
        if size:  # ties and both ends of the range
            ids[: size // 3] = ids[size // 3: 2 * (size // 3)]
            ids[0], ids[-1] = n - 1, 0
        want = np.argsort(ids, kind="stable")
        got = stable_order(ids, n)
        assert got.shape == want.shape and np.array_equal(got, want), (n, size)


def test_two_passes_keep_the_low_digits_order():
    """Ids that share their high 16 bits and differ only below, and the reverse:
    the second pass must keep the first pass's order among equal high digits."""
    n = 3 << 16
    ids = np.array([(1 << 16) + 5, 5, (2 << 16) + 5, (1 << 16) + 4, 4, (1 << 16) + 5, 5,
                    (2 << 16), 0, (1 << 16)], dtype=np.int64)
    assert np.array_equal(stable_order(ids, n), np.argsort(ids, kind="stable"))


def _argsort_order(ids, n):  # the former sort of clear_legs, as the reference
    return np.argsort(ids, kind="stable")


@pytest.mark.parametrize("n", [6_000, 70_000])
def test_clear_legs_gives_the_same_bits_as_with_numpys_sort(monkeypatch, n):
    """A stressed clearing on the fast path (someone short, so the legs are
    sorted into Πᵀ's columns): every array of the result equal, bit for bit,
    to the result with np.argsort (two radix passes at 70,000 institutions)."""
    rng = np.random.default_rng(n)
    m = 4 * n
    debtor = rng.integers(0, n, m)
    creditor = (debtor + rng.integers(1, n, m)) % n
    amount = rng.uniform(5, 15, m) * (rng.random(m) < 0.95)
    pbar = np.bincount(debtor, weights=amount, minlength=n)
    e = rng.uniform(0, 1, n) * pbar * 0.4
    ext = rng.uniform(0, 1, n) * (rng.random(n) < 0.3)
    alpha, beta = np.full(n, 0.7), np.full(n, 0.9)
    forced = rng.random(n) < 0.01
    got = clear_legs(debtor, creditor, amount, e, ext, alpha, beta, forced)
    monkeypatch.setattr(clearing, "stable_order", _argsort_order)
    want = clear_legs(debtor, creditor, amount, e, ext, alpha, beta, forced)
    assert got.method == want.method == "picard" and np.count_nonzero(got.defaulted) > 0
    for name in ("payments", "obligations", "defaulted", "default_round", "recovery"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    assert got.rounds == want.rounds
