"""Sweep wall time: 4 scenarios x 10 seeds x 100 steps at 100 banks, on one
process, two processes and a two-worker local Dask cluster.

    python benchmarks/bench_sweep.py [--banks 100] [--seeds 10] [--steps 100]

Prints wall times and parallel efficiency (speed-up / workers), and checks that
all three give identical results.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from finsim_mesa.sweeps import run_sweep

SCENARIOS = ["normal", "liquidity_crisis", "asset_crash", "systemic"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--banks", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    grid = {"scenario": SCENARIOS, "n_banks": [args.banks]}
    results = {}
    for label, kw in (("1 process", {"processes": 1}), ("2 processes", {"processes": 2}),
                      ("Dask, 2 workers", {"workers": 2})):
        t0 = time.perf_counter()
        results[label] = run_sweep(grid, seeds=args.seeds, steps=args.steps, progress=False,
                                   **kw)
        results[label + " time"] = time.perf_counter() - t0
    base = results["1 process time"]
    runs = len(SCENARIOS) * args.seeds
    print(f"{runs} runs x {args.steps} steps at {args.banks} banks")
    for label, workers in (("1 process", 1), ("2 processes", 2), ("Dask, 2 workers", 2)):
        t = results[label + " time"]
        print(f"  {label:<16} {t:7.1f} s   speed-up {base / t:4.2f}x   parallel efficiency "
              f"{base / t / workers:5.0%}")
    pd.testing.assert_frame_equal(results["1 process"], results["2 processes"])
    pd.testing.assert_frame_equal(results["1 process"], results["Dask, 2 workers"])
    print("  identical results on all three")


if __name__ == "__main__":
    main()
