"""Multi-seed evaluation with confidence intervals (no torch needed)."""

import numpy as np
import pytest
from scipy import stats

from finsim_mesa import ConfigError, FinancialModel
from finsim_mesa.evaluation import evaluate_run, run_evaluation, run_quick_evaluation


def _fixed_horizon_by_hand(brain, scenario, seed, horizon, **params):
    """The fixed-horizon score written out from the definition: a model run
    without a collapse stop, each step the mean over *all* banks of the bank's
    reward while in business (including its default step) and -alpha after."""
    m = FinancialModel(scenario=scenario, brain=brain, rng=seed, steps=horizon,
                       collapse_threshold=1.0, agent_collect_every=0, **params)
    alpha = m.config.reward_default_penalty
    out_before = np.zeros(m.n_banks, dtype=bool)
    total = 0.0
    for _ in range(horizon):
        if not m.running:
            total += -alpha * m.ledger.defaulted.mean()
            continue
        m.step()
        s = np.where(out_before, -alpha, m.reward.per_bank)
        total += s.mean()
        out_before = m.ledger.defaulted.copy()
    return total, m


def test_episode_reward_is_the_fixed_horizon_score():
    r = evaluate_run("rule_based", "normal", 3, n_banks=12, steps=15)
    total, m = _fixed_horizon_by_hand("rule_based", "normal", 3, 15, n_banks=12)
    assert r["episode_reward"] == pytest.approx(total, rel=1e-12)
    assert r["default_rate"] == m.measures.default_rate and r["steps"] == 15


def test_a_collapse_keeps_being_scored():
    """greedy in systemic with a tiny capital ratio collapses: the old score
    (stop at half defaulted, defaulted banks count 0) would have ended early;
    the fixed horizon runs all steps and charges -alpha per defaulted bank-step."""
    params = dict(n_banks=20, capital_ratio=0.04, capital_requirement=0.02)
    r = evaluate_run("greedy", "systemic", 5, steps=40, **params)
    total, m = _fixed_horizon_by_hand("greedy", "systemic", 5, 40, **params)
    assert r["episode_reward"] == pytest.approx(total, rel=1e-12)
    assert r["default_rate"] >= 0.5 and r["steps"] <= 40
    # what the old score gave: stop at collapse, defaulted banks 0 afterwards
    old = FinancialModel(scenario="systemic", brain="greedy", rng=5, steps=40,
                         agent_collect_every=0, **params)
    old_total = 0.0
    while old.running:
        old.step()
        old_total += old.reward.per_bank.sum() / 20
    assert old.t < 40  # it stopped at the collapse
    alpha = m.config.reward_default_penalty
    # every bank-step in default after its default step costs alpha / n
    assert r["episode_reward"] < old_total - alpha * 0.5 * (40 - old.t) / 2


def test_a_run_that_ends_early_is_charged_to_the_horizon():
    """A model whose own run stops before the horizon (steps 20, horizon 35):
    each missing step scores -alpha times the share of banks in default."""
    from finsim_mesa.scoring import EpisodeScore

    m = FinancialModel(scenario="systemic", brain="greedy", rng=2, n_banks=15, steps=20,
                       capital_ratio=0.05, capital_requirement=0.02,
                       collapse_threshold=1.0, agent_collect_every=0)
    score = EpisodeScore(m, horizon=35)
    while m.running:
        m.step()
        score.add_step()
    partial, ran = score.total, score.steps
    share = m.ledger.defaulted.mean()
    assert share > 0 and ran <= 20
    assert score.finish() == pytest.approx(partial - m.config.reward_default_penalty
                                           * (35 - ran) * share)
    assert score.per_bank.mean() == pytest.approx(score.total)


def test_mixture_runs_meet_the_seeds_condition():
    from finsim_mesa.conditions import MIXTURE, condition_params

    for seed in (10_000, 10_001):
        draw = condition_params(MIXTURE, seed)
        assert draw == condition_params(MIXTURE, seed)  # a pure function of the seed
        a = evaluate_run("passive", "mixture", seed, steps=8)
        b = evaluate_run("passive", draw["scenario"], seed, steps=8,
                         **{k: v for k, v in draw.items() if k != "scenario"})
        assert a == b
    draws = [condition_params(MIXTURE, s) for s in range(10_000, 10_200)]
    assert {d["scenario"] for d in draws} == set(MIXTURE.scenarios)
    assert {d["topology"] for d in draws} == set(MIXTURE.topologies)
    assert min(d["n_banks"] for d in draws) == 30 and max(d["n_banks"] for d in draws) == 50
    assert all(0.10 <= d["capital_ratio"] <= 0.14 for d in draws)


def test_conditions_refuse_bad_settings():
    from finsim_mesa.conditions import Conditions

    with pytest.raises(ConfigError, match="n_banks"):
        Conditions(n_banks=(50, 30))
    with pytest.raises(ConfigError, match="capital_ratio"):
        Conditions(capital_ratio=(0.2, 1.5))
    with pytest.raises(ConfigError, match="accepted keys"):
        Conditions.from_dict({"scenario": ["normal"]})


def test_constant_brain_plays_its_action_and_refuses_bad_ones():
    from finsim_mesa.agents.brains import ConstantBrain, make_brain

    b = make_brain("constant:0,1,0.25,0")
    assert isinstance(b, ConstantBrain) and b.name == "constant:0,1,0.25,0"
    np.testing.assert_array_equal(b.act(np.zeros((3, 16))), [[0, 1, 0.25, 0]] * 3)
    m = FinancialModel(n_banks=10, steps=3, brain="constant:0,1,0.25,0", rng=1)
    m.step()
    live = ~m.ledger.defaulted
    np.testing.assert_array_equal(m.decisions.actions[live],
                                  np.tile([0, 1, 0.25, 0], (live.sum(), 1)))
    for bad in ("constant:1,2,3", "constant:a,b,c,d", "constant:0,0,0,1.5",
                "constant:nan,0,0,0"):
        with pytest.raises(ConfigError, match="constant"):
            make_brain(bad)


def test_cem_finds_a_known_optimum():
    """A concave quadratic with its maximum at a known point inside the box, and
    one coordinate whose optimum lies outside it (the answer is the bound)."""
    from finsim_mesa.search import cem

    target = np.array([0.2, 0.7, 1.4, 0.1])  # 1.4 > 1: the box's edge is best
    res = cem(lambda x: -float(np.sum((x - target) ** 2)), 4, iterations=25,
              population=20, seed=3)
    np.testing.assert_allclose(res.best, [0.2, 0.7, 1.0, 0.1], atol=0.03)
    assert res.evaluations == 25 * 20
    assert res.history[-1]["best_value"] == res.value
    with pytest.raises(ConfigError, match="objective returned nan"):
        cem(lambda x: float("nan"), 2, iterations=1, population=2)


def test_best_constant_is_scored_on_selection_seeds():
    from finsim_mesa.search import SELECTION_SEEDS, best_constant, constant_score

    res = best_constant(["asset_crash"], seeds=2, iterations=2, population=4,
                        n_banks=8, steps=8)
    again = constant_score(res.best, ["asset_crash"], [SELECTION_SEEDS, SELECTION_SEEDS + 1],
                           n_banks=8, steps=8)
    assert again == pytest.approx(res.value, rel=1e-12)
    # the best found is at least as good as every candidate of the first round,
    # which includes the starting centre (0.5, 0.5, 0.5, 0.5)
    centre = constant_score([0.5] * 4, ["asset_crash"], [SELECTION_SEEDS, SELECTION_SEEDS + 1],
                            n_banks=8, steps=8)
    assert res.value >= centre


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


def test_figure_of_one_scenario_draws_the_table_without_warnings():
    import warnings

    from finsim_mesa.evaluation import evaluation_figure

    res = run_evaluation(["passive", "greedy"], ["asset_crash"], seeds=3, n_banks=8, steps=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (a one-row Series given to matplotlib warned)
        fig = evaluation_figure(res)
    ax = fig.axes[0]
    t = res.table[res.table.metric == "episode_reward"].set_index("brain")
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([t.loc["passive", "mean"], t.loc["greedy", "mean"]])
    # each bar's error bar spans its 95% interval
    segs = [c for c in ax.collections if c.get_segments()]
    spans = sorted((float(s[0][1]), float(s[1][1])) for c in segs for s in c.get_segments())
    want = sorted((t.loc[b, "ci95_low"], t.loc[b, "ci95_high"]) for b in ("passive", "greedy"))
    assert np.allclose(spans, want)


def test_forked_workers_give_the_same_runs():
    import pandas as pd

    from finsim_mesa.agents.brains import ConstantBrain

    brains = {"rule_based": "rule_based", "random": "random",
              "c": ConstantBrain([0.1, 0.5, 0.2, 0.0])}
    one = run_evaluation(brains, ["systemic", "mixture"], seeds=3, n_banks=10, steps=8)
    two = run_evaluation(brains, ["systemic", "mixture"], seeds=3, n_banks=10, steps=8,
                         workers=2)
    pd.testing.assert_frame_equal(one.runs, two.runs)
    with pytest.raises(ConfigError, match="workers"):
        run_evaluation(brains, ["normal"], seeds=2, workers=0)


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
