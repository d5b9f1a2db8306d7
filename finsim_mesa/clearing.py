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

Algorithm (:mod:`finsim_mesa.clearing_rounds`): the greatest clearing vector is
found by the fictitious-default algorithm (Eisenberg & Noe 2001, §3; Rogers &
Veraart's "GA"): start with
everyone paying in full; each round declares in default the banks that cannot
pay given the others' current payments, then solves the *linear* system for
the defaulters' payments exactly (sparse LU), holding solvent banks at p̄.
The default set only grows, so at most n rounds are needed; in practice the
number of rounds is the depth of the default cascade.

Fast path (``method="picard"``, the default from ``FAST_PATH_MIN_N``
institutions on; :mod:`finsim_mesa.clearing_picard`): monotone Picard iteration
``p ← Φ(p)`` from ``p̄``, one sparse mat-vec per iteration and no linear solve,
stopped by a certification step. Its iterates stay above the greatest clearing
vector, so every bank they find in default defaults in it too. When it
converges too slowly (a nearly closed group of defaulters) it falls back to the
fictitious-default algorithm (``result.method`` says which ran).

Contagion depth: with the fictitious-default algorithm, ``default_round`` is the
round in which a bank defaults and ``rounds`` their number (Eisenberg & Noe's
"waves of default"). With the fast path, ``default_round`` is the *wave*: the
first Picard iteration ``k`` at which the bank is short, i.e. the smallest
``k`` with bank i short at ``Φ^{k−1}(p̄)`` (a sequential cascade, each wave
passing on the payments the previous one implies), and ``rounds`` the last
wave. Wave 1 is round 1 (the fundamental defaults); along a chain waves equal
rounds; in general a bank's wave is at least its round.

Tolerance: a bank is declared in default when
``e_i + (Πᵀp)_i < p̄_i − tol · max(1, p̄_i)`` (``tol = 1e-9`` by default); the
payments of defaulters solve their linear system to a residual of at most
``1e-12`` relative to the largest obligation (exact LU below 300 defaulters;
on the fast path, the residual of the returned iterate).

:func:`clear_legs` is the same clearing for callers whose inputs are valid by
construction (the model's clear stage): no validation, and no matrix at all
when nobody is short even if everybody pays in full.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from finsim_mesa.clearing_picard import picard_clearing
from finsim_mesa.clearing_rounds import RESIDUAL_TOL, fictitious_default
from finsim_mesa.fastmath import ONE, constant, count_nonzero, stable_order

__all__ = ["FAST_PATH_MIN_N", "METHODS", "ClearingResult", "clear_legs", "eisenberg_noe",
           "fixed_point_clearing", "pays_in_full"]

FAST_PATH_MIN_N = 5000  # method="auto" takes the fast path from this many institutions
METHODS = ("auto", "rounds", "picard")



@dataclass(frozen=True)
class ClearingResult:
    """Outcome of a clearing.

    Attributes:
        payments: ``p``, shape (n,), total payment of each institution (money).
        obligations: ``p̄``, shape (n,), total nominal obligations (money).
        defaulted: shape (n,), bool, True where ``p_i < p̄_i`` (in default).
        default_round: shape (n,), int, round in which the bank defaulted
            (1 = fundamental default, 2+ = contagion), 0 when solvent.
            With ``method == "picard"`` the wave (see the module docstring).
        rounds: number of default rounds (contagion depth; the last wave with
            ``method == "picard"``); 0 when nobody defaults.
        recovery: shape (n,), ``p_i / p̄_i`` (1 where ``p̄_i = 0``).
        method: the algorithm that produced the result: ``"rounds"``
            (fictitious default) or ``"picard"`` (the fast path).
    """

    payments: np.ndarray
    obligations: np.ndarray
    defaulted: np.ndarray
    default_round: np.ndarray
    rounds: int
    recovery: np.ndarray
    method: str = "rounds"

    @property
    def shortfall(self) -> np.ndarray:
        """``p̄ − p``, shape (n,): the unpaid part of each institution's obligations."""
        return self.obligations - self.payments

    @property
    def n_defaults(self) -> int:
        """Number of institutions in default."""
        return int(self.defaulted.sum())


def _check_vectors(
    n: int, external_assets: np.ndarray, external_liabilities: np.ndarray | None,
    alpha: float | np.ndarray, beta: float | np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate the per-institution inputs; return (e, ext, α, β) as (n,) arrays."""
    e = np.asarray(external_assets, dtype=float).reshape(-1)
    if e.shape != (n,):
        raise ValueError(f"external_assets must have shape ({n},), got {e.shape}")
    ext = (np.zeros(n) if external_liabilities is None
           else np.asarray(external_liabilities, dtype=float).reshape(-1))
    if ext.shape != (n,):
        raise ValueError(f"external_liabilities must have shape ({n},), got {ext.shape}")
    for name, arr in (("external_assets", e), ("external_liabilities", ext)):
        _check_values(name, arr)
    alpha_arr = np.broadcast_to(np.asarray(alpha, dtype=float), (n,))  # read-only views
    beta_arr = np.broadcast_to(np.asarray(beta, dtype=float), (n,))
    if not (np.all((alpha_arr >= 0) & (alpha_arr <= 1))
            and np.all((beta_arr >= 0) & (beta_arr <= 1))):
        raise ValueError(f"alpha and beta must lie in [0, 1], got alpha={alpha}, beta={beta}")
    return e, ext, alpha_arr, beta_arr


def _check_values(name: str, arr: np.ndarray) -> None:
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be non-negative (min {arr.min():g})")


def _check_matrix(liabilities: np.ndarray | sp.spmatrix | sp.sparray
                  ) -> np.ndarray | sp.spmatrix | sp.sparray:
    """The liabilities as a square sparse matrix or 2-D float array (shape checked)."""
    if sp.issparse(liabilities):
        if liabilities.ndim != 2 or liabilities.shape[0] != liabilities.shape[1]:
            raise ValueError(f"liabilities must be square (n, n), got shape {liabilities.shape}")
        return liabilities
    arr = np.asarray(liabilities, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"liabilities must be a 2-D (n, n) matrix, got shape {arr.shape}")
    if arr.shape[0] != arr.shape[1]:
        raise ValueError(f"liabilities must be square (n, n), got shape {arr.shape}")
    return arr


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
    C = sp.coo_matrix(_check_matrix(liabilities))
    n = C.shape[0]
    row, col, data = C.row, C.col, np.asarray(C.data, dtype=float)
    _check_values("liabilities", data)
    e, ext, alpha_arr, beta_arr = _check_vectors(n, external_assets, external_liabilities,
                                                 alpha, beta)
    if np.any((row == col) & (data != 0)):
        raise ValueError("liabilities must have a zero diagonal (no bank owes itself)")
    pbar = np.bincount(row, weights=data, minlength=n) + ext
    keep = data > 0
    row, col, data = row[keep], col[keep], data[keep]
    PiT = sp.csr_matrix((data / pbar[row], (col, row)), shape=(n, n))
    return PiT, pbar, e, alpha_arr, beta_arr


def _prepare_fast(
    liabilities: np.ndarray | sp.spmatrix | sp.sparray,
    external_assets: np.ndarray,
    external_liabilities: np.ndarray | None,
    alpha: float | np.ndarray,
    beta: float | np.ndarray,
) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`_prepare`, with Πᵀ as CSC: the rows of ``L`` (what each bank owes)
    scaled by ``1 / p̄`` are the columns of Πᵀ, so no transposition is needed, and
    its mat-vec scatters instead of chaining sums (about twice as fast)."""
    C = sp.csr_matrix(_check_matrix(liabilities), dtype=float)  # may share the user's arrays
    if not C.has_canonical_format:
        C = C.copy()
        C.sum_duplicates()
    n = C.shape[0]
    _check_values("liabilities", C.data)
    e, ext, alpha_arr, beta_arr = _check_vectors(n, external_assets, external_liabilities,
                                                 alpha, beta)
    if np.any(C.diagonal() != 0):
        raise ValueError("liabilities must have a zero diagonal (no bank owes itself)")
    counts = np.diff(C.indptr)
    pbar = C @ np.ones(n)
    pbar += ext
    # L_ij / p̄_i (division: never overflows); an explicit zero stays 0, also where p̄ = 0
    data = np.repeat(pbar, counts)
    np.divide(C.data, data, out=data, where=C.data > 0)
    data[C.data == 0] = 0.0
    PiT = sp.csc_matrix((data, C.indices, C.indptr), shape=(n, n))
    return PiT, pbar, e, alpha_arr, beta_arr


def _picard_result(
    PiT: sp.csc_matrix, pbar: np.ndarray, e: np.ndarray, alpha: np.ndarray, beta: np.ndarray,
    forced: np.ndarray, tol: float,
) -> ClearingResult | None:
    """The fast path on validated inputs (Πᵀ as CSC, p̄, e, α, β, forced as from
    :func:`_prepare_fast`); None when it would converge too slowly."""
    out = picard_clearing(PiT, pbar, e, alpha, beta, forced, tol * np.maximum(1.0, pbar),
                          RESIDUAL_TOL * max(1.0, float(pbar.max(initial=0.0))))
    if out is None:
        return None
    p, D, wave, _iterations = out
    recovery = np.divide(p, pbar, out=np.ones(pbar.size), where=pbar > 0)
    return ClearingResult(p, pbar, D, wave, int(wave.max(initial=0)), recovery, "picard")


def _rounds_result(
    PiT: sp.csr_matrix, pbar: np.ndarray, e: np.ndarray, alpha: np.ndarray, beta: np.ndarray,
    forced: np.ndarray, tol: float,
) -> ClearingResult:
    """Fictitious default on validated inputs (Πᵀ as CSR, as from :func:`_prepare`)."""
    p, D, default_round, rounds = fictitious_default(PiT, pbar, e, alpha, beta, forced, tol)
    recovery = np.divide(p, pbar, out=np.ones(pbar.size), where=pbar > 0)
    return ClearingResult(p, pbar, D, default_round, rounds, recovery)


def eisenberg_noe(
    liabilities: np.ndarray | sp.spmatrix | sp.sparray,
    external_assets: np.ndarray,
    external_liabilities: np.ndarray | None = None,
    *,
    alpha: float | np.ndarray = 1.0,
    beta: float | np.ndarray = 1.0,
    tol: float = 1e-9,
    forced: np.ndarray | None = None,
    method: str = "auto",
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
        method: ``"rounds"`` (fictitious default: default rounds as contagion
            depth), ``"picard"`` (the fast path: waves as contagion depth; falls
            back to rounds when it converges too slowly) or ``"auto"`` (rounds
            below ``FAST_PATH_MIN_N`` institutions, the fast path from there on).
            The same clearing vector to the tolerance either way; ``method`` of
            the result says which ran (see the module docstring).

    Returns:
        A :class:`ClearingResult` with the greatest clearing vector.

    Raises:
        ValueError: on wrong shapes, negative or non-finite inputs, an unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    n_in = _check_matrix(liabilities).shape[0]
    forced_arr = (np.zeros(n_in, dtype=bool) if forced is None
                  else np.asarray(forced, dtype=bool).reshape(-1))
    if forced_arr.shape != (n_in,):
        raise ValueError(f"forced must have shape ({n_in},), got {forced_arr.shape}")
    if method == "picard" or (method == "auto" and n_in >= FAST_PATH_MIN_N):
        PiT, pbar, e, alpha_a, beta_a = _prepare_fast(liabilities, external_assets,
                                                      external_liabilities, alpha, beta)
        result = _picard_result(PiT, pbar, e, alpha_a, beta_a, forced_arr, tol)
        if result is not None:
            return result
    PiT, pbar, e, alpha_a, beta_a = _prepare(liabilities, external_assets,
                                             external_liabilities, alpha, beta)
    return _rounds_result(PiT, pbar, e, alpha_a, beta_a, forced_arr, tol)


_ROUNDING = constant(8.0 * np.finfo(float).eps)  # the fast path's round-off bound per term
_TOL, _FOUR, _F64 = constant(1e-9), np.array(4, dtype=np.int64), np.dtype(np.float64)
_FOUR.flags.writeable = False


def pays_in_full(pbar: np.ndarray, inflow: np.ndarray, terms: np.ndarray,
                 external_assets: np.ndarray, tol: float = 1e-9) -> bool:
    """Whether :func:`clear_legs` (no institution forced) finds that everybody pays
    in full without building a matrix: each institution's resources with
    everybody paying in full (``external_assets + inflow``; ``inflow``: the exact
    sums of what it is owed, from ``terms`` legs) clear its obligations
    ``pbar`` by more than the round-off of computing them. Shapes (n,)."""
    one, tol = ((ONE, _TOL) if pbar.dtype is _F64 and type(tol) is float and tol == 1e-9
                else (1.0, tol))  # (float64 p̄, the default tol: 0-d operands, not converted)
    thresh = pbar - tol * np.maximum(one, pbar)
    # the exact inflows; eisenberg_noe's differ by the round-off of sums of
    # (amount / p̄) · p̄: at most a few ulps per term, bounded by ``slack``
    resources = external_assets + inflow
    slack = _ROUNDING * (terms + _FOUR) * resources
    return count_nonzero(resources - slack >= thresh) == pbar.size


def clear_legs(
    debtor: np.ndarray, creditor: np.ndarray, amount: np.ndarray, external_assets: np.ndarray,
    external_liabilities: np.ndarray, alpha: np.ndarray | float, beta: np.ndarray | float,
    forced: np.ndarray, tol: float = 1e-9,
) -> ClearingResult:
    """:func:`eisenberg_noe` (``method="auto"``) of obligations given as legs, for
    inputs valid by construction: nothing is checked.

    Args:
        debtor, creditor: shape (m,), int, the two ends of each leg (no self-legs).
        amount: shape (m,), what each debtor owes on it (money, finite, ≥ 0);
            legs between the same pair add up.
        external_assets, external_liabilities: shape (n,), as in :func:`eisenberg_noe`.
        alpha, beta: shape (n,) (or one number each), Rogers–Veraart shares in [0, 1].
        forced: shape (n,), bool, institutions in forced default.
        tol: relative tolerance of the default test.

    When no institution is forced and each one's resources, with everybody
    paying in full, clear its obligations by more than the round-off of
    computing them, everybody pays in full and no matrix is built; the result
    is then bit for bit what :func:`eisenberg_noe` returns (it would find
    nobody short in its first test). Otherwise the legs become ``Πᵀ`` as in
    :func:`eisenberg_noe` (the same sums in the same order) and it clears.
    """
    n = external_assets.size
    pbar = np.bincount(debtor, weights=amount, minlength=n) + external_liabilities
    if not count_nonzero(forced) and pays_in_full(
            pbar, np.bincount(creditor, weights=amount, minlength=n),
            np.bincount(creditor, minlength=n), external_assets, tol):
        return ClearingResult(pbar.copy(), pbar, np.zeros(n, dtype=bool),
                                  np.zeros(n, dtype=np.int64), 0,
                                  np.ones(n), "rounds" if n < FAST_PATH_MIN_N else "picard")
    alpha = np.broadcast_to(np.asarray(alpha, dtype=float), (n,))  # one number, or per
    beta = np.broadcast_to(np.asarray(beta, dtype=float), (n,))  # institution (read-only)
    keep = amount > 0
    row, col, data = debtor[keep], creditor[keep], amount[keep]
    if n >= FAST_PATH_MIN_N:
        order = stable_order(row, n)  # Πᵀ's columns are the debtors (a stable argsort)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(row, minlength=n), out=indptr[1:])
        PiT = sp.csc_matrix(((data / pbar[row])[order], col[order], indptr), shape=(n, n))
        result = _picard_result(PiT, pbar, external_assets, alpha, beta, forced, tol)
        if result is not None:
            return result
    PiT = sp.csr_matrix((data / pbar[row], (col, row)), shape=(n, n))
    return _rounds_result(PiT, pbar, external_assets, alpha, beta, forced, tol)


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
