"""Parameter sweeps on ``mesa.batch_run``, locally or on a Dask cluster.

A sweep runs every combination of the swept parameters for every seed. Each
run is seeded explicitly, so the same sweep gives identical results on one
process, on several, or on a Dask cluster (tested). Results are tidy: one row
per run and collected step, with the run's parameters, its seed and the
model reporters.

In one process the runs go through ``mesa.batch_run`` as one call. With
``processes=N`` (N > 1) each run is one task that calls ``mesa.batch_run`` for
its single combination and seed, in a pool of N *forked* workers where the
platform can fork: ``mesa.batchrunner`` forces the ``spawn`` start method, whose
workers import the package again (about 1.7 s each, as long as a 20-run sweep
of 100 banks takes), so two spawned workers ran slower than one process
(issue 15); forked workers inherit the imported modules and start in
milliseconds. Elsewhere (no ``fork``, or other threads running in this
process, e.g. a Jupyter kernel's) Mesa's own pool runs. On Dask
(``scheduler=ADDRESS`` for a running cluster, or ``workers=N`` for a local one)
the runs go in tasks of several runs, each run the same ``mesa.batch_run`` call
a local sweep makes, so the rows are the same (:mod:`finsim_mesa.dask_sweep`).
A local cluster is started in a thread while this process runs the first runs
itself, one after the other, until the workers are up: forked from this process
where that is safe (~0.3 s), else started by the fork server, which imports the
package first (1.5-2 s, as long as a small sweep).
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping, Sequence
from concurrent.futures import as_completed
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import mesa
import numpy as np
import pandas as pd
from mesa.datacollection import DataCollector

from finsim_mesa.config import ModelConfig, read_yaml
from finsim_mesa.errors import ConfigError
from finsim_mesa.forked import can_fork, fork_pool
from finsim_mesa.intervals import ci95
from finsim_mesa.model import FinancialModel
from finsim_mesa.threads import single_threaded

__all__ = ["load_grid", "run_sweep", "summarise_sweep", "sweep_figure"]

_BATCH_RUN_TAKES_RNG = "rng" in inspect.signature(mesa.batch_run).parameters
# Mesa >= 3.4 records the step of every collection and batch_run reads them all;
# Mesa 3.3's batch_run reads collection k as step k for k < model.steps, so for a
# model that also collects its initial state the last state (e.g. the collapse)
# is never read.
_RECORDS_STEPS = hasattr(DataCollector(), "_collection_steps")
_NOT_SWEPT = {"config", "graph", "exposures", "rng"}


class SweepModel(FinancialModel):
    """FinancialModel for Mesa 3.3's batch_run: it keeps no collection of the initial
    state, so collection k is the state after step k + 1 and every step up to the
    last (the end of the episode or the collapse) is read; :func:`run_sweep`
    shifts the step labels back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for values in self.datacollector.model_vars.values():
            values.clear()


def _check_grid(parameters: Mapping[str, Any]) -> dict[str, list]:
    if not parameters:
        raise ConfigError("a sweep needs at least one parameter with values")
    if not isinstance(parameters, Mapping):
        raise ConfigError(f"sweep parameters must be a mapping of name: [values], got "
                          f"{parameters!r}")
    grid: dict[str, list] = {}
    for key, values in parameters.items():
        if key in _NOT_SWEPT or key not in ModelConfig.model_fields:
            raise ConfigError(f"sweep parameter {key!r} is not a model parameter; see "
                              "`finsim config` for the names")
        vals = list(values) if isinstance(values, Sequence) and not isinstance(values, str) \
            else [values]
        if not vals:
            raise ConfigError(f"sweep parameter {key!r} has no values")
        grid[key] = vals
    # validate every combination before running anything
    for combo in _combinations(grid):
        ModelConfig.from_dict(combo)
    return grid


def _combinations(grid: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, as {parameter: value}."""
    return [dict(zip(grid, c, strict=True)) for c in itertools.product(*grid.values())]


def _batch(parameters: dict[str, list], seeds: list[int], steps: int, processes: int,
           progress: bool, every: int) -> list[dict[str, Any]]:
    params = dict(parameters) | {"steps": [steps], "agent_collect_every": [0]}
    kwargs: dict[str, Any] = {}
    if _BATCH_RUN_TAKES_RNG:
        kwargs["rng"] = seeds
    else:
        params["rng"] = seeds
    model_cls = FinancialModel if _RECORDS_STEPS else SweepModel
    # one BLAS / torch thread per worker: n processes x n BLAS threads on n cores
    # oversubscribe them (issue 15)
    with single_threaded() if processes > 1 else nullcontext():
        rows = mesa.batch_run(model_cls, parameters=params, number_processes=processes,
                              max_steps=steps, data_collection_period=every,
                              display_progress=progress, **kwargs)
    for r in rows:
        if "rng" not in r:  # Mesa >= 3.4 reports the seed by its position
            r["rng"] = seeds[r["iteration"]]
        if not _RECORDS_STEPS:
            r["Step"] += 1  # SweepModel's collection k is the state after step k + 1
    # the same rows on every Mesa: steps 1..last (the initial state is the same
    # for every combination and not part of a sweep's results)
    return [r for r in rows if r["Step"] >= 1]


def _one_run(combo: dict[str, Any], seed: int, steps: int, every: int) -> list[dict[str, Any]]:
    """One (combination, seed): what a Dask worker runs."""
    return _batch({k: [v] for k, v in combo.items()}, [seed], steps, 1, False, every)


def _tidy(rows: list[dict[str, Any]], grid: dict[str, list]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df = df.drop(columns=[c for c in ("RunId", "iteration", "AgentID", "steps",
                                      "agent_collect_every") if c in df])
    df = df.rename(columns={"rng": "seed", "Step": "step"})
    df = df.drop_duplicates(subset=[*grid, "seed", "step"])
    df = df.sort_values([*grid, "seed", "step"], kind="stable").reset_index(drop=True)
    return df[[*grid, "seed", "step", *[c for c in df if c not in (*grid, "seed", "step")]]]


def run_sweep(
    parameters: Mapping[str, Any],
    seeds: int | Sequence[int] = 10,
    steps: int = 100,
    *,
    processes: int = 1,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    every: int = 1,
) -> pd.DataFrame:
    """Run a sweep and return tidy results.

    Args:
        parameters: ``{name: [values]}`` over model parameters (a scalar is one value).
        seeds: number of seeds (``0..k−1``) or the seeds themselves.
        steps: steps per run.
        processes: local processes (``mesa.batch_run``'s ``number_processes``).
        scheduler: address of a running Dask scheduler (``tcp://host:8786``).
        workers: start a local Dask cluster with this many single-threaded workers.
        progress: show a progress bar.
        every: collect model data every ``every`` steps (``-1``: final step only).

    Returns:
        One row per run and collected step (1 to the run's last step, a
        collapse included): the swept parameters, ``seed``, ``step`` and every
        model reporter.

    Raises:
        ConfigError: unknown parameters, invalid values, bad seeds or steps.
    """
    grid = _check_grid(parameters)
    seed_list = list(range(seeds)) if isinstance(seeds, int | np.integer) else list(seeds)
    if not seed_list or (isinstance(seeds, int | np.integer) and seeds <= 0):
        raise ConfigError(f"seeds = {seeds!r}: give a positive number of seeds or a list")
    if steps < 1:
        raise ConfigError(f"steps = {steps}: must be >= 1")
    if processes < 1:
        raise ConfigError(f"processes = {processes}: must be >= 1")
    if scheduler is None and workers is None:
        if processes > 1 and can_fork():
            return _tidy(_forked_runs(grid, seed_list, steps, processes, progress, every), grid)
        return _tidy(_batch(grid, seed_list, steps, processes, progress, every), grid)
    return _tidy(_dask_runs(grid, seed_list, steps, scheduler, workers, progress, every), grid)


def _one_task(task: tuple[dict[str, Any], int, int, int]) -> list[dict[str, Any]]:
    return _one_run(*task)


def _forked_runs(grid: dict[str, list], seeds: list[int], steps: int, processes: int,
                 progress: bool, every: int) -> list[dict[str, Any]]:
    """Every (combination, seed) as one task in a pool of forked workers
    (:func:`finsim_mesa.forked.fork_pool`), results as they come."""
    from tqdm import tqdm

    tasks = [(combo, seed, steps, every) for combo in _combinations(grid) for seed in seeds]
    rows: list[dict[str, Any]] = []
    with fork_pool(min(processes, len(tasks))) as pool:
        futures = [pool.submit(_one_task, task) for task in tasks]
        for done in tqdm(as_completed(futures), total=len(tasks), disable=not progress,
                         desc="sweep"):
            rows.extend(done.result())
    return rows


def _run_chunk(runs: list[tuple[dict[str, Any], int]], steps: int, every: int
               ) -> list[dict[str, Any]]:
    """Several (combination, seed) runs, one after the other: what a Dask task runs."""
    rows: list[dict[str, Any]] = []
    for combo, seed in runs:
        rows.extend(_one_run(combo, seed, steps, every))
    return rows


def _dask_runs(grid: dict[str, list], seeds: list[int], steps: int, scheduler: str | None,
               workers: int | None, progress: bool, every: int) -> list[dict[str, Any]]:
    """Every (combination, seed) on Dask (:mod:`finsim_mesa.dask_sweep`), rows in
    the order of the runs."""
    from finsim_mesa import dask_sweep

    def here(combo: dict[str, Any], seed: int) -> list[dict[str, Any]]:
        return _one_run(combo, seed, steps, every)

    tasks = [(combo, seed) for combo in _combinations(grid) for seed in seeds]
    return dask_sweep.run(tasks, here, _run_chunk, (steps, every), scheduler, workers,
                          progress)


def load_grid(path: str | Path) -> dict[str, Any]:
    """A sweep grid from YAML: ``{parameters: {name: [values]}, seeds: ..., steps: ...}``
    or just ``{name: [values]}``."""
    data = read_yaml(path, "sweep file")
    if not isinstance(data, dict):
        raise ConfigError(f"sweep file {path} must hold a mapping")
    if "parameters" not in data:
        data = {"parameters": data}
    unknown = set(data) - {"parameters", "seeds", "steps"}
    if unknown:
        raise ConfigError(f"sweep file {path}: unknown keys {sorted(unknown)}; use parameters, "
                          "seeds, steps")
    if not isinstance(data["parameters"], dict):
        raise ConfigError(f"sweep file {path}: parameters must be a mapping of name: [values], "
                          f"got {data['parameters']!r}")
    for key in ("seeds", "steps"):
        v = data.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"sweep file {path}: {key} = {v!r}: give a whole number >= 1")
    return data


def summarise_sweep(df: pd.DataFrame, by: Sequence[str], outcome: str = "default_rate"
                    ) -> pd.DataFrame:
    """Final-step ``outcome`` per group of ``by``: mean, standard deviation, the 95%
    Student-t interval of the mean (``low``, ``high``) and the number of runs."""
    final = df.loc[df.groupby([*by, "seed"])["step"].idxmax()]
    rows = []
    for key, g in final.groupby(list(by)):
        mean, std, low, high = ci95(g[outcome].to_numpy(dtype=float))
        rows.append(dict(zip(by, np.atleast_1d(key), strict=True))
                    | {"mean": mean, "std": std, "count": len(g), "low": low, "high": high})
    return pd.DataFrame(rows)


def sweep_figure(df: pd.DataFrame, by: Sequence[str], outcome: str = "default_rate"):
    """Figure: final ``outcome`` against the first swept parameter with 95% bands,
    one line per combination of the others. Returns a matplotlib Figure."""
    from finsim_mesa.viz.plots import new_figure

    by = list(by)
    summary = summarise_sweep(df, by, outcome)
    fig, ax = new_figure(figsize=(7, 4.5))
    x = by[0]
    others = by[1:]
    groups = summary.groupby(others) if others else [((), summary)]
    categorical = not pd.api.types.is_numeric_dtype(summary[x])
    groups = list(groups)
    for j, (key, g) in enumerate(groups):
        label = ", ".join(f"{o}={v}" for o, v in zip(others, np.atleast_1d(key),
                                                     strict=False)) or outcome
        if categorical:  # categories are not a scale: points with error bars, side by side
            xs = np.arange(len(g)) + (j - (len(groups) - 1) / 2) * 0.12
            err = np.vstack([g["mean"] - g["low"], g["high"] - g["mean"]]).clip(min=0)
            ax.errorbar(xs, g["mean"], yerr=np.nan_to_num(err), fmt="o", capsize=4,
                        label=label)
            ax.set_xticks(np.arange(len(g)), g[x].astype(str))
        else:
            xs = g[x].to_numpy()
            ax.plot(xs, g["mean"], marker="o", label=label)
            ax.fill_between(xs, g["low"], g["high"], alpha=0.2)
    ax.set_xlabel(x)
    ax.set_ylabel(f"final {outcome} (mean, 95% band)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
