"""The ``finsim`` command line.

    finsim simulate [--scenario S --steps N --brain B --banks N --topology T --seed S
                     --config FILE --set KEY=VALUE ... --out results.csv]
    finsim simulate --compare          all scenarios side by side
    finsim simulate --exchanges 2 --ccps 1      with market infrastructure
    finsim simulate --compare-infrastructure    with vs without it
    finsim whatif --shock price_crash:0.2 --bank 3 --recommend
    finsim sweep --param scenario=normal,systemic --seeds 10 [--workers 2] --out s.csv
    finsim scenarios                   list scenarios with descriptions
    finsim config [-o FILE]            write the default config, every parameter documented

Errors in what the user gave (flags, config files, scenario files) print one
clear message and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from finsim_mesa.agents.brains import BRAINS
from finsim_mesa.config import TOPOLOGIES, ModelConfig, load_config, make_config
from finsim_mesa.errors import FinsimError
from finsim_mesa.scenarios import list_scenarios

__all__ = ["main"]


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise FinsimError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(raw)
    return out


def _config_from_args(args: argparse.Namespace) -> ModelConfig:
    flags = {
        "scenario": args.scenario, "steps": args.steps, "brain": args.brain,
        "n_banks": args.banks, "topology": args.topology,
        "n_exchanges": args.exchanges, "n_ccps": args.ccps,
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    overrides.update(_parse_set(args.set or []))
    if args.config:
        return load_config(args.config, **overrides)
    return make_config(None, **overrides)


def _seed(args: argparse.Namespace) -> int:
    return args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")


def _run(cfg: ModelConfig, seed: int, progress: bool, desc: str, leave: bool = True) -> Any:
    from tqdm import tqdm

    from finsim_mesa.model import FinancialModel

    model = FinancialModel(config=cfg, rng=seed)
    with tqdm(total=cfg.steps, desc=desc, unit="step", disable=not progress,
              file=sys.stderr, leave=leave) as bar:
        while model.running:
            model.step()
            bar.update(1)
    return model


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _print_summary(model: Any, seed: int, out: Any = None) -> None:
    out = out or sys.stdout
    s = model.summary()
    cfg = model.config
    w = out.write
    w(f"\nfinsim-mesa: {s['banks']} banks, {cfg.topology} network, scenario "
      f"'{s['scenario']}', brain '{cfg.brain}', seed {seed}\n")
    end = "system collapsed" if s["collapsed"] else "episode complete"
    w(f"ran {s['steps']} of {cfg.steps} steps ({end})\n\n")
    rows = [
        ("defaults", f"{s['defaults']} of {s['banks']} ({s['default_rate']:.1%})"),
        ("asset price (start = 1)", _fmt(s["price"])),
        ("total equity of survivors", _fmt(s["total_equity"])),
        ("capital ratio: mean / p10 / min", f"{s['capital_ratio_mean']:.4f} / "
                                            f"{s['capital_ratio_p10']:.4f} / "
                                            f"{s['capital_ratio_min']:.4f}"),
        ("DebtRank (propagated distress)", _fmt(s["debtrank"])),
        ("DebtRank total distress", _fmt(s["debtrank_total"])),
        ("liquidity index (cash / short-term debt)", _fmt(s["liquidity_index"])),
        ("stress index", _fmt(s["stress_index"])),
        ("systemic-risk index (0-1)", _fmt(s["systemic_risk_index"])),
        ("max contagion depth (default rounds)", _fmt(s["max_contagion_depth"])),
    ]
    width = max(len(r[0]) for r in rows)
    for name, val in rows:
        w(f"  {name:<{width}}  {val}\n")
    if model.config.infrastructure:
        _print_infrastructure(s, w)
    w("\nmost systemically important banks (DebtRank if each defaulted alone):\n")
    if not s["most_systemic"]:
        w("  (no surviving bank)\n")
    else:
        w(f"  {'rank':>4}  {'bank':>5}  {'DebtRank':>9}  {'total assets':>12}  {'links':>5}\n")
        for k, b in enumerate(s["most_systemic"], 1):
            w(f"  {k:>4}  {b['bank']:>5}  {b['debtrank']:>9.4f}  {b['total_assets']:>12.2f}  "
              f"{b['degree']:>5}\n")
        if model.config.infrastructure and all(b["debtrank"] == 0 for b in s["most_systemic"]):
            w("  (no bank-to-bank exposures: loans are novated to the CCPs; ranked by size)\n")


def _print_infrastructure(s: dict[str, Any], w: Any) -> None:
    w("\nmarket infrastructure:\n")
    w(f"  exchange fees collected        {s['exchange_fees_total']:.4g}\n")
    w(f"  mean exchange utilisation      {s['exchange_utilisation_mean']:.3f}\n")
    w(f"  congested exchange-steps       {s['congested_exchange_steps']}\n")
    w(f"  orders expired (money)         {s['orders_expired_total']:.4g}\n")
    w(f"  mean settlement delay (steps)  {s['mean_delay']:.3f}\n")
    for key, c in s.items():
        if not (key.startswith("ccp") and isinstance(c, dict)):
            continue
        w(f"  {key}: margin held {c['margin_held']:.4g}, netting efficiency "
          f"{c['netting_efficiency']:.1%}, default fund {c['default_fund']:.4g} of "
          f"{c['initial_default_fund']:.4g} (used {c['fund_used']:.4g}), capital used "
          f"{c['capital_used']:.4g}, member defaults {c['member_defaults_handled']}, "
          f"uncovered loss {c['uncovered_loss']:.4g}\n")


def cmd_simulate(args: argparse.Namespace) -> int:
    cfg = _config_from_args(args)
    seed = _seed(args)
    progress = not args.quiet
    if args.compare:
        return _compare(cfg, seed, progress, args.out)
    if args.compare_infrastructure:
        return _compare_infrastructure(cfg, seed, progress)
    model = _run(cfg, seed, progress, f"{cfg.scenario}")
    _print_summary(model, seed)
    if args.plot:
        from finsim_mesa.viz.plots import run_figure

        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        run_figure(model).savefig(args.plot, dpi=110)
        print(f"\nfigure written to {args.plot}")
    if args.out:
        df = model.datacollector.get_model_vars_dataframe()
        df.index.name = "step"
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out)
        print(f"\nper-step results written to {args.out}")
    return 0


def _compare(cfg: ModelConfig, seed: int, progress: bool, out: str | None) -> int:
    import pandas as pd

    rows = []
    for name in list_scenarios():
        model = _run(make_config(cfg.model_dump(), scenario=name), seed, progress, name,
                     leave=False)
        s = model.summary(top=1)
        df = model.datacollector.get_model_vars_dataframe()
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
    if out:
        table.to_csv(out)
        print(f"\ncomparison written to {out}")
    return 0


def _compare_infrastructure(cfg: ModelConfig, seed: int, progress: bool) -> int:
    """Same scenario and seed with and without the exchange / CCP layer."""
    on = cfg if cfg.infrastructure else make_config(cfg.model_dump(), n_exchanges=2, n_ccps=1)
    off = make_config(cfg.model_dump(), n_exchanges=0, n_ccps=0)
    rows = {}
    for label, c in (("without infrastructure", off),
                     (f"with {on.n_exchanges} exchanges, {on.n_ccps} CCPs", on)):
        model = _run(c, seed, progress, label, leave=False)
        df = model.datacollector.get_model_vars_dataframe()
        loss = model.ledger.equity0.sum() - max(model.total_equity, 0.0)
        rows[label] = {
            "defaults": model.n_defaults, "default_rate": model.default_rate,
            "equity_lost": float(loss), "price": model.asset_price,
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
    return 0


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
    if args.recommend and args.bank is None:
        raise FinsimError("--recommend needs --bank BANK_ID")
    shock = _parse_shock(args.shock)
    if shock is not None:
        from finsim_mesa.scenarios.engine import SHOCK_KINDS

        if shock["kind"] not in SHOCK_KINDS:
            raise FinsimError(f"--shock: kind {shock['kind']!r} is unknown; choose one of "
                              f"{', '.join(SHOCK_KINDS)}")
    cfg = _config_from_args(args)
    if args.bank is not None and not 0 <= args.bank < cfg.n_banks:
        raise FinsimError(f"--bank {args.bank}: must be a bank id in 0..{cfg.n_banks - 1}")
    seed = _seed(args)
    model = FinancialModel(config=cfg, rng=seed)
    model.run_for(args.warmup)
    print(f"\n{cfg.n_banks} banks, scenario '{cfg.scenario}', seed {seed}, state after step "
          f"{model.t} ({model.n_defaults} defaults so far)")
    if shock or not args.recommend:
        t0 = time.perf_counter()
        res = model.what_if(steps=args.horizon, seeds=args.seeds, shock=shock, bank=args.bank)
        print(f"\nwhat if {shock or 'nothing changes'} ({time.perf_counter() - t0:.2f} s)\n")
        print(res)
    if args.recommend:
        t0 = time.perf_counter()
        rec = model.recommend(args.bank, steps=args.horizon, seeds=args.seeds)
        print(f"\nrecommendation ({time.perf_counter() - t0:.2f} s): {rec.reason}\n")
        with __import__("pandas").option_context("display.width", 140):
            print(rec.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    import time

    from finsim_mesa.sweeps import load_grid, run_sweep, sweep_figure

    spec: dict[str, Any] = load_grid(args.grid) if args.grid else {"parameters": {}}
    grid = dict(spec["parameters"])
    for item in args.param or []:
        key, sep, raw = item.partition("=")
        if not sep or not key or not raw:
            raise FinsimError(f"--param expects NAME=V1,V2,..., got {item!r}")
        grid[key.strip()] = [yaml.safe_load(v) for v in raw.split(",")]
    seeds = args.seeds if args.seeds is not None else spec.get("seeds", 10)
    steps = args.steps if args.steps is not None else spec.get("steps", 100)
    out = Path(args.out)
    if out.suffix not in (".csv", ".parquet"):
        raise FinsimError(f"--out {out}: use a .csv or .parquet file name")
    t0 = time.perf_counter()
    df = run_sweep(grid, seeds=seeds, steps=steps, processes=args.processes,
                   scheduler=args.scheduler, workers=args.workers, progress=not args.quiet)
    wall = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        try:
            df.to_parquet(out)
        except ImportError:
            raise FinsimError("Parquet output needs pyarrow: pip install pyarrow") from None
    else:
        df.to_csv(out, index=False)
    runs = df.groupby([*grid, "seed"]).ngroups
    where = (f"Dask scheduler {args.scheduler}" if args.scheduler else
             f"local Dask cluster, {args.workers} workers" if args.workers else
             f"{args.processes} process(es)")
    print(f"{runs} runs x {steps} steps on {where} in {wall:.1f} s; {len(df)} rows -> {out}")
    from finsim_mesa.sweeps import summarise_sweep

    with __import__("pandas").option_context("display.width", 140):
        print(summarise_sweep(df, list(grid)).to_string(index=False,
                                                         float_format=lambda v: f"{v:.4g}"))
    if args.plot:
        sweep_figure(df, list(grid)).savefig(args.plot, dpi=110)
        print(f"summary figure written to {args.plot}")
    return 0


def cmd_viz(args: argparse.Namespace) -> int:
    """Serve the Solara app (``solara run finsim_mesa.viz.app``)."""
    import shutil
    import subprocess

    solara = shutil.which("solara") or str(Path(sys.executable).with_name("solara"))
    if not Path(solara).exists():
        raise FinsimError("the solara command is not installed (pip install solara)")
    cmd = [solara, "run", "finsim_mesa.viz.app", "--host", args.host, "--port", str(args.port)]
    if not args.open:
        cmd.append("--no-open")
    print(f"serving the finsim-mesa app on http://{args.host}:{args.port}/ (Ctrl-C to stop)")
    return subprocess.call(cmd)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the REST API with uvicorn (``--reload`` restarts it on code changes)."""
    import importlib.util
    import os

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise FinsimError(f"the REST API needs the api extra ({', '.join(missing)} missing): "
                          "pip install 'finsim-mesa[api]'")
    if not 0 < args.port < 65536:
        raise FinsimError(f"--port {args.port}: give a port in 1..65535")
    for name in ("max_banks", "max_steps", "max_simulations"):
        if getattr(args, name) < 1:
            raise FinsimError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 1")
    if args.idle_ttl <= 0:
        raise FinsimError(f"--idle-ttl {args.idle_ttl}: must be > 0 seconds")
    import uvicorn

    os.environ.update({"FINSIM_MODELS_DIR": args.models, "FINSIM_MAX_BANKS": str(args.max_banks),
                       "FINSIM_MAX_STEPS_PER_REQUEST": str(args.max_steps),
                       "FINSIM_MAX_SIMULATIONS": str(args.max_simulations),
                       "FINSIM_IDLE_TTL_S": str(args.idle_ttl)})
    print(f"finsim-mesa API on http://{args.host}:{args.port}/ (OpenAPI docs at /docs; "
          "Ctrl-C to stop)", flush=True)
    uvicorn.run("finsim_mesa.api.app:create_app_from_env", factory=True, host=args.host,
                port=args.port, reload=args.reload, log_level=args.log_level)
    return 0


def _learning():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise FinsimError("training needs the learn extra: pip install 'finsim-mesa[learn]'") \
            from None
    from finsim_mesa.learning import run

    return run


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
    run = _learning()
    scenarios = args.curriculum.split(",") if args.curriculum else [args.scenario]
    for sc in scenarios:
        from finsim_mesa.scenarios import get_scenario

        get_scenario(sc)
    if args.episodes < 1:
        raise FinsimError(f"--episodes {args.episodes}: must be >= 1")
    checks = {"--team-reward": 0.0 <= args.team_reward <= 1.0, "--gamma": 0 < args.gamma <= 1,
              "--lr": args.lr > 0, "--hidden": args.hidden >= 1,
              "--ent-start": args.ent_start >= 0, "--ent-end": args.ent_end >= 0,
              "--episodes-per-update": args.episodes_per_update >= 1,
              "--eval-every": args.eval_every >= 1, "--eval-seeds": args.eval_seeds >= 1}
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise FinsimError(f"{', '.join(bad)} out of range: team reward in [0, 1], gamma in "
                          "(0, 1], learning rate > 0, entropy >= 0, counts >= 1")
    summary = run.train_policy(
        episodes=args.episodes, seed=args.seed, scenarios=scenarios, out_dir=args.out,
        eval_every=args.eval_every, eval_seeds=tuple(range(1001, 1001 + args.eval_seeds)),
        progress=not args.quiet, resume=args.resume, n_banks=args.banks, steps=args.steps,
        trainer_config={"team_reward": args.team_reward, "ent_start": args.ent_start,
                        "ent_end": args.ent_end,
                        "episodes_per_update": args.episodes_per_update},
        mappo_config={"init_action_mean": _init_action(args.init_action),
                      "gamma": args.gamma, "lr": args.lr, "hidden": args.hidden,
                      "normalize_obs": args.normalize_obs})
    print(json.dumps(summary, indent=2))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    run = _learning()
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
        verdict = "beats" if res.beats("policy", sc) else "does not beat"
        print(f"\npolicy {verdict} every baseline on episode reward in '{sc}' "
              "(non-overlapping 95% intervals)")
        pair = res.paired("policy", sc).sort_values("mean_difference")
        if len(pair):
            w = pair.iloc[0]
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


def cmd_scenarios(args: argparse.Namespace) -> int:
    for name, sc in list_scenarios().items():
        print(name)
        print(textwrap.indent(textwrap.fill(sc.description, 76), "    "))
        if args.verbose:
            for k, v in sc.model_dump(exclude={"name", "description"}).items():
                print(f"      {k}: {v}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    cfg = make_config(None, **_parse_set(args.set or []))
    text = cfg.to_yaml()
    if args.output:
        Path(args.output).write_text(text)
        print(f"default configuration written to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``finsim``."""
    p = argparse.ArgumentParser(prog="finsim", description="Financial contagion on Mesa.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    sw = sub.add_parser("sweep", help="parameter sweep on mesa.batch_run (local or Dask)")
    sw.add_argument("--grid", help="YAML: {parameters: {name: [values]}, seeds: N, steps: N}")
    sw.add_argument("--param", action="append", metavar="NAME=V1,V2",
                    help="a swept parameter and its values (repeatable)")
    sw.add_argument("--seeds", type=int, help="seeds per combination (default 10)")
    sw.add_argument("--steps", type=int, help="steps per run (default 100)")
    sw.add_argument("--processes", type=int, default=1, help="local processes")
    sw.add_argument("--scheduler", help="address of a Dask scheduler, e.g. tcp://host:8786")
    sw.add_argument("--workers", type=int, help="start a local Dask cluster with N workers")
    sw.add_argument("--out", default="sweep.csv", help="results file (.csv or .parquet)")
    sw.add_argument("--plot", metavar="FILE.png", help="summary figure (final default rate)")
    sw.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sw.set_defaults(func=cmd_sweep)

    wi = sub.add_parser("whatif", help="look ahead from a model state under a hypothetical; "
                        "recommend an action for a bank")
    for flag, kw in (("--scenario", {}), ("--brain", {}), ("--banks", {"type": int}),
                     ("--topology", {"choices": TOPOLOGIES}), ("--seed", {"type": int}),
                     ("--config", {}), ("--exchanges", {"type": int}),
                     ("--ccps", {"type": int})):
        wi.add_argument(flag, **kw)
    wi.add_argument("--set", action="append", metavar="KEY=VALUE")
    wi.add_argument("--warmup", type=int, default=20, help="steps to run before looking ahead")
    wi.add_argument("--shock", help="KIND[:MAGNITUDE[:BANK,BANK...]], e.g. price_crash:0.2, "
                    "funding_withdrawal:0.3:4, default::3,7")
    wi.add_argument("--horizon", type=int, default=10, help="steps to look ahead")
    wi.add_argument("--seeds", type=int, default=10, help="Monte-Carlo seeds")
    wi.add_argument("--bank", type=int, help="bank whose own outcome to report")
    wi.add_argument("--recommend", action="store_true", help="recommend an action for --bank")
    wi.set_defaults(func=cmd_whatif, steps=None)

    vz = sub.add_parser("viz", help="serve the Solara app (network, charts, shocks)")
    vz.add_argument("--host", default="127.0.0.1")
    vz.add_argument("--port", type=int, default=8765)
    vz.add_argument("--open", action="store_true", help="open a browser")
    vz.set_defaults(func=cmd_viz)

    tr = sub.add_parser("train", help="train MAPPO banks (needs the learn extra)")
    tr.add_argument("--episodes", type=int, default=2000)
    tr.add_argument("--seed", type=int, default=42)
    tr.add_argument("--scenario", default="systemic", help="training scenario (default "
                    "systemic)")
    tr.add_argument("--curriculum", help="scenarios in order, e.g. normal,asset_crash")
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
    tr.add_argument("--resume", help="checkpoint folder to continue from")
    tr.add_argument("--out", default="models", help="where checkpoints and logs go")
    tr.add_argument("-q", "--quiet", action="store_true")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="trained policy vs every baseline brain")
    ev.add_argument("--model", default="final", help="final, best or a checkpoint folder")
    ev.add_argument("--models", default="models", help="folder of final/ and best/")
    ev.add_argument("--episodes", type=int, default=50, help="evaluation seeds")
    ev.add_argument("--scenario", help="scenarios (default: the training ones)")
    ev.add_argument("--no-baselines", action="store_true")
    ev.add_argument("--out", help="folder for runs.csv, table.csv, evaluation.png")
    ev.add_argument("-q", "--quiet", action="store_true")
    ev.set_defaults(func=cmd_evaluate)

    sv = sub.add_parser("serve", help="serve the REST API (needs the api extra)")
    sv.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument("--reload", action="store_true", help="restart on code changes (dev)")
    sv.add_argument("--models", default="models", help="folder of trained models")
    sv.add_argument("--max-banks", type=int, default=2000, help="most banks per simulation")
    sv.add_argument("--max-steps", type=int, default=5000, help="most steps per request")
    sv.add_argument("--max-simulations", type=int, default=32, help="most live simulations")
    sv.add_argument("--idle-ttl", type=float, default=3600.0,
                    help="seconds before an idle simulation is dropped")
    sv.add_argument("--log-level", default="info",
                    choices=["critical", "error", "warning", "info", "debug"])
    sv.set_defaults(func=cmd_serve)

    sc = sub.add_parser("scenarios", help="list the scenarios")
    sc.add_argument("-v", "--verbose", action="store_true", help="show parameters too")
    sc.set_defaults(func=cmd_scenarios)

    cf = sub.add_parser("config", help="write the default configuration as YAML")
    cf.add_argument("-o", "--output", help="file to write (default: standard output)")
    cf.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a default")
    cf.set_defaults(func=cmd_config)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``finsim`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except FinsimError as err:
        print(f"finsim: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
