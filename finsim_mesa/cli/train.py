"""``finsim train``: train MAPPO banks (needs the learn extra)."""

from __future__ import annotations

import argparse
import json

from finsim_mesa.cli.common import learning_run
from finsim_mesa.errors import FinsimError


def _init_action(text: str) -> float | list[float] | None:
    if text.strip().lower() == "none":
        return None
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) not in (1, 4) or not all(0.0 < v < 1.0 for v in vals):
        raise FinsimError(f"--init-action {text!r}: give one number or four "
                          "(lend,hoard,sell,borrow), each strictly between 0 and 1, or 'none'")
    return vals[0] if len(vals) == 1 else vals


def cmd_train(args: argparse.Namespace) -> int:
    run = learning_run()
    scenarios = args.curriculum.split(",") if args.curriculum else [args.scenario]
    if args.mixture:
        scenarios = ["mixture"]
    for sc in scenarios if not args.mixture else ():
        from finsim_mesa.scenarios import get_scenario

        get_scenario(sc)
    if args.episodes < 1:
        raise FinsimError(f"--episodes {args.episodes}: must be >= 1")
    checks = {"--team-reward": 0.0 <= args.team_reward <= 1.0, "--gamma": 0 < args.gamma <= 1,
              "--lr": args.lr > 0, "--hidden": args.hidden >= 1,
              "--ent-start": args.ent_start >= 0, "--ent-end": args.ent_end >= 0,
              "--episodes-per-update": args.episodes_per_update >= 1,
              "--eval-every": args.eval_every >= 1, "--eval-seeds": args.eval_seeds >= 1,
              "--init-concentration": args.init_concentration is None
              or args.init_concentration > 2}
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise FinsimError(f"{', '.join(bad)} out of range: team reward in [0, 1], gamma in "
                          "(0, 1], learning rate > 0, entropy >= 0, counts >= 1, "
                          "init concentration > 2")
    conditions = None
    if args.mixture:
        from finsim_mesa.conditions import MIXTURE

        conditions = MIXTURE.to_dict()
    summary = run.train_policy(
        episodes=args.episodes, seed=args.seed, scenarios=scenarios, out_dir=args.out,
        eval_every=args.eval_every, eval_seeds=tuple(range(1001, 1001 + args.eval_seeds)),
        progress=not args.quiet, resume=args.resume, n_banks=args.banks, steps=args.steps,
        trainer_config={"team_reward": args.team_reward, "ent_start": args.ent_start,
                        "ent_end": args.ent_end,
                        "episodes_per_update": args.episodes_per_update,
                        "conditions": conditions, "advantage_norm": args.advantage_norm},
        mappo_config={"init_action_mean": _init_action(args.init_action),
                      "gamma": args.gamma, "lr": args.lr, "hidden": args.hidden,
                      "normalize_obs": args.normalize_obs,
                      "init_concentration": args.init_concentration})
    print(json.dumps(summary, indent=2))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser("train", help="train MAPPO banks (needs the learn extra)")
    tr.add_argument("--episodes", type=int, default=2000)
    tr.add_argument("--seed", type=int, default=42)
    tr.add_argument("--scenario", default="systemic", help="training scenario (default "
                    "systemic)")
    tr.add_argument("--curriculum", help="scenarios in order, e.g. normal,asset_crash")
    tr.add_argument("--mixture", action="store_true",
                    help="draw scenario, bank count (30-50), topology and capital ratio per "
                         "episode (finsim_mesa.conditions.MIXTURE) instead of --scenario")
    tr.add_argument("--banks", type=int, default=30)
    tr.add_argument("--steps", type=int, default=50, help="episode length")
    tr.add_argument("--eval-every", type=int, default=200)
    tr.add_argument("--eval-seeds", type=int, default=10,
                    help="episodes per periodic evaluation (picks 'best')")
    # defaults below: the settings that trained the reported policy (README)
    tr.add_argument("--team-reward", type=float, default=0.5,
                    help="share of the training reward that is the mean over all banks")
    tr.add_argument("--init-action", default="0.05,0.5,0.5,0.05",
                    help="starting mean action: one number or lend,hoard,sell,borrow; "
                         "'none' = 0.5 each")
    tr.add_argument("--gamma", type=float, default=0.95, help="discount factor")
    tr.add_argument("--lr", type=float, default=3e-4, help="learning rate")
    tr.add_argument("--hidden", type=int, default=64, help="hidden units per layer")
    tr.add_argument("--ent-start", type=float, default=0.0, help="entropy coefficient at start")
    tr.add_argument("--ent-end", type=float, default=0.0, help="entropy coefficient at end")
    tr.add_argument("--episodes-per-update", type=int, default=8)
    tr.add_argument("--normalize-obs", action="store_true",
                    help="standardise observations by running mean/std")
    tr.add_argument("--init-concentration", type=float, default=None,
                    help="starting Beta concentration alpha+beta of every action (> 2; "
                         "higher = less exploration noise); default: the smaller of alpha, "
                         "beta is 1.69")
    tr.add_argument("--advantage-norm", choices=("batch", "episode"), default="batch",
                    help="standardise advantages over the batch or per episode")
    tr.add_argument("--resume", help="checkpoint folder to continue from")
    tr.add_argument("--out", default="models", help="where checkpoints and logs go")
    tr.add_argument("-q", "--quiet", action="store_true")
    tr.set_defaults(func=cmd_train)
