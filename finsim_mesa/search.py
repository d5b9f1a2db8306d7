"""The best constant stance, found by the cross-entropy method (CEM).

A learned policy counts only if it beats every fixed action vector, so the
baselines include the *best constant*: the action (lend, hoard, sell, borrow)
in [0, 1]^4 with the highest mean fixed-horizon score (:mod:`finsim_mesa.scoring`)
over *selection* seeds — 20000 onward by default, disjoint from the test seeds
(10000–10099) and from the training seeds (1,000,000 onward).

CEM (Rubinstein & Kroese, *The Cross-Entropy Method*, 2004): draw a population
from a normal distribution clipped to the box, score each member on the same
seeds (common random numbers, so members are compared on equal terms), refit
the mean and standard deviation to the elite share, repeat. The answer is the
best member ever scored, re-scored with the final mean so that the
distribution's centre is also a candidate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from finsim_mesa.errors import ConfigError

__all__ = ["SELECTION_SEEDS", "CEMResult", "best_constant", "cem", "constant_score"]

SELECTION_SEEDS = 20_000  # selection seeds start here (test: 10000-10099; train: >= 1e6)


@dataclass
class CEMResult:
    """``best`` (shape (dim,)) and its objective value ``value``; ``history``: one
    record per iteration (mean, std, best value so far)."""

    best: np.ndarray
    value: float
    evaluations: int
    history: list[dict[str, Any]] = field(default_factory=list)


def cem(objective: Callable[[np.ndarray], float], dim: int, iterations: int = 8,
        population: int = 12, elite_frac: float = 0.25, seed: int = 0,
        init_mean: Sequence[float] | float = 0.5, init_std: float = 0.3,
        bounds: tuple[float, float] = (0.0, 1.0), min_std: float = 0.02,
        smoothing: float = 0.7) -> CEMResult:
    """Maximise ``objective`` over the box ``bounds``^dim by the cross-entropy method.

    Args:
        objective: candidate (shape (dim,)) -> value, higher is better.
        dim: number of parameters.
        iterations: CEM rounds.
        population: candidates per round (>= 2).
        elite_frac: share of each round refitted to (at least 1 candidate).
        seed: seed of the sampling generator.
        init_mean: starting mean (a number or dim numbers).
        init_std: starting standard deviation.
        bounds: (low, high) of every parameter; samples are clipped into it.
        min_std: floor of the standard deviation (keeps exploring).
        smoothing: weight of each round's elite statistics in the refit (1: none).

    Raises:
        ConfigError: a bad setting, or a non-finite objective value.
    """
    if iterations < 1 or population < 2 or not 0 < elite_frac <= 1 or dim < 1:
        raise ConfigError("cem: need iterations >= 1, population >= 2, 0 < elite_frac <= 1 "
                          "and dim >= 1")
    lo, hi = bounds
    rng = np.random.default_rng(seed)
    mean = np.clip(np.broadcast_to(np.asarray(init_mean, dtype=float), (dim,)).copy(), lo, hi)
    std = np.full(dim, float(init_std))
    n_elite = max(1, round(elite_frac * population))
    best, best_value, evaluations, history = mean.copy(), -np.inf, 0, []

    def score(x: np.ndarray) -> float:
        v = float(objective(x))
        if not np.isfinite(v):
            raise ConfigError(f"cem: the objective returned {v} for {x.tolist()}")
        return v

    for it in range(iterations):
        cand = np.clip(mean + std * rng.standard_normal((population, dim)), lo, hi)
        cand[0] = mean  # the current centre competes too
        values = np.array([score(x) for x in cand])
        evaluations += population
        order = np.argsort(-values, kind="stable")
        if values[order[0]] > best_value:
            best, best_value = cand[order[0]].copy(), float(values[order[0]])
        elite = cand[order[:n_elite]]
        # smoothed refit (Kroese et al. 2006, §3): keeps a coordinate whose signal
        # is weak from collapsing onto an early elite by chance
        mean = smoothing * elite.mean(axis=0) + (1 - smoothing) * mean
        std = np.maximum(smoothing * elite.std(axis=0) + (1 - smoothing) * std, min_std)
        history.append({"iteration": it, "mean": mean.tolist(), "std": std.tolist(),
                        "best_value": best_value, "round_best": float(values[order[0]])})
    return CEMResult(best, best_value, evaluations, history)


def constant_score(action: Sequence[float], scenarios: Sequence[str], seeds: Sequence[int],
                   **model_params: Any) -> float:
    """Mean fixed-horizon score of the constant ``action`` over every scenario
    (``"mixture"`` allowed) × seed."""
    from finsim_mesa.agents.brains import ConstantBrain
    from finsim_mesa.evaluation import evaluate_run

    brain = ConstantBrain(np.clip(np.asarray(action, dtype=float), 0.0, 1.0))
    return float(np.mean([evaluate_run(brain, sc, seed, **model_params)["episode_reward"]
                          for sc in scenarios for seed in seeds]))


def best_constant(scenarios: Sequence[str] = ("mixture",), seeds: int | Sequence[int] = 8,
                  iterations: int = 6, population: int = 12, seed: int = 0,
                  **model_params: Any) -> CEMResult:
    """The best constant stance on selection seeds by CEM (see the module docstring).

    Args:
        scenarios: where it is scored (mean over all of them).
        seeds: selection seeds, or how many from :data:`SELECTION_SEEDS` on.
        iterations, population: CEM budget (``iterations × population`` candidates,
            each run on every scenario × seed).
        seed: seed of the CEM sampling.
        **model_params: model parameters (e.g. ``n_banks``, ``steps``).
    """
    seed_list = (list(range(SELECTION_SEEDS, SELECTION_SEEDS + seeds))
                 if isinstance(seeds, int | np.integer) else [int(s) for s in seeds])
    if not seed_list:
        raise ConfigError("best_constant: give at least one selection seed")
    result = cem(lambda x: constant_score(x, scenarios, seed_list, **model_params), 4,
                 iterations=iterations, population=population, seed=seed,
                 init_mean=0.5, init_std=0.35)
    return result
