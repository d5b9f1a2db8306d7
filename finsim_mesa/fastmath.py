"""NumPy helpers without NumPy's Python wrappers (issue 15).

At 30–100 banks a step is a few hundred NumPy calls on arrays of a few dozen
entries, where ``np.clip``'s and ``np.mean``'s Python layers (argument
handling in ``fromnumeric`` and ``_methods``) cost 3–5 µs a call, several
times the arithmetic. These give the same values: NumPy's clip loop is
``min(max(x, lo), hi)`` (NaN in ``x`` propagates through both), and ``mean``
is the pairwise sum divided by the count, exactly as ``np.mean`` computes it,
bit for bit (``tests/test_fastmath.py`` checks both against NumPy). One
difference: the sign of a zero at a bound (``np.clip(-0.0, 0, 1)`` is −0.0,
``clip`` gives +0.0); the two compare equal, and no caller divides by a
clipped zero. ``flatnonzero`` is ``np.flatnonzero`` (the same indices) in
one C call after the conversion, instead of four Python-level wrappers.
``ZERO``, ``ONE`` (and :func:`constant`): read-only 0-d float64 arrays, for
ufunc operands that would be Python floats — with float64 arrays the same
loop and values, without converting the float on every call (~0.2 µs each).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["LARGE", "ONE", "ZERO", "clip", "constant", "count_nonzero", "flatnonzero", "leading",
           "mean", "positive_mask", "positive_throughout", "stable_order", "sum_slack", "total"]

_maximum, _minimum, _asanyarray, _matrix = np.maximum, np.minimum, np.asanyarray, np.matrix
_ndarray = np.ndarray
_sum = np.add.reduce  # what ``ndarray.sum`` calls, after a Python layer (``_methods._sum``)
# ``np.count_nonzero(a)`` (no axis) is a Python function that calls this C one: the
# same count, a Python int, without the wrapper and its dispatcher (~0.14 µs a call)
count_nonzero = getattr(getattr(getattr(np, "_core", None), "multiarray", None),
                        "count_nonzero", np.count_nonzero)


def constant(x: float) -> np.ndarray:
    """``x`` as a read-only 0-d float64 array: an operand that gives float64 arrays'
    ufuncs the values the Python float gives them (the same float64 loop, ``x``
    converted once). Use it only with float64 operands (or in a test of sign against
    zero): with a float32 or integer array a float64 one makes the result float64."""
    c = np.array(x, dtype=np.float64)
    c.flags.writeable = False
    return c


ZERO, ONE = constant(0.0), constant(1.0)


def clip(x: Any, lo: Any, hi: Any) -> Any:
    """``np.clip(x, lo, hi)`` for ``lo <= hi`` (arrays or scalars, same shape rules)."""
    return _minimum(_maximum(x, lo), hi)


def mean(x: np.ndarray) -> float:
    """``float(np.mean(x))`` of a non-empty float array (any shape; a ``np.matrix``,
    e.g. SciPy's sparse sums, as its array: ``np.add.reduce`` keeps a matrix 2-D)."""
    if isinstance(x, _matrix):
        x = x.A
    return float(_sum(x, axis=None) / x.size)


def total(x: np.ndarray) -> float:
    """``float(x.sum())`` of an array (any shape): the same pairwise sum."""
    return float(_sum(x, axis=None))


#: entries from which a whole-array test that lets a masked operation be skipped
#: pays for itself (measured in session 29: below it, the mask costs less)
LARGE = 4096
_EPS = float(np.finfo(np.float64).eps)  # 2u: twice the unit round-off


def positive_throughout(x: np.ndarray) -> bool:
    """Whether ``x`` (float, at least :data:`LARGE` entries) is > 0 everywhere, so
    that a plain quotient by it equals the one masked ``where=x > 0``. False below
    :data:`LARGE` entries (the caller's masked form then), and where any entry is
    NaN (a NaN minimum is not > 0)."""
    return x.size >= LARGE and bool(_minimum.reduce(x, axis=None) > 0.0)


def positive_mask(x: np.ndarray) -> np.ndarray | None:
    """None where every entry of the float array ``x`` is > 0, so that a plain quotient
    by ``x`` equals the one masked ``where=x > 0``; else that mask, ``x > 0`` (a NaN is
    not > 0). Found by one minimum from :data:`LARGE` entries
    (:func:`positive_throughout`), below by the mask's count (a masked division costs
    ~1 us more than the plain one at 30 entries)."""
    if x.size >= LARGE and _minimum.reduce(x, axis=None) > 0.0:  # (positive_throughout(x),
        return None  # written out: one Python call fewer, ~0.15 us, six calls a step)
    pos = x > ZERO  # (x > 0.0's mask: ZERO, converted once, ~0.15 us less)
    return None if count_nonzero(pos) == pos.size else pos


def sum_slack(k: int, size: float) -> float:
    """A bound on the round-off of a running or pairwise sum of ``k`` terms >= 0
    whose exact total is about ``size``: ``4 (k + 2) eps * size``. It covers the
    ``k u`` of each of two such sums (u = eps / 2), with room: a quantity within
    its sum less this slack is within the sum formed another way (the affordability
    and queue-capacity certificates of the infrastructure layer)."""
    return 4.0 * (k + 2) * _EPS * size


def flatnonzero(a: Any) -> np.ndarray:
    """``np.flatnonzero(a)``: indices of the non-zero entries of ``a`` flattened,
    shape (k,), int (``np.nonzero(np.ravel(a))[0]``, as NumPy defines it; like
    ``np.ravel``, a ``np.matrix`` (SciPy's sparse sums) is flattened as an array)."""
    if type(a) is _ndarray and a.ndim == 1:  # (the usual call: a 1-D array is its ravel)
        return a.nonzero()[0]
    a = _asanyarray(a)
    if isinstance(a, _matrix):  # its ravel() stays 2-D: nonzero()[0] would be row indices
        a = a.A
    return a.ravel().nonzero()[0]


def leading(rows: np.ndarray) -> np.ndarray | slice:
    """``rows`` (increasing indices, as :func:`flatnonzero` gives them) as
    ``slice(0, k)`` when they are exactly the first ``k`` positions (the loan
    book's due loans, which come first), else ``rows`` itself. Indexing with
    either reads the same values; the slice reads a *view*, without a
    gather — use it only where the result is read before the array changes."""
    k = rows.size
    if k == 0 or (rows[0] == 0 and rows[k - 1] == k - 1):
        return slice(0, k)
    return rows


_U16 = 1 << 16


def stable_order(ids: np.ndarray, n: int) -> np.ndarray:
    """``np.argsort(ids, kind="stable")`` of integer ids in ``0..n-1``, shape (k,):
    the same permutation (a stable sort by the same keys is unique), by NumPy's
    radix sort of 16-bit keys: one pass when ``n <= 2**16``, else two (least
    significant digit first: the low 16 bits, then the high bits of the rows in
    that order; a stable sort by the high bits keeps the low bits' order among
    equal high bits, so the rows end in (high, low) order, ties in row order).
    NumPy sorts 64-bit keys stably by merge sort, 5-13x slower on a clearing's
    legs at 10,000 banks, 3-4x at 100,000."""
    if n <= _U16:
        return np.argsort(ids.astype(np.uint16), kind="stable")
    if n > _U16 * _U16:  # ids beyond 32 bits: NumPy's own sort
        return np.argsort(ids, kind="stable")
    low = np.argsort(ids.astype(np.uint16), kind="stable")  # (astype wraps: ids mod 2**16)
    high = (ids >> 16).astype(np.uint8 if n <= _U16 << 8 else np.uint16)
    return low[np.argsort(high[low], kind="stable")]
