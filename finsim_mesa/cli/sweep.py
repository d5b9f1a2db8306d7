"""``finsim sweep``: a parameter sweep on ``mesa.batch_run``, local or on Dask."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from finsim_mesa.errors import FinsimError
from finsim_mesa.files import atomic_write, check_writable


def cmd_sweep(args: argparse.Namespace) -> int:
    import time

    from finsim_mesa.sweeps import load_grid, run_sweep, sweep_figure

    spec: dict[str, Any] = load_grid(args.grid) if args.grid else {"parameters": {}}
    grid = dict(spec["parameters"])
    for item in args.param or []:
        key, sep, raw = item.partition("=")
        if not sep or not key or not raw:
            raise FinsimError(f"--param expects NAME=V1,V2,..., got {item!r}")
        try:
            grid[key.strip()] = [yaml.safe_load(v) for v in raw.split(",")]
        except yaml.YAMLError as err:
            raise FinsimError(f"--param {item!r}: a value is not valid YAML ({err})") from None
    seeds = args.seeds if args.seeds is not None else spec.get("seeds", 10)
    steps = args.steps if args.steps is not None else spec.get("steps", 100)
    out = Path(args.out)
    if out.suffix not in (".csv", ".parquet"):
        raise FinsimError(f"--out {out}: use a .csv or .parquet file name")
    check_writable(out, "--out")  # before the sweep, not after it
    if args.plot:
        check_writable(args.plot, "--plot")
    t0 = time.perf_counter()
    df = run_sweep(grid, seeds=seeds, steps=steps, processes=args.processes,
                   scheduler=args.scheduler, workers=args.workers, progress=not args.quiet)
    wall = time.perf_counter() - t0
    if out.suffix == ".parquet":
        try:
            atomic_write(out, df.to_parquet)
        except ImportError:
            raise FinsimError("Parquet output needs pyarrow: pip install pyarrow") from None
    else:
        atomic_write(out, lambda p: df.to_csv(p, index=False))
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
        fig = sweep_figure(df, list(grid))
        atomic_write(args.plot, lambda p: fig.savefig(p, dpi=110, format="png"))
        print(f"summary figure written to {args.plot}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
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
