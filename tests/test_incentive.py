"""Incentive design with the searched family (finsim_mesa.learning.incentive)."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from finsim_mesa.agents.actor import load_actor_folder
from finsim_mesa.errors import ConfigError
from finsim_mesa.evaluation import evaluate_run
from finsim_mesa.learning.evolve import SEARCH_SEEDS, stratified_seeds
from finsim_mesa.learning.incentive import (
    ENV,
    check_lambda_free,
    evaluate_lambda,
    lambda_table,
    score_terms,
    search_lambda,
)


def test_the_price_changes_the_score_but_not_the_dynamics():
    check_lambda_free(seed=10_003, lams=(0.0, 0.5, 4.0))
    a = evaluate_run("passive", "mixture", 10_003, reward_system_risk_weight=0.0, **ENV)
    b = evaluate_run("passive", "mixture", 10_003, reward_system_risk_weight=4.0, **ENV)
    assert b["episode_reward"] < a["episode_reward"] - 1e-6  # the price is charged
    assert (a["default_rate"], a["debtrank"]) == (b["default_rate"], b["debtrank"])


def test_search_for_a_price_writes_a_policy_whose_value_is_its_score_under_that_price(tmp_path):
    r = search_lambda(2.0, tmp_path / "p", per_scenario=1, iterations=1, population=2, seed=3)
    meta = json.loads((tmp_path / "p" / "meta.json").read_text())
    assert meta["env"]["reward_system_risk_weight"] == 2.0
    assert meta["evolve"]["lambda"] == 2.0
    brain = load_actor_folder(tmp_path / "p")
    seeds = stratified_seeds(SEARCH_SEEDS, 1)
    rerun = [evaluate_run(brain, "mixture", s, reward_system_risk_weight=2.0, **ENV)
             for s in seeds]
    # an independent re-run of the saved actor (float32 weights) gives the search's value
    assert r["value"] == pytest.approx(np.mean([x["episode_reward"] for x in rerun]), abs=1e-6)
    at_zero = np.mean([evaluate_run(brain, "mixture", s, reward_system_risk_weight=0.0,
                                    **ENV)["episode_reward"] for s in seeds])
    assert at_zero > r["value"] + 0.1  # the value was computed with the price on
    runs = evaluate_lambda({2.0: tmp_path / "p"}, seeds[:2])
    assert list(runs.seed) == seeds[:2]
    assert runs.episode_reward.tolist() == pytest.approx(
        [evaluate_run(brain, "mixture", s, **ENV | {"reward_system_risk_weight": 0.0})[
            "episode_reward"] for s in seeds[:2]])


def test_table_pairs_by_seed_like_scipy():
    rng = np.random.default_rng(5)
    seeds = np.arange(40)
    base = rng.normal(0.1, 0.03, seeds.size)
    rows = []
    for lam, shift in ((0.0, 0.0), (1.0, -0.01)):
        vals = base + shift + rng.normal(0, 0.005, seeds.size)
        for s, v in zip(seeds, vals, strict=True):
            rows.append({"lambda": lam, "seed": int(s), "default_rate": v, "debtrank": v / 2,
                         "final_equity": 1 - v, "episode_reward": -v})
    runs = pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # order must not matter
    t = lambda_table(runs)
    row = t[(t["lambda"] == 1.0) & (t.metric == "default_rate")].iloc[0]
    wide = runs.pivot(index="seed", columns="lambda", values="default_rate")
    ci = stats.ttest_rel(wide[1.0], wide[0.0]).confidence_interval(0.95)
    assert row.vs_reference == pytest.approx(float((wide[1.0] - wide[0.0]).mean()))
    assert (row.vs_low, row.vs_high) == pytest.approx((ci.low, ci.high))
    assert row.vs_high < 0  # the built-in shift of -0.01 is found
    ref = t[(t["lambda"] == 0.0) & (t.metric == "debtrank")].iloc[0]
    assert ref.vs_reference == 0 and ref.n == 40


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="system-risk weight"):
        search_lambda(-1.0, tmp_path / "x")
    with pytest.raises(ConfigError, match="system-risk weight"):
        search_lambda(float("nan"), tmp_path / "x")
    assert not (tmp_path / "x").exists()
    runs = pd.DataFrame({"lambda": [1.0, 1.0], "seed": [1, 2], "default_rate": [0.1, 0.2],
                         "debtrank": [0, 0], "final_equity": [1, 1], "episode_reward": [0, 0]})
    with pytest.raises(ConfigError, match="reference"):
        lambda_table(runs)
    runs = pd.concat([runs, runs.iloc[:1].assign(**{"lambda": 0.0})])
    with pytest.raises(ConfigError, match="same seeds"):
        lambda_table(runs)


class _ReadsThePrice:
    """A brain whose actions depend on λ: the dynamics then do too."""

    def setup(self, model):
        self.sell = min(model.config.reward_system_risk_weight / 4.0, 1.0)

    def act(self, observations):
        a = np.zeros((len(observations), 4))
        a[:, 2] = self.sell
        return a


def test_check_lambda_free_catches_dynamics_that_read_the_price():
    with pytest.raises(AssertionError, match="depends on λ"):
        check_lambda_free(seed=10_003, lams=(0.0, 4.0), brain=_ReadsThePrice())


def test_table_against_scipy_for_the_means_and_another_reference():
    rng = np.random.default_rng(7)
    rows = [{"lambda": lam, "seed": s, "default_rate": rng.normal(lam / 10, 0.02),
             "debtrank": 0.0, "final_equity": 1.0, "episode_reward": 0.0}
            for lam in (0.0, 1.0, 2.0) for s in range(30)]
    runs = pd.DataFrame(rows)
    t = lambda_table(runs, reference=1.0)
    wide = runs.pivot(index="seed", columns="lambda", values="default_rate")
    for lam in (0.0, 2.0):
        row = t[(t["lambda"] == lam) & (t.metric == "default_rate")].iloc[0]
        ci = stats.ttest_1samp(wide[lam], 0.0).confidence_interval(0.95)
        assert (row["mean"], row.ci95_low, row.ci95_high) == pytest.approx(
            (wide[lam].mean(), ci.low, ci.high))
        d = stats.ttest_rel(wide[lam], wide[1.0]).confidence_interval(0.95)
        assert (row.vs_low, row.vs_high) == pytest.approx((d.low, d.high))
    assert t[t["lambda"] == 1.0].vs_reference.eq(0).all()


def test_bad_input_to_evaluation_and_table_is_refused(tmp_path):
    folder = tmp_path / "p"
    with pytest.raises(ConfigError, match="at least one"):
        evaluate_lambda({0.0: folder}, [])
    with pytest.raises(ConfigError, match="at least one"):
        evaluate_lambda({}, [10_000])
    with pytest.raises(ConfigError, match=">= 0"):
        evaluate_lambda({0.0: folder}, [-5])
    with pytest.raises(ConfigError, match="system-risk weight"):
        evaluate_lambda({-1.0: folder}, [10_000])
    base = {"debtrank": 0.0, "final_equity": 1.0, "episode_reward": 0.0}
    runs = pd.DataFrame([{"lambda": 0.0, "seed": s, "default_rate": 0.1} | base
                         for s in (1, 2, 2)])
    with pytest.raises(ConfigError, match="more than once"):
        lambda_table(runs)
    with pytest.raises(ConfigError, match="lack the columns debtrank"):
        lambda_table(runs.drop(columns="debtrank"))
    with pytest.raises(ConfigError, match="at least 2"):
        lambda_table(runs.iloc[:1])
    with pytest.raises(ConfigError, match="NaN"):
        lambda_table(runs.iloc[:2].assign(default_rate=[0.1, np.nan]))


def test_search_refuses_a_bad_budget_or_folder_before_searching(tmp_path):
    with pytest.raises(ConfigError, match="population >= 2"):
        search_lambda(1.0, tmp_path / "a", population=1)
    with pytest.raises(ConfigError, match="per_scenario >= 1"):
        search_lambda(1.0, tmp_path / "a", per_scenario=0)
    with pytest.raises(ConfigError, match="system-risk weight"):
        search_lambda("lots", tmp_path / "a")
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        search_lambda(1.0, tmp_path / "file" / "p")


@pytest.mark.parametrize("args, says", [
    (["--budget", "a,b,c"], "SEEDS_PER_SCENARIO"),
    (["--budget", "12,6,1"], "SEEDS_PER_SCENARIO"),
    (["--seeds", "0"], "--seeds 0"),
    (["--processes", "0"], "--processes 0"),
    (["--family", "mappo", "--episodes", "-1"], "--episodes -1"),
    (["--out", "FILE/sub"], "is a file"),
])
def test_the_script_refuses_bad_arguments_before_any_work(tmp_path, args, says):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "FILE").write_text("")
    args = [str(tmp_path / a) if a.startswith("FILE") else a for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    script = Path(__file__).parents[1] / "replications" / "incentive_design.py"
    p = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1],
                         start_new_session=True)
    try:
        _, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # it started working: stop it and its pool workers
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    assert p.returncode == 2, err
    assert says in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing was started


def test_score_terms_add_up_to_the_episode_score():
    from finsim_mesa.conditions import MIXTURE
    from finsim_mesa.evaluation import condition_params

    systemic = next(s for s in range(10_000, 10_100)
                    if condition_params(MIXTURE, s)["scenario"] == "systemic")
    for brain in ("rule_based", "constant:0,0,1,0"):
        for seed in (10_000, systemic):
            t = score_terms(brain, seed)
            r = evaluate_run(brain, "mixture", seed, reward_system_risk_weight=0.0, **ENV)
            assert t["profit"] + t["liquidity"] + t["default"] == pytest.approx(
                r["episode_reward"], abs=1e-9)
            assert (t["default_steps"] > 0) == (r["default_rate"] > 0)
    assert score_terms("constant:0,0,1,0", systemic)["default_steps"] > 0  # two forced defaults
