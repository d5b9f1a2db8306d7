"""Multi-seed comparison of brains across scenarios, with confidence intervals.

Every brain × every scenario × N seeds (the same seeds for every brain). Per
run: ``episode_reward`` (the fixed-horizon score of :mod:`finsim_mesa.scoring`:
the run lasts the full ``steps`` whatever happens, and a defaulted bank keeps
its default penalty every remaining step, so a collapse is never cheaper than
surviving), ``default_rate`` (final), ``final_equity`` (equity of the
survivors / initial equity of all banks) and ``debtrank`` (final DebtRank
total distress). The table gives mean, standard deviation and 95%
t-intervals; :func:`evaluation_figure` draws them.

A scenario named ``"mixture"`` draws, per seed, a scenario, bank count,
topology and capital ratio from :data:`finsim_mesa.conditions.MIXTURE` (the
same draw for every brain on that seed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finsim_mesa.agents.brains import BRAINS
from finsim_mesa.conditions import MIXTURE, condition_params
from finsim_mesa.errors import ConfigError
from finsim_mesa.forked import can_fork, check_workers, run_all
from finsim_mesa.intervals import ci95
from finsim_mesa.model import FinancialModel
from finsim_mesa.scenarios import list_scenarios
from finsim_mesa.scoring import fixed_horizon_params, score_episode
from finsim_mesa.threads import single_threaded

__all__ = ["BEST_CONSTANT", "EvaluationResult", "evaluate_run", "evaluation_figure",
           "run_evaluation", "run_params", "run_quick_evaluation"]

METRICS = ("episode_reward", "default_rate", "final_equity", "debtrank")
#: the best constant found by ``finsim evaluate --best-constant 8,6,12`` (the
#: cross-entropy method on selection seeds from 20000), (lend, hoard, sell,
#: borrow): the stance the replications pair learned policies against
BEST_CONSTANT = (0.0, 0.5507549760114743, 0.2983362415052715, 0.05364978081681621)


def run_params(scenario: str, seed: int, **model_params: Any) -> dict[str, Any]:
    """The model parameters of one evaluation run: ``scenario`` (or, for
    ``"mixture"``, the seed's draw from :data:`MIXTURE`, which overrides the
    scenario, bank count, topology and capital ratio) on a fixed horizon."""
    if scenario == "mixture":
        params = dict(model_params) | condition_params(MIXTURE, seed)
    else:
        params = dict(model_params) | {"scenario": scenario}
    return fixed_horizon_params(params)


def evaluate_run(brain: Any, scenario: str, seed: int, **model_params: Any) -> dict[str, float]:
    """One episode of ``brain`` (name or object) in ``scenario`` (or
    ``"mixture"``) with ``seed``: the fixed-horizon score and the outcome."""
    m = FinancialModel(brain=brain, rng=seed, agent_collect_every=0,
                       **run_params(scenario, seed, **model_params))
    total = score_episode(m).total
    eq0 = float(m.ledger.equity0.sum())
    return {"episode_reward": total, "default_rate": m.measures.default_rate,
            "final_equity": max(m.measures.total_equity, 0.0) / eq0 if eq0 > 0 else 0.0,
            "debtrank": m.measures.debtrank_total, "steps": m.t}


@dataclass
class EvaluationResult:
    """``runs``: one row per (brain, scenario, seed); ``table``: mean, std and
    95% t-interval per brain, scenario and metric."""

    runs: pd.DataFrame
    table: pd.DataFrame

    def wide(self, metric: str = "episode_reward") -> pd.DataFrame:
        """``metric`` as 'mean [low, high]' per brain (rows) and scenario (columns)."""
        t = self.table[self.table.metric == metric].copy()
        t["cell"] = t.apply(lambda r: f"{r['mean']:.4g} [{r.ci95_low:.4g}, {r.ci95_high:.4g}]",
                            axis=1)
        return t.pivot(index="brain", columns="scenario", values="cell")

    def beats(self, brain: str, scenario: str, metric: str = "episode_reward") -> bool:
        """True if ``brain``'s 95% interval lies wholly above every other brain's."""
        t = self.table[(self.table.scenario == scenario) & (self.table.metric == metric)]
        me = t[t.brain == brain].iloc[0]
        others = t[t.brain != brain]
        return bool((me.ci95_low > others.ci95_high).all())


    def paired(self, brain: str, scenario: str, metric: str = "episode_reward"
               ) -> pd.DataFrame:
        """``brain`` minus each other brain, seed by seed (every brain ran the same
        seeds, so the differences are paired): mean, std, 95% t-interval, n and
        the share of seeds where ``brain`` did better, one row per other brain."""
        r = self.runs[self.runs.scenario == scenario]
        wide = r.pivot(index="seed", columns="brain", values=metric)
        if brain not in wide:
            raise ConfigError(f"brain {brain!r} is not in this evaluation")
        rows = []
        for other in wide.columns.drop(brain):
            d = (wide[brain] - wide[other]).to_numpy(dtype=float)
            mean, std, low, high = ci95(d)
            rows.append({"brain": brain, "versus": other, "mean_difference": mean,
                         "std": std, "ci95_low": low, "ci95_high": high, "n": d.size,
                         "share_better": float(np.mean(d > 0))})
        return pd.DataFrame(rows)


def _table(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (brain, scenario), g in runs.groupby(["brain", "scenario"], sort=False):
        for metric in METRICS:
            mean, std, low, high = ci95(g[metric].to_numpy(dtype=float))
            rows.append({"brain": brain, "scenario": scenario, "metric": metric,
                         "mean": mean, "std": std, "ci95_low": low, "ci95_high": high,
                         "n": len(g)})
    return pd.DataFrame(rows)


@single_threaded()  # one BLAS / torch thread while evaluating (issue 15)
def run_evaluation(
    brains: Mapping[str, Any] | Sequence[str] | None = None,
    scenarios: Sequence[str] | None = None,
    seeds: int | Sequence[int] = 10,
    out_dir: str | Path | None = None,
    progress: bool = False,
    workers: int = 1,
    **model_params: Any,
) -> EvaluationResult:
    """Evaluate brains (name → brain spec; default: every built-in brain) on
    scenarios (default: all; ``"mixture"`` draws the conditions per seed) over
    the same seeds; optionally write ``runs.csv``,
    ``table.csv`` and ``evaluation.png`` to ``out_dir``. ``workers`` splits the
    episodes between forked processes (:func:`finsim_mesa.forked.run_all`): the
    same rows, as long as no brain object keeps state from one episode to the
    next (the built-in and policy brains do not)."""
    if brains is None:
        brains = {name: name for name in BRAINS}
    elif not isinstance(brains, Mapping):
        brains = {str(b): b for b in brains}
    scenarios = list(scenarios or list_scenarios())
    seed_list = list(range(seeds)) if isinstance(seeds, int | np.integer) else list(seeds)
    if len(seed_list) < 2:
        raise ConfigError("evaluation needs at least 2 seeds for confidence intervals")
    from tqdm import tqdm

    jobs = [(b, s, seed) for b in brains for s in scenarios for seed in seed_list]
    if check_workers(workers) > 1 and can_fork():
        if progress:
            print(f"evaluating {len(jobs)} episodes in {workers} forked processes")
        out = run_all([partial(evaluate_run, brains[b], s, seed, **model_params)
                       for b, s, seed in jobs], workers)
    else:
        out = [evaluate_run(brains[b], s, seed, **model_params)
               for b, s, seed in tqdm(jobs, disable=not progress, desc="evaluating")]
    runs = pd.DataFrame([{"brain": b, "scenario": s, "seed": seed, **res}
                         for (b, s, seed), res in zip(jobs, out, strict=True)])
    result = EvaluationResult(runs, _table(runs))
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        runs.to_csv(out / "runs.csv", index=False)
        result.table.to_csv(out / "table.csv", index=False)
        evaluation_figure(result).savefig(out / "evaluation.png", dpi=110)
    return result


def run_quick_evaluation(**model_params: Any) -> EvaluationResult:
    """A small evaluation: every built-in brain, every scenario, 3 seeds, 20 banks,
    30 steps."""
    params = {"n_banks": 20, "steps": 30} | model_params
    return run_evaluation(seeds=[0, 1, 2], **params)


def evaluation_figure(result: EvaluationResult):
    """Bar chart of mean episode reward and default rate with 95% intervals."""
    from finsim_mesa.viz.plots import new_figure

    fig, axes = new_figure((12, 4.5), 1, 2)
    for ax, metric in zip(axes, ("episode_reward", "default_rate"), strict=True):
        t = result.table[result.table.metric == metric]
        scen = list(dict.fromkeys(t.scenario))
        brains = list(dict.fromkeys(t.brain))
        width = 0.8 / len(brains)
        for k, b in enumerate(brains):
            tb = t[t.brain == b].set_index("scenario").reindex(scen)
            x = np.arange(len(scen)) + k * width
            mean, low, high = (tb[c].to_numpy(dtype=float) for c in ("mean", "ci95_low",
                                                                      "ci95_high"))
            # arrays, not Series: matplotlib's float() of a one-row Series is deprecated
            ax.bar(x, mean, width, label=b, yerr=np.vstack([mean - low, high - mean]),
                   capsize=2)
        ax.set_xticks(np.arange(len(scen)) + 0.4 - width / 2, scen, fontsize=8)
        ax.set_title(f"{metric} (mean, 95% CI)", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
