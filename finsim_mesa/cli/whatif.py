"""``finsim whatif``: look ahead from a model state under a hypothetical shock, and
recommend an action for a bank."""

from __future__ import annotations

import argparse
from typing import Any

from finsim_mesa.cli.common import config_from_args, seed_from_args, workers_arg
from finsim_mesa.config import TOPOLOGIES
from finsim_mesa.errors import FinsimError


def _parse_shock(text: str | None) -> dict[str, Any] | None:
    """KIND[:MAGNITUDE[:BANK,BANK...]] -> shock mapping."""
    if not text:
        return None
    parts = text.split(":")
    shock: dict[str, Any] = {"kind": parts[0]}
    try:
        if len(parts) > 1 and parts[1]:
            shock["magnitude"] = float(parts[1])
        if len(parts) > 2 and parts[2]:
            shock["banks"] = [int(b) for b in parts[2].split(",")]
    except ValueError:
        raise FinsimError(f"--shock {text!r}: expected KIND[:MAGNITUDE[:BANK,BANK...]], e.g. "
                          "price_crash:0.2 or default::3,7") from None
    if len(parts) > 3:
        raise FinsimError(f"--shock {text!r}: expected KIND[:MAGNITUDE[:BANK,BANK...]]")
    return shock


def cmd_whatif(args: argparse.Namespace) -> int:
    import time

    from finsim_mesa.model import FinancialModel

    for flag, value, low in (("--warmup", args.warmup, 0), ("--horizon", args.horizon, 1),
                             ("--seeds", args.seeds, 1)):
        if value < low:
            raise FinsimError(f"{flag} {value}: must be >= {low}")
    workers = workers_arg(args.workers, auto=True)
    if args.recommend and args.bank is None:
        raise FinsimError("--recommend needs --bank BANK_ID")
    shock = _parse_shock(args.shock)
    if shock is not None:
        from finsim_mesa.scenarios.engine import SHOCK_KINDS

        if shock["kind"] not in SHOCK_KINDS:
            raise FinsimError(f"--shock: kind {shock['kind']!r} is unknown; choose one of "
                              f"{', '.join(SHOCK_KINDS)}")
    cfg = config_from_args(args)
    if args.bank is not None and not 0 <= args.bank < cfg.n_banks:
        raise FinsimError(f"--bank {args.bank}: must be a bank id in 0..{cfg.n_banks - 1}")
    seed = seed_from_args(args)
    model = FinancialModel(config=cfg, rng=seed)
    model.run_for(args.warmup)
    print(f"\n{cfg.n_banks} banks, scenario '{cfg.scenario}', seed {seed}, state after step "
          f"{model.t} ({model.measures.n_defaults} defaults so far)")
    if shock or not args.recommend:
        t0 = time.perf_counter()
        res = model.what_if(steps=args.horizon, seeds=args.seeds, shock=shock, bank=args.bank,
                            workers=workers)
        print(f"\nwhat if {shock or 'nothing changes'} ({time.perf_counter() - t0:.2f} s)\n")
        print(res)
    if args.recommend:
        t0 = time.perf_counter()
        rec = model.recommend(args.bank, steps=args.horizon, seeds=args.seeds, shock=shock,
                              workers=workers)
        print(f"\nrecommendation ({time.perf_counter() - t0:.2f} s): {rec.reason}\n")
        with __import__("pandas").option_context("display.width", 140):
            print(rec.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


class _WithDefaults(argparse.HelpFormatter):
    """Help that states each option's default where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


def add_parser(sub: argparse._SubParsersAction) -> None:
    wi = sub.add_parser(
        "whatif", help="look ahead from a model state under a hypothetical; recommend an "
        "action for a bank", formatter_class=_WithDefaults,
        description="Build a model, run it --warmup steps, then simulate --horizon steps "
        "ahead on --seeds Monte-Carlo seeds, with and without --shock (paired by seed), and "
        "print both with 95% intervals; with --recommend, also the best fixed action for "
        "--bank (after the shock, if one is given) by its expected equity.")
    for flag, kw in (
            ("--scenario", {"help": "scenario name or YAML file (config default: normal)"}),
            ("--brain", {"help": "brain of every bank (config default: rule_based)"}),
            ("--banks", {"type": int, "help": "number of banks (config default: 30)"}),
            ("--topology", {"choices": TOPOLOGIES, "help": "interbank network (config "
                            "default: barabasi_albert)"}),
            ("--seed", {"type": int, "help": "seed of the model (default: a fresh one, "
                        "printed)"}),
            ("--config", {"help": "YAML config file (see `finsim config`)"}),
            ("--exchanges", {"type": int, "help": "number of exchanges (config default: 0)"}),
            ("--ccps", {"type": int, "help": "number of CCPs (config default: 0)"})):
        wi.add_argument(flag, **kw)
    wi.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="any config parameter, e.g. --set capital_ratio=0.12 (repeatable)")
    wi.add_argument("--warmup", type=int, default=20, help="steps to run before looking ahead")
    wi.add_argument("--shock", help="KIND[:MAGNITUDE[:BANK,BANK...]], e.g. price_crash:0.2, "
                    "funding_withdrawal:0.3:4, default::3,7 (default: no shock)")
    wi.add_argument("--horizon", type=int, default=10, help="steps to look ahead")
    wi.add_argument("--seeds", type=int, default=10, help="Monte-Carlo seeds")
    wi.add_argument("--workers", default="auto", metavar="N",
                    help="processes to split the lookahead runs between (forked; same "
                    "results); auto: the cores, where the runs are long enough to gain")
    wi.add_argument("--bank", type=int, help="bank whose own outcome to report (default: none)")
    wi.add_argument("--recommend", action="store_true", help="recommend an action for --bank")
    wi.set_defaults(func=cmd_whatif, steps=None)
