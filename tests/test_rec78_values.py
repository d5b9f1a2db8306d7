"""helper-78: measures._economic_values keys the kept values by the array's bytes,
its dtype (the dtype object, compared by equality, instead of ``dtype.str``, a
string built on every call: ~1.3 us in a step at 30 banks), shape and ``n``. Each
call must give risk._values(None, assets0, n) (the reference), whatever changed."""

import numpy as np

from finsim_mesa import measures, risk


def _check(a, n):
    got = measures._economic_values(a, n)
    want = risk._values(None, a, n)
    assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()
    assert not got.flags.writeable or type(a) is not np.ndarray  # (kept arrays read-only)


def test_values_follow_every_part_of_the_key():
    rng = np.random.default_rng(78)
    a = rng.random(30) * 100.0
    _check(a, 30)
    _check(a, 30)  # kept
    a[3] = 7.0  # changed in place
    _check(a, 30)
    _check(a.view(np.int64), 30)  # the same bytes, another dtype
    _check(a.astype(">f8").view(">f8"), 30)  # other bytes, another byte order
    b = a.byteswap().view(a.dtype.newbyteorder())  # the same values, swapped bytes
    _check(b, 30)
    _check(a.astype(np.float32), 30)
    _check(a, 30)
    _check(a.reshape(5, 6), 30)  # the same bytes, another shape
    _check(a, 30)
    _check(a, 31)  # another n (risk._values' fallback for a zero sum uses it)
    z = np.zeros(30)
    _check(z, 30)
    _check(z, 29)
    _check([1.0, 2.0, 3.0], 3)  # not an array: computed each time


def test_same_bytes_other_dtype_is_computed_again():
    a = np.arange(1, 31, dtype=np.float64)
    _check(a, 30)
    i = a.view(np.int64)  # as integers the shares differ (their sum is another number)
    assert measures._economic_values(i, 30).tobytes() != measures._economic_values(a, 30).tobytes()
    _check(i, 30)
