"""The state-reading initial search (finsim_mesa.learning.evolve): the actor it
writes plays the intended table, the search finds a known state-dependent
optimum, the exported actor reproduces the searched policy, and the
``finsim train --init-search`` path."""

import json

import numpy as np
import pytest

from finsim_mesa.agents.actor import ActorBrain, load_actor_folder
from finsim_mesa.conditions import MIXTURE, condition_params
from finsim_mesa.errors import ConfigError
from finsim_mesa.learning.evolve import (
    binned_actor,
    evolve_binned,
    save_actor,
    stratified_seeds,
    stress_cuts,
)

LEVELS = (0.0, 0.3, 0.5, 0.8)  # the stress_level of normal, asset_crash, liquidity, systemic


def _rows(rng, n, levels=LEVELS, col=13, d=16):
    """Observation rows, column ``col`` set to each level in turn; other columns noise."""
    obs = rng.normal(0.0, 2.0, (n * len(levels), d))
    obs[:, col] = np.repeat(levels, n)
    return obs, np.repeat(np.arange(len(levels)), n)


def test_cut_points_are_midpoints_of_the_scenarios_stress_levels():
    # the scenarios' YAML files: normal 0, asset_crash 0.3, liquidity_crisis 0.5, systemic 0.8
    assert stress_cuts(MIXTURE.scenarios) == pytest.approx([0.15, 0.4, 0.65])
    assert stress_cuts(["systemic", "normal"]) == pytest.approx([0.4])


def test_stratified_seeds_take_the_first_seeds_of_each_scenario():
    seeds = stratified_seeds(5000, 3)
    drawn = [condition_params(MIXTURE, s)["scenario"] for s in seeds]
    assert sorted(drawn) == sorted(list(MIXTURE.scenarios) * 3)
    # nothing skipped: every seed below the last one not taken is a 4th-or-later
    # draw of its scenario
    skipped = [s for s in range(5000, seeds[-1]) if s not in seeds]
    for s in skipped:
        sc = condition_params(MIXTURE, s)["scenario"]
        assert sum(1 for t in seeds if t < s and drawn[seeds.index(t)] == sc) == 3
    with pytest.raises(ConfigError, match="at least 1"):
        stratified_seeds(0, 0)


def test_binned_actor_plays_its_table_in_each_bin():
    rng = np.random.default_rng(3)
    table = rng.uniform(0, 1, (4, 4))
    table[0, :2], table[3, 2] = 0.0, 1.0  # the box's edges: kept at 0.002 / 0.998
    brain = ActorBrain(binned_actor(table, [0.15, 0.4, 0.65], 13, 16))
    obs, b = _rows(rng, 50)
    np.testing.assert_allclose(brain.act(obs), np.clip(table, 0.002, 0.998)[b], atol=2e-5)
    # the Beta concentration is as asked where the mean allows (alpha + beta = 20)
    a, bb = brain.distribution(obs[b == 1])
    ok = np.minimum(table[1], 1 - table[1]) * 20 > 1.05
    np.testing.assert_allclose((a + bb)[:, ok], 20.0, rtol=1e-4)
    # between the cut points only the read column matters
    moved = obs.copy()
    moved[:, 13] += 0.05
    np.testing.assert_allclose(brain.act(moved), brain.act(obs), atol=2e-5)
    with pytest.raises(ConfigError, match="increase"):
        binned_actor(table, [0.4, 0.15, 0.65], 13, 16)
    with pytest.raises(ConfigError, match="shape"):
        binned_actor(table[:3], [0.15, 0.4, 0.65], 13, 16)


def test_extra_columns_shift_the_logits_above_their_cut():
    rng = np.random.default_rng(4)
    table = rng.uniform(0.1, 0.9, (4, 4))
    shifts = np.array([[1.0, -2.0, 0.0, 3.0]])
    plain = ActorBrain(binned_actor(table, [0.15, 0.4, 0.65], 13, 16))
    brain = ActorBrain(binned_actor(table, [0.15, 0.4, 0.65], 13, 16, extras=[(0, 0.12)],
                                    shifts=shifts))
    obs, _ = _rows(rng, 30)
    low, high = obs.copy(), obs.copy()
    low[:, 0], high[:, 0] = 0.10, 0.14
    np.testing.assert_allclose(brain.act(low), plain.act(low), atol=1e-6)
    a0, b0 = plain.distribution(high)
    softplus_inv = lambda y: np.log(np.expm1(y))  # noqa: E731
    alpha = 1 + np.log1p(np.exp(softplus_inv(a0 - 1.0) + shifts[0]))
    beta = 1 + np.log1p(np.exp(softplus_inv(b0 - 1.0) - shifts[0]))
    np.testing.assert_allclose(brain.act(high), alpha / (alpha + beta), rtol=1e-4)


def test_search_finds_a_known_state_dependent_optimum():
    """A problem whose best rule is known: score = -(squared distance of the
    action from a target that depends on the stress bin). No constant can
    reach it; the search must find every bin's target."""
    rng = np.random.default_rng(0)
    target = np.array([[0.0, 0.0, 0.0, 0.1], [0.2, 0.5, 0.0, 0.3],
                       [0.1, 1.0, 0.0, 0.2], [0.0, 0.5, 0.6, 0.9]])
    obs, b = _rows(rng, 20)

    def objective(brain):
        return -float(np.mean((brain.act(obs) - target[b]) ** 2))

    res = evolve_binned([0.5] * 4, [], iterations=60, population=40, seed=1,
                        objective=objective, steps=3)
    assert res.cuts == pytest.approx([0.15, 0.4, 0.65])
    assert np.abs(res.actions - target).max() < 0.05
    best_constant = -float(np.mean((target[b] - target.mean(0)) ** 2))
    assert res.value > best_constant + 0.05


def test_exported_actor_reproduces_the_searched_policy(tmp_path):
    from finsim_mesa.learning.ship import check_scores, export_policy

    rng = np.random.default_rng(5)
    obs, _ = _rows(rng, 10)
    res = evolve_binned([0.1, 0.5, 0.1, 0.1], [30_000], iterations=1, population=2,
                        objective=lambda brain: float(brain.act(obs)[:, 1].mean()), steps=3)
    meta = save_actor(res, tmp_path / "evolved", "finsim train --mixture ...", {"steps": 3})
    saved = load_actor_folder(tmp_path / "evolved")
    np.testing.assert_array_equal(saved.act(obs), ActorBrain(res.weights).act(obs))
    assert meta["evolve"]["actions"] == res.actions.tolist()
    assert meta["check"]["scores"] == check_scores(saved, {"steps": 3})
    shipped = export_policy(tmp_path / "evolved", tmp_path / "ship", "finsim train --x")
    again = load_actor_folder(tmp_path / "ship")
    np.testing.assert_array_equal(again.act(obs), saved.act(obs))
    assert shipped["command"] == "finsim train --x" and "evolve" in shipped
    assert shipped["check"]["scores"] == meta["check"]["scores"]


def test_train_init_search_command(tmp_path, capsys):
    pytest.importorskip("torch")
    from finsim_mesa.cli import main

    out = tmp_path / "m"
    args = ["train", "--mixture", "--init-search", "1,1,2", "--init-action",
            "0.1,0.5,0.1,0.1", "--episodes", "0", "--steps", "3", "--out", str(out), "-q",
            "--init-extra", "capital_ratio:0.12"]
    assert main(args) == 0
    meta = json.loads((out / "evolved" / "meta.json").read_text())
    assert meta["command"].startswith("finsim train --mixture --init-search 1,1,2")
    assert meta["evolve"]["cuts"] == pytest.approx([0.15, 0.4, 0.65])
    assert meta["evolve"]["extras"] == [["capital_ratio", 0.12]]
    assert np.shape(meta["evolve"]["shifts"]) == (1, 4)
    assert "--init-extra capital_ratio:0.12" in meta["command"]
    assert "--hidden" not in meta["command"]  # the default is left out
    assert len(meta["evolve"]["seeds"]) == 4 and min(meta["evolve"]["seeds"]) >= 1_000_000
    assert '"search_score"' in capsys.readouterr().out
    # continue it: the start is the first search's table, so it scores no worse
    out2 = tmp_path / "m2"
    assert main([*args[:-5], "--out", str(out2), "-q", "--init-extra", "capital_ratio:0.12",
                 "--init-from", str(out / "evolved"), "--seed", "1"]) == 0
    meta2 = json.loads((out2 / "evolved" / "meta.json").read_text())
    assert f"--init-from {out / 'evolved'}" in meta2["command"]
    assert meta2["evolve"]["value"] >= meta["evolve"]["value"]
    capsys.readouterr()
    no_mixture = [a for a in args if a != "--mixture"]
    for argv, msg in ((no_mixture, "add --mixture"),
                      ([*args, "--normalize-obs"], "normalize-obs"),
                      ([*args, "--init-search", "8,10"], "SWEEPS"),
                      ([*args, "--init-search", "a"], "comma-separated"),
                      ([*args, "--init-search", "inf,6,12"], "whole numbers"),
                      ([*args, "--init-search", "nan,6,12"], "whole numbers"),
                      ([*args, "--init-search", "1.9,2,3"], "whole numbers"),
                      ([*args, "--init-action", "nan,0.5,0.1,0.1"], "in [0, 1]"),
                      ([*args, "--init-action", "0.1,1.5,0.1,0.1"], "in [0, 1]"),
                      ([*args, "--init-extra", "capital_ratio:nan"], "finite"),
                      ([*args, "--init-cuts", "0.1,inf"], "finite"),
                      ([*args, "--init-cuts", "0.1,0.15"], "apart"),
                      ([*args, "--out", str(out / "evolved" / "meta.json")], "cannot create")):
        assert main(argv) == 2
        assert msg in capsys.readouterr().err


def test_mappo_fine_tuning_starts_from_the_searched_actor(tmp_path):
    torch = pytest.importorskip("torch")
    from finsim_mesa.learning.run import _start_from_actor
    from finsim_mesa.learning.trainer import Trainer, TrainerConfig

    rng = np.random.default_rng(2)
    res = evolve_binned([0.1, 0.5, 0.1, 0.1], [], iterations=1, population=2,
                        objective=lambda brain: 0.0, steps=3)
    res.actions = rng.uniform(0.1, 0.9, (4, 4))
    res.weights = binned_actor(res.actions, res.cuts, res.obs_fields.index("market_stress"),
                               len(res.obs_fields))
    save_actor(res, tmp_path / "evolved", "finsim train", {"steps": 3})
    trainer = Trainer({"n_banks": 10, "steps": 3}, TrainerConfig(episodes=1))
    _start_from_actor(trainer, tmp_path / "evolved")
    obs, b = _rows(rng, 5, col=res.obs_fields.index("market_stress"))
    with torch.no_grad():
        mean = trainer.agent.actor.distribution(torch.as_tensor(obs, dtype=torch.float32)).mean
    np.testing.assert_allclose(mean.numpy(), res.actions[b], atol=1e-4)


def test_a_run_that_never_sees_a_bin_does_not_depend_on_its_actions():
    """The premise of the block search's reuse of scores: a seed whose run never
    observes the read column in bin k scores the same whatever bin k plays."""
    from finsim_mesa.evaluation import evaluate_run
    from finsim_mesa.learning.evolve import _obs_fields, _Recorder

    names = _obs_fields({"steps": 8})
    j = names.index("market_stress")
    seed = next(s for s in range(40_000, 40_100)
                if condition_params(MIXTURE, s)["scenario"] == "normal")
    table = np.full((4, 4), 0.3)
    scores, seen = [], []
    for calm_lend, crisis in ((0.3, 0.0), (0.3, 0.9), (0.8, 0.9)):
        table[0, 0], table[3] = calm_lend, crisis
        rec = _Recorder(binned_actor(table, [0.15, 0.4, 0.65], j, len(names)), names, j,
                        [0.15, 0.4, 0.65], 0.05)
        scores.append(evaluate_run(rec, "mixture", seed, steps=8)["episode_reward"])
        seen.append(rec.seen)
    assert seen[0] == seen[1] and 3 not in seen[0] and 0 in seen[0]
    assert scores[0] == scores[1]  # bin 3 (systemic stress) never seen: no effect
    assert scores[2] != scores[0]  # bin 0 is what this run reads


def test_a_search_continues_from_the_actor_it_wrote(tmp_path):
    """--init-from: the saved table (actions and extra shifts) is the start, so
    when the start is the optimum the search keeps it exactly."""
    rng = np.random.default_rng(6)
    obs, _ = _rows(rng, 10)
    obs[:, 0] = rng.uniform(0.08, 0.16, len(obs))
    res = evolve_binned([0.1, 0.5, 0.1, 0.1], [], iterations=1, population=2,
                        objective=lambda brain: 0.0, steps=3, extras=[("capital_ratio", 0.12)])
    res.actions = rng.uniform(0.1, 0.9, (4, 4))
    res.shifts = np.array([[1.0, -1.0, 2.0, 0.0]])
    names = res.obs_fields
    res.weights = binned_actor(res.actions, res.cuts, names.index("market_stress"), len(names),
                               extras=[(names.index("capital_ratio"), 0.12)], shifts=res.shifts)
    meta = save_actor(res, tmp_path / "evolved", "finsim train", {"steps": 3})
    goal = ActorBrain(res.weights).act(obs)

    def objective(brain):
        return -float(np.abs(brain.act(obs) - goal).max())

    again = evolve_binned([0.5] * 4, [], iterations=2, population=4, objective=objective,
                          steps=3, extras=[("capital_ratio", 0.12)], start=meta["evolve"])
    np.testing.assert_allclose(again.actions, res.actions, atol=1e-12)
    np.testing.assert_allclose(again.shifts, res.shifts, atol=1e-9)
    assert again.value > -1e-5
    with pytest.raises(ConfigError, match="other cut points"):
        evolve_binned([0.5] * 4, [], iterations=1, population=2, objective=objective, steps=3,
                      start=meta["evolve"])
    # a saved search with another number of cut points, or a damaged table: clear errors
    with pytest.raises(ConfigError, match="other cut points"):
        evolve_binned([0.5] * 4, [], iterations=1, population=2, objective=objective, steps=3,
                      cuts=[0.15, 0.4], extras=[("capital_ratio", 0.12)], start=meta["evolve"])
    bad = dict(meta["evolve"], actions=meta["evolve"]["actions"][:3])
    with pytest.raises(ConfigError, match="actions"):
        evolve_binned([0.5] * 4, [], iterations=1, population=2, objective=objective, steps=3,
                      extras=[("capital_ratio", 0.12)], start=bad)
    # the folder was replaced as a whole: no half-written sibling left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evolved"]
    assert sorted(p.name for p in (tmp_path / "evolved").iterdir()) == [
        "meta.json", "weights.safetensors"]


def test_the_recorder_notes_every_bin_within_its_margin():
    from finsim_mesa.learning.evolve import _Recorder

    names = [f"c{i}" for i in range(16)]
    cuts = [0.1, 0.2, 0.5]
    rec = _Recorder(binned_actor(np.full((4, 4), 0.5), cuts, 0, 16), names, 0, cuts, 0.05)
    obs = np.zeros((3, 16))
    obs[:, 0] = [0.15, 0.35, 0.9]  # mid-band 1 (its margin reaches both cuts), 2, deep in 3
    rec.act(obs[:1])
    assert {0, 1} <= rec.seen <= {0, 1, 2}  # its own band 1 always, with the neighbours
    rec.seen.clear()
    rec.act(obs[1:])
    assert rec.seen == {2, 3}
    with pytest.raises(ConfigError, match="apart"):
        evolve_binned([0.5] * 4, [], cuts=[0.1, 0.15], iterations=1, population=2,
                      objective=lambda brain: 0.0, steps=3)
