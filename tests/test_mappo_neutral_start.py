"""replications/mappo_neutral_start.py: the neutral band actor, the shared
exploration noise of variants 4-5 (checked against SciPy's Beta), a short run
of a shared-noise variant, and its refusal of bad flags."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the learn extra (torch) is not installed")

SCRIPT = Path(__file__).parents[1] / "replications" / "mappo_neutral_start.py"


@pytest.fixture(scope="module")
def rep():
    spec = importlib.util.spec_from_file_location("mappo_neutral_start", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_neutral_actor_plays_the_best_constant_in_every_band(rep, tmp_path):
    from finsim_mesa.agents.actor import load_actor_folder

    folder = rep.neutral_actor(tmp_path / "neutral", {"n_banks": 10, "steps": 5})
    brain = load_actor_folder(folder)
    col = brain.obs_fields.index("market_stress")
    rng = np.random.default_rng(0)
    obs = rng.uniform(0, 1, size=(40, len(brain.obs_fields)))
    obs[:, col] = np.repeat([0.05, 0.3, 0.5, 0.9], 10)  # 10 rows in each band
    acts = brain.act(obs)
    want = np.clip(rep.BEST_CONSTANT, 0.002, 0.998)  # the Beta means the actor can play
    np.testing.assert_allclose(acts, np.tile(want, (40, 1)), atol=2e-4)


@pytest.mark.slow
def test_a_short_shared_noise_run_trains_and_restores_the_methods(rep, tmp_path, monkeypatch):
    from finsim_mesa.agents.actor import load_actor_folder
    from finsim_mesa.learning import mappo, trainer

    collect = trainer.Trainer.collect_episode
    env = {"n_banks": 8, "steps": 6}
    start = rep.neutral_actor(tmp_path / "neutral", env)
    seen = []
    act = mappo.MAPPO.act

    def spy(self, obs, deterministic=False, u=None):
        if not deterministic:
            seen.append(None if u is None else u.copy())
        return act(self, obs, deterministic, u)

    monkeypatch.setattr(mappo.MAPPO, "act", spy)
    final = rep.train_variant(4, start, tmp_path / "v4", episodes=16, **env)
    assert trainer.Trainer.collect_episode is collect
    assert load_actor_folder(final).act(np.zeros((3, len(load_actor_folder(
        final).obs_fields)))).shape == (3, 4)
    # one u per episode: 16 episodes, each u held for all its steps
    assert all(u is not None for u in seen)
    distinct = {tuple(u) for u in seen}
    assert len(distinct) == 16 and len(seen) >= 16 * 2


@pytest.mark.slow
def test_variant_13_pairs_share_the_draw_but_not_the_noise(rep, tmp_path, monkeypatch):
    from finsim_mesa.learning import trainer

    env = {"n_banks": 8, "steps": 6}
    start = rep.neutral_actor(tmp_path / "neutral", env)
    seen, collect = [], trainer.Trainer.collect_episode

    def spy(self, draw=None, u=None):
        ep = collect(self, draw, u)
        seen.append((self.last_seed, np.array(u)))
        return ep

    monkeypatch.setattr(trainer.Trainer, "collect_episode", spy)
    rep.train_variant(13, start, tmp_path / "v13", episodes=16, **env)
    assert len(seen) == 16
    for (sa, ua), (sb, ub) in zip(seen[::2], seen[1::2], strict=True):
        assert sa == sb  # one episode draw per pair
        assert not np.allclose(ub, 1.0 - ua) and not np.allclose(ub, ua)
    assert len({s for s, _ in seen}) == 8 and len({tuple(u) for _, u in seen}) == 16


@pytest.mark.parametrize("args, says", [(["--variants", "14"], "--variants"),
                                        (["--variants", "a"], "--variants"),
                                        (["--episodes", "3"], "--episodes")])
def test_bad_flags_are_refused(args, says, tmp_path):
    p = subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and says in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "o").exists()


def test_band_means_put_each_row_in_its_stress_band(rep):
    from finsim_mesa.agents.brains import Brain
    from finsim_mesa.observation import OBS

    class Stress(Brain):  # plays market_stress in every action
        name = "stress"

        def act(self, obs):
            return np.repeat(obs[:, [OBS["market_stress"]]], 4, axis=1)

    got = rep.band_means(Stress(), range(3), n_banks=8, steps=12)
    assert set(got) == {*rep.SCENARIOS, "band0", "band1", "band2", "band3"}
    edges = [0.0, 0.15, 0.4, 0.65, 1.0]
    seen = 0
    for b in range(4):
        if np.isnan(got[f"band{b}"]).any():
            continue
        seen += 1
        assert np.all(got[f"band{b}"] >= edges[b]) and np.all(got[f"band{b}"] < edges[b + 1])
    assert seen >= 2  # the scenarios reach more than one band


def test_fresh_block_script_pairs_each_actor_against_the_best_constant(rep, tmp_path, capsys):
    """replications/mappo_crn_fresh_block.py: each row's figures are the paired
    differences and shares computed here from plain evaluations of the same seeds
    (the neutral actor plays the best constant up to float32 rounding: near 0)."""
    import importlib.util
    import json

    from finsim_mesa.agents.actor import load_actor_folder
    from finsim_mesa.agents.brains import ConstantBrain
    from finsim_mesa.evaluation import evaluate_run

    path = SCRIPT.parent / "mappo_crn_fresh_block.py"
    spec = importlib.util.spec_from_file_location("mappo_crn_fresh_block", path)
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    assert fresh.BEST_CONSTANT == rep.BEST_CONSTANT
    env = {"n_banks": 8, "steps": 6}
    folder = rep.neutral_actor(tmp_path / "neutral", env)
    fresh.main([str(folder), "--first", "500", "--count", "3", "--banks", "8", "--steps", "6",
                "--conditions", "systemic,normal"])
    rows = [json.loads(line.rsplit(" (", 1)[0]) for line in capsys.readouterr().out.splitlines()]
    assert [r["condition"] for r in rows] == ["systemic", "normal"]
    actor = load_actor_folder(folder)
    for r in rows:
        const = np.array([evaluate_run(ConstantBrain(rep.BEST_CONSTANT), r["condition"], s,
                                       **env)["episode_reward"] for s in range(500, 503)])
        mine = np.array([evaluate_run(actor, r["condition"], s, **env)["episode_reward"]
                         for s in range(500, 503)])
        assert r["best_constant"][0] == round(float(const.mean()), 3)
        got = r[str(folder)]
        assert got["vs_best_constant"][0] == round(float((mine - const).mean()), 3)
        assert abs(got["vs_best_constant"][0]) < 0.05
        low, mean, high = (got["vs_best_constant"][i] for i in (1, 0, 2))
        assert low <= mean <= high
        assert got["better_on"] == round(float(np.mean(mine > const)), 2)
