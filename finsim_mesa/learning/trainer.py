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
  clear error on non-finite values;
* a mixture of conditions (``conditions``): scenario, bank count, topology and
  capital ratio drawn per episode instead of the curriculum (episodes of
  different sizes are padded to one batch; padded rows are masked);
* a fixed horizon (:mod:`finsim_mesa.scoring`): episodes are not cut short by
  a collapse, and a bank that defaults receives, on top of that step's
  reward, the discounted sum of the default penalty for every remaining step
  (``-α Σ_{k=1..R} γ^k``), so the learner maximises the score evaluation ranks;
* common random numbers (``pairing``): episodes in pairs on one episode draw,
  with ``"antithetic"`` the exploration noise shared by all banks of an episode
  and mirrored in the pair (u, 1 − u), with ``"shared"`` shared but drawn for
  each episode; a paired step's advantage is the team
  return-to-go minus the pair's mean (:func:`pair_advantages`).

Training seeds are drawn from ``[TRAIN_SEEDS, 2**31)``; evaluation and selection
seeds below ``TRAIN_SEEDS`` are never trained on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from finsim_mesa.conditions import Conditions
from finsim_mesa.errors import ConfigError
from finsim_mesa.learning.env import FinancialEnv
from finsim_mesa.learning.mappo import MAPPO, MAPPOConfig, NumericalStabilityGuard, StabilityConfig
from finsim_mesa.scoring import EpisodeScore, fixed_horizon_params

__all__ = ["PAIRINGS", "TRAIN_SEEDS", "Trainer", "TrainerConfig", "gae", "pad_banks",
           "pair_advantages", "returns_to_go"]

TRAIN_SEEDS = 1_000_000  # training seeds are >= this; test/selection seeds lie below
PAIRINGS = ("none", "common", "antithetic", "shared")


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
    # a mixture of conditions drawn per episode (Conditions.to_dict() form); None:
    # the curriculum's scenario with the environment's parameters
    conditions: dict[str, Any] | None = None
    # standardise advantages per episode ("episode": calm and crisis episodes weigh
    # alike although their rewards differ by orders of magnitude) or over the
    # whole batch ("batch", the usual PPO)
    advantage_norm: str = "batch"
    # common random numbers: "none"; "common": episodes come in pairs run on one
    # episode draw (seed and conditions), each bank's noise its own; "antithetic":
    # as "common", the exploration noise shared by all banks of an episode (one u
    # per action, MAPPO.act), u in the first episode of the pair and 1 - u in the
    # second; "shared": as "antithetic", each episode of the pair its own u (drawn
    # after the pair's draw, which takes a u in both modes). A paired episode's
    # advantage at step t is the team return-to-go minus the pair's mean
    # (pair_advantages; advantage_norm is not applied)
    pairing: str = "none"
    ent_start: float = 0.01
    ent_end: float = 0.0
    seed: int = 0
    torch_threads: int = 1  # small networks: one thread is faster, and runs can share cores
    stability: StabilityConfig = field(default_factory=StabilityConfig)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["curriculum"] = list(self.curriculum)
        return d


def pad_banks(arrays: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """An episode's arrays (T, n_i, ...) padded to ``n`` banks: padded banks are
    not alive, not trained on and done."""
    have = arrays["obs"].shape[1]
    if have == n:
        return arrays
    fill = {"alive": False, "train_mask": False, "dones": 1.0}
    out = {}
    for k, v in arrays.items():
        pad = np.full((v.shape[0], n - have, *v.shape[2:]), fill.get(k, 0), dtype=v.dtype)
        out[k] = np.concatenate([v, pad], axis=1)
    return out


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


def returns_to_go(scores: np.ndarray, gamma: float) -> np.ndarray:
    """G[t] = Σ_{k>=t} γ^(k−t) scores[k]; shape of ``scores`` (H,)."""
    out = np.zeros(len(scores), dtype=np.float64)
    acc = 0.0
    for t in reversed(range(len(scores))):
        acc = float(scores[t]) + gamma * acc
        out[t] = acc
    return out


def pair_advantages(team_a: np.ndarray, team_b: np.ndarray, gamma: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Advantages of a pair of episodes run on one episode draw: at each step the
    episode's team return-to-go minus the pair's mean (a control variate that
    removes the draw's shocks; what is left is the difference the two episodes'
    actions made). ``team_a``, ``team_b``: each step's team score over the whole
    horizon, shape (H,); returns two arrays of shape (H,), each the other's
    negative."""
    ga, gb = returns_to_go(team_a, gamma), returns_to_go(team_b, gamma)
    mean = (ga + gb) / 2
    return ga - mean, gb - mean


def _per_bank(g: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``g`` (H,) cut to ``like``'s T steps and given to each of its n banks: (T, n)."""
    return np.broadcast_to(g[:like.shape[0], None], like.shape).astype(like.dtype)


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
        self.conditions = (Conditions.from_dict(self.config.conditions)
                           if self.config.conditions else None)
        self.env = FinancialEnv(**fixed_horizon_params(self.env_params))
        # a failed step ends the training with its error and the episode is never
        # used: no per-step rollback needed in these throwaway models
        self.env.atomic_steps = False
        torch.manual_seed(self.config.seed)
        torch.set_num_threads(self.config.torch_threads)
        self.guard = NumericalStabilityGuard(self.config.stability)
        self.agent = MAPPO(self.env.n_banks, self.env.obs_dim, mappo, self.guard)
        if self.config.pairing not in PAIRINGS or (
                self.config.pairing != "none" and (self.config.episodes_per_update % 2
                                                   or self.config.episodes % 2)):
            raise ConfigError(f"pairing {self.config.pairing!r}: give one of {PAIRINGS}; "
                              "with pairs, episodes and episodes_per_update must be even")
        if (self.conditions is not None and self.conditions.n_banks[0] != self.conditions.n_banks[1]
                and not self.agent.config.global_state.use_attention):
            raise ConfigError("a mixture of bank counts needs the attention critic "
                              "(global_state.use_attention = True)")
        self.rng = np.random.default_rng(self.config.seed)
        self.episode = 0
        self.stage = 0
        self.stage_start = 0
        self.history: list[dict[str, Any]] = []
        self.frozen_actor = None
        self.frozen_mask = np.zeros(self.env.n_banks, dtype=bool)

    @property
    def scenario(self) -> str:
        """The curriculum's current scenario ("mixture" when conditions are drawn)."""
        return "mixture" if self.conditions else list(self.config.curriculum)[self.stage]

    def entropy_coef(self) -> float:
        """Linear schedule from ent_start to ent_end over all episodes."""
        frac = min(1.0, self.episode / max(1, self.config.episodes - 1))
        return self.config.ent_start + frac * (self.config.ent_end - self.config.ent_start)

    def _maybe_freeze(self) -> None:
        cfg = self.config
        if cfg.freeze_fraction <= 0 or self.episode % cfg.freeze_interval:
            return
        self.frozen_actor = copy.deepcopy(self.agent.actor)
        self._draw_frozen(self.env.n_banks)

    def _draw_frozen(self, n: int) -> None:
        """Which of ``n`` banks act with the frozen actor (a share of them)."""
        k = round(self.config.freeze_fraction * n)
        self.frozen_mask = np.zeros(n, dtype=bool)
        self.frozen_mask[self.rng.choice(n, size=k, replace=False)] = True

    def _maybe_promote(self) -> None:
        cfg = self.config
        stages = len(cfg.curriculum)
        if self.conditions is not None or self.stage >= stages - 1:
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

    def episode_params(self) -> dict[str, Any]:
        """This episode's model parameters: a draw from the mixture, or the
        curriculum's scenario."""
        if self.conditions is not None:
            return self.conditions.draw(self.rng)
        return {"scenario": self.scenario}

    def collect_episode(self, draw: tuple[int, dict[str, Any]] | None = None,
                        u: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """One whole episode (the fixed horizon) with the current policy; frozen
        banks use the frozen actor. ``draw``: the episode's (seed, model
        parameters), by default drawn from the trainer's generator; ``u``: shared
        exploration noise (:meth:`MAPPO.act`). Each step's team score over the
        horizon is left in ``last_team_scores``, shape (H,)."""
        if draw is None:
            draw = int(self.rng.integers(TRAIN_SEEDS, 2**31 - 1)), self.episode_params()
        seed, params = draw
        self.env.reset(seed=seed, options={"model_params": params})
        model = self.env.model
        n = model.n_banks
        if self.frozen_actor is not None and self.frozen_mask.size != n:
            self._draw_frozen(n)
        frozen = self.frozen_mask if self.frozen_actor is not None else np.zeros(n, bool)
        score = EpisodeScore(model)  # the horizon: the model's steps
        gamma, alpha = self.agent.config.gamma, score.alpha
        obs_l, act_l, logp_l, rew_l, alive_l, done_l, team = [], [], [], [], [], [], []
        obs = self.guard.clip_observations(self.env.observation_matrix())
        alive = ~model.ledger.defaulted
        while True:
            actions, logp = self.agent.act(obs) if u is None else self.agent.act(obs, u=u)
            if frozen.any():
                with torch.no_grad():
                    d = self.frozen_actor.distribution(torch.as_tensor(obs[frozen]))
                    actions[frozen] = d.sample().clamp(1e-6, 1 - 1e-6).numpy()
            nxt, rewards, defaulted, ended = self.env.step_array(actions)
            step_scores = score.step_scores()
            team.append(score.add_step())
            if self.config.team_reward:
                w = self.config.team_reward
                rewards = (1.0 - w) * rewards + w * float(step_scores.mean())
            rewards = self.guard.clip_rewards(rewards)
            newly = defaulted & alive
            if newly.any():  # the default penalty of every remaining step, discounted
                remaining = max(score.horizon - model.t, 0)
                rewards = rewards - newly * (alpha * gamma * (1 - gamma**remaining)
                                             / (1 - gamma))
            obs_l.append(obs)
            act_l.append(actions)
            logp_l.append(logp)
            rew_l.append(rewards.astype(np.float32))
            alive_l.append(alive)
            done_l.append(newly | ended)
            alive = alive & ~defaulted
            obs = self.guard.clip_observations(nxt)
            if ended or not alive.any():
                break
        ep = {"obs": np.stack(obs_l), "actions": np.stack(act_l), "logp": np.stack(logp_l),
              "rewards": np.stack(rew_l), "alive": np.stack(alive_l),
              "dones": np.stack(done_l).astype(np.float32)}
        ep["train_mask"] = ep["alive"] & ~frozen[None, :]
        remaining = max(score.horizon - score.steps, 0)  # what finish() scores per step
        team += [-alpha * float(model.ledger.defaulted.mean())] * remaining
        self.last_team_scores = np.asarray(team, dtype=np.float64)
        self.last_episode_reward = score.finish()
        self.last_params, self.last_seed = params, seed
        return ep

    def _collect(self, k: int) -> dict[str, np.ndarray]:
        """The update's k-th episode; with pairing, odd k replays episode k − 1's
        draw (antithetic: its noise mirrored, 1 − u; shared: a fresh u)."""
        pairing = self.config.pairing
        if pairing == "none":
            return self.collect_episode()
        if k % 2 == 0:
            u = self.rng.random(4) if pairing in ("antithetic", "shared") else None
            draw = int(self.rng.integers(TRAIN_SEEDS, 2**31 - 1)), self.episode_params()
            self._pair_draw = draw, u
        draw, u = self._pair_draw
        if pairing == "shared":
            u = self.rng.random(4)
        elif k % 2 and u is not None:
            u = 1.0 - u
        return self.collect_episode(draw, u)

    def train(self, callback: Callable[[dict[str, Any]], None] | None = None
              ) -> list[dict[str, Any]]:
        """Run the schedule; ``callback`` receives each update's log record."""
        cfg, mcfg = self.config, self.agent.config
        while self.episode < cfg.episodes:
            self._maybe_freeze()
            episodes = []
            pair: list[np.ndarray] = []
            for k in range(cfg.episodes_per_update):
                if self.episode >= cfg.episodes:
                    break
                ep = self._collect(k)
                values = self.agent.values(ep["obs"], ep["alive"])
                adv, ret = gae(ep["rewards"], values, ep["dones"],
                               np.zeros(ep["obs"].shape[1]), mcfg.gamma, mcfg.gae_lambda)
                if cfg.pairing != "none":
                    pair.append(self.last_team_scores)
                    if k % 2:  # the pair is complete: both episodes' advantages
                        pa, pb = pair_advantages(pair[-2], pair[-1], mcfg.gamma)
                        prev = episodes[-1]
                        prev["advantages"] = _per_bank(pa, prev["advantages"])
                        adv = _per_bank(pb, adv)
                elif cfg.advantage_norm == "episode":
                    sel = adv[ep["train_mask"]]
                    if sel.size > 1:
                        adv = (adv - sel.mean()) / (sel.std() + 1e-8)
                ep["advantages"], ep["returns"] = adv, ret
                episodes.append(ep)
                reward = self.last_episode_reward
                defaults = float(self.env.model.measures.default_rate)
                self.history.append({"episode": self.episode,
                                     "scenario": self.last_params.get("scenario", self.scenario),
                                     "n_banks": int(ep["obs"].shape[1]),
                                     "reward": reward, "default_rate": defaults,
                                     "steps": int(ep["rewards"].shape[0])})
                self.episode += 1
                self._maybe_promote()
            width = max(e["obs"].shape[1] for e in episodes)
            episodes = [pad_banks(e, width) for e in episodes]
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
