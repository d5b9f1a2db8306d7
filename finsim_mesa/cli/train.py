"""``finsim train``: train MAPPO banks (needs the learn extra)."""

from __future__ import annotations

import argparse
import json

import numpy as np

from finsim_mesa.cli.common import (
    evolved_folder,
    floats,
    learning_run,
    searched_start,
    whole_numbers,
    workers_arg,
)
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
    if workers_arg(args.workers) != 1 and not (args.refine or args.init_search):
        raise FinsimError(f"--workers {args.workers}: only the searches (--init-search, "
                          "--refine) run their episodes in worker processes; leave it out")
    if args.refine:  # numpy only: no torch needed
        from finsim_mesa.cli.train_refine import refine

        return refine(args)
    run = learning_run()
    scenarios = args.curriculum.split(",") if args.curriculum else [args.scenario]
    if args.mixture:
        scenarios = ["mixture"]
    for sc in scenarios if not args.mixture else ():
        from finsim_mesa.scenarios import get_scenario

        get_scenario(sc)
    if args.episodes < (0 if args.init_search else 1):
        raise FinsimError(f"--episodes {args.episodes}: must be >= 1 (>= 0 with --init-search)")
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
    init_actor = _init_search(args) if args.init_search else None
    if init_actor is not None and args.episodes == 0:
        return 0
    summary = run.train_policy(
        episodes=args.episodes, seed=args.seed, scenarios=scenarios, out_dir=args.out,
        eval_every=args.eval_every, eval_seeds=tuple(range(1001, 1001 + args.eval_seeds)),
        progress=not args.quiet, resume=args.resume, n_banks=args.banks, steps=args.steps,
        init_actor=init_actor,
        trainer_config={"team_reward": args.team_reward, "ent_start": args.ent_start,
                        "ent_end": args.ent_end,
                        "episodes_per_update": args.episodes_per_update,
                        "conditions": conditions, "advantage_norm": args.advantage_norm,
                        "pairing": args.pairing},
        mappo_config={"init_action_mean": _init_action(args.init_action),
                      "gamma": args.gamma, "lr": args.lr, "hidden": args.hidden,
                      "normalize_obs": args.normalize_obs,
                      "init_concentration": args.init_concentration})
    print(json.dumps(summary, indent=2))
    return 0


def _command(args: argparse.Namespace) -> str:
    """The ``finsim train`` command line that reproduces this search (metadata)."""
    parts = ["finsim train --mixture", f"--init-search {args.init_search}",
             f"--init-action {args.init_action}", f"--episodes {args.episodes}",
             f"--seed {args.seed}", f"--banks {args.banks}", f"--steps {args.steps}"]
    if args.init_cuts:
        parts.append(f"--init-cuts {args.init_cuts}")
    if args.init_field != "market_stress":
        parts.append(f"--init-field {args.init_field}")
    if args.init_extra:
        parts.append(f"--init-extra {args.init_extra}")
    if args.init_from:
        parts.append(f"--init-from {args.init_from}")
    if args.hidden != 64:
        parts.append(f"--hidden {args.hidden}")
    if workers_arg(args.workers) != 1:
        parts.append(f"--workers {workers_arg(args.workers)}")
    return " ".join([*parts, f"--out {args.out}"])


def _init_search(args: argparse.Namespace) -> str:
    """Run the state-reading initial search (:mod:`finsim_mesa.learning.evolve`)
    and write its actor to ``OUT/evolved``; returns that folder."""
    from finsim_mesa.learning.evolve import (
        SEARCH_SEEDS,
        evolve_binned,
        save_actor,
        stratified_seeds,
    )

    if not args.mixture:
        raise FinsimError("--init-search searches on the mixture of conditions: add --mixture")
    if args.resume:
        raise FinsimError("--init-search starts a new policy: leave out --resume")
    if args.normalize_obs:
        raise FinsimError("--init-search writes an actor on raw observations: leave out "
                          "--normalize-obs")
    budget = whole_numbers(args.init_search, "--init-search",
                           "SEEDS_PER_SCENARIO,ITERATIONS,POPULATION[,SWEEPS]")
    per, iters, pop, sweeps = [*budget, 1][:4] if len(budget) in (3, 4) else (0, 0, 0, 0)
    if per < 1 or iters < 1 or pop < 2 or sweeps < 1:
        raise FinsimError(f"--init-search {args.init_search}: give SEEDS_PER_SCENARIO,"
                          "ITERATIONS,POPULATION[,SWEEPS] with >= 1 seed, >= 1 iteration, "
                          ">= 2 candidates, >= 1 sweep")
    init = floats(args.init_action, 4, "--init-action (4 numbers with --init-search)")
    if not all(0 <= v <= 1 for v in init):  # NaN fails too
        raise FinsimError(f"--init-action {args.init_action}: give 4 numbers in [0, 1]")
    cuts = floats(args.init_cuts, None, "--init-cuts") if args.init_cuts else None
    if cuts is not None and not all(np.isfinite(cuts)):
        raise FinsimError(f"--init-cuts {args.init_cuts}: give finite cut points")
    extras = []
    for item in (args.init_extra.split(",") if args.init_extra else []):
        name, _, cut = item.partition(":")
        value = floats(cut, 1, f"--init-extra {item!r}: FIELD:CUT, cut")[0]
        if not np.isfinite(value):
            raise FinsimError(f"--init-extra {item!r}: the cut must be a finite number")
        extras.append((name, value))
    folder = evolved_folder(args.out)
    env = {"n_banks": args.banks, "steps": args.steps}
    start = searched_start(args.init_from) if args.init_from else None
    res = evolve_binned(init, stratified_seeds(SEARCH_SEEDS, per), cuts, args.init_field,
                        iterations=iters, population=pop, sweeps=sweeps, seed=args.seed,
                        hidden=args.hidden, progress=not args.quiet, extras=extras,
                        start=start, workers=workers_arg(args.workers), **env)
    meta = save_actor(res, folder, _command(args), env)
    print(json.dumps({"evolved": str(folder), "field": res.field, "cuts": res.cuts,
                      "actions": meta["evolve"]["actions"], "search_score": res.value,
                      "candidates": res.evaluations, "wall_seconds": res.wall_seconds},
                     indent=2))
    return str(folder)


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
    tr.add_argument("--pairing", choices=("none", "common", "antithetic", "shared"),
                    default="none",
                    help="common random numbers: each update's episodes in pairs on one "
                         "episode draw, advantage = team return-to-go minus the pair's mean; "
                         "'shared': every bank of an episode shares one exploration draw "
                         "(each episode its own), 'antithetic': the pair's draws mirrored, "
                         "'common': each bank its own noise (even --episodes and "
                         "--episodes-per-update; use with --team-reward 1)")
    tr.add_argument("--init-search", metavar="SEEDS,ITERATIONS,POPULATION[,SWEEPS]",
                    help="first search a state-reading actor by the cross-entropy method "
                         "(piecewise constant in --init-field, every piece starting at "
                         "--init-action; one piece at a time, SWEEPS times, default 1) on "
                         "SEEDS training seeds per scenario; written to OUT/evolved, then "
                         "fine-tuned by MAPPO for --episodes (0: search only). Needs "
                         "--mixture, e.g. 12,6,12")
    tr.add_argument("--init-cuts", metavar="C1,C2,...",
                    help="cut points of --init-field (default: midpoints between the "
                         "scenarios' stress levels, 0.15,0.4,0.65)")
    tr.add_argument("--init-field", default="market_stress",
                    help="observation column the searched actor reads")
    tr.add_argument("--init-extra", metavar="FIELD:CUT,...",
                    help="further columns the searched actor reads: above CUT a searched "
                         "shift of every action, e.g. capital_ratio:0.123")
    tr.add_argument("--init-from", metavar="FOLDER",
                    help="continue an earlier --init-search (its OUT/evolved) with the same "
                         "cut points and extra columns")
    tr.add_argument("--refine", metavar="SEEDS,ITERATIONS,POPULATION",
                    help="refine the searched actor of --init-from bin by bin on SEEDS "
                         "training seeds of each scenario (30 banks; "
                         "finsim_mesa.learning.evolve_objective); written to OUT/evolved")
    tr.add_argument("--refine-kappa", type=float, default=0.0,
                    help="search-time default penalty: a run is valued score - KAPPA x "
                         "default rate (reported scores stay plain)")
    tr.add_argument("--refine-blocks", metavar="K1,K2,...",
                    help="blocks to refine in order: bins 0..3, extra columns, sub-bins "
                         "(default: all)")
    tr.add_argument("--refine-sub", metavar="BIN:FIELD:CUT:SIDE,...",
                    help="add sub-bins: the part of BIN where FIELD is above/below CUT plays "
                         "its own searched action, e.g. 1:liquidity_coverage:0.05:below")
    tr.add_argument("--refine-set", metavar="BLOCK:ACTION=VALUE[:...],...",
                    help="before the search, set actions of bins / sub-bins (Beta means in "
                         "[0, 1]), e.g. 3:lend=0.2:borrow=0; the search starts from there")
    tr.add_argument("--refine-grid", metavar="BLOCK:ACTION,ACTION:K",
                    help="after --refine-set, before the search: a K x K grid of two actions "
                         "of a bin / sub-bin over 0..1 (the others at the incumbent), scored "
                         "as the block search scores candidates; the best cell starts the "
                         "search if it beats the incumbent, e.g. 3:lend,borrow:5")
    tr.add_argument("--workers", default="1", metavar="N",
                    help="processes that run the episodes of --init-search / --refine "
                         "(default 1; e.g. 2 on two cores); the result is the same for any N")
    tr.add_argument("--resume", help="checkpoint folder to continue from")
    tr.add_argument("--out", default="models", help="where checkpoints and logs go")
    tr.add_argument("-q", "--quiet", action="store_true")
    tr.set_defaults(func=cmd_train)
