"""Held-out conditions for the shipped policy (issue 14's generalisation table).

    python replications/generalisation.py [--seeds 100] [--only "1000 banks"]

The policy was searched at 30 banks on the mixture (scenario, topology and
capital ratio drawn per seed, :data:`finsim_mesa.conditions.MIXTURE`). Here each
test seed (10000...) keeps its mixture draw with one setting overridden — 100
banks, 1,000 banks, a core–periphery network, a capital ratio of 0.08 (below
the mixture's 0.10–0.14) — and the shipped policy (``brain="mappo"``) is paired
by seed with the searched best constant and the rule baselines on the
fixed-horizon score (:mod:`finsim_mesa.scoring`, 50 steps). Prints the policy's
mean score and default rate, and each paired difference with its 95% interval.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from finsim_mesa.agents.actor import MappoBrain
from finsim_mesa.agents.brains import ConstantBrain
from finsim_mesa.conditions import MIXTURE, condition_params
from finsim_mesa.evaluation import BEST_CONSTANT, evaluate_run
from finsim_mesa.intervals import ci95

CONDITIONS = {"100 banks": {"n_banks": 100}, "1000 banks": {"n_banks": 1000},
              "core-periphery": {"topology": "core_periphery"},
              "capital 0.08": {"capital_ratio": 0.08}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=100, help="test seeds 10000...")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--only", nargs="*", choices=list(CONDITIONS), help="conditions to run")
    args = ap.parse_args()
    brains = {"policy": MappoBrain(), "best constant": ConstantBrain(list(BEST_CONSTANT)),
              "rule_based": "rule_based", "conservative": "conservative", "passive": "passive"}
    t0 = time.perf_counter()
    for label, override in CONDITIONS.items():
        if args.only and label not in args.only:
            continue
        score, defaults = {}, {}
        for name, brain in brains.items():
            rows = []
            for seed in range(10_000, 10_000 + args.seeds):
                params = condition_params(MIXTURE, seed) | override
                scenario = params.pop("scenario")
                rows.append(evaluate_run(brain, scenario, seed, steps=args.steps, **params))
            score[name] = np.array([r["episode_reward"] for r in rows])
            defaults[name] = float(np.mean([r["default_rate"] for r in rows]))
        print(f"== {label} ({args.seeds} test seeds): policy {score['policy'].mean():.3f}, "
              f"default rate {defaults['policy']:.4f}")
        for name in brains:
            if name != "policy":
                mean, _sd, lo, hi = ci95(score["policy"] - score[name])
                print(f"   policy - {name:14s} {mean:+.3f} [{lo:+.3f}, {hi:+.3f}]  "
                      f"(its default rate {defaults[name]:.4f})", flush=True)
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
