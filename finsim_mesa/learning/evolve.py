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
actor MLP (:mod:`finsim_mesa.agents.actor`) realises it exactly, up to tanh
saturation, with hidden units j < K:

    h1_j = tanh(s (x_f - c_j)),   h2_j = tanh(g h1_j)  (= ±τ, τ = tanh g)
    u = u_0 + Σ_j W_j h2_j  with  W_j = (u_{j+1} - u_j) / (2τ),  bias = u_0 + τ Σ_j W_j

so in bin b the head's output is ``u_b``, the Beta logits whose mean
α / (α + β) is ``A[b]`` (α = κ m, β = κ (1 - m), α, β > 1). Every other weight
is 0. The default cut points are the midpoints between the stress levels of
the training scenarios (normal 0, asset_crash 0.3, liquidity_crisis 0.5,
systemic 0.8: :func:`stress_cuts`): the policy reads the stress it observes,
never the scenario's name.

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

from finsim_mesa.conditions import MIXTURE, Conditions, condition_params
from finsim_mesa.errors import ConfigError

__all__ = ["SEARCH_SEEDS", "EvolveResult", "binned_actor", "evolve_binned", "save_actor",
           "stratified_seeds", "stress_cuts"]

SEARCH_SEEDS = 1_000_000  # = learning.trainer.TRAIN_SEEDS (not imported: no torch here)
N_ACTIONS = 4


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
                 hidden: int = 64, steepness: float = 100.0, gain: float = 3.0,
                 concentration: float = 20.0) -> dict[str, np.ndarray]:
    """Actor weights (the :class:`~finsim_mesa.agents.actor.ActorBrain` names)
    that play ``actions[b]`` where column ``field_index`` lies in bin b.

    Args:
        actions: shape (len(cuts) + 1, 4), each in [0, 1] (kept in [0.002, 0.998]).
        cuts: increasing cut points, in the column's units.
        field_index: the column read.
        obs_dim: observation width d.
        hidden: hidden units (>= len(cuts); 64 as MAPPO's default, so it can be
            fine-tuned).
        steepness: s, per unit of the column: the width of a step is about 3/s.
        gain: g of the second layer.
        concentration: Beta α + β where the mean allows (higher: less noise when
            the actor samples).
    """
    A = np.asarray(actions, dtype=float)
    K = len(cuts)
    if A.shape != (K + 1, N_ACTIONS) or hidden < K or not 0 <= field_index < obs_dim:
        raise ConfigError(f"binned_actor: need actions of shape ({K + 1}, {N_ACTIONS}), "
                          f"hidden >= {K} and 0 <= field_index < {obs_dim}")
    if K and np.any(np.diff(cuts) <= 0):
        raise ConfigError(f"binned_actor: cut points must increase, got {list(cuts)}")
    u, v = _beta_logits(A, concentration)
    out = np.hstack([u, v])  # (K + 1, 8): the head's output in each bin
    tau = np.tanh(gain)
    W = np.diff(out, axis=0) / (2 * tau)  # (K, 8)
    w1, b1 = np.zeros((hidden, obs_dim)), np.zeros(hidden)
    w1[np.arange(K), field_index] = steepness
    b1[:K] = -steepness * np.asarray(cuts, dtype=float)
    w2 = np.zeros((hidden, hidden))
    w2[np.arange(K), np.arange(K)] = gain
    w3 = np.zeros((2 * N_ACTIONS, hidden))
    w3[:, :K] = W.T
    b3 = out[0] + tau * W.sum(axis=0)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return {"body.0.weight": f32(w1), "body.0.bias": f32(b1), "body.2.weight": f32(w2),
            "body.2.bias": f32(np.zeros(hidden)), "head.weight": f32(w3), "head.bias": f32(b3)}


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


def _obs_fields(env: dict[str, Any]) -> list[str]:
    from finsim_mesa.model import FinancialModel
    from finsim_mesa.observation import observation_names

    m = FinancialModel(**({"n_banks": 10, "steps": 1} | env | {"agent_collect_every": 0}))
    return list(observation_names(m.config, m.market.names))


def evolve_binned(init_action: Sequence[float], seeds: Sequence[int],
                  cuts: Sequence[float] | None = None, field_name: str = "market_stress",
                  iterations: int = 8, population: int = 16, seed: int = 0,
                  init_std: float = 0.25, hidden: int = 64, progress: bool = False,
                  objective: Callable[[Any], float] | None = None,
                  **env: Any) -> EvolveResult:
    """Search the per-bin actions by CEM, every bin starting at ``init_action``.

    Candidates are scored by their mean fixed-horizon score on the mixture
    condition of each of ``seeds`` (common random numbers; or by
    ``objective(brain)``, higher is better, if given); the answer is the best
    candidate scored. ``env``: fixed model parameters (e.g. ``steps``).
    """
    from finsim_mesa.agents.actor import ActorBrain
    from finsim_mesa.evaluation import evaluate_run
    from finsim_mesa.search import cem

    cuts = list(stress_cuts(MIXTURE.scenarios) if cuts is None else cuts)
    names = _obs_fields(env)
    if field_name not in names:
        raise ConfigError(f"no observation column {field_name!r}; columns: {', '.join(names)}")
    j, bins = names.index(field_name), len(cuts) + 1
    init = np.clip(np.asarray(init_action, dtype=float), 0, 1)
    if init.shape != (N_ACTIONS,):
        raise ConfigError(f"init_action: give {N_ACTIONS} numbers, got {init.tolist()}")
    seeds = [int(s) for s in seeds]

    def brain(x: np.ndarray) -> ActorBrain:
        w = binned_actor(x.reshape(bins, N_ACTIONS), cuts, j, len(names), hidden)
        return ActorBrain(w, names)

    def score(x: np.ndarray) -> float:
        b = brain(x)
        v = float(objective(b) if objective is not None else
                  np.mean([evaluate_run(b, "mixture", s, **env)["episode_reward"]
                           for s in seeds]))
        if progress:
            print(f"  candidate {np.round(x, 3).tolist()}: {v:.4f}", flush=True)
        return v

    t0 = time.perf_counter()
    res = cem(score, bins * N_ACTIONS, iterations=iterations, population=population,
              seed=seed, init_mean=np.tile(init, bins), init_std=init_std)
    actions = res.best.reshape(bins, N_ACTIONS)
    return EvolveResult(field_name, cuts, actions, brain(res.best).weights, names, res.value,
                        seeds, res.evaluations, time.perf_counter() - t0, res.history)


def save_actor(result: EvolveResult, dest: str | Path, command: str = "",
               env: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``result`` as an actor folder (``weights.safetensors``, tensors
    prefixed ``actor.``, and ``meta.json`` in the shipped policy's format, with
    the check seeds' scores); returns the metadata."""
    from safetensors.numpy import save

    from finsim_mesa.agents.actor import ActorBrain
    from finsim_mesa.files import write_bytes_atomic, write_text_atomic
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
                       "wall_seconds": result.wall_seconds, "history": result.history},
            "check": {"condition": "mixture", "seeds": list(CHECK_SEEDS),
                      "scores": check_scores(brain, env)}}
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(dest / "weights.safetensors",
                       save({f"actor.{k}": v for k, v in result.weights.items()}))
    write_text_atomic(dest / "meta.json", json.dumps(meta, indent=1) + "\n")
    return meta
