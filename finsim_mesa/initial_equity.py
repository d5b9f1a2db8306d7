"""Figures of the banks' initial equity ``E0`` (``Ledger.equity0``), kept for a run.

E0 does not change while a model runs, yet each step the distress (three
times), the stress index, the rewards and DebtRank tested it (``E0 > 0``) or
weighed by it (``max(E0, 0)`` and its sum): ~10 NumPy calls a step, at 30
banks ~1 µs each, and a division masked ``where=E0 > 0`` costs ~1 µs more
than the plain one, which gives the same quotients where every ``E0 > 0``.
:func:`figures` keeps them for the last E0s seen, keyed by their bytes: an array
changed in place, or another run's, gets its figures computed afresh (the
key is what the figures are computed from, so they are the same values).
Below :data:`~finsim_mesa.fastmath.LARGE` banks only (there a key costs
~0.1 µs); from it, None: the callers' own forms, unchanged.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from finsim_mesa.fastmath import LARGE, ONE, ZERO, count_nonzero, total

__all__ = ["Figures", "distress_into", "figures"]

_F64 = np.dtype(np.float64)
try:  # the ufunc np.clip calls, without its Python wrapper
    from numpy._core.umath import clip as _clip
except ImportError:  # pragma: no cover - NumPy < 2
    _clip = np.clip


class Figures(NamedTuple):
    """What the stages read of E0, shape (n,) each (arrays read-only)."""

    positive: np.ndarray  # E0 > 0 (bool)
    all_positive: bool  # every E0 > 0 (a NaN is not)
    weights: np.ndarray  # max(E0, 0): the stress index's weights
    weight: float  # their sum (float(weights.sum()))
    safe: np.ndarray  # E0 where > 0, else 1.0: DebtRank's divisors


# (E0's bytes, its figures), the last found first: several models' (stepped in turns);
# compared, not hashed (a hash reads every byte, a comparison stops at the first
# difference; at 1,000 banks hashing the 8 kB key each call cost more than the figures)
_KEPT: list[tuple[bytes, Figures]] = []
_KEEP = 16  # at most this many kept


def figures(equity0: Any) -> Figures | None:
    """The :class:`Figures` of ``equity0`` (a 1-D float64 array in native byte
    order, fewer than ``LARGE`` entries); None for anything else. Kept for the
    last :data:`_KEEP` E0s seen (models stepped in turns each find theirs)."""
    if (type(equity0) is not np.ndarray or equity0.dtype is not _F64 or equity0.ndim != 1
            or equity0.size >= LARGE):
        return None
    key = equity0.tobytes()
    for k, f in _KEPT:
        if k == key:
            return f
    positive = equity0 > ZERO
    weights = np.maximum(equity0, ZERO)
    safe = np.where(positive, equity0, ONE)
    for a in (positive, weights, safe):
        a.flags.writeable = False
    f = Figures(positive, bool(count_nonzero(positive) == positive.size), weights, total(weights),
                safe)
    _KEPT.insert(0, (key, f))
    del _KEPT[_KEEP:]
    return f


def distress_into(h: np.ndarray, equity: np.ndarray, equity0: np.ndarray,
                  defaulted: np.ndarray) -> np.ndarray:
    """:func:`~finsim_mesa.risk.distress` written into ``h`` (float64, shape (n,), all
    +0.0, sharing no memory with the inputs: the caller's guarantee, e.g. a new
    array); ``risk._distress_into``. Every E0 > 0 (the usual case): the unmasked
    quotient, the one the mask ``E0 > 0`` gives; no bank in default: no assignment
    (an all-False mask sets nothing). Clipped by ``np.clip``'s ufunc, which gives
    ``np.minimum(np.maximum(x, 0), 1)`` except that it may keep a -0.0, and
    ``1 - x`` is never -0.0 (NaN kept by both)."""
    f = figures(equity0)
    if f is not None and f.all_positive:
        np.divide(equity, equity0, out=h)
    else:  # (ZERO, ONE: 0.0, 1.0 as float64 operands)
        np.divide(equity, equity0, out=h, where=equity0 > ZERO if f is None else f.positive)
    np.subtract(ONE, h, out=h)  # (never -0.0: 1 - x is -0.0 for no x)
    _clip(h, ZERO, ONE, out=h)  # min(max(h, 0), 1) in one pass (it differs only on -0.0)
    if count_nonzero(d := np.asarray(defaulted, dtype=bool)):
        h[d] = 1.0
    return h
