"""The scenario-aware refinement (finsim_mesa.learning.evolve_objective): the
sub-bins play their own action only inside their part of a bin, the block
search finds known optima and runs only the runs that can change, the
refined actor's recorded value is what an independent re-run scores, and
``finsim evaluate --test-seeds``."""

import importlib.util
import json
import shutil

import numpy as np
import pytest

from finsim_mesa.agents.actor import ActorBrain, load_actor_folder
from finsim_mesa.errors import ConfigError
from finsim_mesa.evaluation import evaluate_run
from finsim_mesa.learning.evolve import binned_actor
from finsim_mesa.learning.evolve_objective import (
    REFINE_SEEDS,
    add_sub_bins,
    refine_blocks,
    refine_scenarios,
    run_value,
    save_refined,
)

CUTS = [0.15, 0.4, 0.65]
A = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.1, 0.1], [0.2, 0.8, 0.6, 0.3],
              [0.05, 0.9, 0.9, 0.05]])
START = {"field": "market_stress", "cuts": CUTS, "actions": A.tolist(), "extras": [],
         "shifts": []}


def _logits(m):
    """Head outputs whose Beta(1 + softplus u, 1 + softplus v) has mean m, α + β = 20
    (written out here, not taken from the module)."""
    m = np.asarray(m, dtype=float)
    inv = lambda y: y + np.log(-np.expm1(-y))  # noqa: E731
    return np.concatenate([inv(20 * m - 1), inv(20 * (1 - m) - 1)], axis=-1)


def test_a_sub_bin_plays_its_action_only_inside_its_part_of_the_bin():
    rng = np.random.default_rng(3)
    w = binned_actor(A, CUTS, 13, 16)
    B = np.array([0.7, 0.1, 0.6, 0.85])  # bin 1 where column 3 is below 0.2
    w = add_sub_bins(w, 3, 0, [(1, 3, 0.2, "below")], (_logits(B) - _logits(A[1]))[None])
    obs = rng.uniform(0, 1, (4000, 16))
    obs[:, 13] = rng.choice([0.0, 0.3, 0.5, 0.8, 0.1, 0.2, 0.6, 0.9], 4000)
    obs[:, 3] = np.where(rng.random(4000) < 0.5, rng.uniform(0, 0.19, 4000),
                         rng.uniform(0.21, 1, 4000))
    got = ActorBrain(w, None).act(obs)
    bins = np.searchsorted(CUTS, obs[:, 13])
    want = A[bins].copy()
    inside = (bins == 1) & (obs[:, 3] < 0.2)
    want[inside] = B
    assert inside.sum() > 200 and ((bins == 1) & ~inside).sum() > 200
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_sub_bins_are_refused_where_they_cannot_be_built():
    w = binned_actor(A, CUTS, 13, 16, hidden=6)  # 5 first-layer units used
    with pytest.raises(ConfigError, match="hidden units"):
        add_sub_bins(w, 3, 0, [(1, 3, 0.2, "below"), (0, 3, 0.2, "above")], np.zeros((2, 8)))
    with pytest.raises(ConfigError, match="side"):
        add_sub_bins(binned_actor(A, CUTS, 13, 16), 3, 0, [(1, 3, 0.2, "under")],
                     np.zeros((1, 8)))


def test_block_search_finds_each_blocks_optimum_and_reruns_only_visitors():
    """Two 'scenarios': runs of 'a' visit bin 0, runs of 'b' bin 1; a run's value
    is minus the squared distance of its bin's block to a target (plus a per-seed
    constant). Block 2 is local to bin 1 too (a sub-bin)."""
    target = {0: np.array([0.2, 0.9, 0.1, 0.5]), 1: np.array([0.7, 0.3, 0.6, 0.05]),
              2: np.array([0.4, 0.4, 0.8, 0.2])}
    calls = []

    def runner(x, sc, s):
        calls.append((sc, x.copy()))
        blocks = x.reshape(3, 4)
        if sc == "a":
            return s - float(np.sum((blocks[0] - target[0]) ** 2)), {0}
        return s - float(np.sum((blocks[1] - target[1]) ** 2)
                         + np.sum((blocks[2] - target[2]) ** 2)), {1}

    runs = [(sc, s) for sc in "ab" for s in range(3)]
    x0 = np.full(12, 0.5)
    x, value, history, n = refine_blocks(x0, [0, 1, 2], runs, runner, iterations=25,
                                         population=16, init_std=0.3, local={0: 0, 1: 1, 2: 1})
    np.testing.assert_allclose(x.reshape(3, 4), np.array([target[k] for k in range(3)]),
                               atol=0.05)
    assert value == pytest.approx(1.0 - sum(np.sum((x.reshape(3, 4)[k] - target[k]) ** 2)
                                            for k in (0, 1, 2)) / 2, abs=1e-9)
    accepted = sum(h["accepted"] for h in history)
    assert n == len(calls) == 6 + 3 * 25 * 16 * 3 + 6 * accepted
    # while block 0 was searched only the 'a' runs ran with candidates
    block0 = calls[6:6 + 25 * 16 * 3]
    assert {sc for sc, _ in block0} == {"a"}


def test_refined_value_is_what_an_independent_rerun_scores(tmp_path):
    env = {"n_banks": 10, "steps": 6}
    res = refine_scenarios(START, 2, kappa=5.0, blocks=[0, 4], scenarios=("normal", "systemic"),
                           iterations=1, population=3, subs=[(0, "cash_ratio", 0.1, "below")],
                           **env)
    brain_runs = [evaluate_run(ActorBrain(res.weights, res.obs_fields), sc, s, **env)
                  for sc in ("normal", "systemic") for s in (REFINE_SEEDS, REFINE_SEEDS + 1)]
    want = np.mean([r["episode_reward"] - 5.0 * r["default_rate"] for r in brain_runs])
    assert res.value == pytest.approx(want, abs=1e-12)
    assert res.seeds == [REFINE_SEEDS, REFINE_SEEDS + 1]
    meta = save_refined(res, tmp_path / "p", "cmd", env)
    assert json.loads((tmp_path / "p" / "meta.json").read_text())["evolve"]["subs"] == \
        [[0, "cash_ratio", 0.1, "below"]] == meta["evolve"]["subs"]
    again = load_actor_folder(tmp_path / "p")
    obs = np.random.default_rng(0).uniform(0, 1, (50, 16))
    np.testing.assert_array_equal(again.act(obs), ActorBrain(res.weights, None).act(obs))


def test_a_set_start_is_the_incumbent_and_plays_where_its_block_acts():
    env = {"n_banks": 10, "steps": 4}
    starts = [(3, "lend", 0.3), (3, "borrow", 0.0), (4, "sell", 0.7)]  # block 4: the sub-bin
    res = refine_scenarios(START, 1, blocks=[], scenarios=("systemic",), starts=starts,
                           subs=[(3, "cash_ratio", 0.1, "below")], **env)
    np.testing.assert_array_equal(res.actions[3], [0.3, 0.9, 0.9, 0.0])
    rec = res.history[0]["refine"]
    assert rec["starts"] == [list(s) for s in starts]
    assert rec["sub_actions"] == [[0.05, 0.9, 0.7, 0.05]]  # its bin's record action, then set
    rng = np.random.default_rng(4)
    obs = rng.uniform(0, 1, (400, 16))
    obs[:, 13] = 0.8
    obs[:, 2] = np.where(rng.random(400) < 0.5, rng.uniform(0, 0.09, 400),
                         rng.uniform(0.11, 1, 400))
    got = ActorBrain(res.weights, None).act(obs)
    poor = obs[:, 2] < 0.1
    assert 50 < poor.sum() < 350
    np.testing.assert_allclose(got[~poor], [[0.3, 0.9, 0.9, 0.002]] * int((~poor).sum()),
                               atol=1e-4)  # a mean of 0 is played as 0.002 (_beta_logits)
    np.testing.assert_allclose(got[poor], [[0.05, 0.9, 0.7, 0.05]] * int(poor.sum()), atol=1e-4)
    want = evaluate_run(ActorBrain(res.weights, res.obs_fields), "systemic", REFINE_SEEDS, **env)
    assert res.value == pytest.approx(want["episode_reward"], abs=1e-12)
    plain = evaluate_run(ActorBrain(binned_actor(A, CUTS, 13, 16), None), "systemic",
                         REFINE_SEEDS, **env)
    assert plain["episode_reward"] != want["episode_reward"]  # the start did change the play


def test_the_grid_scores_every_cell_on_the_blocks_runs_and_takes_the_best():
    """Runs of 'a' visit bin 0, runs of 'b' bin 1; a run's value is minus the squared
    distance of its bin's block to a target. The grid of block 1's actions 0 and 3
    (K = 5) has its best cell at (0.75, 0.25), where the target is."""
    target = np.array([0.8, 0.5, 0.5, 0.2])
    calls = []

    def runner(x, sc, s):
        calls.append((sc, x.copy()))
        blk = x.reshape(2, 4)[0 if sc == "a" else 1]
        return s - float(np.sum((blk - (target if sc == "b" else 0.5)) ** 2)), {
            0 if sc == "a" else 1}

    runs = [(sc, s) for sc in "ab" for s in range(3)]
    x, value, history, n = refine_blocks(np.full(8, 0.5), [], runs, runner,
                                         local={0: 0, 1: 1}, grid=(1, 0, 3, 5))
    grid = history[0]["grid"]
    levels = [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [c[:2] for c in grid["table"]] == [[a, b] for a in levels for b in levels]
    for a, b, v in grid["table"]:  # independent: the mean over all six runs
        want = (3 * 1.0 + 3 * 1.0 - 3 * ((a - 0.8) ** 2 + (b - 0.2) ** 2)) / 6
        assert v == pytest.approx(want, abs=1e-12)
    assert grid["best"][:2] == [0.75, 0.25] and grid["accepted"] and grid["runs"] == 3
    np.testing.assert_array_equal(x, [0.5] * 4 + [0.75, 0.5, 0.5, 0.25])
    assert value == pytest.approx(1.0 - (0.05 ** 2 + 0.05 ** 2) / 2, abs=1e-12)
    # the incumbent in full, 25 cells on the 'b' runs only, the new incumbent in full
    assert n == len(calls) == 6 + 25 * 3 + 6
    assert {sc for sc, _ in calls[6:6 + 75]} == {"b"}
    # an incumbent better than every cell is kept
    x0 = np.array([0.5] * 4 + [0.8, 0.5, 0.5, 0.2])
    x, value, history, n = refine_blocks(x0, [], runs, runner, local={0: 0, 1: 1},
                                         grid=(1, 0, 3, 5))
    assert not history[0]["grid"]["accepted"] and n == 6 + 75
    np.testing.assert_array_equal(x, x0)
    for bad in [(1, 0, 0, 5), (1, 0, 4, 5), (1, 0, 3, 1), (2, 0, 3, 5)]:
        with pytest.raises(ConfigError):
            refine_blocks(x0, [], runs, runner, local={0: 0, 1: 1}, grid=bad)


def test_grid_cells_score_what_independent_reruns_score():
    env = {"n_banks": 10, "steps": 4}
    res = refine_scenarios(START, 2, kappa=7.0, blocks=[], scenarios=("systemic",),
                           grid=(3, "lend", "borrow", 2), **env)
    grid = next(h["grid"] for h in res.history if "grid" in h)
    assert grid["runs"] == 2 and len(grid["table"]) == 4
    assert res.history[0]["refine"]["grid"] == [3, "lend", "borrow", 2]
    for a, b, v in grid["table"]:
        acts = A.copy()
        acts[3, 0], acts[3, 3] = a, b
        brain = ActorBrain(binned_actor(acts, CUTS, 13, 16), None)
        want = np.mean([run_value(evaluate_run(brain, "systemic", s, **env), 7.0)
                        for s in (REFINE_SEEDS, REFINE_SEEDS + 1)])
        assert v == pytest.approx(want, abs=1e-12)
    values = [v for *_, v in grid["table"]]
    assert len(set(values)) > 1  # the cells do play differently
    best = grid["table"][int(np.argmax(values))]
    assert grid["best"] == best
    brain = ActorBrain(binned_actor(A, CUTS, 13, 16), None)
    incumbent = np.mean([run_value(evaluate_run(brain, "systemic", s, **env), 7.0)
                         for s in (REFINE_SEEDS, REFINE_SEEDS + 1)])
    assert grid["accepted"] == (best[2] > incumbent)
    want = best[:2] if grid["accepted"] else [A[3, 0], A[3, 3]]
    assert [res.actions[3][0], res.actions[3][3]] == want
    assert res.value == pytest.approx(max(best[2], incumbent), abs=1e-12)


def test_run_value_subtracts_the_default_penalty():
    assert run_value({"episode_reward": -1.25, "default_rate": 0.1}, 5.0) == pytest.approx(-1.75)
    assert run_value({"episode_reward": 0.3, "default_rate": 0.5}, 0.0) == 0.3


@pytest.mark.parametrize("kwargs, match", [
    ({"first_seed": 10_000}, "training seeds"),
    ({"kappa": -1.0}, "kappa"),
    ({"blocks": [9]}, "blocks"),
    ({"subs": [(7, "cash_ratio", 0.1, "below")]}, "sub-bins"),
    ({"subs": [(1, "no_such_column", 0.1, "below")]}, "no observation column"),
    ({"starts": [(4, "lend", 0.1)]}, "give a bin"),  # no sub-bin 4 here
    ({"starts": [(1, "lent", 0.1)]}, "an action of lend"),
    ({"starts": [(1, "lend", 1.5)]}, r"in \[0, 1\]"),
    ({"grid": (3, "lend", "lend", 3)}, "two different actions"),
    ({"grid": (3, "lend", "lent", 3)}, "two different actions"),
    ({"grid": (3, "lend", "borrow", 1)}, "K >= 2"),
    ({"grid": (4, "lend", "borrow", 3)}, "give a bin"),  # no sub-bin 4 here
])
def test_refine_refuses_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        refine_scenarios(START, 1, **({"n_banks": 10, "steps": 2} | kwargs))


def test_evaluate_takes_a_fresh_test_block_and_refuses_bad_ones(tmp_path, capsys):
    pytest.importorskip("torch")  # finsim evaluate needs the learn extra
    from finsim_mesa.cli import main

    out = tmp_path / "ev"
    assert main(["evaluate", "-q", "--model", "shipped", "--no-baselines", "--episodes", "2",
                 "--scenario", "normal", "--test-seeds", "50000", "--out", str(out)]) == 0
    import pandas as pd

    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs.seed) == [50000, 50001]
    from finsim_mesa.policies import shipped_brain

    want = evaluate_run(shipped_brain(), "normal", 50001, n_banks=30, steps=50)
    assert runs.set_index("seed").episode_reward[50001] == pytest.approx(want["episode_reward"])
    for bad in ("-5", "999999"):
        assert main(["evaluate", "-q", "--model", "shipped", "--no-baselines", "--episodes",
                     "2", "--test-seeds", bad]) == 2
        assert "test seeds from" in capsys.readouterr().err


def test_train_refine_writes_an_actor_with_its_command_and_refuses_bad_input(tmp_path, capsys):
    from finsim_mesa.cli import main
    from finsim_mesa.policies import SHIPPED as POLICY_DIR

    out = tmp_path / "r"
    args = ["train", "-q", "--refine", "1,1,2", "--init-from", str(POLICY_DIR), "--banks", "10",
            "--steps", "3", "--refine-blocks", "0", "--refine-kappa", "4"]
    assert main([*args, "--refine-sub", "1:cash_ratio:0.1:below", "--out", str(out)]) == 0
    meta = json.loads((out / "evolved" / "meta.json").read_text())
    assert meta["command"].startswith("finsim train --refine 1,1,2 --refine-kappa 4")
    before = json.loads((POLICY_DIR / "meta.json").read_text())["evolve"].get("subs", [])
    assert meta["evolve"]["subs"] == [*before, [1, "cash_ratio", 0.1, "below"]]
    assert meta["evolve"]["history"][0]["refine"]["kappa"] == 4.0
    # only bin 0 was searched; the sub-bin starts at its bin's action and was not
    # searched: above bin 0 (market_stress >= 0.2) the policy plays the shipped one's
    shipped = load_actor_folder(POLICY_DIR)
    obs = np.random.default_rng(1).uniform(0, 1, (200, 16))
    obs[:, 13] = np.random.default_rng(2).uniform(0.2, 1, 200)
    np.testing.assert_allclose(load_actor_folder(out / "evolved").act(obs), shipped.act(obs),
                               atol=1e-5)
    for extra, msg in [(["--refine", "1,1"], "SEEDS,ITERATIONS,POPULATION"),
                       (["--refine-sub", "1:cash_ratio:x:below"], "BIN:FIELD:CUT:SIDE"),
                       (["--refine-sub", "1:cash_ratio:0.1:under"], "above or below"),
                       (["--refine-kappa", "-1"], "kappa")]:
        assert main([*args, *extra, "--out", str(tmp_path / "bad")]) == 2
        assert msg in capsys.readouterr().err
    assert main(["train", "-q", "--refine", "1,1,2", "--out", str(tmp_path / "b")]) == 2
    assert "--init-from" in capsys.readouterr().err
    assert main([*args, "--refine", "1.5,1,2", "--out", str(tmp_path / "c")]) == 2
    assert "whole numbers" in capsys.readouterr().err
    out = tmp_path / "s"
    assert main([*args, "--refine-set", "3:lend=0.2:borrow=0,6:borrow=1", "--out", str(out)]) == 0
    meta = json.loads((out / "evolved" / "meta.json").read_text())
    assert "--refine-set 3:lend=0.2:borrow=0,6:borrow=1 " in meta["command"]
    assert meta["evolve"]["actions"][3][0] == 0.2 and meta["evolve"]["actions"][3][3] == 0.0
    assert meta["evolve"]["sub_actions"][0][3] == 1.0  # block 6: the first sub-bin
    for bad, msg in [("3:lend", "BLOCK:ACTION=VALUE"), ("x:lend=1", "BLOCK:ACTION=VALUE"),
                     ("3:lend=nan", "BLOCK:ACTION=VALUE"), ("3:lent=0.2", "an action of")]:
        assert main([*args, "--refine-set", bad, "--out", str(tmp_path / "bad")]) == 2
        assert msg in capsys.readouterr().err
    out = tmp_path / "g"
    assert main([*args, "--refine-grid", "3:lend,borrow:2", "--out", str(out)]) == 0
    meta = json.loads((out / "evolved" / "meta.json").read_text())
    assert "--refine-grid 3:lend,borrow:2 " in meta["command"]
    grid = meta["evolve"]["history"][1]["grid"]
    assert grid["block"] == 3 and grid["actions"] == [0, 3] and len(grid["table"]) == 4
    assert meta["evolve"]["evaluations"] == 1 * 2 * 1 + 4  # the CEM's candidates + the cells
    for bad, msg in [("3:lend:2", "BLOCK:ACTION,ACTION:K"), ("3:lend,borrow:1", "K >= 2"),
                     ("x:lend,borrow:3", "BLOCK:ACTION,ACTION:K"),
                     ("3:lend,borrow,sell:3", "BLOCK:ACTION,ACTION:K"),
                     ("3:lend,lent:3", "two different actions")]:
        assert main([*args, "--refine-grid", bad, "--out", str(tmp_path / "bad")]) == 2
        assert msg in capsys.readouterr().err
    # an actor folder without a search record: refused by --refine and --init-search alike
    plain = tmp_path / "plain"
    shutil.copytree(POLICY_DIR, plain)
    meta = json.loads((plain / "meta.json").read_text())
    del meta["evolve"]
    (plain / "meta.json").write_text(json.dumps(meta))
    searches = [["train", "-q", "--refine", "1,1,2", "--init-from", str(plain)]]
    if importlib.util.find_spec("torch") is not None:  # `finsim train` without --refine
        searches.append(["train", "-q", "--mixture", "--init-search", "1,1,2", "--episodes",
                         "0", "--init-from", str(plain)])
    for argv in searches:
        assert main([*argv, "--out", str(tmp_path / "d")]) == 2
        assert "no 'evolve' record" in capsys.readouterr().err
