"""The fast path of :func:`finsim_mesa.clearing.eisenberg_noe`: monotone Picard
iteration from ``p̄`` with a certification step.

The clearing map (Eisenberg & Noe 2001; Rogers & Veraart 2013 with default costs)

    Φ(p)_i = p̄_i                        if bank i is not short at p,
    Φ(p)_i = α_i e_i + β_i (Πᵀp)_i       otherwise

("short": ``e_i + (Πᵀp)_i < p̄_i − tol·max(1, p̄_i)``, or ``α_i e_i + β_i (Πᵀp)_i``
in that test for an institution in forced default; a short bank's realisable
resources are below ``p̄_i``) is monotone, so the iterates ``p_k = Φ^k(p̄)``
decrease to the greatest fixed point ``p*`` and stay above it. Hence a bank
short at an iterate is short at ``p*`` too: the default set only grows and never
holds a bank that does not default in the greatest clearing vector.

Iteration ``k`` computes ``Φ(p_{k−1})``; its step ``|Φ(p_{k−1}) − p_{k−1}|`` is
exactly the residual of ``p_{k−1}``. The iteration stops at the first ``p_{k−1}``
whose residual is within the tolerance — the certification: the defaulters'
payments solve their equations to the tolerance and every other bank pays
``p̄`` and is not short — and returns that ``p_{k−1}``: a clearing vector to the
tolerance, above ``p*``, with the default set of ``p*``.

The *wave* of a defaulter is the iteration ``k`` at which it is first short,
i.e. the smallest ``k ≥ 1`` with bank i short at ``Φ^{k−1}(p̄)``: wave 1 are the
fundamental defaults (short even if everybody pays in full), as round 1 of the
fictitious-default algorithm. Each later wave passes on the payments the
previous one implies (a sequential default cascade). A bank's wave is never
below its fictitious-default round — that algorithm solves each round's
payments exactly, so it reaches every default in as many rounds or fewer — and
equals it along a chain of single exposures.

Once the default set stops growing the iteration is linear and converges at
the spectral radius of ``βΠᵀ`` on the defaulters; a nearly closed group of
defaulters (one that owes almost only itself) makes it crawl. When the observed
rate predicts more than ``max_iter`` iterations, the fast path gives up
(returns ``None``) and the caller falls back to the fictitious-default
algorithm, which solves the linear systems directly.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

try:  # the kernel behind ``csc @ vector``, writing into a buffer we keep (no page faults)
    from scipy.sparse._sparsetools import csc_matvec as _csc_matvec
except ImportError:  # pragma: no cover - a SciPy that moved its private kernels
    _csc_matvec = None

__all__ = ["picard_clearing"]

MAX_ITER = 500  # give up (fall back) beyond this many iterations, observed or predicted
_RATE_EVERY = 4  # the convergence rate is sampled every this many iterations ...
_RATE_SAMPLES = 2  # ... and estimated over this many samples without new defaults


def picard_clearing(
    PiT: sp.csc_matrix | sp.csr_matrix, pbar: np.ndarray, e: np.ndarray, alpha: np.ndarray,
    beta: np.ndarray, forced: np.ndarray, scale: np.ndarray, residual_tol: float,
    max_iter: int = MAX_ITER,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """Greatest clearing vector by certified monotone Picard iteration.

    Args:
        PiT: ``Πᵀ``, shape (n, n), sparse (``PiT[i, j]`` = share of j's payments
            going to i; CSC is the fastest form).
        pbar: shape (n,), total obligations (money).
        e: shape (n,), external assets (money, ≥ 0).
        alpha, beta: shape (n,), Rogers–Veraart shares in [0, 1].
        forced: shape (n,), bool, institutions in forced default.
        scale: shape (n,), default-test margin: a bank is short when its
            resources are below ``p̄ − scale``.
        residual_tol: accepted max-norm residual of the payments (money).
        max_iter: give up beyond this many iterations (observed or predicted).

    Returns:
        ``(p, defaulted, wave, iterations)`` — payments (shape (n,)), default
        mask, wave of each defaulter (0 when solvent; see the module docstring)
        and the number of iterations — or ``None`` when the iteration converges
        too slowly (the caller then uses the fictitious-default algorithm).
    """
    n = pbar.size
    matvec = _matvec(sp.csc_matrix(PiT))
    thresh = pbar - scale
    ae = alpha * e
    has_forced = bool(forced.any())
    plain = not has_forced and bool(np.all(alpha == 1.0)) and bool(np.all(beta == 1.0))
    p, new, res = pbar.copy(), np.empty(n), np.empty(n)
    inflow, real = (None, None) if plain else (np.empty(n), np.empty(n))
    short, D = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    n_defaults = 0
    wave = np.zeros(n, dtype=np.int64)
    # new payments = max(min(realisable, p̄), floor): a defaulter's realisable
    # resources (below p̄ and >= 0: floor 0), exactly p̄ for the others (floor p̄) —
    # two branch-free passes instead of a masked select
    floor = pbar.copy()
    sums: list[float] = []
    quiet = 0  # iterations since the default set last grew
    for k in range(1, max_iter + 1):
        if plain:  # resources = realisable = e + Πᵀp, summed onto e
            np.copyto(res, e)
            matvec(p, res)
            realisable = res
        else:
            inflow.fill(0.0)
            matvec(p, inflow)
            np.multiply(beta, inflow, out=real)
            real += ae
            np.add(inflow, e, out=res)
            if has_forced:
                np.copyto(res, real, where=forced)
            realisable = real
        np.less(res, thresh, out=short)
        short |= D
        count = int(np.count_nonzero(short))
        np.minimum(realisable, pbar, out=new)
        if count > n_defaults:
            newly = np.flatnonzero(short & ~D)
            wave[newly] = k
            D[newly] = True
            n_defaults = count
            floor[newly] = 0.0
            np.maximum(new, floor, out=new)
            p, new = new, p
            sums.clear()
            quiet = 0
            continue
        np.maximum(new, floor, out=new)
        # the iterates only fall (in floating point too: the same sums of smaller
        # terms), so p − Φ(p) ≥ 0 and its maximum is the residual of p
        diff = np.subtract(p, new, out=res)
        step = float(diff.max(initial=0.0))
        if step <= residual_tol and float(diff.min(initial=0.0)) >= -residual_tol:
            return p, D, wave, k  # certified: p's residual is within the tolerance
        quiet += 1
        if quiet % _RATE_EVERY == 0:
            # Πᵀ's columns sum to at most 1, so the sum of the steps never grows:
            # its ratio over a window estimates the rate of convergence
            sums.append(float(diff.sum()))
            if len(sums) > _RATE_SAMPLES:
                rate = (sums[-1] / sums[-1 - _RATE_SAMPLES]) ** (
                    1.0 / (_RATE_EVERY * _RATE_SAMPLES))
                if rate >= 1.0 or k + math.log(residual_tol / step) / math.log(rate) > max_iter:
                    return None
        p, new = new, p
    return None


def _matvec(PiT: sp.csc_matrix):
    """``out += PiT @ x`` without allocating (SciPy's kernel), or the plain product."""
    m, n = PiT.shape
    if _csc_matvec is None:  # pragma: no cover
        def plain(x: np.ndarray, out: np.ndarray) -> None:
            out += PiT @ x
        return plain
    indptr, indices, data = PiT.indptr, PiT.indices, PiT.data

    def kernel(x: np.ndarray, out: np.ndarray) -> None:
        _csc_matvec(m, n, indptr, indices, data, x, out)
    return kernel
