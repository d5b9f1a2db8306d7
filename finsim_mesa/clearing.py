"""Eisenberg–Noe clearing with optional Rogers–Veraart default costs.

Pure functions on arrays; no model needed.

Notation (n institutions):

* ``L[i, j]`` — nominal amount institution *i* owes institution *j* (money);
* ``external_liabilities[i]`` — what *i* owes outside the network;
* ``p̄_i = Σ_j L[i, j] + external_liabilities[i]`` — total obligations;
* ``Π[i, j] = L[i, j] / p̄_i`` — relative liabilities;
* ``e_i ≥ 0`` — external (outside-network) assets available for payment.

A clearing vector solves ``p_i = p̄_i`` if ``e_i + (Πᵀp)_i ≥ p̄_i`` and
``p_i = α e_i + β (Πᵀp)_i`` otherwise (Rogers & Veraart 2013). With
``α = β = 1`` this is ``p = min(p̄, e + Πᵀp)`` (Eisenberg & Noe 2001).

Algorithm: the greatest clearing vector is found by the fictitious-default
algorithm (Eisenberg & Noe 2001, §3; Rogers & Veraart's "GA"): start with
everyone paying in full; each round declares in default the banks that cannot
pay given the others' current payments, then solves the *linear* system for
the defaulters' payments exactly (sparse LU), holding solvent banks at p̄.
The default set only grows, so at most n rounds are needed; in practice the
number of rounds is the depth of the default cascade.

Tolerance: a bank is declared in default when
``e_i + (Πᵀp)_i < p̄_i − tol · max(1, p̄_i)`` (``tol = 1e-9`` by default); the
payments of defaulters solve their linear system to a residual of at most
``1e-12`` relative to the largest obligation (exact LU below 300 defaulters).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import MatrixRankWarning, bicgstab, spsolve

__all__ = ["ClearingResult", "eisenberg_noe", "fixed_point_clearing"]

_DENSE_SOLVE_MAX = 300  # below this many defaulters a dense solve is faster than iterating
_NEUMANN_STEPS = 200  # monotone iterations tried before BiCGSTAB on large default sets
_RESIDUAL_TOL = 1e-12  # relative residual accepted for the defaulters' linear system


@dataclass(frozen=True)
class ClearingResult:
    """Outcome of a clearing.

    Attributes:
        payments: ``p``, shape (n,), total payment of each institution (money).
        obligations: ``p̄``, shape (n,), total nominal obligations (money).
        defaulted: shape (n,), bool, True where ``p_i < p̄_i`` (in default).
        default_round: shape (n,), int, round in which the bank defaulted
            (1 = fundamental default, 2+ = contagion), 0 when solvent.
        rounds: number of default rounds (contagion depth); 0 when nobody defaults.
        recovery: shape (n,), ``p_i / p̄_i`` (1 where ``p̄_i = 0``).
    """

    payments: np.ndarray
    obligations: np.ndarray
    defaulted: np.ndarray
    default_round: np.ndarray
    rounds: int
    recovery: np.ndarray

    @property
    def shortfall(self) -> np.ndarray:
        """``p̄ − p``, shape (n,): the unpaid part of each institution's obligations."""
        return self.obligations - self.payments

    @property
    def n_defaults(self) -> int:
        """Number of institutions in default."""
        return int(self.defaulted.sum())


def _prepare(
    liabilities: np.ndarray | sp.spmatrix | sp.sparray,
    external_assets: np.ndarray,
    external_liabilities: np.ndarray | None,
    alpha: float | np.ndarray,
    beta: float | np.ndarray,
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate inputs; return (Πᵀ as CSR, p̄, e, α, β) with α and β as (n,) arrays.

    Πᵀ is built in one pass from the (row, col, value) triplets of ``L``:
    duplicates are summed by the CSR construction, and each value is divided
    by its row total (``L_ij ≤ p̄_i``, so this never overflows, unlike
    multiplying by ``1 / p̄`` for denormal obligations).
    """
    if sp.issparse(liabilities):
        if liabilities.ndim != 2 or liabilities.shape[0] != liabilities.shape[1]:
            raise ValueError(f"liabilities must be square (n, n), got shape {liabilities.shape}")
        C = sp.coo_matrix(liabilities)
    else:
        arr = np.asarray(liabilities, dtype=float)
        if arr.ndim != 2:
            raise ValueError(f"liabilities must be a 2-D (n, n) matrix, got shape {arr.shape}")
        if arr.shape[0] != arr.shape[1]:
            raise ValueError(f"liabilities must be square (n, n), got shape {arr.shape}")
        C = sp.coo_matrix(arr)
    n = C.shape[0]
    row, col, data = C.row, C.col, np.asarray(C.data, dtype=float)
    e = np.asarray(external_assets, dtype=float).reshape(-1)
    if e.shape != (n,):
        raise ValueError(f"external_assets must have shape ({n},), got {e.shape}")
    ext = (np.zeros(n) if external_liabilities is None
           else np.asarray(external_liabilities, dtype=float).reshape(-1))
    if ext.shape != (n,):
        raise ValueError(f"external_liabilities must have shape ({n},), got {ext.shape}")
    for name, arr in (("liabilities", data), ("external_assets", e),
                      ("external_liabilities", ext)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
        if np.any(arr < 0):
            raise ValueError(f"{name} must be non-negative (min {arr.min():g})")
    if np.any((row == col) & (data != 0)):
        raise ValueError("liabilities must have a zero diagonal (no bank owes itself)")
    alpha_arr = np.broadcast_to(np.asarray(alpha, dtype=float), (n,)).copy()
    beta_arr = np.broadcast_to(np.asarray(beta, dtype=float), (n,)).copy()
    if not (np.all((alpha_arr >= 0) & (alpha_arr <= 1))
            and np.all((beta_arr >= 0) & (beta_arr <= 1))):
        raise ValueError(f"alpha and beta must lie in [0, 1], got alpha={alpha}, beta={beta}")
    pbar = np.bincount(row, weights=data, minlength=n) + ext
    keep = data > 0
    row, col, data = row[keep], col[keep], data[keep]
    PiT = sp.csr_matrix((data / pbar[row], (col, row)), shape=(n, n))
    return PiT, pbar, e, alpha_arr, beta_arr


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
    rows = PiT[idx]
    beta = beta[idx]
    A_DD = sp.diags(beta) @ rows[:, idx]  # β folded into the rows
    rhs = alpha[idx] * e[idx] + beta * (rows @ np.where(D, 0.0, p))
    k = idx.size
    upper = pbar[idx]
    scale = _RESIDUAL_TOL * max(1.0, float(np.abs(rhs).max(initial=0.0)), float(upper.max()))
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
            x, _info = bicgstab(M, rhs, x0=x, rtol=_RESIDUAL_TOL * 0.1, atol=0.0,
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
    return np.clip(x, 0.0, upper)


def eisenberg_noe(
    liabilities: np.ndarray | sp.spmatrix | sp.sparray,
    external_assets: np.ndarray,
    external_liabilities: np.ndarray | None = None,
    *,
    alpha: float | np.ndarray = 1.0,
    beta: float | np.ndarray = 1.0,
    tol: float = 1e-9,
    forced: np.ndarray | None = None,
) -> ClearingResult:
    """Greatest clearing payment vector of an interbank system.

    Args:
        liabilities: ``L``, shape (n, n), dense array or scipy sparse; ``L[i, j]``
            is what *i* owes *j* (money, ≥ 0, zero diagonal).
        external_assets: ``e``, shape (n,), assets from outside the network
            available for payment (money, ≥ 0).
        external_liabilities: shape (n,), obligations to creditors outside the
            network (money, ≥ 0); they share pro rata with interbank creditors.
        alpha: Rogers–Veraart share of external assets a defaulter realises
            (a scalar, or shape (n,) per institution).
        beta: Rogers–Veraart share of interbank receipts a defaulter realises
            (a scalar, or shape (n,)).
        tol: relative tolerance of the default test (see module docstring).
        forced: shape (n,), bool: institutions in default whatever their
            resources (e.g. put in resolution): only ``α e + β Πᵀp`` of their
            resources is realised, so default costs apply to them too — they pay
            ``min(p̄, α e + β Πᵀp)`` (in full only if that covers ``p̄``).

    Returns:
        A :class:`ClearingResult` with the greatest clearing vector.

    Raises:
        ValueError: on wrong shapes, negative or non-finite inputs.
    """
    PiT, pbar, e, alpha, beta = _prepare(liabilities, external_assets, external_liabilities,
                                         alpha, beta)
    n = pbar.size
    p = pbar.copy()
    D = np.zeros(n, dtype=bool)
    default_round = np.zeros(n, dtype=np.int64)
    rounds = 0
    scale = tol * np.maximum(1.0, pbar)
    forced = np.zeros(n, dtype=bool) if forced is None else np.asarray(forced, dtype=bool)
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
    recovery = np.divide(p, pbar, out=np.ones(n), where=pbar > 0)
    return ClearingResult(p, pbar, D, default_round, rounds, recovery)


def fixed_point_clearing(
    liabilities: np.ndarray | sp.spmatrix | sp.sparray,
    external_assets: np.ndarray,
    external_liabilities: np.ndarray | None = None,
    *,
    alpha: float | np.ndarray = 1.0,
    beta: float | np.ndarray = 1.0,
    tol: float = 1e-12,
    max_iter: int = 1_000_000,
    forced: np.ndarray | None = None,
) -> np.ndarray:
    """Reference method: monotone fixed-point (Picard) iteration from ``p = p̄``.

    Converges from above to the greatest clearing vector (Tarski), but slowly
    (linearly, at the spectral radius of ``βΠᵀ`` on the defaulters). Used in
    tests and benchmarks as an independent check of :func:`eisenberg_noe`.

    Returns:
        ``p``, shape (n,), payments (money), converged to ``tol`` in the max norm.
    """
    PiT, pbar, e, alpha, beta = _prepare(liabilities, external_assets, external_liabilities,
                                         alpha, beta)
    p = pbar.copy()
    forced = np.zeros(pbar.size, dtype=bool) if forced is None else np.asarray(forced, bool)
    for _ in range(max_iter):
        inflow = PiT @ p
        solvent = np.where(forced, alpha * e + beta * inflow, e + inflow) >= pbar
        new = np.where(solvent, pbar, np.minimum(pbar, alpha * e + beta * inflow))
        if np.max(np.abs(new - p), initial=0.0) <= tol * max(1.0, pbar.max(initial=0.0)):
            return new
        p = new
    raise RuntimeError(f"fixed-point clearing did not converge in {max_iter} iterations")
