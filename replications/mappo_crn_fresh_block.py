"""MAPPO with common random numbers on a fresh test block (issue 14, item 3).

    python replications/mappo_neutral_start.py --variants 13 --seed S --out runs/S
        (S = 7, 8, 9: 4.6-5.7 min each on one core)
    python replications/mappo_crn_fresh_block.py runs/7/variant13/final \\
        runs/8/variant13/final runs/9/variant13/final [--first 80000] [--count 100]

Each actor folder is evaluated on the test seeds ``first .. first + count - 1`` of
the mixture and of each scenario (30 banks, 50 steps, the fixed-horizon score of
``finsim evaluate``), paired by seed against the searched best constant, with the
shipped policy's mean for reference. Printed per condition: the best constant's
and the shipped policy's mean score (default rate), and for each actor the paired
difference to the best constant with its 95% interval, the share of seeds on
which it is better, and its default rate. Every actor given is reported: run it
on every training seed, not on the best of them.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from finsim_mesa.agents.actor import load_actor_folder
from finsim_mesa.agents.brains import ConstantBrain
from finsim_mesa.evaluation import BEST_CONSTANT, evaluate_run
from finsim_mesa.intervals import ci95

CONDITIONS = ("mixture", "normal", "liquidity_crisis", "asset_crash", "systemic")


def scores(brain, condition: str, seeds: range, **env) -> tuple[np.ndarray, np.ndarray]:
    """Per seed: the fixed-horizon score and the default rate."""
    runs = [evaluate_run(brain, condition, s, **env) for s in seeds]
    return (np.array([r["episode_reward"] for r in runs]),
            np.array([r["default_rate"] for r in runs]))


def compare(actors: dict[str, object], condition: str, seeds: range, **env) -> dict:
    """One condition's row: the reference means and each actor's paired figures."""
    const, const_dr = scores(ConstantBrain(BEST_CONSTANT), condition, seeds, **env)
    ship, ship_dr = scores("mappo", condition, seeds, **env)
    row = {"condition": condition,
           "best_constant": [round(float(const.mean()), 3), round(float(const_dr.mean()), 4)],
           "shipped": [round(float(ship.mean()), 3), round(float(ship_dr.mean()), 4)]}
    for name, brain in actors.items():
        sc, dr = scores(brain, condition, seeds, **env)
        mean, _std, low, high = ci95(sc - const)
        row[name] = {"vs_best_constant": [round(mean, 3), round(low, 3), round(high, 3)],
                     "better_on": round(float(np.mean(sc > const)), 2),
                     "default_rate": round(float(dr.mean()), 4)}
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("actors", nargs="+", help="actor folders (e.g. runs/7/variant13/final)")
    ap.add_argument("--first", type=int, default=80000, help="first test seed")
    ap.add_argument("--count", type=int, default=100, help="test seeds per condition")
    ap.add_argument("--banks", type=int, default=30)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    args = ap.parse_args(argv)
    actors = {folder: load_actor_folder(folder) for folder in args.actors}
    seeds = range(args.first, args.first + args.count)
    t0 = time.perf_counter()
    for condition in args.conditions.split(","):
        row = compare(actors, condition, seeds, n_banks=args.banks, steps=args.steps)
        print(json.dumps(row), f"({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
