"""``finsim evaluate``: a trained policy against every baseline brain, with 95%
confidence intervals (needs the learn extra)."""

from __future__ import annotations

import argparse

from finsim_mesa.cli.common import learning_run
from finsim_mesa.errors import FinsimError


def cmd_evaluate(args: argparse.Namespace) -> int:
    run = learning_run()
    if args.episodes < 2:
        raise FinsimError(f"--episodes {args.episodes}: need at least 2 for intervals")
    res = run.evaluate_policy(args.model, episodes=args.episodes,
                              baselines=not args.no_baselines,
                              scenarios=args.scenario.split(",") if args.scenario else None,
                              out_dir=args.out, models_dir=args.models, progress=not args.quiet)
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        for metric in ("episode_reward", "default_rate", "final_equity"):
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


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evaluate", help="trained policy vs every baseline brain")
    ev.add_argument("--model", default="final", help="final, best or a checkpoint folder")
    ev.add_argument("--models", default="models", help="folder of final/ and best/")
    ev.add_argument("--episodes", type=int, default=50, help="evaluation seeds")
    ev.add_argument("--scenario", help="scenarios (default: the training ones)")
    ev.add_argument("--no-baselines", action="store_true")
    ev.add_argument("--out", help="folder for runs.csv, table.csv, evaluation.png")
    ev.add_argument("-q", "--quiet", action="store_true")
    ev.set_defaults(func=cmd_evaluate)
