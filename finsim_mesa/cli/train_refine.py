"""``finsim train --refine``: the scenario-aware refinement of a searched actor
(:mod:`finsim_mesa.learning.evolve_objective`)."""

from __future__ import annotations

import argparse
import json

import numpy as np

from finsim_mesa.cli.common import evolved_folder, searched_start, whole_numbers, workers_arg
from finsim_mesa.errors import FinsimError


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this refinement (metadata)."""
    parts = [f"finsim train --refine {args.refine}", f"--refine-kappa {args.refine_kappa:g}",
             f"--init-from {args.init_from}", f"--seed {args.seed}", f"--banks {args.banks}",
             f"--steps {args.steps}"]
    if args.refine_blocks:
        parts.append(f"--refine-blocks {args.refine_blocks}")
    if args.refine_sub:
        parts.append(f"--refine-sub {args.refine_sub}")
    if args.refine_set:
        parts.append(f"--refine-set {args.refine_set}")
    if args.refine_grid:
        parts.append(f"--refine-grid {args.refine_grid}")
    if workers_arg(args.workers) != 1:
        parts.append(f"--workers {workers_arg(args.workers)}")
    return " ".join([*parts, f"--out {args.out}"])


def _subs(text: str | None) -> list[tuple[int, str, float, str]]:
    out = []
    for item in text.split(",") if text else []:
        parts = item.split(":")
        try:
            b, f, c, side = int(parts[0]), parts[1], float(parts[2]), parts[3]
        except (ValueError, IndexError):
            raise FinsimError(f"--refine-sub {item!r}: give BIN:FIELD:CUT:SIDE, e.g. "
                              "1:liquidity_coverage:0.05:below") from None
        if len(parts) != 4 or not np.isfinite(c) or side not in ("above", "below"):
            raise FinsimError(f"--refine-sub {item!r}: a finite CUT and SIDE above or below")
        out.append((b, f, c, side))
    return out


def _starts(text: str | None) -> list[tuple[int, str, float]]:
    """``BLOCK:ACTION=VALUE[:ACTION=VALUE...],...`` as (block, action, value) triples."""
    out = []
    for item in text.split(",") if text else []:
        block, *pairs = item.split(":")
        try:
            k = int(block)
            pv = [(a, float(v)) for a, v in (p.split("=") for p in pairs)]
        except ValueError:
            pv = []
        if not pv or not all(np.isfinite(v) for _, v in pv):
            raise FinsimError(f"--refine-set {item!r}: give BLOCK:ACTION=VALUE[:ACTION=VALUE], "
                              "e.g. 3:lend=0.2:borrow=0")
        out += [(k, a, v) for a, v in pv]
    return out


def _grid(text: str | None) -> tuple[int, str, str, int] | None:
    """``BLOCK:ACTION,ACTION:K`` as (block, action, action, K)."""
    if not text:
        return None
    parts = text.split(":")
    try:
        acts = parts[1].split(",")
        k, n = int(parts[0]), int(parts[2])
    except (ValueError, IndexError):
        acts, k, n = [], 0, 0
    if len(parts) != 3 or len(acts) != 2 or n < 2:
        raise FinsimError(f"--refine-grid {text!r}: give BLOCK:ACTION,ACTION:K with K >= 2, "
                          "e.g. 3:lend,borrow:5")
    return (k, acts[0], acts[1], n)


def refine(args: argparse.Namespace) -> int:
    """Run the refinement and write ``OUT/evolved``; returns the exit status."""
    from finsim_mesa.learning.evolve_objective import refine_scenarios, save_refined

    budget = whole_numbers(args.refine, "--refine", "SEEDS,ITERATIONS,POPULATION")
    if len(budget) != 3 or budget[0] < 1 or budget[1] < 1 or budget[2] < 2:
        raise FinsimError(f"--refine {args.refine}: give SEEDS,ITERATIONS,POPULATION with >= 1 "
                          "seed, >= 1 iteration, >= 2 candidates")
    if not args.init_from:
        raise FinsimError("--refine continues a searched actor: give --init-from FOLDER "
                          "(an OUT/evolved folder, or the shipped finsim_mesa/policies/mappo)")
    start = searched_start(args.init_from)
    blocks = (whole_numbers(args.refine_blocks, "--refine-blocks", "K1,K2,...")
              if args.refine_blocks else None)
    folder = evolved_folder(args.out)
    env = {"n_banks": args.banks, "steps": args.steps}
    res = refine_scenarios(start, budget[0], kappa=args.refine_kappa, blocks=blocks,
                           iterations=budget[1], population=budget[2], seed=args.seed,
                           progress=not args.quiet, subs=_subs(args.refine_sub),
                           workers=workers_arg(args.workers), starts=_starts(args.refine_set),
                           grid=_grid(args.refine_grid),
                           **env)
    meta = save_refined(res, folder, _command(args), env)
    print(json.dumps({"evolved": str(folder), "actions": meta["evolve"]["actions"],
                      "subs": meta["evolve"]["subs"], "sub_actions": meta["evolve"]["sub_actions"],
                      "search_value": res.value, "wall_seconds": res.wall_seconds}, indent=2))
    return 0
