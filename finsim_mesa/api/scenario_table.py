"""The service's scenarios: the registered ones when it starts plus those
clients define with ``POST /scenarios/set`` (never the process-wide registry).

The table is copy-on-write: readers take the current mapping (a plain dict
that is never changed once published) without a lock; a definition builds a
new mapping under a lock and publishes it. Client definitions are bounded in
number (``ApiLimits.max_scenarios``) and in size (the request schema bounds
every field: name and description lengths, numbers). With a data folder,
each new definition is kept on disk (``on_add``, the journal) before it is
published, so it survives a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from finsim_mesa.api.errors import Conflict
from finsim_mesa.errors import FinsimError
from finsim_mesa.scenarios import Scenario

__all__ = ["ScenarioTable"]


class ScenarioTable:
    """Scenarios by name.

    Args:
        builtin: the scenarios known at start (never counted against the limit,
            never replaced).
        max_defined: most scenarios clients may add.
    """

    def __init__(self, builtin: Mapping[str, Scenario], max_defined: int) -> None:
        self._current: dict[str, Scenario] = dict(builtin)
        self._builtin = frozenset(builtin)
        self.max_defined = max_defined
        self._lock = threading.Lock()
        self.on_add: Callable[[Scenario], None] | None = None  # keeps a new definition

    def snapshot(self) -> Mapping[str, Scenario]:
        """The table now (a mapping no one changes; safe to iterate)."""
        return self._current

    def __contains__(self, name: object) -> bool:
        return name in self._current

    def __getitem__(self, name: str) -> Scenario:
        return self._current[name]

    def names(self) -> list[str]:
        return list(self._current)

    def defined(self) -> int:
        """How many scenarios clients have added."""
        return len(self._current) - len(self._builtin)

    def get(self, name: str) -> Scenario:
        """The scenario called ``name``.

        Raises:
            FinsimError: no such name (the message lists the known ones).
        """
        spec = self._current.get(name)
        if spec is None:
            raise FinsimError(f"scenario {name!r} is unknown; choose one of "
                              f"{', '.join(self._current)} (or define your own with POST "
                              "/scenarios/set)")
        return spec

    def add(self, spec: Scenario) -> Scenario:
        """Register a client's definition (the same definition again is fine).

        Raises:
            Conflict: a different scenario has that name, or the table is full.
        """
        with self._lock:
            known = self._current.get(spec.name)
            if known is not None:
                if known != spec:
                    raise Conflict(f"a different scenario named {spec.name!r} exists; choose "
                                   "another name")
                return known
            if self.defined() >= self.max_defined:
                raise Conflict(f"the server holds {self.defined()} client-defined scenarios, "
                               "its limit; use one of them by name")
            if self.on_add is not None:
                self.on_add(spec)  # JournalError: not added
            self._current = self._current | {spec.name: spec}
            return spec
