"""A state-reading starting policy, found by neuroevolution of the actor.

MAPPO on the mixture of conditions stays near a constant (docs/design.md,
issue 14): the gain of reading the state (about +0.1 per episode) is small
beside the noise every bank's exploration adds to the team score. This module
searches a small family of *state-dependent* policies directly, with the
cross-entropy method of :mod:`finsim_mesa.search` and common random numbers,
and writes the result as an ordinary actor (``weights.safetensors`` +
``meta.json``, the format of ``policies/mappo``), so it acts as
``brain="mappo"`` once shipped and can be fine-tuned by MAPPO.

The family: *piecewise-constant in one observation column* (default
``market_stress``). Cut points ``c_1 < … < c_K`` split the column into K + 1
bins; bin b plays the action vector ``A[b]`` (lend, hoard, sell, borrow). The
actor MLP (:mod:`finsim_mesa.agents.actor`) realises it exactly with K + 2
first-layer and K + 1 second-layer units (every other weight is 0):

    h1_0 = +1,  h1_j = tanh(s (x_f - c_j)) (= ±1),  h1_{K+1} = -1
    h2_b = tanh(a (h1_b - h1_{b+1}))  = tanh(2a) in bin b, exactly 0 elsewhere
    head = Σ_b (u_b / tanh 2a) h2_b   = u_b in bin b

with ``u_b`` the Beta logits whose mean α / (α + β) is ``A[b]`` (α = κ m,
β = κ (1 - m), both > 1). In float32, tanh(y) = ±1 exactly for |y| > 9, so
beyond 9/s of every cut point the action depends on its own bin's parameters
only (closer, on the two neighbours'). The default cut points are the
midpoints between the stress levels of the training scenarios (normal 0,
asset_crash 0.3, liquidity_crisis 0.5, systemic 0.8: :func:`stress_cuts`):
the policy reads the stress it observes, never the scenario's name.

The search (:func:`evolve_binned`): block coordinates, a CEM over one bin's
four actions at a time, every bin starting at a given constant (e.g. the best
constant), reusing the incumbent's score of every seed whose run never saw
the bin (exactly the same run, by the locality above). Extra columns
(``extras``, e.g. the bank's own ``capital_ratio`` and ``liquidity_coverage``)
add, above a cut point, a searched shift of every action's Beta logits; each
is one more block, scored on all seeds. A joint CEM over all parameters at
once settled near the starting constant (+0.075 [-0.02, 0.17] against it on
80 mixture selection seeds): the calm bin's signal drowns in the noise of the
crisis seeds.

Seeds: the search scores candidates on *training* seeds (from 1,000,000, as
:mod:`finsim_mesa.learning.trainer`), stratified so every scenario of the
mixture has the same number (:func:`stratified_seeds`); selection seeds
(20000…, 1001…) and test seeds (10000–10099) are not used.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from finsim_mesa.agents.actor import ActorBrain
from finsim_mesa.conditions import MIXTURE, Conditions, condition_params
from finsim_mesa.errors import ConfigError
from finsim_mesa.learning.episode_pool import EpisodePool, _Recorder

__all__ = ["SEARCH_SEEDS", "EvolveResult", "binned_actor", "evolve_binned", "save_actor",
           "stratified_seeds", "stress_cuts"]

SEARCH_SEEDS = 1_000_000  # = learning.trainer.TRAIN_SEEDS (not imported: no torch here)
N_ACTIONS = 4
STEEPNESS = 200.0  # per unit of the read column
MARGIN = 10.0 / STEEPNESS  # within this of a cut point a step is not yet exact
EXTRA_STEEPNESS = 2000.0  # steps of the extra columns (exact beyond 0.0045 of the cut)
SHIFT = 4.0  # the extra columns' logit shifts lie in [-SHIFT, SHIFT]


def stress_cuts(scenarios: Sequence[str]) -> list[float]:
    """Midpoints between the distinct ``stress_level`` of ``scenarios`` (sorted)."""
    from finsim_mesa.scenarios import get_scenario

    levels = sorted({float(get_scenario(s).stress_level) for s in scenarios})
    return [(a + b) / 2 for a, b in itertools.pairwise(levels)]


def stratified_seeds(start: int, per_scenario: int, conditions: Conditions = MIXTURE
                     ) -> list[int]:
    """The first ``per_scenario`` seeds from ``start`` on whose draw from
    ``conditions`` is each scenario (chosen by the draw, never by an outcome),
    in increasing order."""
    if per_scenario < 1:
        raise ConfigError(f"per_scenario {per_scenario}: give at least 1 seed per scenario")
    count = dict.fromkeys(conditions.scenarios, 0)
    seeds, s = [], int(start)
    while min(count.values()) < per_scenario:
        sc = condition_params(conditions, s)["scenario"]
        if count[sc] < per_scenario:
            count[sc] += 1
            seeds.append(s)
        s += 1
    return seeds


def _beta_logits(m: np.ndarray, concentration: float) -> tuple[np.ndarray, np.ndarray]:
    """Head outputs (u, v) whose Beta(1 + softplus u, 1 + softplus v) has mean ``m``."""
    m = np.clip(np.asarray(m, dtype=float), 0.002, 0.998)
    kappa = np.maximum(concentration, 1.05 / np.minimum(m, 1 - m))
    alpha, beta = kappa * m, kappa * (1 - m)
    inv = lambda y: y + np.log(-np.expm1(-y))  # noqa: E731  softplus⁻¹, stable
    return inv(alpha - 1.0), inv(beta - 1.0)


def binned_actor(actions: np.ndarray, cuts: Sequence[float], field_index: int, obs_dim: int,
                 hidden: int = 64, steepness: float = STEEPNESS, gain: float = 3.0,
                 concentration: float = 20.0, extras: Sequence[tuple[int, float]] = (),
                 shifts: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Actor weights (the :class:`~finsim_mesa.agents.actor.ActorBrain` names)
    that play ``actions[b]`` where column ``field_index`` lies in bin b.

    Args:
        actions: shape (len(cuts) + 1, 4), each in [0, 1] (kept in [0.002, 0.998]).
        cuts: increasing cut points, in the column's units.
        field_index: the column read.
        obs_dim: observation width d.
        hidden: hidden units (>= len(cuts) + 2; 64 as MAPPO's default, so it can be
            fine-tuned).
        steepness: s, per unit of the column: a step is exact (float32 tanh = ±1)
            beyond 9/s of its cut point.
        gain: a of the second layer.
        concentration: Beta α + β where the mean allows (higher: less noise when
            the actor samples).
        extras: (column, cut point) pairs: where column > cut, ``shifts[e]`` (shape
            (len(extras), 4), in logits) is added to α's logit and taken from β's
            (a step at ``EXTRA_STEEPNESS``).
    """
    A = np.asarray(actions, dtype=float)
    K, E = len(cuts), len(extras)
    D = np.zeros((E, N_ACTIONS)) if shifts is None else np.asarray(shifts, dtype=float)
    if (A.shape != (K + 1, N_ACTIONS) or D.shape != (E, N_ACTIONS) or hidden < K + 2 + E
            or not all(0 <= c < obs_dim for c in [field_index, *(c for c, _ in extras)])):
        raise ConfigError(f"binned_actor: need actions of shape ({K + 1}, {N_ACTIONS}), "
                          f"shifts of shape ({E}, {N_ACTIONS}), hidden >= {K + 2 + E} and "
                          f"columns in [0, {obs_dim})")
    if K and np.any(np.diff(cuts) <= 0):
        raise ConfigError(f"binned_actor: cut points must increase, got {list(cuts)}")
    u, v = _beta_logits(A, concentration)
    out = np.hstack([u, v])  # (K + 1, 8): the head's output in each bin
    w1, b1 = np.zeros((hidden, obs_dim)), np.zeros(hidden)
    w1[np.arange(1, K + 1), field_index] = steepness  # steps at the cut points
    b1[1:K + 1] = -steepness * np.asarray(cuts, dtype=float)
    b1[0], b1[K + 1] = 20.0, -20.0  # constant +1 and -1 (float32 tanh(20) = 1)
    b2 = np.zeros(hidden)
    w2 = np.zeros((hidden, hidden))  # h2_b = tanh(a (h1_b - h1_{b+1})): tanh(2a) or 0
    w2[np.arange(K + 1), np.arange(K + 1)] = gain
    w2[np.arange(K + 1), np.arange(1, K + 2)] = -gain
    w3 = np.zeros((2 * N_ACTIONS, hidden))
    w3[:, :K + 1] = out.T / np.tanh(2 * gain)
    for e, (col, cut) in enumerate(extras):  # h2 = tanh(a (h1 + 1)): tanh(2a) above the cut
        w1[K + 2 + e, col], b1[K + 2 + e] = EXTRA_STEEPNESS, -EXTRA_STEEPNESS * cut
        w2[K + 1 + e, K + 2 + e], b2[K + 1 + e] = gain, gain
        w3[:, K + 1 + e] = np.concatenate([D[e], -D[e]]) / np.tanh(2 * gain)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return {"body.0.weight": f32(w1), "body.0.bias": f32(b1), "body.2.weight": f32(w2),
            "body.2.bias": f32(b2), "head.weight": f32(w3),
            "head.bias": f32(np.zeros(2 * N_ACTIONS))}


@dataclass
class EvolveResult:
    """The searched policy: ``actions`` (shape (bins, 4)) for the bins of
    ``field`` cut at ``cuts``; ``weights``: the actor; ``value``: its mean score
    on the search seeds; ``history``: the CEM rounds."""

    field: str
    cuts: list[float]
    actions: np.ndarray
    weights: dict[str, np.ndarray]
    obs_fields: list[str]
    value: float
    seeds: list[int]
    evaluations: int
    wall_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    episodes: int = 0
    method: str = "blocks"
    extras: list[tuple[str, float]] = field(default_factory=list)
    shifts: np.ndarray | None = None  # (len(extras), 4) logit shifts above each cut
    workers: int = 1  # processes that ran the episodes (the result does not depend on it)


def _obs_fields(env: dict[str, Any]) -> list[str]:
    from finsim_mesa.model import FinancialModel
    from finsim_mesa.observation import observation_names

    m = FinancialModel(**({"n_banks": 10, "steps": 1} | env | {"agent_collect_every": 0}))
    return list(observation_names(m.config, m.market.names))


def evolve_binned(init_action: Sequence[float], seeds: Sequence[int],
                  cuts: Sequence[float] | None = None, field_name: str = "market_stress",
                  iterations: int = 8, population: int = 16, seed: int = 0,
                  init_std: float = 0.25, hidden: int = 64, progress: bool = False,
                  objective: Callable[[Any], float] | None = None, method: str = "blocks",
                  sweeps: int = 1, extras: Sequence[tuple[str, float]] = (),
                  start: dict[str, Any] | None = None, workers: int = 1,
                  **env: Any) -> EvolveResult:
    """Search the per-bin actions by CEM, every bin starting at ``init_action``.

    Candidates are scored by their mean fixed-horizon score on the mixture
    condition of each of ``seeds`` (common random numbers; or by
    ``objective(brain)``, higher is better, if given). ``env``: fixed model
    parameters (e.g. ``steps``).

    ``method="joint"``: one CEM over all bins × 4 actions (``iterations`` ×
    ``population`` candidates). ``method="blocks"`` (default): block
    coordinates, ``sweeps`` times over the bins, a CEM over one bin's 4 actions
    at a time with the others fixed. A seed whose run with the incumbent never
    observed the column in that bin (nor within 10/steepness of its cut points)
    runs the same with every candidate, so its incumbent score is reused and
    only the seeds that visit the bin are run; the bin's selection is then not
    drowned by the noise of the other bins' seeds (joint CEM on the mixture
    settled near the constant: docs/design.md). Every accepted incumbent is
    re-scored on all seeds.

    ``extras``: (column, cut point) pairs read besides: above its cut point each
    adds a searched shift (in [-SHIFT, SHIFT] logits per action) to every bin's
    action; its block is scored on all seeds.

    ``start``: continue from an earlier search (its metadata's ``evolve``
    record: ``actions`` and ``shifts``, with the same cuts and extras) instead
    of ``init_action`` everywhere.

    ``workers``: processes that run each candidate's episodes
    (:class:`~finsim_mesa.learning.episode_pool.EpisodePool`); the result is
    the same for every count.
    """
    from finsim_mesa.search import cem

    pool = EpisodePool(workers)

    cuts = [float(c) for c in (stress_cuts(MIXTURE.scenarios) if cuts is None else cuts)]
    if not all(np.isfinite(cuts)) or any(b - a < 2 * MARGIN for a, b in itertools.pairwise(cuts)):
        raise ConfigError(f"cut points {cuts}: give finite, increasing cut points at least "
                          f"{2 * MARGIN:g} apart (a band narrower than that is never exact)")
    names = _obs_fields(env)
    if field_name not in names:
        raise ConfigError(f"no observation column {field_name!r}; columns: {', '.join(names)}")
    if method not in ("blocks", "joint") or sweeps < 1:
        raise ConfigError(f"method {method!r}, sweeps {sweeps}: give 'blocks' or 'joint' "
                          "and sweeps >= 1")
    lost = [f for f, _ in extras if f not in names]
    if lost:
        raise ConfigError(f"no observation column {', '.join(lost)}; columns: {', '.join(names)}")
    ex = [(names.index(f), float(c)) for f, c in extras]
    j, bins, n_blocks = names.index(field_name), len(cuts) + 1, len(cuts) + 1 + len(extras)
    init = np.asarray(init_action, dtype=float)
    if init.shape != (N_ACTIONS,) or not np.all((init >= 0) & (init <= 1)):
        raise ConfigError(f"init_action: give {N_ACTIONS} numbers in [0, 1], got "
                          f"{init.ravel().tolist()}")
    if not all(np.isfinite(c) for _, c in extras):
        raise ConfigError(f"extras {list(extras)}: cut points must be finite numbers")
    seed_list: list[int | None] = [int(s) for s in seeds] if objective is None else [None]
    counts = {"episodes": 0, "candidates": 0}

    def weights(x: np.ndarray) -> dict[str, np.ndarray]:
        blocks = x.reshape(n_blocks, N_ACTIONS)
        return binned_actor(blocks[:bins], cuts, j, len(names), hidden, extras=ex,
                            shifts=SHIFT * (2 * blocks[bins:] - 1))

    def runs(w: dict[str, np.ndarray], some: list[int | None]) -> list[tuple[float, set[int]]]:
        if some == [None]:
            return [(float(objective(_Recorder(w, names, j, cuts, MARGIN))),  # type: ignore[misc]
                     set(range(bins)))]
        counts["episodes"] += len(some)
        out = pool.run(w, names, j, cuts, MARGIN, [("mixture", s) for s in some], env)
        return [(float(o["episode_reward"]), seen) for o, seen in out]

    def say(x: np.ndarray, v: float) -> None:
        counts["candidates"] += 1
        if progress:
            print(f"  candidate {np.round(x, 3).tolist()}: {v:.4f}", flush=True)

    t0 = time.perf_counter()
    x = np.concatenate([np.tile(init, bins), np.full(len(ex) * N_ACTIONS, 0.5)])
    if start is not None:
        saved_cuts = list(start.get("cuts", []))
        same = (len(saved_cuts) == len(cuts) and np.allclose(saved_cuts, cuts)
                and start.get("field") == field_name
                and [tuple(e) for e in start.get("extras", [])] == [tuple(e) for e in extras])
        if not same:
            raise ConfigError("the search to continue used other cut points, column or extra "
                              f"columns ({start.get('field')}, cuts {start.get('cuts')}, extras "
                              f"{start.get('extras')}); give the same settings")
        shifts = np.asarray(start.get("shifts") or np.zeros((0, N_ACTIONS)), dtype=float)
        if (np.shape(start.get("actions")) != (bins, N_ACTIONS)
                or shifts.shape != (len(extras), N_ACTIONS)):
            raise ConfigError(f"the search to continue has {np.shape(start.get('actions'))} "
                              f"actions and {shifts.shape} shifts; this search needs "
                              f"({bins}, {N_ACTIONS}) and ({len(extras)}, {N_ACTIONS})")
        x = np.concatenate([np.asarray(start["actions"], dtype=float).ravel(),
                            (shifts.ravel() / SHIFT + 1) / 2])
    history: list[dict[str, Any]] = []
    with pool:
        if method == "joint":
            def score(y: np.ndarray) -> float:
                w = weights(y)
                v = float(np.mean([r for r, _ in runs(w, seed_list)]))
                say(y, v)
                return v

            res = cem(score, n_blocks * N_ACTIONS, iterations=iterations, population=population,
                      seed=seed, init_mean=x, init_std=init_std)
            x, value, history = res.best, res.value, res.history
        else:
            inc = dict(zip(seed_list, runs(weights(x), seed_list), strict=True))
            value = float(np.mean([v for v, _ in inc.values()]))
            for sweep in range(sweeps):
                for k in range(n_blocks):  # the bins, then the extra columns (all seeds)
                    active = [s for s in seed_list if k >= bins or k in inc[s][1]]
                    if not active:
                        continue  # no run observes this bin: nothing to learn about it
                    rest = sum(inc[s][0] for s in seed_list if s not in active)

                    def block(y: np.ndarray, k: int = k, active: list = active,
                              rest: float = rest) -> float:
                        z = x.copy()
                        z[k * N_ACTIONS:(k + 1) * N_ACTIONS] = y
                        w = weights(z)
                        v = (rest + sum(r for r, _ in runs(w, active))) / len(seed_list)
                        say(z, v)
                        return v

                    res = cem(block, N_ACTIONS, iterations=iterations, population=population,
                              seed=seed + 1000 * sweep + k, init_std=init_std,
                              init_mean=x[k * N_ACTIONS:(k + 1) * N_ACTIONS])
                    if res.value > value:
                        x[k * N_ACTIONS:(k + 1) * N_ACTIONS] = res.best
                        # re-scored in full
                        inc = dict(zip(seed_list, runs(weights(x), seed_list), strict=True))
                        value = float(np.mean([v for v, _ in inc.values()]))
                    history.append({"sweep": sweep, "bin": k, "seeds": len(active),
                                    "block_best": res.value, "value": value,
                                    "params": x.reshape(n_blocks, N_ACTIONS)[k].tolist()})
    blocks = x.reshape(n_blocks, N_ACTIONS)
    return EvolveResult(field_name, cuts, blocks[:bins], weights(x), names,
                        value, [s for s in seed_list if s is not None], counts["candidates"],
                        time.perf_counter() - t0, history, counts["episodes"], method,
                        [(f, float(c)) for f, c in extras], SHIFT * (2 * blocks[bins:] - 1),
                        pool.workers)


def save_actor(result: EvolveResult, dest: str | Path, command: str = "",
               env: dict[str, Any] | None = None,
               evolve_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``result`` as an actor folder (``weights.safetensors``, tensors
    prefixed ``actor.``, and ``meta.json`` in the shipped policy's format, with
    the check seeds' scores and ``evolve_extra`` added to its ``evolve`` record),
    both files in one folder change; returns the metadata."""
    from safetensors.numpy import save

    from finsim_mesa.files import install_files
    from finsim_mesa.learning.ship import CHECK_SEEDS, check_scores

    env = {"n_banks": 30, "steps": 50} | dict(env or {})
    hidden = int(result.weights["body.0.weight"].shape[0])
    brain = ActorBrain(result.weights, result.obs_fields)
    meta = {"obs_dim": len(result.obs_fields), "obs_fields": result.obs_fields,
            "mappo": {"hidden": hidden, "normalize_obs": False},
            "trainer": {"conditions": MIXTURE.to_dict(), "episodes": 0},
            "env": env, "episode": 0, "command": command,
            "evolve": {"field": result.field, "cuts": result.cuts,
                       "actions": result.actions.tolist(), "value": result.value,
                       "seeds": result.seeds, "evaluations": result.evaluations,
                       "method": result.method, "episodes": result.episodes,
                       "extras": [list(e) for e in result.extras],
                       "shifts": [] if result.shifts is None else result.shifts.tolist(),
                       "wall_seconds": result.wall_seconds, "workers": result.workers,
                       "history": result.history}
            | dict(evolve_extra or {}),
            "check": {"condition": "mixture", "seeds": list(CHECK_SEEDS),
                      "scores": check_scores(brain, env)}}
    install_files(Path(dest), {
        "weights.safetensors": save({f"actor.{k}": v for k, v in result.weights.items()}),
        "meta.json": (json.dumps(meta, indent=1) + "\n").encode()})
    return meta

