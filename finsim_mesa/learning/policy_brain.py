"""A trained MAPPO policy as a brain: batched inference, no gradients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finsim_mesa.agents.actor import ActorBrain
from finsim_mesa.learning.checkpoint import (
    CheckpointError,
    ModelCheckpointer,
    confine,
    load_folder,
)
from finsim_mesa.learning.mappo import Actor

__all__ = ["PolicyBrain", "actor_shape"]


class PolicyBrain(ActorBrain):
    """Acts with a trained actor: the Beta mean (``deterministic``) or a sample
    drawn from the model's generator. Inference runs in numpy
    (:class:`~finsim_mesa.agents.actor.ActorBrain`): no torch threads.

    Args:
        actor: the trained actor network.
        obs_dim: the observation width it was trained on.
        deterministic: act with the mean (default) or sample.
        meta: the checkpoint's metadata (its ``obs_fields``, if present, name the
            columns the policy reads).
    """

    name = "policy"

    def __init__(self, actor: Actor, obs_dim: int, deterministic: bool = True,
                 meta: dict[str, Any] | None = None) -> None:
        self.actor = actor.eval()
        weights = {k: v.detach().cpu().numpy() for k, v in actor.state_dict().items()
                   if k != "obs_count"}
        if not actor.normalize_obs:
            weights.pop("obs_mean", None)
            weights.pop("obs_var", None)
        fields = (meta or {}).get("obs_fields")
        super().__init__(weights, fields if isinstance(fields, list) else None,
                         deterministic, meta)
        if self.obs_dim != obs_dim:
            raise CheckpointError(f"actor takes {self.obs_dim} columns, metadata says "
                                  f"{obs_dim}")

    @classmethod
    def load(cls, path: str | Path, version: str = "best", deterministic: bool = True,
             root: str | Path | None = None) -> PolicyBrain:
        """From a checkpoint folder (``.../model_id/vK``) or a model folder
        (``.../model_id``, picking ``version``).

        With ``root`` (a server's models folder), ``path`` and everything read
        through it must resolve inside ``root`` (no ``..``, no symlink out)."""
        path = Path(path)
        if root is not None:
            confine(path, root)
        if (path / "index.json").exists():
            weights, meta = ModelCheckpointer(path.parent).load_checkpoint(path.name, version)
        else:
            weights, meta = load_folder(path, root=root)
        obs_dim, hidden, normalize = actor_shape(meta, path)
        first = weights.get("actor.body.0.weight")  # checked first: no huge allocation
        if first is None or tuple(first.shape) != (hidden, obs_dim):
            found = "missing" if first is None else f"{tuple(first.shape)}"
            raise CheckpointError(
                f"{path}: weights do not fit the actor: meta.json says obs_dim={obs_dim}, "
                f"hidden={hidden} (first layer ({hidden}, {obs_dim})), the weights' first "
                f"layer is {found}")
        try:
            actor = Actor(obs_dim, hidden, normalize_obs=normalize)
            actor.load_state_dict({k[6:]: v for k, v in weights.items()
                                   if k.startswith("actor.")})
        except (RuntimeError, ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: weights do not fit the actor: {err}") from None
        return cls(actor, obs_dim, deterministic, meta)


def actor_shape(meta: dict[str, Any], where: str | Path) -> tuple[int, int, bool]:
    """(obs_dim, hidden, normalize_obs) from a checkpoint's metadata, or a
    :class:`CheckpointError` naming the missing or ill-typed field."""
    def bad(field: str, value: Any, want: str) -> CheckpointError:
        if value is _MISSING:
            return CheckpointError(f"{where}: meta.json has no {field!r} ({want}); the "
                                   "checkpoint was not written by finsim or is damaged")
        return CheckpointError(f"{where}: meta.json {field!r} must be {want}, got {value!r}")

    def positive_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: meta.json must be a JSON object, got a "
                              f"{type(meta).__name__}")
    obs_dim = meta.get("obs_dim", _MISSING)
    if not positive_int(obs_dim):
        raise bad("obs_dim", obs_dim, "a positive integer (the observation width)")
    mappo = meta.get("mappo", _MISSING)
    if not isinstance(mappo, dict):
        raise bad("mappo", mappo, "an object (the MAPPO settings)")
    hidden = mappo.get("hidden", _MISSING)
    if not positive_int(hidden):
        raise bad("mappo.hidden", hidden, "a positive integer (hidden units)")
    normalize = mappo.get("normalize_obs", False)
    if not isinstance(normalize, bool):
        raise bad("mappo.normalize_obs", normalize, "true or false")
    return obs_dim, hidden, normalize


_MISSING = object()
