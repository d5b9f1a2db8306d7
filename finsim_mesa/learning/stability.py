"""Numerical guards of the MAPPO update: clipping, finiteness checks, running
moments (split from :mod:`finsim_mesa.learning.mappo`, which re-exports them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["NumericalStabilityGuard", "RunningMeanStd", "StabilityConfig", "merge_moments"]


@dataclass
class StabilityConfig:
    """Limits of :class:`NumericalStabilityGuard`."""

    max_grad_norm: float = 0.5
    obs_clip: float = 10.0
    reward_clip: float = 10.0


class NumericalStabilityGuard:
    """Clips observations, rewards and gradients, and stops with a clear message
    on a non-finite loss or gradient (never a silent skip)."""

    def __init__(self, config: StabilityConfig | None = None) -> None:
        self.config = config or StabilityConfig()

    def clip_observations(self, obs: np.ndarray) -> np.ndarray:
        """Observations clipped to ±obs_clip; non-finite values are an error."""
        obs = np.asarray(obs, dtype=np.float32)
        if not np.all(np.isfinite(obs)):
            raise FloatingPointError("non-finite observation from the environment")
        return np.clip(obs, -self.config.obs_clip, self.config.obs_clip)

    def clip_rewards(self, rewards: np.ndarray) -> np.ndarray:
        """Rewards clipped to ±reward_clip; non-finite values are an error."""
        rewards = np.asarray(rewards, dtype=np.float32)
        if not np.all(np.isfinite(rewards)):
            raise FloatingPointError("non-finite reward from the environment")
        return np.clip(rewards, -self.config.reward_clip, self.config.reward_clip)

    def check_loss(self, loss: torch.Tensor, name: str = "loss") -> None:
        """Raise FloatingPointError if ``loss`` is NaN or infinite."""
        if not torch.isfinite(loss).all():
            raise FloatingPointError(f"{name} is not finite ({loss.item()}); lower the "
                                     "learning rate or check the rewards")

    def clip_gradients(self, params: list[torch.nn.Parameter]) -> float:
        """Clip the gradient norm to max_grad_norm; a non-finite norm is an error."""
        norm = nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        if not torch.isfinite(norm):
            raise FloatingPointError(f"gradient norm is not finite ({norm.item()})")
        return float(norm)


def merge_moments(mean: Any, var: Any, count: float, batch_mean: Any, batch_var: Any,
                  batch_count: int) -> tuple[Any, Any, float]:
    """Mean and (population) variance of two samples merged, from their moments
    (Chan et al.'s parallel formula); scalars, arrays or tensors alike."""
    total = count + batch_count
    delta = batch_mean - mean
    new_mean = mean + delta * batch_count / total
    new_var = (var * count + batch_var * batch_count
               + delta**2 * count * batch_count / total) / total
    return new_mean, new_var, total


class RunningMeanStd:
    """Running mean and variance (value normalisation)."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def update(self, x: np.ndarray) -> None:
        self.mean, self.var, self.count = merge_moments(
            self.mean, self.var, self.count, float(np.mean(x)), float(np.var(x)), x.size)

    @property
    def std(self) -> float:
        return float(np.sqrt(self.var) + 1e-8)
