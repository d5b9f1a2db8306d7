"""Speed of the overlapping-portfolio features.

    python benchmarks/bench_portfolios.py [--banks 10000] [--steps 20]

Prints: the EBA 2018 experiment (21 shock levels x 2 deleveraging rules, each a
48-bank model built and stepped through 6 rounds of fire sales; target < 2 s),
and ``step()`` of a model with 5 asset classes (specialised portfolios,
systemic scenario) against the same model with 1 class (target: at least half
the speed, i.e. a ratio of at most 2).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "replications"))

from _util import median_step_time

from finsim_mesa import FinancialModel


def eba_experiment() -> float:
    import eba2018_fire_sales as eba

    t0 = time.perf_counter()
    for rule in ("threshold", "leverage_targeting"):
        for s in eba.SHOCKS:
            eba.run(float(s), rule)
    return time.perf_counter() - t0


def per_step(n: int, k: int, steps: int) -> float:
    extra = {"n_assets": k, "portfolio_concentration": 1.0} if k > 1 else {}
    m = FinancialModel(n_banks=n, scenario="systemic", brain="rule_based", steps=10**9,
                       agent_collect_every=0, rng=1, **extra)
    return median_step_time(m, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--banks", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    eba = [eba_experiment() for _ in range(args.repeats)]
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"EBA 2018 experiment, 42 runs: median {statistics.median(eba):.2f} s "
          f"(target < 2 s; runs {', '.join(f'{t:.2f}' for t in eba)})")
    rows = []
    for _ in range(args.repeats):  # alternate, so both see the same machine load
        rows.append((per_step(args.banks, 1, args.steps), per_step(args.banks, 5, args.steps)))
    one, five = (statistics.median(x) for x in np.array(rows).T)
    print(f"step(), {args.banks} banks, systemic: 1 class {one * 1e3:.1f} ms, 5 classes "
          f"{five * 1e3:.1f} ms, ratio {five / one:.2f} (target <= 2: at least half the speed)")


if __name__ == "__main__":
    main()
