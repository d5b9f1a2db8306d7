"""A trained actor network as a brain, in numpy: no torch needed to act.

The MAPPO actor (:class:`finsim_mesa.learning.mappo.Actor`) is a small MLP,

    h1 = tanh(W1 x + b1),  h2 = tanh(W2 h1 + b2),  (u, v) = W3 h2 + b3,
    α = 1 + softplus(u),   β = 1 + softplus(v),

with x the bank's observation (clipped to ±10, and standardised by the saved
running statistics when the policy was trained with ``normalize_obs``). The
action is Beta(α, β)'s mean α / (α + β) (deterministic) or a draw from the
model's generator. :class:`ActorBrain` evaluates it with numpy in float32, the
precision the network was trained in, so a policy runs where torch is not
installed (the Python 3.12 leg, a server without the ``learn`` extra) and with
no thread pool to contend for (torch's default threads made one ``act`` on
30 × 16 take 140 ms under load, against 2.5 ms with one thread).

Columns are matched by *name*: a policy's metadata lists the observation
fields it was trained on (``obs_fields``), and the brain picks them from the
model's observation by name, so it also acts in a model with more columns
(several asset classes append ``price_<class>`` columns).

:class:`MappoBrain` (``brain="mappo"``) is the policy shipped with the package
(``finsim_mesa/policies/mappo/``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from finsim_mesa.agents.brains import Brain
from finsim_mesa.errors import CheckpointError

__all__ = ["SHIPPED", "ActorBrain", "MappoBrain", "actor_forward", "load_actor_folder"]

SHIPPED = Path(__file__).resolve().parent.parent / "policies" / "mappo"
_LAYERS = ("body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias", "head.weight",
           "head.bias")


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(np.float32(0.0), x)


def actor_forward(weights: dict[str, np.ndarray], obs: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Beta parameters (α, β), each shape (n, 4), for observations of shape (n, d)."""
    # row-major, whatever the input's layout: the products below then sum in
    # the order they always have (a column-major input changes BLAS's blocking)
    x = np.clip(np.ascontiguousarray(obs, dtype=np.float32), -10, 10)
    if "obs_mean" in weights:
        x = np.clip((x - weights["obs_mean"]) / np.sqrt(weights["obs_var"] + np.float32(1e-8)),
                    -5.0, 5.0)
    h = np.tanh(x @ weights["body.0.weight"].T + weights["body.0.bias"])
    h = np.tanh(h @ weights["body.2.weight"].T + weights["body.2.bias"])
    out = h @ weights["head.weight"].T + weights["head.bias"]
    k = out.shape[-1] // 2
    return 1.0 + _softplus(out[:, :k]), 1.0 + _softplus(out[:, k:])


class ActorBrain(Brain):
    """Acts with a trained actor's weights (numpy, float32).

    Args:
        weights: the actor's tensors by name (``body.0.weight`` (hidden, d), ...,
            ``head.weight`` (8, hidden); ``obs_mean``/``obs_var`` (d,) if the policy
            standardises observations).
        obs_fields: the observation column names it was trained on, in order
            (``None``: the model's first ``d`` columns, checked by width).
        deterministic: act with the Beta mean (default) or sample.
        meta: the checkpoint's metadata.

    Raises:
        CheckpointError: weights missing or of inconsistent shapes.
    """

    name = "policy"

    def __init__(self, weights: dict[str, np.ndarray], obs_fields: list[str] | None = None,
                 deterministic: bool = True, meta: dict[str, Any] | None = None) -> None:
        missing = [k for k in _LAYERS if k not in weights]
        if missing:
            raise CheckpointError(f"actor weights lack {', '.join(missing)}")
        self.weights = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()
                        if k in _LAYERS or k in ("obs_mean", "obs_var")}
        self.obs_dim = int(self.weights["body.0.weight"].shape[1])
        if obs_fields is not None and len(obs_fields) != self.obs_dim:
            raise CheckpointError(f"metadata lists {len(obs_fields)} observation fields but "
                                  f"the actor's first layer takes {self.obs_dim} columns")
        self.obs_fields = list(obs_fields) if obs_fields is not None else None
        self.deterministic = deterministic
        self.meta = meta or {}
        self.columns: np.ndarray | None = None
        self.rng: np.random.Generator | None = None

    def setup(self, model: Any) -> None:
        from finsim_mesa.observation import observation_names

        names = observation_names(model.config, model.market.names)
        self.rng = model.rng
        if self.obs_fields is None:
            if len(names) != self.obs_dim:
                raise CheckpointError(
                    f"policy was trained on {self.obs_dim} observation columns, this model "
                    f"has {len(names)}; use a model with the same layer settings")
            self.columns = None
            return
        lost = [f for f in self.obs_fields if f not in names]
        if lost:
            raise CheckpointError(
                f"policy reads observation columns this model does not have: "
                f"{', '.join(lost)} (trained with the infrastructure layer "
                f"{'on' if 'posted_margin' in self.obs_fields else 'off'}); use a model "
                "with the same layer settings")
        idx = np.array([names.index(f) for f in self.obs_fields])
        self.columns = None if np.array_equal(idx, np.arange(len(names))) else idx

    def distribution(self, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(α, β) for each row of ``observations`` (the model's full columns)."""
        obs = observations if self.columns is None else observations[:, self.columns]
        return actor_forward(self.weights, obs)

    def act(self, observations: np.ndarray) -> np.ndarray:
        a, b = self.distribution(observations)
        if self.deterministic:
            return (a / (a + b)).astype(float)
        if self.rng is None:
            raise CheckpointError("a sampling policy brain needs setup(model) first")
        return self.rng.beta(a.astype(float), b.astype(float))


def load_actor_folder(folder: str | Path, deterministic: bool = True) -> ActorBrain:
    """An :class:`ActorBrain` from a folder with ``weights.safetensors`` (the
    actor's tensors, prefixed ``actor.``) and ``meta.json``, read with
    safetensors' numpy loader (no torch)."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        weights = load_file(str(folder / "weights.safetensors"))
    except FileNotFoundError as err:
        raise CheckpointError(f"{folder}: {Path(err.filename).name} is missing") from None
    except Exception as err:  # damaged JSON or safetensors header
        raise CheckpointError(f"{folder}: cannot read the policy: {err}") from None
    actor = {k[6:]: v for k, v in weights.items() if k.startswith("actor.")}
    return ActorBrain(actor, meta.get("obs_fields"), deterministic, meta)


_CACHE: dict[str, ActorBrain] = {}


class MappoBrain(ActorBrain):
    """The MAPPO policy shipped with finsim-mesa (``brain="mappo"``): trained by
    the command in its metadata (``meta["command"]``); acts deterministically."""

    name = "mappo"

    def __init__(self) -> None:
        if "mappo" not in _CACHE:
            _CACHE["mappo"] = load_actor_folder(SHIPPED)
        shipped = _CACHE["mappo"]
        super().__init__(shipped.weights, shipped.obs_fields, True, shipped.meta)
