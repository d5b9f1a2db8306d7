"""What-if and recommendation speed on a live model.

    python benchmarks/bench_decision.py [--banks 100] [--repeats 3]

Target: a recommendation for one bank in a 100-bank model with 10 candidates
(9 fixed actions + the bank's own brain) x 10 seeds x 10 steps in under 2 s.
Also prints the cost of a state snapshot (``FinancialModel.snapshot()``) beside a
deep copy of the whole model object graph.
"""

from __future__ import annotations

import argparse
import copy

from _util import median_time as timed

from finsim_mesa import FinancialModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--banks", type=int, nargs="+", default=[100])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    for n in args.banks:
        for infra in ({}, {"n_exchanges": 2, "n_ccps": 1}):
            m = FinancialModel(n_banks=n, scenario="liquidity_crisis", rng=1, **infra)
            m.run_for(15)
            label = f"{n} banks{' + 2 exchanges, 1 CCP' if infra else ''}"
            t_rec = timed(lambda m=m: m.recommend(3, steps=10, seeds=10), args.repeats)
            t_wi = timed(lambda m=m: m.what_if(steps=10, seeds=10, shock={
                "kind": "price_crash", "magnitude": 0.1}), args.repeats)
            t_snap = timed(lambda m=m: m.snapshot(), 20)
            t_deep = timed(lambda m=m: copy.deepcopy(m), 3)
            print(f"{label}: recommend (10 x 10 x 10) {t_rec:.2f} s (target < 2 s); what-if "
                  f"(2 variants x 10 seeds x 10 steps) {t_wi:.2f} s; snapshot "
                  f"{t_snap * 1e3:.2f} ms vs deepcopy {t_deep * 1e3:.0f} ms "
                  f"({t_deep / t_snap:.0f}x)")


if __name__ == "__main__":
    main()
