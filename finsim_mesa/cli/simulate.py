"""``finsim simulate``: one run and its summary; ``--compare`` runs every scenario,
``--compare-infrastructure`` the same run with and without exchanges and CCPs."""

from __future__ import annotations

import argparse
from typing import Any

from finsim_mesa.agents.brains import BRAINS
from finsim_mesa.cli.common import (
    config_from_args,
    plural,
    print_summary,
    run_model,
    seed_from_args,
)
from finsim_mesa.config import TOPOLOGIES, ModelConfig, make_config
from finsim_mesa.files import atomic_write, check_writable
from finsim_mesa.scenarios import list_scenarios


def cmd_simulate(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    seed = seed_from_args(args)
    progress = not args.quiet
    for flag, path in (("--out", args.out), ("--plot", args.plot)):
        if path:
            check_writable(path, flag)  # before the run, not after it
    if args.compare:
        return _compare(cfg, seed, progress, args.out, args.plot)
    if args.compare_infrastructure:
        return _compare_infrastructure(cfg, seed, progress, args.out, args.plot)
    model = run_model(cfg, seed, progress, f"{cfg.scenario}")
    print_summary(model, seed)
    if args.plot:
        from finsim_mesa.viz.plots import run_figure

        fig = run_figure(model)
        atomic_write(args.plot, lambda p: fig.savefig(p, dpi=110, format="png"))
        print(f"\nfigure written to {args.plot}")
    if args.out:
        df = model.datacollector.get_model_vars_dataframe()
        df.index.name = "step"
        atomic_write(args.out, df.to_csv)
        print(f"\nper-step results written to {args.out}")
    return 0


def _write_comparison(frames: dict[str, Any], out: str | None, plot: str | None,
                      table: Any) -> None:
    """The comparison table (CSV) and figure (every run's time series), if asked."""
    if out:
        atomic_write(out, table.to_csv)
        print(f"\ncomparison written to {out}")
    if plot:
        from finsim_mesa.viz.plots import scenario_comparison

        fig = scenario_comparison(frames)
        atomic_write(plot, lambda p: fig.savefig(p, dpi=110, format="png"))
        print(f"figure written to {plot}")


def _compare(cfg: ModelConfig, seed: int, progress: bool, out: str | None,
             plot: str | None) -> int:
    import pandas as pd

    rows, frames = [], {}
    for name in list_scenarios():
        model = run_model(make_config(cfg.model_dump(), scenario=name), seed, progress, name,
                          leave=False)
        s = model.summary(top=1)
        df = frames[name] = model.datacollector.get_model_vars_dataframe()
        rows.append({
            "scenario": name, "steps": s["steps"], "defaults": s["defaults"],
            "default_rate": s["default_rate"], "price": s["price"],
            "total_equity": s["total_equity"], "capital_ratio": s["capital_ratio_mean"],
            "debtrank_peak": float(df["debtrank_total"].max()),
            "sri_peak": float(df["systemic_risk_index"].max()),
            "max_depth": s["max_contagion_depth"],
            "top_bank": s["most_systemic"][0]["bank"] if s["most_systemic"] else None,
        })
    table = pd.DataFrame(rows).set_index("scenario")
    print(f"\nall scenarios, {cfg.n_banks} banks, brain '{cfg.brain}', seed {seed}, "
          f"up to {cfg.steps} steps\n")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    _write_comparison(frames, out, plot, table)
    return 0


def _compare_infrastructure(cfg: ModelConfig, seed: int, progress: bool, out: str | None,
                            plot: str | None) -> int:
    """Same scenario and seed with and without the exchange / CCP layer."""
    on = cfg if cfg.infrastructure else make_config(cfg.model_dump(), n_exchanges=2, n_ccps=1)
    off = make_config(cfg.model_dump(), n_exchanges=0, n_ccps=0)
    rows, frames = {}, {}
    for label, c in (("without infrastructure", off),
                     (f"with {plural(on.n_exchanges, 'exchange')}, "
                      f"{plural(on.n_ccps, 'CCP')}", on)):
        model = run_model(c, seed, progress, label, leave=False)
        df = frames[label] = model.datacollector.get_model_vars_dataframe()
        loss = model.ledger.equity0.sum() - max(model.measures.total_equity, 0.0)
        rows[label] = {
            "defaults": model.measures.n_defaults, "default_rate": model.measures.default_rate,
            "equity_lost": float(loss), "price": model.measures.asset_price,
            "debtrank_peak": float(df["debtrank_total"].max()),
            "sri_peak": float(df["systemic_risk_index"].max()),
            "sri_mean": float(df["systemic_risk_index"].mean()),
        }
    import pandas as pd

    table = pd.DataFrame(rows)
    table["difference"] = table.iloc[:, 1] - table.iloc[:, 0]
    print(f"\nscenario '{cfg.scenario}', {cfg.n_banks} banks, brain '{cfg.brain}', seed {seed}, "
          f"up to {cfg.steps} steps\n")
    with pd.option_context("display.width", 160):
        print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    _write_comparison(frames, out, plot, table)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser("simulate", help="run one simulation and print a summary")
    sim.add_argument("--scenario", help=f"scenario name ({', '.join(list_scenarios())}) "
                     "or a scenario YAML file")
    sim.add_argument("--steps", type=int, help="number of steps (default 100)")
    sim.add_argument("--brain", help=f"brain of every bank ({', '.join(BRAINS)})")
    sim.add_argument("--banks", type=int, help="number of banks (default 30)")
    sim.add_argument("--topology", choices=TOPOLOGIES, help="interbank network")
    sim.add_argument("--seed", type=int, help="random seed (default: a fresh one, printed)")
    sim.add_argument("--config", help="YAML config file (see `finsim config`)")
    sim.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="any config parameter, e.g. --set capital_ratio=0.12 (repeatable)")
    sim.add_argument("--out", help="write per-step model data to this CSV file")
    sim.add_argument("--exchanges", type=int, help="number of exchanges (default 0: off)")
    sim.add_argument("--ccps", type=int, help="number of central counterparties (default 0)")
    sim.add_argument("--compare", action="store_true", help="run every scenario, one table")
    sim.add_argument("--compare-infrastructure", action="store_true",
                     help="same scenario and seed with and without exchanges and CCPs")
    sim.add_argument("--plot", metavar="FILE.png", help="write a figure: time series and network")
    sim.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(func=cmd_simulate)
