"""A quick copy of Mesa's ``model.random`` (a ``random.Random``) for a step's
transaction (issue 15).

``Random.getstate()`` builds a tuple of 625 Python ints, and the step drops the
previous one: ~6% of a 30-bank step, though the step itself never draws from
``model.random``. :func:`save` copies the generator's state as the 2,500 bytes
CPython keeps it in instead (``index`` and the 624 words of ``_random.Random``'s
C struct, right after the object header), and :func:`put_back` writes them back
(or, into any other generator, the :meth:`~random.Random.setstate` tuple they
stand for). It is used only where it was checked to work: CPython, an exact
``random.Random``, and a layout that gave ``getstate()``'s own values for
several seeds and draws when this module was imported (:data:`AT`: the offset,
None otherwise: then :func:`save` is ``getstate()``). The state is what
``getstate()`` would give, so a failed step is rolled back as before, whatever
drew from the generator (a bound method, ``seed``, ``setstate``).
"""

from __future__ import annotations

import ctypes
import random
import sys
from array import array
from typing import Any

__all__ = ["AT", "RawState", "put_back", "save"]

_N = 624  # the Mersenne Twister's words
_SIZE = 4 + 4 * _N  # int index, then uint32_t state[624]


class RawState:
    """A generator's state as CPython holds it (see the module's notes)."""

    __slots__ = ("gauss_next", "raw")

    def __init__(self, raw: bytes, gauss_next: Any) -> None:
        self.raw, self.gauss_next = raw, gauss_next

    def as_tuple(self) -> tuple:
        """The :meth:`random.Random.getstate` value of this state."""
        words = array("I", self.raw[4:])
        index = int.from_bytes(self.raw[:4], sys.byteorder, signed=True)
        return (random.Random.VERSION, (*words.tolist(), index), self.gauss_next)


_VIEWS: dict[int, tuple[random.Random, memoryview]] = {}  # id -> (generator, its bytes)


def _read(r: random.Random, at: int) -> RawState:
    # a view of the state's bytes, made once per generator and kept with it (the
    # reference keeps the memory valid; at most 64 kept), copied out by tobytes()
    kept = _VIEWS.get(id(r))
    if kept is None or kept[0] is not r:
        if len(_VIEWS) >= 64:
            _VIEWS.clear()
        view = memoryview((ctypes.c_char * _SIZE).from_address(id(r) + at)).cast("B")
        kept = _VIEWS[id(r)] = (r, view)
    return RawState(kept[1].tobytes(), r.gauss_next)


def _probe() -> int | None:
    """The offset of the state in a ``random.Random``, checked, or None."""
    at = object.__basicsize__  # the header: reference count and type
    if (sys.implementation.name != "cpython" or array("I").itemsize != 4
            or random.Random.__mro__[1].__basicsize__ < at + _SIZE):
        return None
    try:
        for seed in (0, 1, 2**70 + 5, "finsim"):
            r = random.Random(seed)
            for _ in range(3):
                if _read(r, at).as_tuple() != r.getstate():
                    return None
                r.random()
                r.gauss(0.0, 1.0)
                r.getrandbits(20_000)
            copy = random.Random(7)
            saved = _read(r, at)
            ctypes.memmove(id(copy) + at, saved.raw, _SIZE)
            copy.gauss_next = saved.gauss_next
            if copy.getstate() != r.getstate() or copy.random() != r.random():
                return None
    except Exception:  # any surprise: getstate() as before
        return None
    finally:
        _VIEWS.clear()
    return at


AT = _probe()


def save(r: Any) -> Any:
    """``r.getstate()``, or the same state as a :class:`RawState` (quicker)."""
    if AT is not None and type(r) is random.Random:
        return _read(r, AT)
    return r.getstate()


def put_back(r: Any, state: Any) -> None:
    """``r.setstate(state)`` for a state :func:`save` gave (either kind)."""
    if type(state) is RawState:
        if AT is not None and type(r) is random.Random:
            ctypes.memmove(id(r) + AT, state.raw, _SIZE)
            r.gauss_next = state.gauss_next
            return
        state = state.as_tuple()
    r.setstate(state)
