"""Common random numbers in MAPPO's training (``TrainerConfig.pairing``): pairs
share the episode draw and mirror the shared noise, the pair advantage matches a
hand computation, the shared noise is each bank's Beta at the common u, and the
default training is unchanged (weights bytes recorded before the option existed)."""

import hashlib

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the learn extra (torch) is not installed")
from scipy import special, stats  # noqa: E402

from finsim_mesa.errors import ConfigError  # noqa: E402
from finsim_mesa.learning.mappo import MAPPO, MAPPOConfig  # noqa: E402
from finsim_mesa.learning.trainer import (  # noqa: E402
    Trainer,
    TrainerConfig,
    pair_advantages,
    returns_to_go,
)

TINY = {"n_banks": 6, "steps": 5}
MIX = {"scenarios": ["normal", "systemic"], "n_banks": [5, 7], "topologies": ["erdos_renyi"],
       "capital_ratio": [0.1, 0.14], "fixed": {}}


def _digest(trainer: Trainer) -> str:
    h = hashlib.sha256()
    for k, v in sorted(trainer.agent.state_dict().items()):
        h.update(k.encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


def _spied(trainer: Trainer) -> list[dict]:
    """Record each collected episode's draw, noise, first observations, actions and
    team scores; and each update's batch."""
    seen, collect, update = [], trainer.collect_episode, trainer.agent.update

    def collect_episode(draw=None, u=None):
        ep = collect(draw, u)
        seen.append({"seed": trainer.last_seed, "params": dict(trainer.last_params),
                     "u": None if u is None else np.array(u), "ep": ep,
                     "team": trainer.last_team_scores.copy(),
                     "score": trainer.last_episode_reward})
        return ep

    def spy_update(batch, ent_coef=None):
        seen.append({"batch": {k: v.copy() for k, v in batch.items()}})
        return update(batch, ent_coef)

    trainer.collect_episode, trainer.agent.update = collect_episode, spy_update
    return seen


def test_the_default_training_writes_the_same_weights_as_before_pairing_existed():
    # sha256 of the state dicts after these two trainings, computed with the code
    # of main 413d660 (before pairing, shared noise and standardize_advantages)
    a = Trainer(TINY, TrainerConfig(episodes=8, seed=3), MAPPOConfig(hidden=16))
    a.train()
    b = Trainer({"n_banks": 7, "steps": 5},
                TrainerConfig(episodes=8, seed=4, episodes_per_update=4, team_reward=1.0,
                              advantage_norm="episode", conditions=MIX, ent_start=0.0),
                MAPPOConfig(hidden=16))
    b.train()
    assert _digest(a) == "f8ae11156854179a6054b33e789dbb692101b2c2ca0d2abcf393643841face40"
    assert _digest(b) == "09dd93178a61dd8ff2a4bc5fd1bece1b3d562835d5a7915058f7d130cfff69ef"


def _paired_run(pairing: str) -> list[dict]:
    trainer = Trainer({"n_banks": 7, "steps": 5},
                      TrainerConfig(episodes=8, episodes_per_update=4, seed=5, team_reward=1.0,
                                    conditions=MIX, pairing=pairing),
                      MAPPOConfig(hidden=16))
    seen = _spied(trainer)
    trainer.train()
    return [s for s in seen if "ep" in s]


@pytest.mark.parametrize("pairing", ["antithetic", "common", "shared"])
def test_pairs_share_the_episode_draw_and_mirror_the_noise(pairing):
    eps = _paired_run(pairing)
    assert len(eps) == 8
    for a, b in zip(eps[::2], eps[1::2], strict=True):
        assert a["seed"] == b["seed"] and a["params"] == b["params"]
        # the same model before anyone acts: the draw, not only its label, is shared
        np.testing.assert_array_equal(a["ep"]["obs"][0], b["ep"]["obs"][0])
        assert not np.array_equal(a["ep"]["actions"][0], b["ep"]["actions"][0])
        if pairing == "antithetic":
            np.testing.assert_array_equal(b["u"], 1.0 - a["u"])
        elif pairing == "shared":
            assert not np.allclose(b["u"], 1.0 - a["u"]) and not np.allclose(b["u"], a["u"])
        else:
            assert a["u"] is None and b["u"] is None
    assert len({s["seed"] for s in eps}) == 4  # each pair its own draw
    if pairing != "common":
        assert len({tuple(s["u"]) for s in eps}) == 8
        assert all(((s["u"] > 0) & (s["u"] < 1)).all() for s in eps)


def test_team_scores_add_up_to_the_episode_score():
    trainer = Trainer(TINY, TrainerConfig(episodes=4, seed=2, team_reward=1.0,
                                          pairing="antithetic"), MAPPOConfig(hidden=16))
    seen = _spied(trainer)
    trainer.train()
    for s in (s for s in seen if "ep" in s):
        assert s["team"].shape == (5,)
        assert s["team"].sum() == pytest.approx(s["score"], abs=1e-12)


def test_returns_to_go_and_the_pair_advantage_by_hand():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 5.0])
    # gamma 0.5: G_a = (1 + 0.5 (2 + 0.5 3), 2 + 0.5 3, 3) = (2.75, 3.5, 3)
    np.testing.assert_allclose(returns_to_go(a, 0.5), [2.75, 3.5, 3.0])
    np.testing.assert_allclose(returns_to_go(b, 0.5), [1.75, 3.5, 5.0])
    pa, pb = pair_advantages(a, b, 0.5)
    np.testing.assert_allclose(pa, [0.5, 0.0, -1.0])
    np.testing.assert_allclose(pb, [-0.5, 0.0, 1.0])


def test_the_update_receives_the_pair_advantage_of_the_team_scores():
    gamma = 0.9
    trainer = Trainer(TINY, TrainerConfig(episodes=4, episodes_per_update=4, seed=6,
                                          team_reward=1.0, pairing="antithetic",
                                          advantage_norm="episode"),
                      MAPPOConfig(hidden=16, gamma=gamma))
    seen = _spied(trainer)
    trainer.train()
    eps = [s for s in seen if "ep" in s]
    (batch,) = [s["batch"] for s in seen if "batch" in s]
    H = 5
    disc = np.triu(gamma ** (np.arange(H)[None, :] - np.arange(H)[:, None]))  # γ^(k-t), k >= t
    row = 0
    for a, b in zip(eps[::2], eps[1::2], strict=True):
        ga, gb = disc @ a["team"], disc @ b["team"]
        for s, want in ((a, ga - (ga + gb) / 2), (b, gb - (ga + gb) / 2)):
            T, n = s["ep"]["rewards"].shape
            got = batch["advantages"][row:row + T]
            np.testing.assert_allclose(got, np.tile(want[:T, None], (1, n)), rtol=1e-6,
                                       atol=1e-7)
            row += T
    assert row == len(batch["advantages"])


def test_shared_noise_is_each_banks_beta_at_the_common_u():
    torch.manual_seed(1)
    agent = MAPPO(6, 5, MAPPOConfig(hidden=8, init_concentration=12.0))
    obs = np.random.default_rng(2).normal(size=(6, 5)).astype(np.float32)
    obs[3] = obs[0]
    u = np.array([0.1, 0.5, 0.93, 0.7])
    x, logp = agent.act(obs, u=u)
    with torch.no_grad():
        d = agent.actor.distribution(torch.as_tensor(obs))
        a, b = d.concentration1.double().numpy(), d.concentration0.double().numpy()
    np.testing.assert_array_equal(x[3], x[0])
    np.testing.assert_allclose(special.betainc(a, b, x.astype(float)),
                               np.broadcast_to(u, a.shape), atol=1e-5)
    np.testing.assert_allclose(logp, stats.beta.logpdf(x.astype(float), a, b).sum(1),
                               rtol=1e-4, atol=1e-4)
    # 1 - u: the mirrored quantile of the same Beta
    x2, _ = agent.act(obs, u=1.0 - u)
    np.testing.assert_allclose(special.betainc(a, b, x2.astype(float)),
                               np.broadcast_to(1.0 - u, a.shape), atol=1e-5)
    # deterministic ignores u: the Beta mean
    np.testing.assert_allclose(agent.act(obs, deterministic=True, u=u)[0],
                               (a / (a + b)).astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize("standardize", [True, False])
def test_standardize_advantages_off_passes_the_advantages_as_they_are(standardize):
    torch.manual_seed(0)
    agent = MAPPO(3, 4, MAPPOConfig(hidden=8, update_epochs=1, minibatches=1,
                                    standardize_advantages=standardize))
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(5, 3, 4)).astype(np.float32)
    actions, logp = zip(*(agent.act(o) for o in obs), strict=True)
    adv = rng.normal(1.0, 2.0, size=(5, 3))
    mask = np.ones((5, 3), bool)
    mask[4, 2] = False
    batch = {"obs": obs, "actions": np.stack(actions), "logp": np.stack(logp),
             "advantages": adv, "returns": rng.normal(size=(5, 3)), "alive": np.ones((5, 3), bool),
             "train_mask": mask}
    stats_ = agent.update(batch, ent_coef=0.0)
    # one step, ratio 1: the clipped surrogate is -mean(advantage) over the rows trained on
    want = 0.0 if standardize else -adv[mask].mean()
    assert stats_["policy_loss"] == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("cfg, says", [({"pairing": "mirror"}, "'mirror'"),
                                       ({"pairing": "common", "episodes_per_update": 3},
                                        "even"),
                                       ({"pairing": "antithetic", "episodes": 7}, "even")])
def test_bad_pairing_settings_are_refused(cfg, says):
    with pytest.raises(ConfigError, match=says):
        Trainer(TINY, TrainerConfig(**({"episodes": 8} | cfg)), MAPPOConfig(hidden=8))


def test_cli_pairing_flag_reaches_the_trainer_and_odd_counts_are_refused(tmp_path, capsys):
    """``finsim train --pairing shared`` trains in pairs (recorded in the model's
    metadata); an odd episode count is refused with a message naming the rule."""
    import json

    from finsim_mesa.cli import main

    out = tmp_path / "m"
    assert main(["train", "--episodes", "4", "--episodes-per-update", "4", "--pairing",
                 "shared", "--team-reward", "1", "--banks", "6", "--steps", "6", "-q",
                 "--out", str(out)]) == 0
    meta = json.loads((out / "final" / "meta.json").read_text())
    assert json.dumps(meta).count('"pairing": "shared"') == 1
    capsys.readouterr()
    assert main(["train", "--episodes", "3", "--pairing", "antithetic", "-q",
                 "--out", str(tmp_path / "odd")]) == 2
    err = capsys.readouterr().err
    assert "pairing 'antithetic'" in err and "even" in err
    assert not (tmp_path / "odd" / "final").exists()
