"""A trained MAPPO policy as a brain: batched inference, no gradients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from finsim_mesa.agents.brains import Brain
from finsim_mesa.learning.checkpoint import CheckpointError, ModelCheckpointer, load_folder
from finsim_mesa.learning.mappo import Actor
from finsim_mesa.observation import INFRA_OBS_DIM, OBS_DIM

__all__ = ["PolicyBrain"]


class PolicyBrain(Brain):
    """Acts with a trained actor: the Beta mean (``deterministic``) or a sample
    drawn from the model's generator.

    Args:
        actor: the trained actor network.
        obs_dim: the observation width it was trained on.
        deterministic: act with the mean (default) or sample.
        meta: the checkpoint's metadata.
    """

    name = "policy"

    def __init__(self, actor: Actor, obs_dim: int, deterministic: bool = True,
                 meta: dict[str, Any] | None = None) -> None:
        self.actor = actor.eval()
        self.obs_dim = obs_dim
        self.deterministic = deterministic
        self.meta = meta or {}
        self.rng: np.random.Generator | None = None

    def setup(self, model: Any) -> None:
        width = OBS_DIM + (INFRA_OBS_DIM if model.config.infrastructure else 0)
        if width != self.obs_dim:
            raise CheckpointError(
                f"policy was trained on {self.obs_dim} observation columns, this model has "
                f"{width} (infrastructure layer {'on' if width > 16 else 'off'}); use a model "
                "with the same layer setting")
        self.rng = model.rng

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        obs = torch.as_tensor(np.clip(observations, -10, 10), dtype=torch.float32)
        dist = self.actor.distribution(obs)
        if self.deterministic:
            return dist.mean.numpy().astype(float)
        # sample with the model's generator (reproducible): inverse of Beta via numpy
        a, b = dist.concentration1.numpy(), dist.concentration0.numpy()
        return self.rng.beta(a, b)

    @classmethod
    def load(cls, path: str | Path, version: str = "best", deterministic: bool = True
             ) -> PolicyBrain:
        """From a checkpoint folder (``.../model_id/vK``) or a model folder
        (``.../model_id``, picking ``version``)."""
        path = Path(path)
        if (path / "index.json").exists():
            weights, meta = ModelCheckpointer(path.parent).load_checkpoint(path.name, version)
        else:
            weights, meta = load_folder(path)
        obs_dim, hidden = int(meta["obs_dim"]), int(meta["mappo"]["hidden"])
        actor = Actor(obs_dim, hidden,
                      normalize_obs=bool(meta["mappo"].get("normalize_obs", False)))
        try:
            actor.load_state_dict({k[6:]: v for k, v in weights.items()
                                   if k.startswith("actor.")})
        except RuntimeError as err:
            raise CheckpointError(f"{path}: weights do not fit the actor: {err}") from None
        return cls(actor, obs_dim, deterministic, meta)
