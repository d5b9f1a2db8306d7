"""Clearing time of ``eisenberg_noe`` on sparse random networks, beside plain
reference implementations (monotone fixed-point iteration, sparse and dense).

    python benchmarks/bench_clearing.py [--sizes 1000 10000 100000] [--repeats 5]

Networks: every bank owes 2 random others (mean degree ≈ 4 counting both
directions) plus external creditors; external assets are scaled by a stress
factor so that a chosen share of banks defaults. Prints medians in ms and ratios.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parent))
from _util import median_time

from finsim_mesa.clearing import eisenberg_noe, fixed_point_clearing

DENSE_MAX = 5000  # a dense (n, n) float matrix beyond this needs > 200 MB


def system(n: int, stress: float, leak: float, seed: int = 0):
    """Random sparse system; ``leak`` scales what is owed outside the network
    (small leak: obligations circulate, and fixed-point iteration slows down)."""
    rng = np.random.default_rng(seed)
    i = np.repeat(np.arange(n), 2)
    j = rng.integers(0, n - 1, 2 * n)
    j = np.where(j >= i, j + 1, j)  # no self-loans
    L = sp.csr_matrix((rng.exponential(1.0, 2 * n), (i, j)), shape=(n, n))
    ext = leak * rng.exponential(1.0, n)
    pbar = np.asarray(L.sum(axis=1)).ravel() + ext
    e = rng.uniform(0.0, 2.0, n) * pbar * (1.0 - stress)
    return L, e, ext


def dense_fixed_point(L: np.ndarray, e: np.ndarray, ext: np.ndarray, tol: float = 1e-12):
    """The textbook algorithm: p <- min(pbar, e + Pi^T p) with dense matrices."""
    pbar = L.sum(axis=1) + ext
    Pi = L / pbar[:, None]
    p = pbar.copy()
    while True:
        new = np.minimum(pbar, e + Pi.T @ p)
        if np.abs(new - p).max() <= tol * pbar.max():
            return new
        p = new


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--stress", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    ap.add_argument("--leak", type=float, nargs="+", default=[1.0, 0.01],
                    help="scale of external liabilities (1: a third of debt owed outside)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"{'n':>8} {'leak':>5} {'stress':>6} {'defaults':>9} {'rounds':>6} {'EN ms':>9} "
          f"{'sparse FP ms':>12} {'ratio':>6} {'dense FP ms':>11} {'ratio':>7} {'max |dp|':>9}")
    cases = [(n, leak, stress) for n in args.sizes for leak in args.leak
             for stress in args.stress]
    for n, leak, stress in cases:
        if True:
            L, e, ext = system(n, stress, leak)
            res = eisenberg_noe(L, e, ext)
            t_en = median_time(lambda L=L, e=e, ext=ext: eisenberg_noe(L, e, ext), args.repeats)
            p_ref = fixed_point_clearing(L, e, ext)
            t_fp = median_time(lambda L=L, e=e, ext=ext: fixed_point_clearing(L, e, ext), 1)
            if n <= DENSE_MAX:
                Ld = L.toarray()
                t_dense = median_time(lambda Ld=Ld, e=e, ext=ext: dense_fixed_point(Ld, e, ext), 1)
                dense = f"{t_dense * 1e3:11.1f} {t_dense / t_en:6.0f}x"
            else:
                dense = f"{'(too big)':>11} {'':>7}"
            err = np.abs(res.payments - p_ref).max()
            print(f"{n:>8} {leak:>5.2f} {stress:>6.1f} {res.n_defaults / n:>8.1%} {res.rounds:>6} "
                  f"{t_en * 1e3:>9.2f} {t_fp * 1e3:>12.1f} {t_fp / t_en:>5.1f}x {dense} "
                  f"{err:>9.1e}")


if __name__ == "__main__":
    main()
