"""Learning: environment, MAPPO pieces, checkpoints, PolicyBrain, convergence.
Needs the `learn` extra (torch); skips, saying so, where it is not installed."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the learn extra (torch) is not installed "
                                            "(the Python 3.12 CI leg runs without it)")
pytest.importorskip("pettingzoo", reason="the learn extra (pettingzoo) is not installed")

from pettingzoo.test import parallel_api_test  # noqa: E402
from scipy import stats  # noqa: E402

from finsim_mesa import FinancialModel  # noqa: E402
from finsim_mesa.config import ModelConfig  # noqa: E402
from finsim_mesa.learning.checkpoint import CheckpointError, ModelCheckpointer  # noqa: E402
from finsim_mesa.learning.env import FinancialEnv  # noqa: E402
from finsim_mesa.learning.mappo import (  # noqa: E402
    MAPPO,
    Actor,
    GlobalStateCompressor,
    GlobalStateConfig,
    MAPPOConfig,
    NumericalStabilityGuard,
    StabilityConfig,
)
from finsim_mesa.learning.policy_brain import PolicyBrain  # noqa: E402
from finsim_mesa.learning.trainer import Trainer, TrainerConfig, gae  # noqa: E402


@pytest.mark.parametrize("params", [{"n_banks": 8, "scenario": "systemic"},
                                    {"n_banks": 8, "n_exchanges": 1, "n_ccps": 1}])
def test_parallel_api(params):
    env = FinancialEnv(steps=25, **params)
    parallel_api_test(env, num_cycles=100)
    env.reset(seed=1)
    assert env.state().shape == (8 * env.obs_dim,)
    assert env.obs_dim == (24 if "n_exchanges" in params else 16)


def test_env_rewards_are_the_models_and_defaults_terminate():
    env = FinancialEnv(n_banks=10, steps=20, scenario="normal")
    env.reset(seed=3)
    env.model.apply_shock("default", banks=[4])
    acts = {a: np.full(4, 0.5, dtype=np.float32) for a in env.agents}
    _, rew, term, trunc, _ = env.step(acts)
    assert term["bank_4"] and "bank_4" not in env.agents
    assert rew["bank_0"] == pytest.approx(env.model.reward.per_bank[0])
    for _ in range(30):
        if not env.agents:
            break
        _, _, term, trunc, _ = env.step({a: np.zeros(4, np.float32) for a in env.agents})
    assert not env.agents and any(trunc.values())


def test_gae_against_hand_computation():
    r = np.array([[1.0], [0.0], [2.0]])
    v = np.array([[0.5], [0.2], [0.1]])
    d = np.array([[0.0], [0.0], [1.0]])
    adv, ret = gae(r, v, d, np.array([9.9]), gamma=0.9, lam=0.8)
    d2 = 2.0 - 0.1                       # terminal: no bootstrap
    d1 = 0.0 + 0.9 * 0.1 - 0.2
    d0 = 1.0 + 0.9 * 0.2 - 0.5
    a2, a1 = d2, d1 + 0.9 * 0.8 * d2
    a0 = d0 + 0.9 * 0.8 * a1
    np.testing.assert_allclose(adv[:, 0], [a0, a1, a2])
    np.testing.assert_allclose(ret, adv + v)


def test_beta_policy_log_probability_is_exact():
    actor = Actor(16)
    obs = torch.randn(5, 16)
    dist = actor.distribution(obs)
    a = dist.sample()
    ours = dist.log_prob(a).detach().numpy()
    ref = stats.beta.logpdf(a.numpy(), dist.concentration1.detach().numpy(),
                            dist.concentration0.detach().numpy())
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    assert (dist.concentration1 > 1).all() and (dist.concentration0 > 1).all()


@pytest.mark.parametrize("normalize", [False, True])
def test_acting_sample_is_torch_betas_sample_and_log_probability(normalize):
    actor = Actor(16, init_action_mean=[0.1, 0.5, 0.7, 0.2], normalize_obs=normalize)
    if normalize:
        actor.update_obs_stats(np.random.default_rng(1).normal(2, 3, (50, 16)))
    obs = torch.randn(200, 16) * 3
    for deterministic in (False, True):
        torch.manual_seed(7)
        a, logp = actor.sample(obs, deterministic)
        torch.manual_seed(7)  # the reference: torch's own Beta, the same draws
        dist = actor.distribution(obs)
        ref = (dist.mean if deterministic else dist.sample()).clamp(1e-6, 1 - 1e-6)
        assert torch.equal(a, ref) and torch.equal(logp, dist.log_prob(ref).sum(-1))
        np.testing.assert_allclose(  # and an independent one for the density
            logp.numpy(), stats.beta.logpdf(a.numpy(), dist.concentration1.detach().numpy(),
                                            dist.concentration0.detach().numpy()).sum(-1),
            rtol=1e-4, atol=1e-4)


def test_env_steps_on_the_observations_it_handed_out():
    """The model takes the matrix the environment gave the trainer as the step's
    observations instead of observing again: the same trajectory, bit for bit,
    as a model that observes itself, and what it records is what the agent saw."""
    runs = []
    for given in (True, False):
        env = FinancialEnv(n_banks=12, steps=15, scenario="liquidity_crisis")
        env.reset(seed=4)
        rng, seen, recorded = np.random.default_rng(0), [], []
        for _ in range(15):
            seen.append(env.observation_matrix())
            if not given:
                env.brain.observed = None  # the model observes on its own
            _, _, _, done = env.step_array(rng.random((12, 4)))
            recorded.append(np.array(env.model.decisions.observations))
            if done:
                break
        runs.append((env.model.datacollector.get_model_vars_dataframe(), seen, recorded))
    (data, seen, recorded), (data2, _, observed) = runs
    assert data.equals(data2) and len(seen) == 15
    for s, r, o in zip(seen, recorded, observed, strict=True):
        np.testing.assert_array_equal(r, s)  # the step recorded what the agent saw
        assert o.shape == s.shape and o.dtype == np.float64  # its own, after the shock


def test_only_the_environment_hands_the_model_its_observations_and_only_once():
    """The model takes a given matrix only from the environment's own brain, once
    (the step it was handed out for), and only of its size: a user's brain that
    keeps what it saw as ``observed`` acts on fresh observations; stepping the
    environment's model directly, or a model of another size, observes itself."""

    class Keeper:  # a user's brain keeping what it saw, under a natural name
        name = "keeper"

        def __init__(self):
            self.observed, self.seen = None, []

        def act(self, observations):
            self.observed = observations
            self.seen.append(observations.copy())
            return np.clip(observations[:, :4], 0.0, 1.0)

    class Writer(Keeper):  # the same brain keeping it under another name
        def act(self, observations):
            self.last = observations
            self.seen.append(observations.copy())
            return np.clip(observations[:, :4], 0.0, 1.0)

    runs = []
    for brain in (Keeper(), Writer()):
        m = FinancialModel(n_banks=10, rng=1, scenario="liquidity_crisis", brain=brain)
        m.run_for(5)
        runs.append((m.ledger.equity.copy(), brain.seen))
    (eq, seen), (eq2, seen2) = runs
    np.testing.assert_array_equal(eq, eq2)  # the attribute's name changes nothing
    for a, b in zip(seen, seen2, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(seen[0], seen[1])  # a fresh matrix each step
    env = FinancialEnv(n_banks=8, steps=20, scenario="liquidity_crisis")
    env.reset(seed=2)
    env.brain.actions = np.full((8, 4), 0.3)
    env.model.step()  # the matrix handed out at reset is this step's
    first = np.array(env.model.decisions.observations)
    env.model.step()  # nothing handed out since: the model observes itself
    assert not np.array_equal(first, env.model.decisions.observations)
    assert env.model.decisions.observations.dtype == np.float64  # its own, not handed
    env.observation_matrix()
    other = FinancialModel(n_banks=12, rng=3, brain=env.brain)  # another size
    env.brain.actions = np.full((12, 4), 0.3)
    other.step()
    assert other.decisions.observations.shape[0] == 12


def test_trainer_models_skip_the_step_snapshot_and_nothing_else():
    tr = Trainer({"n_banks": 8, "steps": 6}, TrainerConfig(episodes=1, seed=0))
    ep = tr.collect_episode()
    assert tr.env.model.atomic_steps is False  # the trainer's throwaway models
    env = FinancialEnv(n_banks=8, steps=6)  # the environment's default: all or nothing
    env.reset(seed=tr.last_seed, options={"model_params": tr.last_params})
    assert env.model.atomic_steps is True
    torch.manual_seed(0)
    tr2 = Trainer({"n_banks": 8, "steps": 6}, TrainerConfig(episodes=1, seed=0))
    tr2.env.atomic_steps = True
    torch.manual_seed(0)
    tr3 = Trainer({"n_banks": 8, "steps": 6}, TrainerConfig(episodes=1, seed=0))
    torch.manual_seed(1)
    a = tr2.collect_episode()
    torch.manual_seed(1)
    b = tr3.collect_episode()
    assert all(np.array_equal(a[k], b[k]) for k in a)  # the same episode either way
    assert set(ep) == set(a)
    # what the snapshot buys: a failing step is rolled back only when atomic
    for atomic in (True, False):
        env.atomic_steps = atomic
        env.reset(seed=1)
        prices = env.model.ledger.prices.copy()
        env.brain.actions = None  # the brain fails in stage 3, after the price move
        with pytest.raises(RuntimeError, match="has not set"):
            env.model.step()
        assert np.array_equal(env.model.ledger.prices, prices) == atomic
        assert env.model.t == (0 if atomic else 1)


def test_env_models_collect_no_bank_rows_unless_asked():
    env = FinancialEnv(n_banks=6, steps=5)
    env.reset(seed=1)
    env.step_array(np.full((6, 4), 0.2))
    assert not env.model.datacollector.agent_reporters  # Mesa: no bank rows at all
    assert len(env.model.datacollector.get_model_vars_dataframe()) == 2  # model rows: yes
    env = FinancialEnv(n_banks=6, steps=5, agent_collect_every=1)
    env.reset(seed=1)
    env.step_array(np.full((6, 4), 0.2))
    assert len(env.model.datacollector.get_agent_vars_dataframe()) == 12
    env = FinancialEnv(config=ModelConfig(n_banks=6, steps=5, agent_collect_every=1))
    env.reset(seed=1)  # a configuration that asks for them gets them too
    env.step_array(np.full((6, 4), 0.2))
    assert len(env.model.datacollector.get_agent_vars_dataframe()) == 12


def test_attention_compressor_does_not_grow_with_banks():
    comp = GlobalStateCompressor(10, 16, GlobalStateConfig(compressed_dim=64))
    for n in (5, 10, 300):
        g, e = comp(torch.randn(2, n, 16))
        assert g.shape == (2, 64) and e.shape == (2, n, 64)
    n_params = sum(p.numel() for p in comp.parameters())
    concat = GlobalStateCompressor(300, 16, GlobalStateConfig(use_attention=False))
    assert sum(p.numel() for p in concat.parameters()) > 10 * n_params
    # masking dead banks: their features do not change the summary
    x = torch.randn(1, 6, 16)
    alive = torch.tensor([[True] * 5 + [False]])
    y = x.clone()
    y[0, 5] = 100.0
    torch.testing.assert_close(comp(x, alive)[0], comp(y, alive)[0])


def test_stability_guard():
    g = NumericalStabilityGuard(StabilityConfig(max_grad_norm=1.0, obs_clip=5.0,
                                                reward_clip=2.0))
    assert g.clip_observations(np.array([10.0, -10.0])).tolist() == [5.0, -5.0]
    assert g.clip_rewards(np.array([3.0])).tolist() == [2.0]
    with pytest.raises(FloatingPointError, match="observation"):
        g.clip_observations(np.array([np.nan]))
    with pytest.raises(FloatingPointError, match="loss is not finite"):
        g.check_loss(torch.tensor(float("nan")))
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), float("inf"))
    with pytest.raises(FloatingPointError, match="gradient"):
        g.clip_gradients([p])


@pytest.mark.slow
def test_trainer_converges_to_the_known_best_action():
    """Reward = liquidity only (cash / total assets): the best action is known —
    don't lend (0), call loans in (hoard 1), sell securities (1), borrow (1)."""
    params = dict(n_banks=5, steps=10, scenario="normal", reward_profit_weight=0.0,
                  reward_liquidity_weight=1.0, reward_default_penalty=0.0,
                  reward_system_risk_weight=0.0)
    tr = Trainer(params, TrainerConfig(episodes=300, episodes_per_update=4,
                                       curriculum=["normal"], ent_start=0.0, ent_end=0.0,
                                       seed=1),
                 MAPPOConfig(lr=3e-3, update_epochs=8, minibatches=2))
    tr.train()
    tr.env.reset(seed=5)
    a, _ = tr.agent.act(tr.env.observation_matrix(), deterministic=True)
    lend, hoard, sell, borrow = a.mean(axis=0)
    assert lend < 0.25 and sell > 0.8 and hoard > 0.6 and borrow > 0.6
    early = np.mean([h["reward"] for h in tr.history[:40]])
    late = np.mean([h["reward"] for h in tr.history[-40:]])
    assert late > early


def test_curriculum_freezing_and_entropy_schedule():
    tr = Trainer({"n_banks": 6, "steps": 5},
                 TrainerConfig(episodes=12, episodes_per_update=2,
                               curriculum=["normal", "asset_crash", "systemic"],
                               max_episodes_per_stage=4, freeze_fraction=0.5,
                               freeze_interval=4, ent_start=0.02, ent_end=0.0, seed=2))
    logs = []
    tr.train(callback=logs.append)
    scenarios = [h["scenario"] for h in tr.history]
    assert scenarios[:4] == ["normal"] * 4 and scenarios[4:8] == ["asset_crash"] * 4
    assert scenarios[8:] == ["systemic"] * 4
    assert tr.frozen_mask.sum() == 3
    assert logs[0]["entropy_coef"] > logs[-1]["entropy_coef"] >= 0.0


def test_checkpoint_round_trip_and_policy_brain(tmp_path):
    agent = MAPPO(6, 16, MAPPOConfig(hidden=32))
    ck = ModelCheckpointer(tmp_path)
    meta = {"obs_dim": 16, "mappo": agent.config.to_dict(), "env": {"n_banks": 6}}
    v1 = ck.save_checkpoint("demo", agent.state_dict(), meta, metric=1.0)
    v2 = ck.save_checkpoint("demo", agent.state_dict(), meta, metric=0.5)
    assert (v1, v2) == ("v1", "v2")
    _, m_best = ck.load_checkpoint("demo", "best")
    _, m_latest = ck.load_checkpoint("demo", "latest")
    assert m_best["version"] == "v1" and m_latest["version"] == "v2"
    assert {c["version"] for c in ck.list_checkpoints("demo")} == {"v1", "v2"}
    weights, _ = ck.load_checkpoint("demo", "v1")
    other = MAPPO(6, 16, MAPPOConfig(hidden=32))
    other.load_state_dict(weights)
    obs = np.random.default_rng(0).normal(size=(6, 16)).astype(np.float32)
    np.testing.assert_allclose(other.act(obs, True)[0], agent.act(obs, True)[0])
    brain = PolicyBrain.load(tmp_path / "demo")
    m = FinancialModel(n_banks=6, brain=brain, rng=1)
    m.run_for(5)
    m.check()
    live = m.ledger.active
    np.testing.assert_allclose(m.decisions.actions[live],
                               agent.act(m.decisions.observations[live], True)[0], atol=1e-6)
    with pytest.raises(CheckpointError, match="observation columns"):
        FinancialModel(n_banks=6, n_exchanges=1, brain=brain, rng=1)


def test_bad_checkpoints_are_clear_errors(tmp_path):
    agent = MAPPO(4, 16, MAPPOConfig(hidden=16))
    ck = ModelCheckpointer(tmp_path)
    meta = {"obs_dim": 16, "mappo": agent.config.to_dict()}
    ck.save_checkpoint("m", agent.state_dict(), meta)
    folder = tmp_path / "m" / "v1"
    with pytest.raises(CheckpointError, match="no version"):
        ck.load_checkpoint("m", "v7")
    with pytest.raises(CheckpointError, match="no checkpoints"):
        ck.load_checkpoint("nothing")
    data = (folder / "weights.safetensors").read_bytes()
    (folder / "weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        PolicyBrain.load(folder)
    (folder / "weights.safetensors").write_bytes(data)
    meta_json = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps(meta_json | {"format_version": 99}))
    with pytest.raises(CheckpointError, match="format 99"):
        PolicyBrain.load(folder)
    (folder / "meta.json").write_text(json.dumps(meta_json | {"obs_dim": 24}))
    with pytest.raises(CheckpointError, match="do not fit"):
        PolicyBrain.load(folder)
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupted"):
        PolicyBrain.load(folder)
    (folder / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        PolicyBrain.load(folder)


def test_logging_and_monitor(tmp_path):
    from finsim_mesa.learning.logging import EnvironmentLogger, SystemMonitor, TrainingLogger

    lg = TrainingLogger(tmp_path, tensorboard=False)
    lg.log({"episode": 4, "reward": 1.5, "default_rate": 0.1})
    lg.log({"episode": 8, "reward": 2.0, "default_rate": 0.6, "eval_reward": 1.0})
    import pandas as pd

    table = pd.read_csv(tmp_path / "training.csv")  # a later key does not break the CSV
    assert list(table.columns) == ["episode", "reward", "default_rate", "eval_reward"]
    assert len(table) == 2 and table.eval_reward.isna().tolist() == [True, False]
    assert len((tmp_path / "training.jsonl").read_text().splitlines()) == 2
    mon = SystemMonitor(alert_thresholds={"default_rate": 0.5})
    assert mon.check(lg.records[0]) == []
    alerts = mon.check(lg.records[1])
    assert alerts == [{"episode": 8, "metric": "default_rate", "value": 0.6,
                       "threshold": 0.5}]
    env_log = EnvironmentLogger(tmp_path, every_episodes=2)
    m = FinancialModel(n_banks=5, rng=1)
    m.step()
    assert env_log.wants(4) and not env_log.wants(3)
    env_log.record(m, 4)
    assert "systemic_risk_index" in (tmp_path / "env_trace.csv").read_text()


def test_train_and_evaluate_commands(tmp_path, capsys):
    from finsim_mesa.cli import main

    out = tmp_path / "models"
    assert main(["train", "--episodes", "8", "--eval-every", "4", "--banks", "6", "--steps",
                 "6", "--out", str(out), "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 8 and summary["agent_steps_per_second"] > 0
    for name in ("final", "best"):
        assert (out / name / "weights.safetensors").exists()
    assert (out / "logs" / "training.csv").exists()
    brain = PolicyBrain.load(out / "final")
    # the defaults are the settings that trained the reported policy (README)
    assert brain.meta["trainer"]["curriculum"] == ["systemic"]
    assert brain.meta["trainer"]["team_reward"] == 0.5
    assert brain.meta["trainer"]["episodes_per_update"] == 8
    assert brain.meta["mappo"]["gamma"] == 0.95
    assert brain.meta["mappo"]["init_action_mean"] == [0.05, 0.5, 0.5, 0.05]
    assert main(["train", "--episodes", "4", "--banks", "6", "--steps", "6", "--out",
                 str(out), "--resume", str(out / "final"), "-q"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--models", str(out), "--model", "best", "--episodes", "3",
                 "-q", "--out", str(tmp_path / "ev")]) == 0
    text = capsys.readouterr().out
    assert "policy" in text and "passive" in text and "non-overlapping" in text
    assert "policy default rate" in text and "paired by seed" in text
    assert (tmp_path / "ev" / "table.csv").exists()
    assert main(["evaluate", "--models", str(out), "--model", "best", "--episodes", "3",
                 "-q", "--workers", "2"]) == 0  # the PolicyBrain in forked workers
    assert capsys.readouterr().out.strip() == text.split("runs.csv, table.csv")[0].strip()
    assert main(["evaluate", "--models", str(out), "--episodes", "3", "-q",
                 "--workers", "0"]) == 2
    assert "workers" in capsys.readouterr().err
    assert main(["evaluate", "--models", str(tmp_path / "nowhere"), "-q"]) == 2
    assert main(["train", "--episodes", "0", "-q"]) == 2
    assert main(["train", "--scenario", "moon", "-q"]) == 2
    for flags in (["--team-reward", "1.5"], ["--gamma", "0"], ["--init-action", "0.5,2"],
                  ["--init-action", "a,b,c,d"], ["--episodes-per-update", "0"],
                  ["--ent-start", "-1"]):
        assert main(["train", "--episodes", "2", "-q", *flags]) == 2, flags
        assert flags[0] in capsys.readouterr().err


def test_train_command_settings_reach_the_trainer(tmp_path, capsys):
    from finsim_mesa.cli import main

    out = tmp_path / "m"
    assert main(["train", "--episodes", "2", "--episodes-per-update", "2", "--banks", "5",
                 "--steps", "4", "--scenario", "normal", "--team-reward", "0.2",
                 "--init-action", "0.3", "--gamma", "0.9", "--lr", "0.001", "--hidden", "16",
                 "--ent-start", "0.02", "--eval-seeds", "2", "--normalize-obs", "--out",
                 str(out), "-q"]) == 0
    meta = PolicyBrain.load(out / "final").meta
    assert meta["trainer"]["team_reward"] == 0.2 and meta["trainer"]["ent_start"] == 0.02
    assert meta["trainer"]["curriculum"] == ["normal"]
    assert meta["mappo"]["init_action_mean"] == 0.3 and meta["mappo"]["hidden"] == 16
    assert meta["mappo"]["gamma"] == 0.9 and meta["mappo"]["lr"] == 0.001
    assert meta["mappo"]["normalize_obs"] is True
    brain = PolicyBrain.load(out / "final")
    np.testing.assert_allclose(brain.act(np.zeros((1, 16), np.float32)), 0.3, atol=0.05)


def test_initial_action_mean_and_its_checkpoint_round_trip(tmp_path):
    agent = MAPPO(5, 16, MAPPOConfig(init_action_mean=0.15))
    mean = agent.actor.distribution(torch.zeros(4, 16)).mean
    torch.testing.assert_close(mean, torch.full((4, 4), 0.15))
    ck = ModelCheckpointer(tmp_path)
    ck.save_checkpoint("m", agent.state_dict(),
                       {"obs_dim": 16, "mappo": agent.config.to_dict()})
    brain = PolicyBrain.load(tmp_path / "m")
    np.testing.assert_allclose(brain.act(np.zeros((2, 16), np.float32)), 0.15, atol=1e-6)


@pytest.mark.parametrize("init", [[0.05, 0.5, 0.8, 0.02], 0.9])
def test_initial_action_mean_per_action(init):
    # one mean per action (lend, hoard, sell, borrow), above and below 0.5; the
    # Beta mean is a / (a + b), computed here from the distribution's parameters
    agent = MAPPO(3, 16, MAPPOConfig(init_action_mean=init))
    dist = agent.actor.distribution(torch.zeros(2, 16))
    a, b = dist.concentration1, dist.concentration0
    assert bool((a > 1).all() and (b > 1).all())  # unimodal everywhere
    expected = torch.as_tensor(np.broadcast_to(init, (4,)), dtype=torch.float32).expand(2, 4)
    torch.testing.assert_close(a / (a + b), expected, atol=1e-4, rtol=0)


class _Replay:
    """Plays recorded actions, row t at step t (for the banks still active)."""

    def __init__(self, actions):
        self.actions, self.t = actions, 0

    def act(self, obs):
        out = self.actions[self.t][self.active]
        self.t += 1
        return out

    def setup(self, model):
        self.model = model

    @property
    def active(self):
        return self.model.ledger.active


def test_fixed_horizon_rewards_team_share_and_logged_score():
    """The learner's rewards and the logged score, recomputed by replaying the
    episode's actions in a plain model: own reward (clipped), minus the
    discounted default penalty of every remaining step for a bank that defaults;
    the team share is the mean step score (defaulted banks -alpha each step);
    the logged episode reward is the fixed-horizon score."""
    params = {"n_banks": 8, "steps": 24, "scenario": "systemic"}
    eps = {}
    for team in (0.0, 1.0, 0.5):
        tr = Trainer(params, TrainerConfig(episodes=1, curriculum=["systemic"], seed=3,
                                           team_reward=team))
        eps[team] = tr.collect_episode()
        eps[team]["logged"] = tr.last_episode_reward
        gamma, seed = tr.agent.config.gamma, tr.last_seed
    assert eps[0.0]["rewards"].shape[0] == 24  # a collapse does not cut the episode short
    np.testing.assert_array_equal(eps[1.0]["actions"], eps[0.0]["actions"])
    replay = FinancialModel(n_banks=8, steps=24, scenario="systemic", collapse_threshold=1.0,
                            brain=_Replay(eps[0.0]["actions"]), rng=seed)
    alpha = replay.config.reward_default_penalty
    own, team, total, was = [], [], 0.0, np.zeros(8, bool)
    for t in range(1, 25):
        replay.step()
        L = replay.ledger
        r = np.clip(replay.reward.per_bank, -10, 10)
        newly = L.defaulted & ~was
        lump = newly * alpha * gamma * (1 - gamma ** (24 - t)) / (1 - gamma)
        s = np.where(was, -alpha, replay.reward.per_bank)
        own.append(r - lump)
        team.append(np.full(8, s.mean()) - lump)
        total += s.mean()
        was = L.defaulted.copy()
    assert was.sum() >= 2  # the scenario's defaults happened: the lump was tested
    np.testing.assert_allclose(eps[0.0]["rewards"], own, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(eps[1.0]["rewards"], team, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(eps[0.5]["rewards"],
                               0.5 * np.array(own) + 0.5 * np.array(team), rtol=1e-5, atol=1e-6)
    assert eps[1.0]["logged"] == pytest.approx(total) == eps[0.0]["logged"]


def test_observation_normalisation_statistics_and_checkpoint(tmp_path):
    from finsim_mesa.learning.mappo import Actor

    rng = np.random.default_rng(0)
    x = rng.normal([1.0, -2.0, 0.5], [0.1, 3.0, 0.01], size=(500, 3))
    a = Actor(3, 8, normalize_obs=True)
    for chunk in np.array_split(x, 7):  # batch by batch = all at once (numpy's reference)
        a.update_obs_stats(chunk)
    np.testing.assert_allclose(a.obs_mean.numpy(), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(a.obs_var.numpy(), x.var(0), rtol=1e-4)
    z = a.normalize(torch.as_tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-3)
    assert Actor(3, 8).normalize(torch.ones(2, 3)).eq(1).all()  # off: unchanged

    # the trainer folds each trained batch in; the statistics travel in the checkpoint
    def make() -> Trainer:
        return Trainer({"n_banks": 5, "steps": 4},
                       TrainerConfig(episodes=2, episodes_per_update=2,
                                     curriculum=["normal"], seed=1),
                       MAPPOConfig(normalize_obs=True))

    twin = make()  # the same seed and policy collect the same two episodes
    alive = sum(int(twin.collect_episode()["alive"].sum()) for _ in range(2))
    tr = make()
    tr.train()
    assert 0 < alive == float(tr.agent.actor.obs_count)  # every alive bank-step
    ck = ModelCheckpointer(tmp_path)
    ck.save_checkpoint("n", tr.agent.state_dict(),
                       {"obs_dim": 16, "mappo": tr.agent.config.to_dict()})
    brain = PolicyBrain.load(tmp_path / "n")
    obs = tr.env.observation_matrix().astype(np.float32)
    mine, _ = tr.agent.act(obs, deterministic=True)
    np.testing.assert_allclose(brain.act(obs), mine, atol=1e-6)


def test_model_registry_versions_promote_delete_load(tmp_path):
    from finsim_mesa.learning.registry import ModelRegistry

    reg = ModelRegistry(tmp_path / "reg")
    assert reg.models() == [] and reg.versions().empty
    agents = [MAPPO(4, 16, MAPPOConfig(hidden=16, init_action_mean=m)) for m in (0.2, 0.5, 0.8)]
    meta = {"obs_dim": 16, "mappo": agents[0].config.to_dict()}
    for agent, metric in zip(agents, (2.0, 1.0, 3.0), strict=True):
        reg.register("pol", agent.state_dict(), meta | {"mappo": agent.config.to_dict()},
                     metric)
    t = reg.versions("pol").set_index("version")
    assert list(t.index) == ["v1", "v2", "v3"] and t.metric.tolist() == [2.0, 1.0, 3.0]
    assert t.best.tolist() == [False, False, True] and t.latest.tolist() == [False, False, True]
    obs = np.zeros((3, 16), np.float32)

    def acts(version: str) -> np.ndarray:
        return reg.load_brain("pol", version).act(obs)

    np.testing.assert_allclose(acts("best"), 0.8, atol=1e-5)  # v3's starting mean
    reg.promote("pol", "v1")
    assert reg.best("pol") == "v1"
    np.testing.assert_allclose(acts("best"), 0.2, atol=1e-5)
    reg.delete("pol", "v3")
    assert reg.latest("pol") == "v2" and reg.best("pol") == "v1"
    assert not (tmp_path / "reg" / "pol" / "v3").exists()
    reg.delete("pol", "v1")  # the best goes: the remaining one with the highest metric
    assert reg.best("pol") == "v2" and reg.versions().version.tolist() == ["v2"]
    np.testing.assert_allclose(acts("latest"), 0.5, atol=1e-5)
    for call in (lambda: reg.promote("pol", "v9"), lambda: reg.delete("pol", "v1"),
                 lambda: reg.load_brain("other")):
        with pytest.raises(CheckpointError, match=r"no version|no model"):
            call()


def test_running_mean_std_merges_batches_like_numpy():
    from finsim_mesa.learning.mappo import RunningMeanStd

    rng = np.random.default_rng(3)
    x = rng.normal(2.5, 4.0, size=1200)
    rms = RunningMeanStd()
    for chunk in np.array_split(x, 9):
        rms.update(chunk)
    # the tiny starting count (1e-4 at mean 0, var 1) barely weighs in
    assert rms.mean == pytest.approx(x.mean(), rel=1e-6)
    assert rms.var == pytest.approx(x.var(), rel=1e-6)
    assert rms.std == pytest.approx(x.std(), rel=1e-6)
