"""The model's DataCollector: Mesa's, with the banks' rows built from arrays.

:class:`FinsimDataCollector` (what ``model.datacollector`` is) records the
model reporters every step and the banks' rows every ``agent_every`` steps,
as :class:`AgentRows` (the columns' arrays, turned into Mesa's row tuples
when read); exchanges and CCPs report per agent type. The model reporters
themselves are in :mod:`finsim_mesa.measures`.
"""

from __future__ import annotations

import itertools
import types
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from copy import deepcopy
from functools import partial
from operator import attrgetter
from typing import Any

import mesa
import numpy as np
from mesa.datacollection import DataCollector

__all__ = ["AgentRows", "FinsimDataCollector"]


class _Banks:
    """What ``DataCollector._record_agents`` reads of a model: its ``agents``."""

    def __init__(self, banks: list[Any]) -> None:
        self.agents = banks


class AgentRows(Sequence):
    """One step's bank rows, kept as the columns' arrays and turned into Mesa's
    row tuples ``(step, unique_id, value, ...)`` when read (iterated, indexed).

    Mesa stores a list of tuples per step; at 1,000 banks building them cost a
    quarter of a step, and holding them made Python's garbage collector walk
    an ever larger heap (issue 15). Read through ``get_agent_vars_dataframe``
    or ``batch_run`` the rows are the tuples Mesa would have made (tested).
    """

    __slots__ = ("_columns", "_ids", "_step")

    def __init__(self, step: Any, ids: Sequence[Any], columns: list[np.ndarray]) -> None:
        self._step, self._ids, self._columns = step, ids, columns

    @property
    def step(self) -> Any:
        """The step key of these rows (Mesa's ``model.steps`` or ``model.time``)."""
        return self._step

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return zip(itertools.repeat(self._step, len(self._ids)), self._ids,
                   *(c.tolist() for c in self._columns), strict=True)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return list(self)[i]
        return (self._step, self._ids[i], *(c[i].item() for c in self._columns))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


# types deepcopy returns as they are (copy._deepcopy_atomic)
_ATOMIC = frozenset({float, int, bool, str, type(None)})


class FinsimDataCollector(DataCollector):
    """Mesa's DataCollector with agent reporters for the banks only (exchanges and
    CCPs have reporters of their own type, ``agenttype_reporters``, so no agent
    reports a column it has no meaning for), and agent data only every
    ``agent_every`` steps."""

    def __init__(self, agent_every: int = 1,
                 agent_columns: Mapping[str, Callable[[Any], np.ndarray]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.agent_every = agent_every
        # rows built from arrays when every agent reporter has a column function
        self._columns = (list(agent_columns.values()) if agent_columns is not None
                         and list(agent_columns) == list(self.agent_reporters) else None)

    def _model_rows(self, model: mesa.Model) -> bool:
        """Mesa's model-reporter loop, for the usual case of validated reporters
        that are all functions of the model (Mesa's first branch): each value
        appended as ``deepcopy`` would give it — the value itself for the
        immutable scalars reporters return, a deep copy otherwise. Reporters
        that read an attribute path (``path``, see ``measures.make_reporters``)
        are read all at once, by one ``attrgetter``. Returns False (nothing
        done) when Mesa's own loop must run."""
        reporters = self.model_reporters
        if not reporters or not getattr(self, "_validated", False):
            return False
        # the reporters last seen (a copy of the dict): the same names, each with the
        # same reporter (dict equality compares them by identity first); ~1.5 us less in
        # a step than comparing the items' tuple, built each time. Their order matters
        # only to Mesa's loop, below, which takes it from the dict itself
        if reporters != getattr(self, "_plain_reporters", None):
            items = tuple(reporters.items())
            if not all(isinstance(r, types.LambdaType | partial) for _, r in items):
                return False
            paths = [getattr(r, "path", None) for _, r in items]
            self._plain_get = attrgetter(*paths) if None not in paths else None
            self._plain_items = items  # (in the order of the getter's values)
            self._plain_names = tuple(var for var, _ in items)
            self._plain_reporters = dict(reporters)
        items = self._plain_items
        if hasattr(self, "_collection_steps"):  # Mesa >= 3.5
            self._collection_steps.append(model.time)
        model_vars = self.model_vars
        get = self._plain_get
        if get is None:  # each value copied before the next reporter runs, as in Mesa's
            for var, reporter in tuple(reporters.items()):  # loop, in its order (a reporter
                value = reporter(model)  # may change what an earlier one returned)
                model_vars[var].append(value if type(value) in _ATOMIC else deepcopy(value))
            return True
        values = get(model) if len(items) > 1 else (get(model),)  # reads only
        if _ATOMIC.issuperset(map(type, values)):  # (the usual case) each value itself,
            # appended to its column's list in C
            deque(map(list.append, map(model_vars.__getitem__, self._plain_names), values),
                  maxlen=0)
            return True
        for (var, _), value in zip(items, values, strict=True):
            model_vars[var].append(value if type(value) in _ATOMIC else deepcopy(value))
        return True

    def add_agent_type(self, agent_type: type, reporters: Mapping[str, Any]) -> None:
        """Collect ``reporters`` (column -> attribute or function) for ``agent_type``."""
        for name, reporter in reporters.items():
            self._new_agenttype_reporter(agent_type, name, reporter)

    def mark(self) -> tuple[Any, ...]:
        """Where the records end now (see :meth:`rollback`): the model columns and
        their lengths, and how many step keys the agent records hold. Records are
        only ever added to (a collect appends to the columns and adds, or
        replaces, one step key), so the keys after the mark's are a failed
        step's; marking costs the same at any run length (not a set of every
        step's key)."""
        model_vars = self.model_vars
        return (tuple(model_vars), tuple(map(len, model_vars.values())),
                len(self._agent_records), len(self._agenttype_records),
                len(getattr(self, "_collection_steps", ())))

    def rollback(self, mark: tuple[Any, ...]) -> None:
        """Drop every record made after :meth:`mark` (a failed step's, if any)."""
        names, sizes, agents, types, steps = mark
        lengths = dict(zip(names, sizes, strict=True))
        for k, v in self.model_vars.items():
            del v[lengths.get(k, 0):]
        for records, kept in ((self._agent_records, agents), (self._agenttype_records, types)):
            for key in list(records)[kept:]:
                del records[key]
        if hasattr(self, "_collection_steps"):  # Mesa >= 3.5
            del self._collection_steps[steps:]

    def _record_agents(self, model: mesa.Model) -> Any:
        # Mesa applies agent reporters to model.agents; here they are the banks'
        banks = model.banks
        if self._columns is None or not banks:
            return super()._record_agents(_Banks(banks))
        return self._agent_rows(model)

    def _agent_rows(self, model: mesa.Model) -> AgentRows:
        """The banks' rows now, from the column functions (arrays copied). Mesa's
        own row for the first bank gives this Mesa's step key (``model.steps``
        in 3.3, ``model.time`` in 3.5)."""
        banks = model.banks
        step = next(iter(super()._record_agents(_Banks(banks[:1]))))[0]
        if len(getattr(self, "_ids", ())) != len(banks):
            self._ids = tuple(b.unique_id for b in banks)
        return AgentRows(step, self._ids, [np.array(c(model)) for c in self._columns])

    def collect(self, model: mesa.Model) -> None:
        """Model data every call; agent data when ``model.t % agent_every == 0``
        (the banks' rows as :class:`AgentRows` when built from the columns)."""
        agents = bool(self.agent_every and model.t % self.agent_every == 0)
        if not agents and self._model_rows(model):  # (the usual step: model data alone,
            return  # no reporter left for Mesa's collect to run)
        lazy = agents and self._columns is not None and bool(model.banks)
        if agents and not lazy:
            super().collect(model)
            return
        saved = self.model_reporters, self.agent_reporters, self.agenttype_reporters
        if self._model_rows(model):
            self.model_reporters = {}
        self.agent_reporters = {}
        if not agents:
            self.agenttype_reporters = {}
        try:
            if self.model_reporters or self.agenttype_reporters:
                super().collect(model)
        finally:
            self.model_reporters, self.agent_reporters, self.agenttype_reporters = saved
        if lazy:
            rows = self._agent_rows(model)
            self._agent_records[rows.step] = rows
