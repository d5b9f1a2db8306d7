"""Multi-seed evaluation with confidence intervals (no torch needed)."""

import numpy as np
import pytest
from scipy import stats

from finsim_mesa import ConfigError, FinancialModel
from finsim_mesa.evaluation import evaluate_run, run_evaluation, run_quick_evaluation


def test_episode_reward_matches_the_model():
    r = evaluate_run("rule_based", "normal", 3, n_banks=12, steps=15)
    m = FinancialModel(n_banks=12, steps=15, brain="rule_based", rng=3)
    total = 0.0
    while m.running:
        m.step()
        total += m.reward.per_bank.sum() / 12
    assert r["episode_reward"] == pytest.approx(total)
    assert r["default_rate"] == m.measures.default_rate and r["steps"] == 15


def test_table_intervals_and_files(tmp_path):
    res = run_evaluation(["passive", "greedy"], ["normal", "asset_crash"], seeds=4,
                         out_dir=tmp_path, n_banks=10, steps=10)
    assert len(res.runs) == 2 * 2 * 4
    row = res.table[(res.table.brain == "greedy") & (res.table.scenario == "normal")
                    & (res.table.metric == "episode_reward")].iloc[0]
    x = res.runs[(res.runs.brain == "greedy") & (res.runs.scenario == "normal")].episode_reward
    half = stats.t.ppf(0.975, 3) * x.std(ddof=1) / np.sqrt(4)
    assert row["mean"] == pytest.approx(x.mean())
    assert row.ci95_high - row["mean"] == pytest.approx(half)
    for name in ("runs.csv", "table.csv", "evaluation.png"):
        assert (tmp_path / name).stat().st_size > 100
    assert res.wide().shape == (2, 2)
    # beats(): strict non-overlap of intervals
    t = res.table[(res.table.scenario == "normal") & (res.table.metric == "episode_reward")]
    lo = t.set_index("brain").ci95_low
    hi = t.set_index("brain").ci95_high
    assert res.beats("passive", "normal") == bool(lo["passive"] > hi["greedy"])


def test_quick_evaluation_and_errors():
    res = run_quick_evaluation(n_banks=8, steps=5)
    assert set(res.runs.brain) >= {"passive", "rule_based", "random"}
    assert set(res.runs.scenario) == {"normal", "liquidity_crisis", "asset_crash", "systemic"}
    with pytest.raises(ConfigError, match="at least 2 seeds"):
        run_evaluation(["passive"], ["normal"], seeds=[1])


def test_paired_differences_by_seed():
    res = run_evaluation(["passive", "greedy", "conservative"], ["asset_crash"], seeds=5,
                         n_banks=10, steps=12)
    pair = res.paired("passive", "asset_crash").set_index("versus")
    assert set(pair.index) == {"greedy", "conservative"}
    r = res.runs.set_index(["brain", "seed"]).episode_reward
    d = np.array([r["passive", s] - r["greedy", s] for s in range(5)])
    # against the textbook paired t-interval (scipy), computed independently
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    assert pair.loc["greedy", "mean_difference"] == pytest.approx(d.mean())
    assert pair.loc["greedy", "ci95_high"] == pytest.approx(d.mean() + half)
    assert pair.loc["greedy", "share_better"] == pytest.approx(np.mean(d > 0))
    with pytest.raises(ConfigError, match="not in this evaluation"):
        res.paired("oracle", "asset_crash")
