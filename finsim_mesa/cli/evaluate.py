"""``finsim evaluate``: a trained policy against every baseline brain, with 95%
confidence intervals (needs the learn extra)."""

from __future__ import annotations

import argparse

from finsim_mesa.cli.common import learning_run, workers_arg
from finsim_mesa.errors import FinsimError


def cmd_evaluate(args: argparse.Namespace) -> int:
    run = learning_run()
    if args.episodes < 2:
        raise FinsimError(f"--episodes {args.episodes}: need at least 2 for intervals")
    constants = [_numbers(c, 4, "--constant") for c in args.constant or []]
    budget = None
    if args.best_constant:
        n_sel, iters, pop = (int(v) for v in _numbers(args.best_constant, 3, "--best-constant"))
        if n_sel < 1 or iters < 1 or pop < 2:
            raise FinsimError(f"--best-constant {args.best_constant}: give SEEDS,ITERATIONS,"
                              "POPULATION with at least 1 seed, 1 iteration, 2 candidates")
        budget = (n_sel, iters, pop)
    res = run.evaluate_policy(args.model, episodes=args.episodes,
                              baselines=not args.no_baselines,
                              scenarios=args.scenario.split(",") if args.scenario else None,
                              out_dir=args.out, models_dir=args.models, progress=not args.quiet,
                              constants=constants, best_constant_budget=budget,
                              test_seeds=args.test_seeds, workers=workers_arg(args.workers))
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        for metric in ("episode_reward", "default_rate", "final_equity", "debtrank"):
            print(f"\n{metric} (mean [95% CI]) over {args.episodes} seeds")
            print(res.wide(metric).to_string())
    for sc in dict.fromkeys(res.table.scenario):
        if args.no_baselines:  # nothing to compare with
            continue
        verdict = "beats" if res.beats("policy", sc) else "does not beat"
        print(f"\npolicy {verdict} every baseline on episode reward in '{sc}' "
              "(non-overlapping 95% intervals)")
        pair = res.paired("policy", sc)
        if len(pair):
            w = pair.sort_values("mean_difference").iloc[0]
            print(f"paired by seed, policy - {w.versus} (closest baseline): "
                  f"{w.mean_difference:+.4g} [95% CI {w.ci95_low:.4g}, {w.ci95_high:.4g}], "
                  f"policy better in {w.share_better:.0%} of {int(w.n)} seeds")
        t = res.table[(res.table.scenario == sc) & (res.table.metric == "default_rate")]
        if len(t) > 1:
            mine = float(t[t.brain == "policy"]["mean"].iloc[0])
            best = t[t.brain != "policy"].sort_values("mean").iloc[0]
            word = "no higher than" if mine <= best["mean"] else "higher than"
            print(f"policy default rate {mine:.4g} is {word} the lowest baseline's "
                  f"({best.brain}: {best['mean']:.4g})")
    if args.out:
        print(f"\nruns.csv, table.csv and evaluation.png written to {args.out}")
    return 0


def _numbers(text: str, count: int, flag: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != count:
        raise FinsimError(f"{flag} {text!r}: give {count} comma-separated numbers")
    return vals


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evaluate", help="trained policy vs every baseline brain")
    ev.add_argument("--model", default="final",
                    help="final, best (in --models), shipped (the package's policy) or a "
                         "checkpoint folder")
    ev.add_argument("--models", default="models", help="folder of final/ and best/")
    ev.add_argument("--episodes", type=int, default=50, help="evaluation seeds")
    ev.add_argument("--scenario", help="scenarios, comma-separated; 'mixture' draws scenario, "
                    "banks, topology and capital ratio per seed (default: the training ones)")
    ev.add_argument("--constant", action="append", metavar="L,H,S,B",
                    help="add a constant stance (lend,hoard,sell,borrow in [0, 1]) as a "
                         "baseline; repeatable")
    ev.add_argument("--best-constant", metavar="SEEDS,ITERATIONS,POPULATION",
                    help="also search the best constant by the cross-entropy method on "
                         "SEEDS selection seeds from 20000 (disjoint from the test seeds "
                         "10000...), e.g. 8,6,12")
    ev.add_argument("--test-seeds", type=int, default=10_000, metavar="START",
                    help="first test seed (default 10000): the block START ... "
                         "START+EPISODES-1, ending below the training seeds (1,000,000); "
                         "a fresh block for a policy chosen after looking at 10000...")
    ev.add_argument("--workers", default="1", metavar="N",
                    help="processes to split the episodes between (forked; the same rows)")
    ev.add_argument("--no-baselines", action="store_true")
    ev.add_argument("--out", help="folder for runs.csv, table.csv, evaluation.png")
    ev.add_argument("-q", "--quiet", action="store_true")
    ev.set_defaults(func=cmd_evaluate)
