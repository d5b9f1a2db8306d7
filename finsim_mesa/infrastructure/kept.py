"""The agent lists a model reads every step, kept between reads.

The stages read the exchanges and CCPs several times a step (settle, clear,
observe, record, the step's transaction); reading them from Mesa's weak-keyed
agent sets costs several microseconds each time. :class:`KeptAgentLists` (a
mixin for a ``mesa.Model``) keeps each type's agents as a tuple and drops it
whenever an agent registers or deregisters.
"""

from __future__ import annotations

from typing import Any

from finsim_mesa.infrastructure.ccp import CentralCounterparty
from finsim_mesa.infrastructure.exchange import Exchange

__all__ = ["KeptAgentLists"]


class _Kept:
    """Each agent type's (Mesa agent set, tuple of its agents). Not state: a cache."""

    __slots__ = ("lists",)

    def __init__(self) -> None:
        self.lists: dict[type, tuple[Any, tuple[Any, ...]]] = {}

    def __repr__(self) -> str:
        return "<kept agent lists>"


class KeptAgentLists:
    """Mixin for a ``mesa.Model``: :meth:`of_type` is ``tuple(agents_by_type.get(kind,
    ()))``, kept between calls; the model's exchanges and CCPs."""

    @property
    def exchanges(self) -> list[Exchange]:
        """The exchange agents in id order (Mesa's ``agents_by_type``)."""
        return list(self.of_type(Exchange))

    @property
    def ccps(self) -> list[CentralCounterparty]:
        """The CCP agents in id order (Mesa's ``agents_by_type``)."""
        return list(self.of_type(CentralCounterparty))

    def of_type(self, kind: type) -> tuple[Any, ...]:
        """The agents of type ``kind`` (exactly; Mesa's ``agents_by_type``), in
        their agent set's order. The tuple kept is used while no agent has
        registered or deregistered since and the agent set is the same object
        with as many agents (an agent set edited directly is read again)."""
        kept = self.__dict__.get("_kept_agents")
        if kept is None:
            kept = self.__dict__["_kept_agents"] = _Kept()
        group = self.agents_by_type.get(kind)  # type: ignore[attr-defined]
        got = kept.lists.get(kind)
        if got is not None and got[0] is group and len(got[1]) == (
                0 if group is None else len(group)):
            return got[1]
        agents = () if group is None else tuple(group)
        kept.lists[kind] = (group, agents)
        return agents

    def register_agent(self, agent: Any) -> None:
        """Mesa's ``register_agent``; the kept lists are dropped."""
        self.__dict__["_kept_agents"] = _Kept()
        super().register_agent(agent)  # type: ignore[misc]

    def deregister_agent(self, agent: Any) -> None:
        """Mesa's ``deregister_agent``; the kept lists are dropped."""
        self.__dict__["_kept_agents"] = _Kept()
        super().deregister_agent(agent)  # type: ignore[misc]
