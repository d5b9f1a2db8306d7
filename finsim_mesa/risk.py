"""Systemic-risk measures: pure functions on arrays, usable without a model.

* :func:`debtrank` — Battiston, Puliga, Kaushik, Tasca & Caldarelli (2012),
  "DebtRank: Too central to fail?", Sci. Rep. 2:541.
* :func:`debtrank_per_bank` — each bank's DebtRank when it alone defaults.
* :func:`liquidity_index`, :func:`stress_index`, :func:`systemic_risk_index`,
  :func:`rank_systemic` — see their docstrings.

Conventions: ``exposures[i, j]`` is what bank *j* owes bank *i* (i's loss if
*j* fails), money; ``equity`` is the capital that absorbs losses, money.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from finsim_mesa import initial_equity
from finsim_mesa.fastmath import ONE, ZERO, clip, count_nonzero, flatnonzero, total
from finsim_mesa.initial_equity import distress_into as _distress_into

_sum, _all = np.add.reduce, np.logical_and.reduce

__all__ = ["DebtRankResult", "debtrank", "debtrank_entries", "debtrank_per_bank", "impact_matrix",
           "liquidity_index", "rank_systemic", "stress_index", "systemic_risk_index"]


def impact_matrix(exposures: np.ndarray | sp.spmatrix, equity: np.ndarray,
                  present: np.ndarray | None = None) -> sp.csr_matrix:
    """``W[i, j] = min(1, exposures[i, j] / equity[i])``: the share of *i*'s equity
    lost when *j* is fully distressed (1 where *i* has no positive equity).

    ``present`` (shape (nnz,), for a canonical CSR ``exposures``): which stored
    entries are claims; the others get 0 and stay stored, so ``W`` has the
    pattern of ``exposures`` (a pattern fixed by the network, reused every step)
    and its products are bit for bit those of the pattern without them.
    """
    E = sp.csr_matrix(exposures, dtype=float)
    eq = np.asarray(equity, dtype=float)
    rows = np.repeat(np.arange(E.shape[0]), np.diff(E.indptr))
    data = _entry_weights(E.data, eq, rows, present)
    if present is not None:
        W = sp.csr_matrix(E, copy=False)  # a new matrix on the same pattern
        W.data = data
        return W
    W = sp.csr_matrix((data, E.indices.copy(), E.indptr.copy()), shape=E.shape)
    W.eliminate_zeros()
    return W


def _entry_weights(exposures: np.ndarray, equity: np.ndarray, rows: np.ndarray,
                   present: np.ndarray | None, out: np.ndarray | None = None) -> np.ndarray:
    """Stored entries of :func:`impact_matrix` (``rows``: each entry's creditor): ``min(1,
    exposure / equity)`` of the creditor, 1 without positive equity, 0 where not ``present``
    (test and safe divisor formed per bank, gathered once); ``out``: float64 (nnz,) or None."""
    f = initial_equity.figures(equity)  # (the test and divisors kept for a run's E0)
    pos = equity > ZERO if f is None else f.positive  # (ZERO, ONE: 0.0, 1.0 as float64)
    data = np.divide(exposures, (np.where(pos, equity, ONE) if f is None else f.safe).take(
        rows, mode="clip", out=out), out=out)  # (take(mode="clip"): as [rows], faster)
    np.minimum(ONE, data, out=data)
    if not (f.all_positive if f else count_nonzero(pos) == pos.size):  # no positive equity: 1
        data[~pos[rows]] = 1.0
    if present is not None:
        data *= present  # x * 0 = +0.0 and x * 1 = x for the finite x >= 0 here
    return data


@dataclass(frozen=True)
class DebtRankResult:
    """Outcome of a DebtRank propagation.

    Attributes:
        distress: ``h(T)``, final distress of each bank in [0, 1], shape (n,)
            (or (n, b) for a batch).
        debtrank: ``R = Σ v h(T) − Σ v h(1)``, the loss caused by propagation
            beyond the initial shock, as a share of total economic value.
        total: ``Σ v h(T)``, initial shock plus propagation.
        steps: number of propagation steps until no bank was distressed.
    """

    distress: np.ndarray
    debtrank: float | np.ndarray
    total: float | np.ndarray
    steps: int


def _propagate(W: sp.csr_matrix, h0: np.ndarray, max_steps: int) -> tuple[np.ndarray, int]:
    """Battiston et al.'s dynamics for one or a batch (columns) of initial shocks.

    States: undistressed (h = 0), distressed (propagates once, next step),
    inactive (has propagated). ``h_i(t) = min(1, h_i(t−1) + Σ_j W_ij h_j(t−1))``
    over ``j`` distressed at ``t−1``."""
    h = h0.astype(float).copy()
    distressed = h > 0
    inactive = np.zeros_like(distressed)
    steps = 0
    for _ in range(max_steps):
        if not distressed.any():
            break
        push = W @ np.where(distressed, h, 0.0)
        inactive |= distressed
        h = np.minimum(1.0, h + push)
        distressed = (h > 0) & ~inactive
        steps += 1
    return h, steps


def debtrank(
    exposures: np.ndarray | sp.spmatrix,
    equity: np.ndarray,
    initial_distress: np.ndarray,
    value: np.ndarray | None = None,
    max_steps: int | None = None,
    present: np.ndarray | None = None,
) -> DebtRankResult:
    """DebtRank of an initial distress pattern.

    Args:
        exposures: shape (n, n); ``[i, j]`` is i's exposure to j (money).
        equity: shape (n,), equity of each bank (money), the loss buffer.
        initial_distress: ``h(1)``, shape (n,), in [0, 1] (1 = default).
        value: economic value ``v`` of each bank, shape (n,); normalised to
            sum to 1. Defaults to each bank's share of total interbank exposure
            (its creditors' total claims on it), as in Battiston et al.
        max_steps: cap on propagation steps (default n + 1; the process ends
            after at most n steps since each bank propagates once).
        present: for a CSR ``exposures`` on a fixed pattern, which stored
            entries are claims (see :func:`impact_matrix`).

    Returns:
        :class:`DebtRankResult`.
    """
    h0 = clip(np.asarray(initial_distress, dtype=float), 0.0, 1.0)
    n = h0.shape[0]
    v = _values(exposures, value, n)
    W = impact_matrix(exposures, equity, present)
    h, steps = _propagate(W, h0, max_steps or n + 1)
    total = float(v @ h)
    return DebtRankResult(h, total - float(v @ h0), total, steps)


def debtrank_entries(
    rows: np.ndarray, cols: np.ndarray, exposures: np.ndarray, equity: np.ndarray,
    initial_distress: np.ndarray, value: np.ndarray, present: np.ndarray | None = None,
    by_column: tuple[np.ndarray, np.ndarray] | None = None,
) -> DebtRankResult:
    """:func:`debtrank` of the matrix whose stored entries are ``exposures[k]`` at
    (``rows[k]``, ``cols[k]``), given in CSR order (rows non-decreasing, no
    repeated pair), computed with NumPy alone: no sparse matrix is built, which
    is most of the cost on small networks. Bit for bit :func:`debtrank` of the
    CSR matrix of these entries: each row's products are summed in the same
    order (``np.bincount`` adds them in entry order from 0, as SciPy's CSR
    product does; the terms of undistressed columns, all ±0.0, are skipped, or,
    in a round with many distressed banks, summed as data × 0).

    Args:
        rows, cols: shape (nnz,), int: lender i, borrower j of each entry.
        exposures: shape (nnz,), money: what j owes i.
        equity: shape (n,), money.
        initial_distress: ``h(1)``, shape (n,), in [0, 1].
        value: shape (n,), economic value (normalised here).
        present: shape (nnz,), bool: which entries are claims (see
            :func:`impact_matrix`).
        by_column: the entries grouped by column (``LinkTable.by_column``:
            positions, shape (nnz,), and pointers, shape (n + 1,)); with it a
            round with few distressed banks gathers only their columns' entries
            (the same entries, sorted into entry order: the same sums) and, after
            the first round, updates only the rows they reach.

    Raises:
        ValueError: no ``value``; a ``by_column`` that does not fit the entries
            (taken from another table, or before pairs were added to it).
    """
    h, total, start, steps = _debtrank_rounds(rows, cols, exposures, equity, initial_distress,
                                              value, present, by_column)
    return DebtRankResult(h, total - start, total, steps)


def _debtrank_rounds(
    rows: np.ndarray, cols: np.ndarray, exposures: np.ndarray, equity: np.ndarray,
    initial_distress: np.ndarray, value: np.ndarray, present: np.ndarray | None,
    by_column: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[np.ndarray, float, float, int]:
    """:func:`debtrank_entries` as (final distress, ``Σ v h(T)``, ``Σ v h(1)``,
    steps), without building a :class:`DebtRankResult` (the record stage reads
    the two sums)."""
    if by_column is not None and (np.shape(by_column[0]) != np.shape(cols)
                                  or np.shape(by_column[1]) != (len(initial_distress) + 1,)):
        raise ValueError(f"by_column has {np.size(by_column[0])} positions and "
                         f"{np.size(by_column[1])} pointers for {np.size(cols)} entries of "
                         f"{len(initial_distress)} banks: take LinkTable.by_column(n) of the "
                         "table the entries came from, after them")
    if value is None:
        raise ValueError("debtrank_entries needs value (shape (n,), each bank's economic "
                         "value, e.g. its initial total assets); debtrank() can derive it "
                         "from the exposures")
    h0 = clip(np.asarray(initial_distress, dtype=float), 0.0, 1.0)
    return _rounds(rows, cols, exposures, np.asarray(equity, dtype=float), h0,
                   _values(None, value, h0.shape[0]), present, by_column)


def _rounds(rows: np.ndarray, cols: np.ndarray, exposures: np.ndarray, equity: np.ndarray,
            h0: np.ndarray, v: np.ndarray, present: np.ndarray | None,
            by_column: tuple[np.ndarray, np.ndarray] | None
            ) -> tuple[np.ndarray, float, float, int]:
    """:func:`_debtrank_rounds` of checked inputs (the record stage's call): float64
    ``equity`` and ``h0``, ``h0`` as :func:`clip` leaves it (e.g. :func:`distress`'s
    own: clipped again, no bit changes; not written to), ``v`` from :func:`_values`."""
    n, data = h0.shape[0], _entry_weights(exposures, equity, rows, present)
    if cols.size < _SCAN_BELOW and _all(data >= ZERO):  # every weight in [0, 1], none NaN
        return _growing(rows, cols, data, h0, v, n)
    h, distressed, inactive = h0, h0 > ZERO, np.zeros(n, dtype=bool)  # (h0 kept: new h each round)
    # whether a round may multiply every entry: only if every weight is finite (NaN
    # or -inf times 0 is NaN, not ±0.0; +inf cannot stay, min(1, ·)), checked once
    scan = None
    for steps in range(1, n + 2):  # (steps: the rounds run, this one included)
        if not (k := count_nonzero(distressed)):
            steps -= 1
            break
        # only the entries of distressed columns: the others add +0.0, which
        # changes no sum (all terms are >= 0), and the kept ones stay in order
        many = _SCAN_SHARE * k > n or cols.size < _SCAN_BELOW
        if many and scan is None:
            scan = bool(_all(np.isfinite(data)))  # np.isfinite(data).all(), in C
        if many and scan:
            # many distressed (a first round: most banks lost some equity): every entry,
            # the undistressed columns' distress read as 0 — their terms are data x 0 =
            # ±0.0, which change no sum (never -0.0: it starts at +0.0), the others the same
            push = np.bincount(rows, weights=data * np.where(distressed, h, ZERO).take(
                cols, mode="clip"), minlength=n)  # (take(mode="clip"): [cols], faster)
        else:
            few = by_column is not None and 16 * k < n and cols.size >= _COLUMN_PATH_MIN_ENTRIES
            sel = (_column_entries(by_column, ids := flatnonzero(distressed)) if few  # few of
                   else flatnonzero(distressed.take(cols, mode="clip")))  # many: their columns'
            r, w = rows.take(sel, mode="clip"), data.take(sel, mode="clip") * h.take(
                cols.take(sel, mode="clip"), mode="clip")
            if few and steps > 1:  # only the rows r (non-decreasing) reached change: h + 0.0
                # is h elsewhere (no -0.0 after a round) and h > 0 there only if inactive
                inactive[ids], distressed[ids] = True, False
                head = r != np.concatenate(([-1], r[:-1]))  # each row's first term
                u = r[head]  # and its terms summed in order from 0.0: bincount(r)'s sums
                h[u] = hu = np.minimum(ONE, h.take(u) + np.bincount(np.cumsum(head) - 1, weights=w))
                distressed[u] = np.less(inactive[u], hu > ZERO)  # (h: a round's own array)
                continue
            push = np.bincount(r, weights=w, minlength=n)
        inactive |= distressed
        h = np.minimum(ONE, h + push)
        distressed = np.less(inactive, h > ZERO)  # (h > 0) & ~inactive, in one call fewer
    return h, float(v.dot(h)) + 0.0, float(v.dot(h0)) + 0.0, steps  # (v @ h: see stress_index)


def _growing(rows: np.ndarray, cols: np.ndarray, data: np.ndarray, h0: np.ndarray, v: np.ndarray,
             n: int) -> tuple[np.ndarray, float, float, int]:
    """_rounds' scan of every entry each round (3 calls fewer), for weights in [0, 1], h0 in [0, 1]
    or NaN: no h falls, so a round's distressed are the banks the last moved off 0 (those > 0 before
    are inactive) and where(h before, 0, h after) is np.where(distressed, h, 0) (NaN: never)."""
    h, hd, steps = h0, np.where(h0 > ZERO, h0, ZERO), 0
    while count_nonzero(hd):
        steps += 1
        new = np.minimum(ONE, h + np.bincount(rows, data * hd.take(cols, mode="clip"), n))
        h, hd = new, np.where(h, ZERO, new)
    return h, float(v.dot(h)) + 0.0, float(v.dot(h0)) + 0.0, steps


_COLUMN_PATH_MIN_ENTRIES = 10_000  # below, scanning every entry costs less (measured)
# a round with more than 1/_SCAN_SHARE of the banks distressed multiplies every
# entry instead of gathering the distressed columns' (2x faster from a half at
# 10,000 banks, 4-7x at 100,000; the gathers win below a quarter), and so does every
# round on fewer than _SCAN_BELOW entries (its fewer calls win: measured at 30-100 banks)
_SCAN_SHARE, _SCAN_BELOW = 3, 1024


def _column_entries(by_column: tuple[np.ndarray, np.ndarray], cols: np.ndarray) -> np.ndarray:
    """Positions of the entries in columns ``cols``, in entry order, shape (k,)."""
    order, ptr = by_column
    start = ptr[cols]
    lens = ptr[cols + 1] - start
    total = int(lens.sum())
    # column j's positions order[start_j : start_j + len_j], all columns in one gather
    at = np.arange(total) + np.repeat(start - (np.cumsum(lens) - lens), lens)
    if _MARK_FROM * total <= order.size:  # few: sorted into entry order
        return np.sort(order.take(at, mode="clip"))  # (take: as order[at], faster)
    # more (sorting them costs more than a pass over all): marked, read in entry order
    mark = np.zeros(order.size, dtype=bool)
    mark[order.take(at, mode="clip")] = True
    return mark.nonzero()[0]


_MARK_FROM = 64  # entries of the columns beyond 1/64 of all: marked, not sorted (measured)


def _values(exposures: np.ndarray | sp.spmatrix | None, value: np.ndarray | None,
            n: int) -> np.ndarray:
    if value is None:
        value = np.asarray(sp.csr_matrix(exposures).sum(axis=0)).reshape(-1)
    v = np.asarray(value, dtype=float)
    s = _sum(v, axis=None)  # v.sum(), without its Python wrapper
    return v / s if s > 0 else np.full(n, 1.0 / n)


def debtrank_per_bank(
    exposures: np.ndarray | sp.spmatrix,
    equity: np.ndarray,
    value: np.ndarray | None = None,
    batch: int = 256,
) -> np.ndarray:
    """DebtRank ``R_j`` of each bank *j* defaulting alone (``h(1) = e_j``), shape (n,).

    Computed in batches of ``batch`` banks at once (sparse × dense), so the
    memory use is ``n × batch`` floats.
    """
    equity = np.asarray(equity, dtype=float)
    n = equity.size
    v = _values(exposures, value, n)
    W = impact_matrix(exposures, equity)
    out = np.empty(n)
    for start in range(0, n, batch):
        cols = np.arange(start, min(n, start + batch))
        h0 = np.zeros((n, cols.size))
        h0[cols, np.arange(cols.size)] = 1.0
        h, _ = _propagate(W, h0, n + 1)
        out[cols] = v @ h - v[cols]
    return out


def liquidity_index(cash: np.ndarray, short_term_liabilities: np.ndarray) -> float:
    """System liquidity coverage: total cash / total short-term liabilities
    (interbank liabilities plus the assumed deposit run-off); ``inf`` if none."""
    need = total(short_term_liabilities)
    # at least 0: cash rounded to -1e-15 after paying everything is no cash
    return max(total(cash), 0.0) / need if need > 0 else float("inf")


def stress_index(equity: np.ndarray, equity0: np.ndarray, defaulted: np.ndarray,
                 weights: np.ndarray | None = None, h: np.ndarray | None = None) -> float:
    """Weighted mean distress ``h_i = clip(1 − E_i / E0_i, 0, 1)`` (1 for defaulted
    banks), weights default to initial equity. In [0, 1]. ``h``: the distress
    (:func:`distress` of the same arguments), if already computed."""
    h = distress(equity, equity0, defaulted) if h is None else h
    f = initial_equity.figures(equity0) if weights is None else None  # (kept for E0)
    w = np.maximum(np.asarray(equity0 if weights is None else weights, dtype=float), ZERO
                   ) if f is None else f.weights
    weight = total(w) if f is None else f.weight
    if not weight > 0:
        return float(h.mean())
    # clipped as NumPy clips a float (NaN kept); w @ h as w.dot(h) + 0.0 (matmul's 0.0 + x of one
    wh = w.dot(h) if type(h) is np.ndarray and h.strides > (0,) else w @ h  # term) where h runs
    return min(max((float(wh) + 0.0) / weight, 0.0), 1.0)  # forwards (given reversed: they differ)


def distress(equity: np.ndarray, equity0: np.ndarray, defaulted: np.ndarray,
             out: np.ndarray | None = None) -> np.ndarray:
    """Relative equity loss ``clip(1 − E / E0, 0, 1)``; 1 for defaulted banks. Shape (n,);
    written into ``out`` (float64, shape (n,)) if given (it may be one of the inputs)."""
    # the same ufuncs in place, on one array (no temporaries, no zeros_like wrapper)
    if out is None:
        h = np.zeros(equity.shape if type(equity) is np.ndarray else np.shape(equity))
    elif (np.may_share_memory(out, equity) or np.may_share_memory(out, equity0)
          or np.may_share_memory(out, defaulted)):  # the fill below would erase an input
        out[...] = distress(equity, equity0, defaulted)
        return out
    else:
        h = out
        h.fill(0.0)
    return _distress_into(h, equity, equity0, defaulted)


# Weights of the composite index: propagated distress, default rate, stress,
# price fall, loss of liquidity.
SRI_WEIGHTS = {"debtrank": 0.3, "default_rate": 0.2, "stress": 0.2, "price_drop": 0.15,
               "illiquidity": 0.15}
_SRI_W = tuple(SRI_WEIGHTS.values())  # in the order of systemic_risk_index's parts


def systemic_risk_index(debtrank_total: float, default_rate: float, stress: float,
                        price_index: float, liquidity: float, liquidity0: float) -> float:
    """Composite systemic-risk index in [0, 1]: the :data:`SRI_WEIGHTS`-weighted mean
    of DebtRank total distress, default rate, stress index, price fall
    ``1 − price_index`` and illiquidity ``1 − min(1, liquidity / liquidity0)``."""
    illiq = 1.0 - min(1.0, liquidity / liquidity0) if liquidity0 > 0 else 0.0
    wa, wb, wc, wd, we = _SRI_W
    # NumPy's sum of < 8 floats (one after another) written out, not sum(): 3.12's is
    # compensated, 3.11's is not, and the two CI legs must give identical figures;
    # min(max(v, 0), 1) is NumPy's clip of a float (NaN kept), without NumPy scalars
    sri = wa * min(max(float(debtrank_total), 0.0), 1.0)
    sri += wb * min(max(float(default_rate), 0.0), 1.0)
    sri += wc * min(max(float(stress), 0.0), 1.0)
    sri += wd * min(max(float(1.0 - price_index), 0.0), 1.0)
    return sri + we * min(max(float(illiq), 0.0), 1.0)


def rank_systemic(scores: np.ndarray, size: np.ndarray | None = None,
                  top: int | None = None) -> np.ndarray:
    """Bank indices by decreasing ``scores`` (ties broken by larger ``size``)."""
    scores = np.asarray(scores, dtype=float)
    tie = np.zeros_like(scores) if size is None else np.asarray(size, dtype=float)
    order = np.lexsort((-tie, -scores))
    return order if top is None else order[:top]
