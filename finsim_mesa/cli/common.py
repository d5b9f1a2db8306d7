"""Helpers shared by the ``finsim`` subcommands: ``--set`` parsing, the model
configuration and seed from the flags, a run with a progress bar, the summary,
and the pieces the searches (``train --init-search`` / ``--refine``) share."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from finsim_mesa.config import ModelConfig, load_config, make_config
from finsim_mesa.errors import FinsimError


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items -> config overrides (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise FinsimError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise FinsimError(f"--set {item!r}: the value is not valid YAML ({err}); quote "
                              "text, e.g. --set scenario=systemic") from None
    return out


def config_from_args(args: argparse.Namespace) -> ModelConfig:
    """The model configuration: ``--config`` file, then the model flags, then ``--set``."""
    flags = {
        "scenario": args.scenario, "steps": args.steps, "brain": args.brain,
        "n_banks": args.banks, "topology": args.topology,
        "n_exchanges": args.exchanges, "n_ccps": args.ccps,
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    overrides.update(parse_set(args.set or []))
    if args.config:
        return load_config(args.config, **overrides)
    return make_config(None, **overrides)


def seed_from_args(args: argparse.Namespace) -> int:
    """``--seed``, or a fresh random one (which the commands print)."""
    if args.seed is not None and args.seed < 0:
        raise FinsimError(f"--seed {args.seed}: give a seed >= 0")
    return args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")


def run_model(cfg: ModelConfig, seed: int, progress: bool, desc: str,
              leave: bool = True) -> Any:
    """Run a model to its end, with a tqdm progress bar on stderr."""
    from tqdm import tqdm

    from finsim_mesa.model import FinancialModel

    model = FinancialModel(config=cfg, rng=seed)
    with tqdm(total=cfg.steps, desc=desc, unit="step", disable=not progress,
              file=sys.stderr, leave=leave) as bar:
        while model.running:
            model.step()
            bar.update(1)
    return model


def learning_run() -> Any:
    """:mod:`finsim_mesa.learning.run`, or a clear error without the learn extra."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise FinsimError("training needs the learn extra: pip install 'finsim-mesa[learn]'") \
            from None
    from finsim_mesa.learning import run

    return run


def fmt(v: Any) -> str:
    """A summary value as printed: yes/no; a float with 4 significant digits, never
    in scientific notation (below 0.0001 it prints 0.0000; above 10,000 as a whole
    number with separators); anything else as is."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if abs(v) >= 1e4:
            return f"{v:,.0f}"
        return f"{v:.4f}" if abs(v) < 1e-4 else f"{v:.4g}"
    return str(v)


def plural(k: int, word: str, many: str | None = None) -> str:
    """``1 CCP``, ``2 CCPs``."""
    return f"{k} {word if k == 1 else (many or word + 's')}"


def print_summary(model: Any, seed: int, out: Any = None) -> None:
    """The end-of-run summary of ``finsim simulate``."""
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
        ("asset price (start = 1)", fmt(s["price"])),
        ("total equity of survivors", fmt(s["total_equity"])),
        ("capital ratio: mean / p10 / min", f"{s['capital_ratio_mean']:.4f} / "
                                            f"{s['capital_ratio_p10']:.4f} / "
                                            f"{s['capital_ratio_min']:.4f}"),
        ("DebtRank (propagated distress)", fmt(s["debtrank"])),
        ("DebtRank total distress", fmt(s["debtrank_total"])),
        ("liquidity index (cash / short-term debt)", fmt(s["liquidity_index"])),
        ("stress index", fmt(s["stress_index"])),
        ("systemic-risk index (0-1)", fmt(s["systemic_risk_index"])),
        ("max contagion depth (default rounds)", fmt(s["max_contagion_depth"])),
    ]
    width = max(len(r[0]) for r in rows)
    for name, val in rows:
        w(f"  {name:<{width}}  {val}\n")
    if model.config.infrastructure:
        print_infrastructure(s, w)
    w("\nmost systemically important surviving banks (DebtRank: share of the system's "
      "value lost\nif the bank alone defaulted on the initial network):\n")
    if not s["most_systemic"]:
        w("  (no surviving bank)\n")
    else:
        w(f"  {'rank':>4}  {'bank':>5}  {'DebtRank':>9}  {'total assets':>12}  {'links':>5}\n")
        for k, b in enumerate(s["most_systemic"], 1):
            w(f"  {k:>4}  {b['bank']:>5}  {b['debtrank']:>9.4f}  {b['total_assets']:>12.2f}  "
              f"{b['degree']:>5}\n")
        if model.config.infrastructure and all(b["debtrank"] == 0 for b in s["most_systemic"]):
            w("  (no bank-to-bank exposures: loans are novated to the CCPs; ranked by size)\n")


def print_infrastructure(s: dict[str, Any], w: Any) -> None:
    """The market-infrastructure section of the summary (exchanges and CCPs)."""
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


def evolved_folder(out: str) -> Path:
    """``OUT/evolved``, created now: before a search of many minutes, not after it."""
    folder = Path(out) / "evolved"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FinsimError(f"--out {out}: cannot create {folder}: {err.strerror or err}"
                          ) from None
    return folder


def searched_start(folder: str) -> dict:
    """The ``evolve`` record of an actor folder that ``--init-search`` or
    ``--refine`` wrote (or the shipped policy): where a search continues."""
    from finsim_mesa.agents.actor import load_actor_folder

    start = load_actor_folder(folder).meta.get("evolve")
    if start is None:
        raise FinsimError(f"--init-from {folder}: not an actor that --init-search or --refine "
                          "wrote (its meta.json has no 'evolve' record)")
    return start


def whole_numbers(text: str, flag: str, form: str) -> list[int]:
    """Comma-separated whole numbers (``form`` names them in the error)."""
    raw = floats(text, None, flag)
    if not all(math.isfinite(v) and v == int(v) for v in raw):
        raise FinsimError(f"{flag} {text}: give whole numbers {form}")
    return [int(v) for v in raw]


def floats(text: str, count: int | None, flag: str) -> list[float]:
    """``count`` (None: any number of) comma-separated numbers given to ``flag``."""
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if not vals or (count is not None and len(vals) != count):
        raise FinsimError(f"{flag} {text!r}: give {count or 'some'} comma-separated numbers")
    return vals


def workers_arg(text: str, auto: bool = False) -> Any:
    """``--workers``: the number of processes that run a search's episodes (with
    ``auto``, also ``auto``: the cores where that is faster)."""
    from finsim_mesa.errors import ConfigError
    from finsim_mesa.forked import AUTO, check_workers, max_workers

    try:
        return check_workers(AUTO if auto and text == AUTO else int(text), auto=auto)
    except (ValueError, ConfigError):
        raise FinsimError(f"--workers {text}: give a whole number of processes from 1 to "
                          f"{max_workers()} (4 x the {os.cpu_count()} CPUs here)"
                          + (f" or {AUTO}" if auto else "") + ", e.g. "
                          "--workers 2 on two cores; 1 runs everything in this process"
                          ) from None
