"""Policies shipped with finsim-mesa as package data.

``mappo/``: a small MAPPO actor (``weights.safetensors``, actor tensors only,
and ``meta.json`` with the command that trained it, its settings, the
observation fields it reads and the evaluation figures CI checks it against).
Use it as ``brain="mappo"`` anywhere a brain name is accepted.
"""

from __future__ import annotations

from finsim_mesa.agents.actor import SHIPPED, MappoBrain

__all__ = ["SHIPPED", "shipped_brain"]


def shipped_brain() -> MappoBrain:
    """The shipped MAPPO policy as a brain (deterministic: the Beta mean)."""
    return MappoBrain()
