"""Peak memory of a large model: build it, run a few steps, report peak RSS.

    python benchmarks/bench_memory.py [--banks 100000] [--steps 3]

Run in a fresh process so the peak belongs to this model alone.
"""

from __future__ import annotations

import argparse
import resource
import time

from finsim_mesa import FinancialModel


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--banks", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    base = rss_mb()
    t0 = time.perf_counter()
    m = FinancialModel(n_banks=args.banks, agent_collect_every=0, steps=10**9, rng=1)
    built = time.perf_counter() - t0
    after_build = rss_mb()
    t0 = time.perf_counter()
    m.run_for(args.steps)
    per_step = (time.perf_counter() - t0) / args.steps
    print(f"banks {args.banks}: build {built:.1f} s, {per_step * 1e3:.0f} ms/step, "
          f"loans {len(m.ledger.loans)}")
    print(f"peak RSS: {rss_mb():.0f} MB (interpreter and imports {base:.0f} MB, after build "
          f"{after_build:.0f} MB); target < 2048 MB")


if __name__ == "__main__":
    main()
