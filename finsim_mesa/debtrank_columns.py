"""DebtRank's rounds on the link entries grouped by column: the record stage's
form (:func:`finsim_mesa.measures.update_full`) from
``risk._COLUMN_PATH_MIN_ENTRIES`` entries, bit for bit ``risk._rounds``.

Each column (bank) is distressed in one round only, so reading only the
distressed columns' entries reads every entry once over all rounds, against a
pass over all entries per round for the former form's middle rounds; the
arrays of ~nnz elements live on between calls (at 100,000 banks a fresh one
costs more in page faults than its arithmetic).
"""

from __future__ import annotations

import threading

import numpy as np

from finsim_mesa import risk
from finsim_mesa.fastmath import ONE, ZERO, count_nonzero, flatnonzero

__all__ = ["column_rounds"]


_WORK = threading.local()  # column_rounds' kept arrays, per thread (models run in threads)


def column_rounds(rows: np.ndarray, exposures: np.ndarray, equity: np.ndarray, h0: np.ndarray,
                  present: np.ndarray | None, by_column: tuple[np.ndarray, np.ndarray]
                  ) -> np.ndarray:
    """``h(T)`` of ``risk._rounds`` (same arguments, ``by_column`` required; ``h0``
    not written to), bit for bit, on the entries grouped by column. A round gathers its
    distressed columns' entries, columns ascending, so each row's terms come in entry
    order (a row's columns ascend) and ``np.bincount`` adds them from 0.0 as before;
    every entry is read in one round only. After the first round a round with few
    entries updates only the rows they reach (h + 0.0 is h elsewhere: no -0.0 after a
    round, and h > 0 there only if inactive). The weights and the rows in column order
    are written into kept arrays: fresh ones (~nnz floats) cost more in page faults
    than their arithmetic at 100,000 banks."""
    order, ptr = by_column
    n, nnz = h0.shape[0], order.size
    work = getattr(_WORK, "arrays", None)
    if work is None or work[0].size < nnz or work[1].size != n:  # room for nnz entries
        cap = nnz + nnz // 4  # (pairs are added in the first steps: not one array each time)
        # rows in column order, slots, weights (2), 0..cap-1, positions, their columns, h
        _WORK.arrays = work = (np.empty(cap, np.int64), np.empty(n, np.int64), np.empty(cap),
                               np.empty(cap), np.arange(cap), np.empty(cap, np.int64),
                               np.empty(cap, np.int64), np.empty(cap))
        _WORK.pattern = None
    rows_c, slot, buf, data, ar, at_, col_, hcol = work
    seen = getattr(_WORK, "pattern", None)  # (the link table's arrays: never changed in place)
    if seen is None or seen[0] is not order or seen[1] is not rows:
        rows.take(order, mode="clip", out=rows_c[:nnz])
        _WORK.pattern = (order, rows)
    risk._entry_weights(exposures, equity, rows, present, buf[:nnz]).take(
        order, mode="clip", out=data[:nnz])
    h = h0.copy()
    distressed = h > ZERO
    inactive = np.zeros(n, dtype=bool)
    for steps in range(1, n + 2):
        ids = flatnonzero(distressed)
        if not ids.size:
            break
        at, col, m = _positions(ids, ptr, at_, col_)
        w = np.multiply(data.take(at, mode="clip", out=buf[:m]),
                        h.take(col, mode="clip", out=hcol[:m]), out=buf[:m])
        r = rows_c.take(at, mode="clip", out=col)  # (col read above)
        inactive[ids] = True
        if steps == 1 or _PART_SHARE * m > n:  # every row
            np.add(h, np.bincount(r, weights=w, minlength=n), out=h)
            np.minimum(h, ONE, out=h)
            distressed = np.less(inactive, h > ZERO)
            continue
        # the rows reached: each row's terms summed, in r's order, at a slot of its own
        # (one of its positions in r: whichever write lands)
        slot[r] = ar[:m]
        s = slot.take(r, mode="clip")
        first = flatnonzero(s == ar[:m])
        u = r.take(first, mode="clip")
        distressed[ids] = False
        h[u] = hu = np.minimum(ONE, h.take(u) + np.bincount(s, weights=w, minlength=m).take(first))
        distressed[u] = np.less(inactive.take(u), hu > ZERO)
    return h


_PART_SHARE = 16  # a round with under 1/16 as many entries as banks: only the rows reached


def _positions(ids: np.ndarray, ptr: np.ndarray, at: np.ndarray, col: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, int]:
    """The positions (in column order) of the entries of columns ``ids`` (ascending),
    column by column, and each one's column, written into the heads of ``at`` and
    ``col``; and their number. (Each a running sum of steps: 1 within a column, the
    jump to the next column's first position at its start; np.repeat is slower.)"""
    start = ptr.take(ids, mode="clip")
    ln = ptr.take(ids + 1, mode="clip") - start
    if count_nonzero(ln) < ln.size:  # columns without entries: left out
        keep = flatnonzero(ln)
        ids, start, ln = ids.take(keep), start.take(keep), ln.take(keep)
    if not ln.size:
        return at[:0], col[:0], 0
    off = np.cumsum(ln)
    m = int(off[-1])
    at, col = at[:m], col[:m]
    at.fill(1)
    col.fill(0)
    at[0], col[0] = start[0], ids[0]
    at[off[:-1]] = start[1:] - (start[:-1] + ln[:-1]) + 1
    col[off[:-1]] = ids[1:] - ids[:-1]
    return np.cumsum(at, out=at), np.cumsum(col, out=col), m
