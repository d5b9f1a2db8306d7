"""Scenario-aware refinement of a searched binned actor (issue 14).

:func:`finsim_mesa.learning.evolve.evolve_binned` scores candidates on the
*mixture* of conditions. Its policy won the mixture but only tied the best
baseline in ``normal`` (passive) and ``asset_crash`` (rule_based), with more
defaults than either: the calm bin borrowed (0.24) and the 0.15–0.4 bin
hoarded and lent a little, which cost a few late defaults that the mixture's
score, dominated by the crisis seeds, hardly saw (docs/design.md).

This module refines such an actor bin by bin on the conditions of the
per-scenario headline (one named scenario, fixed bank count and topology),
with a search-time default penalty:

    value of a run = fixed-horizon score − κ × final default rate

(κ only steers the search; every reported figure is the plain episode score).
Each bin is one block of a block-coordinate CEM (:func:`finsim_mesa.search.cem`)
scored on every (scenario, seed) run whose incumbent observed that bin; the
other runs keep their incumbent value exactly (the actor's locality,
:mod:`finsim_mesa.learning.evolve`). The scenarios carry equal weight (the same
seeds in each), so a bin visited by one scenario is tuned for that scenario,
which is the paired advantage over that scenario's best baseline up to a
constant (the baseline's mean on the same seeds).

Seeds: training seeds from :data:`REFINE_SEEDS` (1,200,000, inside the
training range, disjoint from the mixture search's seeds from 1,000,000 in
practice); selection (20000…) and test seeds are never used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from finsim_mesa.errors import ConfigError
from finsim_mesa.learning.episode_pool import EpisodePool
from finsim_mesa.learning.evolve import (
    MARGIN,
    N_ACTIONS,
    SEARCH_SEEDS,
    SHIFT,
    EvolveResult,
    _beta_logits,
    _obs_fields,
    binned_actor,
)
from finsim_mesa.observation import ACTION_NAMES

__all__ = ["REFINE_SEEDS", "add_sub_bins", "refine_blocks", "refine_scenarios", "run_value",
           "save_refined"]

REFINE_SEEDS = SEARCH_SEEDS + 200_000  # training seeds (>= 1,000,000)
SCENARIOS = ("normal", "asset_crash", "liquidity_crisis", "systemic")

Runner = Callable[[np.ndarray, str, int], tuple[float, set[int]]]
Batch = Callable[[np.ndarray, Sequence[tuple[str, int]]], list[tuple[float, set[int]]]]


def run_value(outcome: dict[str, float], kappa: float) -> float:
    """The search-time value of one run: ``episode_reward − κ × default_rate``."""
    return float(outcome["episode_reward"]) - kappa * float(outcome["default_rate"])


def add_sub_bins(weights: dict[str, np.ndarray], n_cuts: int, n_extras: int,
                 subs: Sequence[tuple[int, int, float, str]], deltas: np.ndarray
                 ) -> dict[str, np.ndarray]:
    """``weights`` of :func:`~finsim_mesa.learning.evolve.binned_actor` (``n_cuts``
    cut points, ``n_extras`` extra columns) with *sub-bins* added: sub-bin
    (b, column, cut, side) is the part of bin b where ``column`` is above
    (``side="above"``) or below its cut; there ``deltas[i]`` (8 head outputs:
    α logits then β logits) is added to the head.

    One first-layer unit per sub-bin, ``h = tanh(S (x_col − cut))`` (= ±1 beyond
    0.0045 of the cut, S = EXTRA_STEEPNESS), and one second-layer AND unit
    ``g = tanh(10 (h1_b − h1_{b+1} ± h − 2))``: 10 (+1 in float32) in the sub-bin,
    at most −10 (−1) elsewhere; the head adds ``Δ (g + 1) / 2``. Outside the
    sub-bin the two halves cancel (up to float32 rounding of the head's sum).
    """
    from finsim_mesa.learning.evolve import EXTRA_STEEPNESS

    w = {k: v.astype(np.float64) for k, v in weights.items()}
    hidden = w["body.0.weight"].shape[0]
    first, second = n_cuts + 2 + n_extras, n_cuts + 1 + n_extras  # first free units
    if first + len(subs) > hidden:
        raise ConfigError(f"{len(subs)} sub-bins need {first + len(subs)} hidden units; "
                          f"the actor has {hidden}")
    for i, (b, col, cut, side) in enumerate(subs):
        if side not in ("above", "below") or not 0 <= b <= n_cuts:
            raise ConfigError(f"sub-bin {(b, col, cut, side)}: give a bin in 0..{n_cuts} "
                              "and side 'above' or 'below'")
        u, v = first + i, second + i
        w["body.0.weight"][u, col], w["body.0.bias"][u] = EXTRA_STEEPNESS, -EXTRA_STEEPNESS * cut
        w["body.2.weight"][v, b], w["body.2.weight"][v, b + 1] = 10.0, -10.0
        w["body.2.weight"][v, u] = 10.0 if side == "above" else -10.0
        w["body.2.bias"][v] = -20.0
        w["head.weight"][:, v] = deltas[i] / 2
        w["head.bias"] += deltas[i] / 2
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in w.items()}


def refine_blocks(x0: np.ndarray, blocks: Sequence[int], runs: Sequence[tuple[str, int]],
                  runner: Runner, iterations: int = 6, population: int = 12, seed: int = 0,
                  init_std: float = 0.15, local: dict[int, int] | None = None,
                  progress: bool = False, batch: Batch | None = None,
                  grid: tuple[int, int, int, int] | None = None
                  ) -> tuple[np.ndarray, float, list[dict[str, Any]], int]:
    """Block-coordinate CEM over ``x0`` (shape (B × 4,), each block in [0, 1]).

    ``runner(x, scenario, seed)`` returns a run's value and the bins its
    observations reached. A block k with ``local[k] = b`` acts only where the
    read column is in bin b: it is scored on the runs whose incumbent reached
    bin b (the others keep their incumbent value, unrun); any other block (an
    extra column's shift) on every run. A block's best candidate replaces the
    incumbent only if the mean over all runs rises; the incumbent is then
    re-run in full.

    ``batch(x, runs)``, if given, does what ``[runner(x, *r) for r in runs]``
    does (in that order; e.g. in worker processes) and is called instead.

    ``grid = (k, i, j, K)``, if given, is an automated start before the CEM:
    actions i and j of block k take every pair of ``linspace(0, 1, K)`` (the
    other entries at the incumbent), each of the K × K cells scored as a
    candidate of block k is (same runs, the rest at their incumbent value);
    the best cell (the first in row-major order on a tie) replaces the
    incumbent if its value is higher, which is then re-run in full. The
    table is the first entry of the history (``{"grid": ...}``).

    Returns (x, mean value, history, runner calls).
    """
    from finsim_mesa.search import cem

    x = np.asarray(x0, dtype=float).copy()
    local = {k: k for k in range(len(x) // N_ACTIONS)} if local is None else local
    calls = {"n": 0}

    def call(z: np.ndarray, some: Sequence[tuple[str, int]]) -> list[tuple[float, set[int]]]:
        calls["n"] += len(some)
        return [runner(z, *r) for r in some] if batch is None else batch(z, some)

    for k in [*blocks, *([grid[0]] if grid else [])]:
        if not 0 <= k < len(x) // N_ACTIONS:
            raise ConfigError(f"block {k}: the actor has {len(x) // N_ACTIONS} blocks")
    if grid and not (0 <= grid[1] < N_ACTIONS and 0 <= grid[2] < N_ACTIONS
                     and grid[1] != grid[2] and grid[3] >= 2):
        raise ConfigError(f"grid {grid}: give two different actions 0..{N_ACTIONS - 1} "
                          "and K >= 2 levels")
    inc = dict(zip(runs, call(x, runs), strict=True))
    value = float(np.mean([v for v, _ in inc.values()]))
    history: list[dict[str, Any]] = []
    if grid:
        k, i, j, n = grid
        active = [r for r in runs if k not in local or local[k] in inc[r][1]]
        rest = sum(inc[r][0] for r in runs if r not in active)
        levels = np.linspace(0.0, 1.0, n)
        table = []
        for a in levels:
            for b in levels:
                z = x.copy()
                z[k * N_ACTIONS + i], z[k * N_ACTIONS + j] = a, b
                got = (rest + sum(v for v, _ in call(z, active))) / len(runs) if active else value
                table.append([float(a), float(b), float(got)])
        best = max(range(len(table)), key=lambda c: (table[c][2], -c))
        accepted = table[best][2] > value
        if accepted:
            x[k * N_ACTIONS + i], x[k * N_ACTIONS + j] = table[best][0], table[best][1]
            inc = dict(zip(runs, call(x, runs), strict=True))
            value = float(np.mean([v for v, _ in inc.values()]))
        history.append({"grid": {"block": int(k), "actions": [int(i), int(j)], "runs": len(active),
                                 "table": table, "best": table[best], "accepted": bool(accepted),
                                 "value": value}})
        if progress:
            print(f"  grid of block {k} on {len(active)} runs: best {table[best]}, "
                  f"{'accepted' if accepted else 'kept'}; value {value:.4f}", flush=True)
    for k in blocks:
        active = [r for r in runs if k not in local or local[k] in inc[r][1]]
        if not active:
            continue
        rest = sum(inc[r][0] for r in runs if r not in active)
        sl = slice(k * N_ACTIONS, (k + 1) * N_ACTIONS)

        def block(y: np.ndarray, sl: slice = sl, active: list = active,
                  rest: float = rest) -> float:
            z = x.copy()
            z[sl] = y
            return (rest + sum(v for v, _ in call(z, active))) / len(runs)

        res = cem(block, N_ACTIONS, iterations=iterations, population=population,
                  seed=seed + k, init_mean=x[sl], init_std=init_std)
        accepted = res.value > value
        if accepted:
            x[sl] = res.best
            inc = dict(zip(runs, call(x, runs), strict=True))
            value = float(np.mean([v for v, _ in inc.values()]))
        history.append({"block": int(k), "runs": len(active), "block_best": res.value,
                        "accepted": bool(accepted), "value": value,
                        "params": x[sl].tolist()})
        if progress:
            print(f"  block {k} on {len(active)} runs: best {res.value:.4f}, "
                  f"{'accepted' if accepted else 'kept'}; value {value:.4f}", flush=True)
    return x, value, history, calls["n"]


def refine_scenarios(start: dict[str, Any], per_scenario: int, kappa: float = 0.0,
                     blocks: Sequence[int] | None = None,
                     scenarios: Sequence[str] = SCENARIOS, iterations: int = 6,
                     population: int = 12, seed: int = 0, init_std: float = 0.15,
                     hidden: int = 64, progress: bool = False,
                     first_seed: int = REFINE_SEEDS,
                     subs: Sequence[tuple[int, str, float, str]] = (), workers: int = 1,
                     starts: Sequence[tuple[int, str, float]] = (),
                     grid: tuple[int, str, str, int] | None = None,
                     **env: Any) -> EvolveResult:
    """Refine the searched actor ``start`` (a metadata ``evolve`` record) bin by
    bin on ``per_scenario`` training seeds of each of ``scenarios``, each run
    valued by :func:`run_value` with ``kappa``.

    Args:
        start: ``{"field", "cuts", "actions", "extras", "shifts"}`` as
            :func:`~finsim_mesa.learning.evolve.save_actor` writes.
        per_scenario: seeds per scenario (the same seeds, from ``first_seed``).
        kappa: search-time default penalty κ >= 0 (per unit of default rate).
        blocks: the bins (0 … K), extra columns (K + 1 … K + E) and sub-bins
            (K + E + 1 …) to refine, in order (default: all, in that order).
        subs: sub-bins (bin, column, cut, "above" | "below") added to the actor
            (:func:`add_sub_bins`), each starting at its bin's action (the
            policy unchanged) and searched as one more block, scored on the
            runs that reached its bin; kept with ``start``'s own sub-bins.
        starts: (block, action name, value): before the search, set that action
            of a bin or sub-bin block (its Beta mean, in [0, 1]) to ``value``; the
            incumbent is then this changed actor (e.g. a start found by a
            diagnosis, which the search of ``blocks`` refines from there).
        grid: (block, action, action, K): after ``starts``, before the search
            of ``blocks``, a K × K grid of the two actions of that bin or
            sub-bin over ``linspace(0, 1, K)`` (:func:`refine_blocks`' ``grid``);
            the best cell is the incumbent the search starts from if it beats it.
        workers: processes that run each candidate's episodes
            (:class:`~finsim_mesa.learning.episode_pool.EpisodePool`); the
            result is the same for every count.
        env: fixed model parameters (``n_banks``, ``steps``).

    Raises:
        ConfigError: a bad record, count, κ or block.
    """
    pool = EpisodePool(workers)
    if per_scenario < 1 or not np.isfinite(kappa) or kappa < 0:
        raise ConfigError(f"per_scenario {per_scenario}, kappa {kappa}: give >= 1 seed per "
                          "scenario and a finite kappa >= 0")
    if first_seed < SEARCH_SEEDS:
        raise ConfigError(f"first seed {first_seed}: refine on training seeds "
                          f"(>= {SEARCH_SEEDS}), never on selection or test seeds")
    try:
        cuts = [float(c) for c in start["cuts"]]
        acts = np.asarray(start["actions"], dtype=float)
        extras = [(str(f), float(c)) for f, c in start.get("extras", [])]
        shifts = np.asarray(start.get("shifts") or np.zeros((0, N_ACTIONS)), dtype=float)
        field_name = str(start["field"])
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"not a searched actor's 'evolve' record ({err}); give the record "
                          "`finsim train --init-search` wrote") from None
    bins = len(cuts) + 1
    all_subs = [(int(b), str(f), float(c), str(side))
                for b, f, c, side in [*start.get("subs", []), *subs]]
    sub_acts = [*start.get("sub_actions", []),
                *(acts[b] for b, *_ in all_subs[len(start.get("sub_actions", [])):]
                  if 0 <= b < bins)]
    if len(sub_acts) != len(all_subs) or np.shape(sub_acts) not in ((0,), (len(all_subs), 4)):
        raise ConfigError(f"sub-bins {all_subs}: each needs a bin in 0..{bins - 1} (and the "
                          "record one action per sub-bin)")
    if acts.shape != (bins, N_ACTIONS) or shifts.shape != (len(extras), N_ACTIONS):
        raise ConfigError(f"the record has actions {acts.shape} and shifts {shifts.shape}; "
                          f"expected ({bins}, {N_ACTIONS}) and ({len(extras)}, {N_ACTIONS})")
    names = _obs_fields(env)
    lost = [f for f in [field_name, *(f for f, _ in extras), *(f for _, f, _, _ in all_subs)]
            if f not in names]
    if lost:
        raise ConfigError(f"no observation column {', '.join(lost)}")
    j = names.index(field_name)
    ex = [(names.index(f), c) for f, c in extras]
    n_blocks = bins + len(extras) + len(all_subs)
    sub_cols = [(b, names.index(f), c, side) for b, f, c, side in all_subs]
    order = list(range(n_blocks)) if blocks is None else [int(b) for b in blocks]
    bad = [b for b in order if not 0 <= b < n_blocks]
    if bad:
        raise ConfigError(f"blocks {bad}: give bins 0..{bins - 1}, extra columns and "
                          f"sub-bins {bins}..{n_blocks - 1}")
    e_end = bins + len(extras)
    set_at = []
    for blk, act, val in starts:
        if (not (0 <= int(blk) < bins or e_end <= int(blk) < n_blocks)
                or act not in ACTION_NAMES or not 0 <= float(val) <= 1):
            raise ConfigError(f"start {(blk, act, val)}: give a bin 0..{bins - 1} or a sub-bin "
                              f"{e_end}..{n_blocks - 1}, an action of {', '.join(ACTION_NAMES)} "
                              "and a value in [0, 1]")
        set_at.append((int(blk) * N_ACTIONS + ACTION_NAMES.index(act), float(val)))
    grid_at = None
    if grid is not None:
        blk, a1, a2, n = grid
        if (not (0 <= int(blk) < bins or e_end <= int(blk) < n_blocks) or a1 == a2
                or a1 not in ACTION_NAMES or a2 not in ACTION_NAMES or int(n) < 2):
            raise ConfigError(f"grid {tuple(grid)}: give a bin 0..{bins - 1} or a sub-bin "
                              f"{e_end}..{n_blocks - 1}, two different actions of "
                              f"{', '.join(ACTION_NAMES)} and K >= 2")
        grid_at = (int(blk), ACTION_NAMES.index(a1), ACTION_NAMES.index(a2), int(n))

    def weights(x: np.ndarray) -> dict[str, np.ndarray]:
        b = x.reshape(n_blocks, N_ACTIONS)
        w = binned_actor(b[:bins], cuts, j, len(names), hidden, extras=ex,
                         shifts=SHIFT * (2 * b[bins:e_end] - 1))
        if not sub_cols:
            return w
        out = lambda a: np.hstack(_beta_logits(a, 20.0))  # noqa: E731
        deltas = out(b[e_end:]) - out(b[[s[0] for s in sub_cols]])
        return add_sub_bins(w, len(cuts), len(extras), sub_cols, deltas)

    def batch(x: np.ndarray, some: Sequence[tuple[str, int]]) -> list[tuple[float, set[int]]]:
        out = pool.run(weights(x), names, j, cuts, MARGIN, some, env)
        return [(run_value(o, kappa), seen) for o, seen in out]

    def runner(x: np.ndarray, sc: str, s: int) -> tuple[float, set[int]]:
        return batch(x, [(sc, s)])[0]

    seeds = list(range(int(first_seed), int(first_seed) + per_scenario))
    runs = [(sc, s) for sc in scenarios for s in seeds]
    x0 = np.concatenate([acts.ravel(), (shifts.ravel() / SHIFT + 1) / 2,
                         np.asarray(sub_acts, dtype=float).ravel()])
    for i, val in set_at:
        x0[i] = val
    local = {k: k for k in range(bins)} | {e_end + i: s[0] for i, s in enumerate(all_subs)}
    t0 = time.perf_counter()
    with pool:
        x, value, history, calls = refine_blocks(x0, order, runs, runner, iterations,
                                                 population, seed, init_std, local, progress,
                                                 batch, grid_at)
    b = x.reshape(n_blocks, N_ACTIONS)
    history.insert(0, {"refine": {"scenarios": list(scenarios), "kappa": kappa,
                                  "seeds": [seeds[0], seeds[-1]], "blocks": order,
                                  "iterations": iterations, "population": population,
                                  "subs": [list(s) for s in all_subs],
                                  "sub_actions": b[e_end:].tolist(),
                                  "starts": [[int(k), a, float(v)] for k, a, v in starts],
                                  "grid": None if grid is None else [int(grid[0]), grid[1],
                                                                     grid[2], int(grid[3])]}})
    return EvolveResult(field_name, cuts, b[:bins], weights(x), names, value, seeds,
                        iterations * population * len(order) + (grid_at[3] ** 2 if grid_at else 0),
                        time.perf_counter() - t0,
                        history, calls, "scenario-blocks", extras,
                        SHIFT * (2 * b[bins:e_end] - 1), pool.workers)


def save_refined(result: EvolveResult, dest: str | Path, command: str = "",
                 env: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`~finsim_mesa.learning.evolve.save_actor`, with the sub-bins of the
    refinement (``subs``, ``sub_actions``) added to the ``evolve`` record so
    that ``--init-from`` can continue from it."""
    from finsim_mesa.learning.evolve import save_actor

    record = next((h["refine"] for h in result.history if "refine" in h), {})
    return save_actor(result, dest, command, env,  # weights and metadata in one change
                      {"subs": record.get("subs", []),
                       "sub_actions": record.get("sub_actions", [])})
