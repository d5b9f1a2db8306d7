"""The fictitious-default algorithm of :func:`finsim_mesa.clearing.eisenberg_noe`
(Eisenberg & Noe 2001, §3; Rogers & Veraart 2013's "GA").

Start with everyone paying in full; each round declares in default the banks
that cannot pay given the others' current payments, then solves the *linear*
system for the defaulters' payments exactly, holding solvent banks at p̄. The
default set only grows, so at most n rounds are needed; the number of rounds
is the depth of the default cascade. Solves: dense LU below
``_DENSE_SOLVE_MAX`` defaulters; above, a monotone iteration warm-started from
the previous round, BiCGSTAB, then sparse LU, each checked by residual; a
singular system (a closed group owing only itself) takes the greatest solution
by monotone iteration.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import MatrixRankWarning, bicgstab, spsolve

from finsim_mesa.fastmath import clip

__all__ = ["RESIDUAL_TOL", "fictitious_default"]

_DENSE_SOLVE_MAX = 300  # below this many defaulters a dense solve is faster than iterating
_NEUMANN_STEPS = 200  # monotone iterations tried before BiCGSTAB on large default sets
RESIDUAL_TOL = 1e-12  # relative residual accepted for the defaulters' linear system


def _solve_defaulters(
    PiT: sp.csr_matrix, D: np.ndarray, p: np.ndarray, e: np.ndarray, pbar: np.ndarray,
    alpha: np.ndarray, beta: np.ndarray,
) -> np.ndarray:
    """Solve ``(I − β Πᵀ_DD) p_D = α e_D + β Πᵀ_DN p_N`` for the defaulters' payments.

    Small systems are solved directly (dense LU). Large ones are solved by the
    monotone iteration ``x ← rhs + βΠᵀ_DD x`` started from the current payments
    (which lie above the solution, since payments only fall from round to
    round), accelerated by BiCGSTAB when it is slow, and checked by residual;
    sparse LU is the last resort (it suffers heavy fill-in on random graphs).
    """
    idx = np.flatnonzero(D)
    if idx.size <= _DENSE_SOLVE_MAX:
        x_dense = _solve_dense(PiT, D, idx, p, e, pbar, alpha, beta)
        if x_dense is not None:
            return x_dense
    rows = PiT[idx]
    beta = beta[idx]
    A_DD = sp.diags(beta) @ rows[:, idx]  # β folded into the rows
    rhs = alpha[idx] * e[idx] + beta * (rows @ np.where(D, 0.0, p))
    k = idx.size
    upper = pbar[idx]
    scale = RESIDUAL_TOL * max(1.0, float(np.abs(rhs).max(initial=0.0)), float(upper.max()))
    M = sp.identity(k, format="csr") - A_DD

    def ok(x: np.ndarray | None) -> bool:
        return x is not None and bool(np.all(np.isfinite(x))) and \
            float(np.abs(M @ x - rhs).max(initial=0.0)) <= scale

    x: np.ndarray | None = None
    if k <= _DENSE_SOLVE_MAX:
        try:
            x = np.linalg.solve(M.toarray(), rhs)
        except np.linalg.LinAlgError:
            x = None
    else:
        # The step of this iteration is exactly its residual, so it stops for free
        # as soon as the residual meets the tolerance.
        x = np.minimum(p[idx], upper)
        for _ in range(_NEUMANN_STEPS):
            new = rhs + A_DD @ x
            step = float(np.abs(new - x).max(initial=0.0))
            x = new
            if step <= 0.5 * scale:
                break
        if not ok(x):
            x, _info = bicgstab(M, rhs, x0=x, rtol=RESIDUAL_TOL * 0.1, atol=0.0,
                                maxiter=10 * k)
        if not ok(x):
            with warnings.catch_warnings():
                warnings.simplefilter("error", MatrixRankWarning)
                try:
                    x = spsolve(M.tocsc(), rhs, permc_spec="COLAMD")
                except (MatrixRankWarning, RuntimeError):
                    x = None
    if not ok(x):
        # Singular system: a closed group of defaulters that owes only itself. The
        # greatest solution is the limit of the monotone iteration from p̄.
        x = upper.copy()
        for _ in range(1_000_000):
            new = np.minimum(upper, rhs + A_DD @ x)
            if np.max(np.abs(new - x), initial=0.0) <= scale * 1e-2:
                x = new
                break
            x = new
    return clip(x, 0.0, upper)


def _solve_dense(PiT: sp.csr_matrix, D: np.ndarray, idx: np.ndarray, p: np.ndarray,
                 e: np.ndarray, pbar: np.ndarray, alpha: np.ndarray, beta: np.ndarray
                 ) -> np.ndarray | None:
    """:func:`_solve_defaulters`' dense solve for a few defaulters (``idx``, at
    most ``_DENSE_SOLVE_MAX``), its matrix and right-hand side built from
    ``Πᵀ``'s stored entries with NumPy rather than SciPy's slicing and sums
    (those took ~1 ms a round on a thousand banks): the same ``M`` and ``rhs``,
    bit for bit, so the same solution. Returns None, for the sparse path to
    handle exactly as before, unless the residual is small enough that the
    sparse path's own check would surely accept it too (so a singular or
    nearly singular system always goes the sparse way)."""
    k = idx.size
    start, stop = PiT.indptr[idx], PiT.indptr[idx + 1]
    count = stop - start
    entry = np.repeat(stop - np.cumsum(count), count) + np.arange(int(count.sum()))
    pos = np.full(D.size, -1)
    pos[idx] = np.arange(k)
    col = pos[PiT.indices[entry]]
    row = np.repeat(np.arange(k), count)
    keep = col >= 0
    bD = beta[idx]
    M = np.eye(k)  # I − diag(β_D) Πᵀ_DD (no self-legs: Πᵀ's diagonal is empty)
    M[row[keep], col[keep]] -= bD[row[keep]] * PiT.data[entry[keep]]
    rhs = alpha[idx] * e[idx] + bD * (PiT @ np.where(D, 0.0, p))[idx]
    upper = pbar[idx]
    scale = RESIDUAL_TOL * max(1.0, float(np.abs(rhs).max(initial=0.0)), float(upper.max()))
    try:
        x = np.linalg.solve(M, rhs)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(x)):
        return None
    # The sparse path's check sums each row's products in another order. Two
    # orders of the same k products differ by at most ~2k·eps·Σ|M_ij x_j|
    # (recursive summation's bound; a fused multiply-add only tightens it):
    # accepted here only if the sparse check would accept too, with room to
    # spare; anything closer (a nearly singular system) goes the sparse way.
    res = np.abs(M @ x - rhs)
    margin = 16.0 * (k + 2) * np.finfo(float).eps * (np.abs(M) @ np.abs(x) + np.abs(rhs))
    if not np.all(res + margin <= scale):
        return None
    return clip(x, 0.0, upper)


def fictitious_default(PiT: sp.csr_matrix, pbar: np.ndarray, e: np.ndarray,
                       alpha: np.ndarray, beta: np.ndarray, forced: np.ndarray,
                       tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The greatest clearing vector by fictitious default.

    Args:
        PiT: ``Πᵀ``, shape (n, n), CSR.
        pbar, e: shape (n,), obligations and external assets (money).
        alpha, beta: shape (n,), Rogers–Veraart shares.
        forced: shape (n,), bool, institutions in forced default.
        tol: relative tolerance of the default test.

    Returns:
        ``(p, defaulted, default_round, rounds)``.
    """
    n = pbar.size
    p = pbar.copy()
    D = np.zeros(n, dtype=bool)
    default_round = np.zeros(n, dtype=np.int64)
    rounds = 0
    scale = tol * np.maximum(1.0, pbar)
    while True:
        inflow = PiT @ p
        # a forced institution only realises the default-cost shares of its resources
        resources = np.where(forced, alpha * e + beta * inflow, e + inflow)
        newly = ~D & (resources < pbar - scale)
        if not newly.any():
            break
        rounds += 1
        D |= newly
        default_round[newly] = rounds
        p[D] = _solve_defaulters(PiT, D, p, e, pbar, alpha, beta)
    return p, D, default_round, rounds
