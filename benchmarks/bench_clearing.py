"""Clearing time of ``eisenberg_noe`` (the fast path and the fictitious-default
algorithm it replaces at scale) on sparse random networks, beside a plain
reference (sparse monotone fixed-point iteration), with issue 15's targets.

    python benchmarks/bench_clearing.py [--sizes 100000] [--repeats 5] [--no-reference]

Networks:

* ``hard``: every bank owes 4 random others ~10 each (uniform 5–15) and nothing
  outside the system; external assets a random share (0 to ``stress``) of
  obligations: ~77% (stress 0.13) and ~84% (0.08) of banks default.
* ``bench``: every bank owes 2 random others plus external creditors (``leak``
  scales them: 1 = about a third of debt owed outside, 0.01 = almost none);
  external assets scaled by ``1 − stress`` (36–73% default).

Prints one table: defaults, fictitious-default rounds and Picard waves, the
medians (ms) of ``method="picard"``/``"auto"`` and ``method="rounds"`` with their
ratio, the reference, whether the default sets are equal, the largest payment
difference, the target and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parent))
from _util import median_time

from finsim_mesa.clearing import eisenberg_noe, fixed_point_clearing


def hard(n: int, stress: float, seed: int = 0, creditors: int = 4):
    """No external debt: obligations circulate; ``stress`` caps e / p̄."""
    rng = np.random.default_rng(seed)
    i = np.repeat(np.arange(n), creditors)
    j = rng.integers(0, n - 1, creditors * n)
    j = np.where(j >= i, j + 1, j)  # no self-loans
    L = sp.csr_matrix((rng.uniform(5.0, 15.0, creditors * n), (i, j)), shape=(n, n))
    pbar = np.asarray(L.sum(axis=1)).ravel()
    return L, rng.uniform(0.0, 1.0, n) * pbar * stress, np.zeros(n)


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


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the (slow) fixed-point reference")
    args = ap.parse_args()
    cases = []
    for n in args.sizes:
        for stress in (0.13, 0.08):
            cases.append((f"hard s={stress}", n, *hard(n, stress),
                          "< 50 ms, same defaults" if n == 100_000 else ""))
        for leak in (1.0, 0.01):
            for stress in (0.3, 0.5, 0.7):
                cases.append((f"bench leak={leak} s={stress}", n, *system(n, stress, leak),
                              "< 20 ms" if n == 100_000 else ""))
    print(f"load average before: {load()}")
    print(f"{'network':<24} {'n':>7} {'default':>7} {'rounds':>6} {'waves':>5} "
          f"{'fast ms':>8} {'rounds ms':>9} {'ratio':>6} {'FP ms':>7} {'same D':>6} "
          f"{'max|dp|':>8}  target")
    for name, n, L, e, ext, target in cases:
        fast = eisenberg_noe(L, e, ext)
        exact = eisenberg_noe(L, e, ext, method="rounds")
        t_fast = median_time(lambda L=L, e=e, ext=ext: eisenberg_noe(L, e, ext), args.repeats)
        t_rounds = median_time(lambda L=L, e=e, ext=ext: eisenberg_noe(L, e, ext,
                                                                       method="rounds"),
                               max(1, args.repeats // 2))
        if args.no_reference:
            fp = f"{'-':>7}"
        else:
            t_fp = median_time(lambda L=L, e=e, ext=ext: fixed_point_clearing(L, e, ext), 1)
            fp = f"{t_fp * 1e3:7.0f}"
        same = bool(np.array_equal(fast.defaulted, exact.defaulted))
        err = float(np.abs(fast.payments - exact.payments).max())
        waves = fast.rounds if fast.method == "picard" else "-"
        print(f"{name:<24} {n:>7} {fast.n_defaults / n:>7.1%} {exact.rounds:>6} {waves:>5} "
              f"{t_fast * 1e3:>8.1f} {t_rounds * 1e3:>9.1f} {t_fast / t_rounds:>6.3f} {fp} "
              f"{'yes' if same else 'NO':>6} {err:>8.1e}  {target}")
    print(f"load average after: {load()}  (fast = eisenberg_noe default, method="
          f"'{fast.method}' here; rounds = method='rounds', the previous algorithm; "
          "FP = plain sparse fixed point)")


if __name__ == "__main__":
    main()
