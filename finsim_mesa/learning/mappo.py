"""MAPPO: shared-parameter actor, centralised critic, PPO updates (CleanRL style).

* Actor: an MLP on a bank's own observation (its features identify it) giving a
  Beta distribution per action dimension, so actions live in [0, 1] with exact
  log-probabilities. One forward pass serves all banks.
* Critic: on the global state, compressed by :class:`GlobalStateCompressor`
  (attention pooling of per-bank embeddings into a fixed size, so the critic does
  not grow with the number of banks; or plain concatenation for small systems),
  plus the bank's own embedding: ``V(s, i)``.
* Update: GAE, clipped surrogate, value normalisation (running mean and std of
  returns), entropy bonus, minibatch epochs, gradient clipping, orthogonal
  initialisation. Every hyper-parameter is a field of :class:`MAPPOConfig`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.distributions import Beta

from finsim_mesa.learning.stability import (
    NumericalStabilityGuard,
    RunningMeanStd,
    StabilityConfig,
    merge_moments,
)

__all__ = ["MAPPO", "Actor", "Critic", "GlobalStateCompressor", "GlobalStateConfig",
           "MAPPOConfig", "NumericalStabilityGuard", "StabilityConfig"]


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights, constant bias (as in CleanRL)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


@dataclass
class GlobalStateConfig:
    """How the critic sees the whole system."""

    compressed_dim: int = 64       # size of the pooled global summary
    use_attention: bool = True     # attention pooling (size-free) or concatenation
    heads: int = 4                 # attention queries


@dataclass
class MAPPOConfig:
    """Every hyper-parameter, named once."""

    hidden: int = 64
    lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    update_epochs: int = 4
    minibatches: int = 4
    max_grad_norm: float = 0.5
    # start the Beta means here: one value for all actions or one per action
    # (lend, hoard, sell, borrow); None: 0.5
    init_action_mean: float | Sequence[float] | None = None
    # starting concentration alpha + beta of each Beta (None: the smaller of the two is
    # 1 + softplus(0) ~ 1.69, i.e. very noisy actions). Large values start with little
    # exploration noise: with a shared team reward, the other banks' noise is what
    # buries each bank's own contribution
    init_concentration: float | None = None
    # standardise each observation column by running mean/std (stored with the
    # actor's weights) before the actor and the critic see it
    normalize_obs: bool = False
    # standardise the batch's advantages (over the rows trained on) before the update
    standardize_advantages: bool = True
    global_state: GlobalStateConfig = field(default_factory=GlobalStateConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MAPPOConfig:
        d = dict(d)
        d["global_state"] = GlobalStateConfig(**d.get("global_state", {}))
        return cls(**d)


class Actor(nn.Module):
    """Beta policy over 4 actions in [0, 1] from one bank's observation."""

    def __init__(self, obs_dim: int, hidden: int = 64, n_actions: int = 4,
                 init_action_mean: float | Sequence[float] | None = None,
                 normalize_obs: bool = False,
                 init_concentration: float | None = None) -> None:
        super().__init__()
        self.normalize_obs = normalize_obs
        if normalize_obs:  # buffers: saved and loaded with the weights
            self.register_buffer("obs_mean", torch.zeros(obs_dim))
            self.register_buffer("obs_var", torch.ones(obs_dim))
            self.register_buffer("obs_count", torch.zeros((), dtype=torch.float64))
        self.body = nn.Sequential(layer_init(nn.Linear(obs_dim, hidden)), nn.Tanh(),
                                  layer_init(nn.Linear(hidden, hidden)), nn.Tanh())
        self.head = layer_init(nn.Linear(hidden, 2 * n_actions), std=0.01)
        if init_action_mean is not None or init_concentration is not None:
            # the smaller of α, β is 1 + softplus(0) (or α + β = init_concentration,
            # both above 1.05); the other makes the mean α / (α + β) equal m
            m = np.clip(np.broadcast_to(np.asarray(
                0.5 if init_action_mean is None else init_action_mean, dtype=float),
                (n_actions,)), 0.02, 0.98)
            low = 1.0 + np.log(2.0)
            if init_concentration is not None:
                alpha = np.maximum(init_concentration * m, 1.05)
                beta = np.maximum(init_concentration * (1 - m), 1.05)
            else:
                alpha = np.where(m <= 0.5, low, low * m / (1 - m))
                beta = np.where(m <= 0.5, low * (1 - m) / m, low)
            with torch.no_grad():
                self.head.bias[:n_actions] = torch.as_tensor(
                    np.log(np.expm1(np.maximum(alpha - 1.0, 1e-3))), dtype=torch.float32)
                self.head.bias[n_actions:] = torch.as_tensor(
                    np.log(np.expm1(np.maximum(beta - 1.0, 1e-3))), dtype=torch.float32)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations standardised by the running statistics, clipped to ±5
        (unchanged without ``normalize_obs``); shape kept."""
        if not self.normalize_obs:
            return obs
        return ((obs - self.obs_mean) / torch.sqrt(self.obs_var + 1e-8)).clamp(-5.0, 5.0)

    @torch.no_grad()
    def update_obs_stats(self, obs: np.ndarray) -> None:
        """Fold a batch of observation rows, shape (k, obs_dim), into the running
        mean and variance (parallel-variance formula)."""
        if not self.normalize_obs or len(obs) == 0:
            return
        x = torch.as_tensor(np.asarray(obs, dtype=np.float64))
        mean, var, total = merge_moments(self.obs_mean.double(), self.obs_var.double(),
                                         float(self.obs_count), x.mean(0),
                                         x.var(0, unbiased=False), x.shape[0])
        self.obs_mean.copy_(mean.float())
        self.obs_var.copy_(var.float())
        self.obs_count.fill_(total)

    def distribution(self, obs: torch.Tensor, validate: bool = True) -> Beta:
        """Beta(α, β) with α, β = 1 + softplus(·) > 1 (unimodal). ``validate=False``
        skips torch's argument checks (the same numbers; a third of the cost of
        acting, when α, β and the samples are valid by construction)."""
        a, b = self.head(self.body(self.normalize(obs))).chunk(2, dim=-1)
        return Beta(1.0 + nn.functional.softplus(a), 1.0 + nn.functional.softplus(b),
                    validate_args=validate)

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, deterministic: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions, shape (n, n_actions), clamped to [1e-6, 1 − 1e-6], and their
        summed log-probabilities, shape (n,): what :meth:`distribution`'s
        ``sample`` (or ``mean``) and ``log_prob`` give, bit for bit, from the same
        torch primitives in the same order without building the distribution
        objects (the cost of acting at a few hundred banks is mostly those)."""
        lin = nn.functional.linear
        (l0, _, l1, _), head = self.body, self.head
        x = torch.tanh(lin(torch.tanh(lin(self.normalize(obs), l0.weight, l0.bias)),
                           l1.weight, l1.bias))
        a, b = lin(x, head.weight, head.bias).chunk(2, dim=-1)
        a, b = 1.0 + nn.functional.softplus(a), 1.0 + nn.functional.softplus(b)
        conc = torch.stack([a, b], -1)  # Beta(a, b) is Dirichlet((a, b))'s first part
        act = a / (a + b) if deterministic else torch._sample_dirichlet(conc).select(-1, 0)
        act = act.clamp(1e-6, 1 - 1e-6)
        logp = (torch.xlogy(conc - 1.0, torch.stack([act, 1.0 - act], -1)).sum(-1)
                + torch.lgamma(conc.sum(-1)) - torch.lgamma(conc).sum(-1))
        return act, logp.sum(-1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action: the Beta mean."""
        return self.distribution(obs).mean


class GlobalStateCompressor(nn.Module):
    """Fixed-size summary of all banks' observations for the critic.

    Args:
        num_agents: banks (used only by the concatenation variant).
        obs_dim: columns per bank.
        config: :class:`GlobalStateConfig`.
    """

    def __init__(self, num_agents: int, obs_dim: int,
                 config: GlobalStateConfig | None = None) -> None:
        super().__init__()
        self.config = config or GlobalStateConfig()
        d = self.config.compressed_dim
        self.embed = nn.Sequential(layer_init(nn.Linear(obs_dim, d)), nn.Tanh())
        if self.config.use_attention:
            self.queries = nn.Parameter(torch.randn(self.config.heads, d) / np.sqrt(d))
            self.out = layer_init(nn.Linear(self.config.heads * d, d))
        else:
            self.out = layer_init(nn.Linear(num_agents * d, d))

    def forward(self, obs: torch.Tensor, alive: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (batch, n, obs_dim) -> (global summary (batch, d), embeddings (batch, n, d))."""
        e = self.embed(obs)
        if not self.config.use_attention:
            return torch.tanh(self.out(e.flatten(1))), e
        scores = torch.einsum("hd,bnd->bhn", self.queries, e) / np.sqrt(e.shape[-1])
        if alive is not None:
            scores = scores.masked_fill(~alive[:, None, :], -1e9)
        w = torch.softmax(scores, dim=-1)
        pooled = torch.einsum("bhn,bnd->bhd", w, e).flatten(1)
        return torch.tanh(self.out(pooled)), e


class Critic(nn.Module):
    """V(s, i) from the compressed global state and bank i's own embedding."""

    def __init__(self, num_agents: int, obs_dim: int, config: MAPPOConfig) -> None:
        super().__init__()
        d = config.global_state.compressed_dim
        self.compressor = GlobalStateCompressor(num_agents, obs_dim, config.global_state)
        self.head = nn.Sequential(layer_init(nn.Linear(2 * d, config.hidden)), nn.Tanh(),
                                  layer_init(nn.Linear(config.hidden, 1), std=1.0))

    def forward(self, obs: torch.Tensor, alive: torch.Tensor | None = None) -> torch.Tensor:
        """obs (batch, n, obs_dim) -> values (batch, n)."""
        g, e = self.compressor(obs, alive)
        g = g[:, None, :].expand(-1, e.shape[1], -1)
        return self.head(torch.cat([g, e], dim=-1)).squeeze(-1)


class MAPPO:
    """Actor, critic and the PPO update.

    Args:
        num_agents: banks.
        obs_dim: observation columns.
        config: hyper-parameters.
        guard: numerical stability guard.
    """

    def __init__(self, num_agents: int, obs_dim: int, config: MAPPOConfig | None = None,
                 guard: NumericalStabilityGuard | None = None) -> None:
        self.config = config or MAPPOConfig()
        self.num_agents, self.obs_dim = num_agents, obs_dim
        self.actor = Actor(obs_dim, self.config.hidden,
                           init_action_mean=self.config.init_action_mean,
                           init_concentration=self.config.init_concentration,
                           normalize_obs=self.config.normalize_obs)
        self.critic = Critic(num_agents, obs_dim, self.config)
        self.optimizer = torch.optim.Adam(
            [*self.actor.parameters(), *self.critic.parameters()], lr=self.config.lr, eps=1e-5)
        self.value_norm = RunningMeanStd()
        self.guard = guard or NumericalStabilityGuard(
            StabilityConfig(max_grad_norm=self.config.max_grad_norm))

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False, u: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """Actions (n, 4) and summed log-probabilities (n,) for all banks in one
        pass: obs (n, obs_dim). With ``u`` (shape (4,), in (0, 1)) the
        exploration noise is shared: every bank plays its own Beta's inverse CDF
        at the common ``u`` (clamped to [1e-6, 1 − 1e-6]), so banks that see
        the same play the same, and its log-probability under that Beta."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        if u is None or deterministic:
            # α, β > 1 by construction and samples are clamped inside (0, 1): no
            # argument checks while collecting (the update keeps them)
            a, logp = self.actor.sample(obs_t, deterministic)
            return a.numpy(), logp.numpy()
        from scipy.special import betaincinv

        dist = self.actor.distribution(obs_t, validate=False)
        a, b = dist.concentration1.double().numpy(), dist.concentration0.double().numpy()
        x = np.clip(betaincinv(a, b, np.broadcast_to(u, a.shape)), 1e-6, 1 - 1e-6)
        x = torch.as_tensor(x.astype(np.float32))
        return x.numpy(), dist.log_prob(x).sum(-1).numpy()

    @torch.no_grad()
    def values(self, obs: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """Denormalised values, obs (T, n, obs_dim) -> (T, n)."""
        v = self.critic(self.actor.normalize(torch.as_tensor(obs, dtype=torch.float32)),
                        torch.as_tensor(alive, dtype=torch.bool))
        return v.numpy() * self.value_norm.std + self.value_norm.mean

    def update(self, batch: dict[str, np.ndarray], ent_coef: float | None = None
               ) -> dict[str, float]:
        """PPO epochs over a rollout.

        ``batch`` holds arrays over T steps and n banks: ``obs`` (T, n, d),
        ``actions`` (T, n, 4), ``logp`` (T, n), ``advantages`` (T, n), ``returns``
        (T, n), ``alive`` (T, n) bool and ``train_mask`` (T, n) bool (frozen or
        defaulted banks are not trained on).
        """
        cfg = self.config
        ent = cfg.ent_coef if ent_coef is None else ent_coef
        self.value_norm.update(batch["returns"][batch["alive"]])
        obs = torch.as_tensor(batch["obs"], dtype=torch.float32)
        alive = torch.as_tensor(batch["alive"], dtype=torch.bool)
        act = torch.as_tensor(batch["actions"], dtype=torch.float32)
        old_logp = torch.as_tensor(batch["logp"], dtype=torch.float32)
        adv = torch.as_tensor(batch["advantages"], dtype=torch.float32)
        ret = torch.as_tensor((batch["returns"] - self.value_norm.mean) / self.value_norm.std,
                              dtype=torch.float32)
        mask = torch.as_tensor(batch["train_mask"], dtype=torch.bool)
        m = mask.float()
        sel = adv[mask]
        if cfg.standardize_advantages and sel.numel() > 1:
            adv = (adv - sel.mean()) / (sel.std() + 1e-8)
        T = obs.shape[0]
        idx = np.arange(T)
        stats: dict[str, float] = {}
        for _ in range(cfg.update_epochs):
            np.random.default_rng(int(old_logp.sum().item() * 1e3) % 2**32).shuffle(idx)
            for mb in np.array_split(idx, max(1, min(cfg.minibatches, T))):
                w = m[mb]
                if w.sum() == 0:
                    continue
                dist = self.actor.distribution(obs[mb])
                logp = dist.log_prob(act[mb].clamp(1e-6, 1 - 1e-6)).sum(-1)
                # rows not trained on get ratio 1: a placeholder's stored logp
                # could make it 0 or inf, and inf x 0 would be NaN in the sums below
                ratio = torch.exp(torch.where(w > 0, logp - old_logp[mb], 0.0))
                pg = torch.max(-adv[mb] * ratio,
                               -adv[mb] * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef))
                pg_loss = (pg * w).sum() / w.sum()
                v = self.critic(self.actor.normalize(obs[mb]), alive[mb])
                v_loss = 0.5 * (((v - ret[mb]) ** 2) * w).sum() / w.sum()
                entropy = (dist.entropy().sum(-1) * w).sum() / w.sum()
                loss = pg_loss + cfg.vf_coef * v_loss - ent * entropy
                self.guard.check_loss(loss)
                self.optimizer.zero_grad()
                loss.backward()
                grad = self.guard.clip_gradients(
                    [*self.actor.parameters(), *self.critic.parameters()])
                self.optimizer.step()
                with torch.no_grad():  # over the rows trained on, as the losses
                    kl = ((ratio - 1) - torch.log(ratio))[w > 0].mean()
                stats = {"policy_loss": float(pg_loss.detach()),
                         "value_loss": float(v_loss.detach()),
                         "entropy": float(entropy.detach()), "approx_kl": float(kl),
                         "grad_norm": grad}
        return stats

    def state_dict(self) -> dict[str, torch.Tensor]:
        """All weights as one flat dict of tensors (for safetensors)."""
        out = {f"actor.{k}": v for k, v in self.actor.state_dict().items()}
        out |= {f"critic.{k}": v for k, v in self.critic.state_dict().items()}
        out["value_norm"] = torch.tensor([self.value_norm.mean, self.value_norm.var,
                                          self.value_norm.count], dtype=torch.float64)
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`state_dict` (strict: every tensor must match)."""
        self.actor.load_state_dict({k[6:]: v for k, v in state.items()
                                    if k.startswith("actor.")})
        self.critic.load_state_dict({k[7:]: v for k, v in state.items()
                                     if k.startswith("critic.")})
        mean, var, count = state["value_norm"].tolist()
        self.value_norm.mean, self.value_norm.var, self.value_norm.count = mean, var, count
