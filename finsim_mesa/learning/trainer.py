"""Training MAPPO on :class:`~finsim_mesa.learning.env.FinancialEnv`.

Each iteration collects whole episodes, computes GAE per bank and runs the
PPO update. Around it:

* curriculum: scenarios in order; the trainer moves to the next one when the
  mean episode reward of the last ``promotion_window`` episodes reaches
  ``promotion_reward``, or after ``max_episodes_per_stage`` episodes;
* agent freezing: every ``freeze_interval`` episodes a share ``freeze_fraction``
  of the banks act with a frozen copy of the actor and are left out of the loss
  (a slower-moving population, for stability);
* entropy schedule: the entropy coefficient falls linearly from ``ent_start``
  to ``ent_end`` over training;
* numerical-stability guard: observation, reward and gradient clipping and a
  clear error on non-finite values.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from finsim_mesa.learning.env import FinancialEnv
from finsim_mesa.learning.mappo import MAPPO, MAPPOConfig, NumericalStabilityGuard, StabilityConfig

__all__ = ["Trainer", "TrainerConfig", "gae"]


@dataclass
class TrainerConfig:
    """Training schedule (episodes, curriculum, freezing, entropy)."""

    episodes: int = 200
    episodes_per_update: int = 4
    curriculum: Sequence[str] = ("normal", "liquidity_crisis", "asset_crash", "systemic")
    promotion_reward: float = float("inf")   # mean episode reward that promotes
    promotion_window: int = 10
    max_episodes_per_stage: int | None = None  # default: episodes / len(curriculum)
    freeze_fraction: float = 0.0
    freeze_interval: int = 20
    # share of each bank's training reward that is the team reward (mean over all
    # banks, defaulted = 0: what evaluation scores); 0 = own reward only. The
    # environment's rewards are not changed; only what the learner maximises.
    team_reward: float = 0.0
    ent_start: float = 0.01
    ent_end: float = 0.0
    seed: int = 0
    torch_threads: int = 1  # small networks: one thread is faster, and runs can share cores
    stability: StabilityConfig = field(default_factory=StabilityConfig)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["curriculum"] = list(self.curriculum)
        return d


def gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_value: np.ndarray,
        gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over T steps for n banks.

    Args:
        rewards, values: shape (T, n).
        dones: shape (T, n), 1 where the bank's episode ended at that step.
        last_value: shape (n,), value after the last step (0 at episode end).

    Returns:
        (advantages, returns), shape (T, n).
    """
    T = rewards.shape[0]
    adv = np.zeros_like(rewards)
    last = np.zeros(rewards.shape[1], dtype=np.float64)
    for t in reversed(range(T)):
        nxt = last_value if t == T - 1 else values[t + 1]
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma * nxt * nonterminal - values[t]
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last
    return adv, adv + values


class Trainer:
    """Trains a :class:`MAPPO` agent on a :class:`FinancialEnv`.

    Args:
        env_params: FinancialEnv / FinancialModel keyword arguments (``scenario``
            is set by the curriculum).
        config: training schedule.
        mappo: hyper-parameters of the agent.
    """

    def __init__(self, env_params: dict[str, Any], config: TrainerConfig | None = None,
                 mappo: MAPPOConfig | None = None) -> None:
        self.config = config or TrainerConfig()
        self.env_params = dict(env_params)
        self.env = FinancialEnv(**self.env_params)
        torch.manual_seed(self.config.seed)
        torch.set_num_threads(self.config.torch_threads)
        self.guard = NumericalStabilityGuard(self.config.stability)
        self.agent = MAPPO(self.env.n_banks, self.env.obs_dim, mappo, self.guard)
        self.rng = np.random.default_rng(self.config.seed)
        self.episode = 0
        self.stage = 0
        self.stage_start = 0
        self.history: list[dict[str, Any]] = []
        self.frozen_actor = None
        self.frozen_mask = np.zeros(self.env.n_banks, dtype=bool)

    @property
    def scenario(self) -> str:
        """The curriculum's current scenario."""
        return list(self.config.curriculum)[self.stage]

    def entropy_coef(self) -> float:
        """Linear schedule from ent_start to ent_end over all episodes."""
        frac = min(1.0, self.episode / max(1, self.config.episodes - 1))
        return self.config.ent_start + frac * (self.config.ent_end - self.config.ent_start)

    def _maybe_freeze(self) -> None:
        cfg = self.config
        if cfg.freeze_fraction <= 0 or self.episode % cfg.freeze_interval:
            return
        self.frozen_actor = copy.deepcopy(self.agent.actor)
        k = round(cfg.freeze_fraction * self.env.n_banks)
        self.frozen_mask = np.zeros(self.env.n_banks, dtype=bool)
        self.frozen_mask[self.rng.choice(self.env.n_banks, size=k, replace=False)] = True

    def _maybe_promote(self) -> None:
        cfg = self.config
        stages = len(cfg.curriculum)
        if self.stage >= stages - 1:
            return
        limit = cfg.max_episodes_per_stage or max(1, cfg.episodes // stages)
        done_here = self.episode - self.stage_start
        recent = [h["reward"] for h in self.history[-cfg.promotion_window:]
                  if h["scenario"] == self.scenario]
        good = (len(recent) >= cfg.promotion_window
                and float(np.mean(recent)) >= cfg.promotion_reward)
        if good or done_here >= limit:
            self.stage += 1
            self.stage_start = self.episode

    def collect_episode(self) -> dict[str, np.ndarray]:
        """One whole episode with the current policy (frozen banks use the frozen actor)."""
        seed = int(self.rng.integers(2**31 - 1))
        self.env.reset(seed=seed, options={"model_params": {"scenario": self.scenario}})
        obs_l, act_l, logp_l, rew_l, alive_l, done_l = [], [], [], [], [], []
        obs = self.guard.clip_observations(self.env.observation_matrix())
        alive = ~self.env.model.ledger.defaulted
        raw_total = 0.0  # episode reward as evaluation scores it (environment rewards)
        while True:
            actions, logp = self.agent.act(obs)
            if self.frozen_actor is not None and self.frozen_mask.any():
                with torch.no_grad():
                    d = self.frozen_actor.distribution(torch.as_tensor(obs[self.frozen_mask]))
                    actions[self.frozen_mask] = d.sample().clamp(1e-6, 1 - 1e-6).numpy()
            nxt, rewards, defaulted, ended = self.env.step_array(actions)
            raw_total += float((rewards * alive).sum()) / rewards.size
            obs_l.append(obs)
            act_l.append(actions)
            logp_l.append(logp)
            if self.config.team_reward:
                w = self.config.team_reward
                rewards = (1.0 - w) * rewards + w * rewards.sum() / rewards.size
            rew_l.append(self.guard.clip_rewards(rewards))
            alive_l.append(alive)
            done_l.append((defaulted & alive) | ended)
            alive = alive & ~defaulted
            obs = self.guard.clip_observations(nxt)
            if ended or not alive.any():
                break
        ep = {"obs": np.stack(obs_l), "actions": np.stack(act_l), "logp": np.stack(logp_l),
              "rewards": np.stack(rew_l), "alive": np.stack(alive_l),
              "dones": np.stack(done_l).astype(np.float32)}
        ep["train_mask"] = ep["alive"] & ~self.frozen_mask[None, :]
        self.last_episode_reward = raw_total
        return ep

    def train(self, callback: Callable[[dict[str, Any]], None] | None = None
              ) -> list[dict[str, Any]]:
        """Run the schedule; ``callback`` receives each update's log record."""
        cfg, mcfg = self.config, self.agent.config
        while self.episode < cfg.episodes:
            self._maybe_freeze()
            episodes = []
            for _ in range(cfg.episodes_per_update):
                if self.episode >= cfg.episodes:
                    break
                ep = self.collect_episode()
                values = self.agent.values(ep["obs"], ep["alive"])
                adv, ret = gae(ep["rewards"], values, ep["dones"],
                               np.zeros(self.env.n_banks), mcfg.gamma, mcfg.gae_lambda)
                ep["advantages"], ep["returns"] = adv, ret
                episodes.append(ep)
                reward = self.last_episode_reward
                defaults = float(self.env.model.measures.default_rate)
                self.history.append({"episode": self.episode, "scenario": self.scenario,
                                     "reward": reward, "default_rate": defaults,
                                     "steps": int(ep["rewards"].shape[0])})
                self.episode += 1
                self._maybe_promote()
            batch = {k: np.concatenate([e[k] for e in episodes]) for k in episodes[0]}
            stats = self.agent.update(batch, ent_coef=self.entropy_coef())
            # after the update, so a batch is collected and trained on with the same
            # statistics (PPO's probability ratios stay exact)
            self.agent.actor.update_obs_stats(batch["obs"][batch["alive"]])
            record = {"episode": self.episode, "scenario": self.scenario,
                      "reward": float(np.mean([h["reward"] for h in self.history[-len(
                          episodes):]])),
                      "entropy_coef": self.entropy_coef(), **stats}
            if callback:
                callback(record)
        return self.history
