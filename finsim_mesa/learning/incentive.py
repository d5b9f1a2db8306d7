"""Incentive design with the searched policy family (issue 14, item 5).

A regulator charges every bank λ × the systemic-risk index each step
(``reward_system_risk_weight``). Does the price change what banks learn to do,
and does the system become safer, at what cost in profit?

For each λ the same search (:func:`~finsim_mesa.learning.evolve.evolve_binned`:
the actor piecewise constant in ``market_stress``, block CEM on the mixture,
same training seeds, same budget, same search seed) finds the best *symmetric*
stance — one policy that every bank plays — for the banks' reward *with* the
price. Then every policy is evaluated on the same test seeds with the price
switched off (λ = 0): the dynamics do not depend on λ (rewards steer learning
only; :func:`check_lambda_free` verifies it on a run), so the outcomes compare
like with like, and the episode score at λ = 0 is the banks' own value
(profit + liquidity − default penalty), i.e. what the price costs them.

Search seeds are training seeds (from 1,000,000); the test seeds are any block
below (10000… by default), never used by the search.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finsim_mesa.errors import ConfigError
from finsim_mesa.intervals import ci95

__all__ = ["INIT_ACTION", "LAMBDAS", "METRICS", "check_lambda_free", "evaluate_lambda",
           "lambda_table", "score_terms", "search_lambda"]

LAMBDAS = (0.0, 0.5, 1.0, 2.0, 4.0)
INIT_ACTION = (0.01, 0.42, 0.06, 0.24)  # the shipped search's starting stance
METRICS = ("default_rate", "debtrank", "final_equity", "episode_reward")
ENV = {"n_banks": 30, "steps": 50}


def _check_lambda(lam: float) -> float:
    try:
        lam = float(lam)
    except (TypeError, ValueError):
        raise ConfigError(f"λ = {lam!r}: give a finite system-risk weight >= 0") from None
    if not np.isfinite(lam) or lam < 0:
        raise ConfigError(f"λ = {lam}: give a finite system-risk weight >= 0")
    return lam


def _check_out(out: str | Path) -> Path:
    """``out`` as a folder that can be written, created now (before a long search)."""
    from finsim_mesa.files import check_writable

    return check_writable(Path(out) / "meta.json", "out").parent


def search_lambda(lam: float, out: str | Path, per_scenario: int = 12, iterations: int = 6,
                  population: int = 12, seed: int = 0, workers: int = 1) -> dict[str, Any]:
    """Search one policy for system-risk weight ``lam`` and write it to ``out``
    (an actor folder: ``weights.safetensors`` + ``meta.json``).

    Budget: ``per_scenario`` mixture training seeds per scenario (from
    :data:`~finsim_mesa.learning.evolve.SEARCH_SEEDS`), ``iterations`` CEM rounds
    of ``population`` candidates per band, one sweep over the 4 bands; 50
    steps, each seed's mixture draw (30–50 banks). Returns the searched actions
    per band (shape (4, 4) as lists) and the search's value and wall time (s).
    """
    from finsim_mesa.learning.evolve import (
        SEARCH_SEEDS,
        evolve_binned,
        save_actor,
        stratified_seeds,
    )

    lam = _check_lambda(lam)
    if min(per_scenario, iterations) < 1 or population < 2:
        raise ConfigError(f"budget per_scenario={per_scenario}, iterations={iterations}, "
                          f"population={population}: give per_scenario >= 1, iterations >= 1 "
                          "and population >= 2")
    out = _check_out(out)
    env = ENV | {"reward_system_risk_weight": lam}
    res = evolve_binned(INIT_ACTION, stratified_seeds(SEARCH_SEEDS, per_scenario),
                        iterations=iterations, population=population, seed=seed,
                        workers=workers, **env)
    command = (f"search_lambda({lam:g}, per_scenario={per_scenario}, iterations={iterations}, "
               f"population={population}, seed={seed})")
    save_actor(res, out, command, env, evolve_extra={"lambda": lam})
    return {"lambda": lam, "actions": res.actions.tolist(), "value": res.value,
            "wall_seconds": res.wall_seconds, "folder": str(out)}


def check_lambda_free(seed: int = 10_000, lams: Sequence[float] = (0.0, 4.0),
                      brain: Any = "rule_based") -> None:
    """Raise if one mixture run's outcome (other than its score) depends on λ.

    The comparison of :func:`evaluate_lambda` rests on this: the price enters
    the reward only, never the dynamics.
    """
    from finsim_mesa.evaluation import evaluate_run

    outs = [evaluate_run(brain, "mixture", seed, reward_system_risk_weight=x, **ENV)
            for x in lams]
    for other in outs[1:]:
        for k in ("default_rate", "debtrank", "final_equity", "steps"):
            if other[k] != outs[0][k]:
                raise AssertionError(f"{k} depends on λ: {outs[0][k]} vs {other[k]}")


def evaluate_lambda(folders: dict[float, str | Path], seeds: Sequence[int]) -> pd.DataFrame:
    """One row per (λ, seed): each λ's policy on the mixture draw of ``seed``
    with the price off (λ = 0), ``episode_reward`` being the banks' own score."""
    from finsim_mesa.agents.actor import load_actor_folder
    from finsim_mesa.evaluation import evaluate_run

    seeds = list(seeds)
    if not folders or not seeds:
        raise ConfigError(f"{len(folders)} policies, {len(seeds)} seeds: give at least one of each")
    if any(int(s) < 0 for s in seeds):
        raise ConfigError(f"seeds {[s for s in seeds if int(s) < 0][:5]}: seeds must be >= 0")
    for lam in folders:
        _check_lambda(lam)
    rows = []
    for lam, folder in folders.items():
        brain = load_actor_folder(folder)
        for s in seeds:
            r = evaluate_run(brain, "mixture", int(s), reward_system_risk_weight=0.0, **ENV)
            rows.append({"lambda": float(lam), "seed": int(s)} | {k: r[k] for k in METRICS})
    return pd.DataFrame(rows)


def score_terms(brain: Any, seed: int) -> dict[str, float]:
    """Where the banks' own score (price off) of one mixture run of ``seed`` comes
    from: its ``profit``, ``liquidity`` and ``default`` terms (each summed over the
    steps, mean over all banks, weights applied; they add up to
    :func:`evaluate_lambda`'s ``episode_reward``), and ``default_steps``, the
    bank-steps spent in default per bank (the default term is −α times it)."""
    from finsim_mesa.evaluation import run_params
    from finsim_mesa.model import FinancialModel
    from finsim_mesa.scoring import score_episode

    m = FinancialModel(brain=brain, rng=int(seed), agent_collect_every=0,
                       **run_params("mixture", int(seed), **ENV | {
                           "reward_system_risk_weight": 0.0}))
    cfg = m.config
    terms = dict.fromkeys(("profit", "liquidity", "default"), 0.0)

    def add(model: Any) -> None:
        comp = model.reward.components
        terms["profit"] += cfg.reward_profit_weight * float(comp["profit"].mean())
        terms["liquidity"] += cfg.reward_liquidity_weight * float(comp["liquidity"].mean())

    score = score_episode(m, after_step=add)
    L = m.ledger
    steps_out = np.where(L.defaulted, score.horizon + 1 - L.default_step, 0)
    terms["default_steps"] = float(steps_out.mean())
    terms["default"] = -cfg.reward_default_penalty * terms["default_steps"]
    return terms


def lambda_table(runs: pd.DataFrame, reference: float = 0.0) -> pd.DataFrame:
    """Per λ and metric: mean with its 95% t-interval, and the paired difference
    to λ = ``reference`` on the same seeds (mean and 95% t-interval).

    ``runs``: columns ``lambda``, ``seed`` and :data:`METRICS`, every λ on the
    same seeds.
    """
    lost = [c for c in ("lambda", "seed", *METRICS) if c not in runs.columns]
    if lost:
        raise ConfigError(f"the runs lack the columns {', '.join(lost)} (evaluate_lambda's rows)")
    twice = runs.duplicated(["lambda", "seed"])
    if twice.any():
        first = runs[twice].iloc[0]
        raise ConfigError(f"λ = {first['lambda']:g}, seed {first['seed']} appears more than "
                          "once: give one row per (λ, seed)")
    if runs[list(METRICS)].isna().any().any():
        raise ConfigError("the runs hold NaN outcomes: re-run the λ whose rows have them")
    if runs["seed"].nunique() < 2:
        raise ConfigError("fewer than 2 seeds: a 95% interval needs at least 2")
    if reference not in set(runs["lambda"]):
        raise ConfigError(f"λ = {reference:g} is not in the runs; it is the reference")
    rows = []
    for metric in METRICS:
        wide = runs.pivot(index="seed", columns="lambda", values=metric)
        if wide.isna().any().any():
            raise ConfigError("every λ must run the same seeds")
        for lam in wide.columns:
            mean, _, low, high = ci95(wide[lam].to_numpy(dtype=float))
            d, _, dlow, dhigh = ci95((wide[lam] - wide[reference]).to_numpy(dtype=float))
            rows.append({"lambda": float(lam), "metric": metric, "n": len(wide), "mean": mean,
                         "ci95_low": low, "ci95_high": high, "vs_reference": d,
                         "vs_low": dlow, "vs_high": dhigh})
    return pd.DataFrame(rows)
