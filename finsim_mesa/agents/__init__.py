"""Banks, their brains and rules; ``brain="mappo"`` (the shipped policy) is
registered in :data:`finsim_mesa.agents.brains.BRAINS` here."""

from finsim_mesa.agents import actor as _actor
from finsim_mesa.agents import brains as _brains

_brains.BRAINS.setdefault("mappo", _actor.MappoBrain)
