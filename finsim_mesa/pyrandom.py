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

The model's NumPy generator (``model.rng``, a ``PCG64``) is copied the same way
by :func:`save_bits` / :func:`put_back_bits` (helper-47): its ``state``
property builds a dict of two 128-bit ints every step (~1.7 us, ~3.5 us in a
running step); the quick copy takes the 32 bytes of the PCG state and the 8
of the buffered 32-bit draw (``has_uint32``, ``uinteger``) at the addresses
the generator's own ``ctypes.state_address`` gives. Used only for an exact
``PCG64`` whose layout gave the ``state`` property's values for several seeds
and draws when this module was imported (:data:`BITS_OK`); otherwise, and for
any other bit generator, the ``state`` dict as before.
"""

from __future__ import annotations

import ctypes
import random
import sys
from array import array
from typing import Any

import numpy as np

__all__ = ["AT", "BITS_OK", "RawBits", "RawState", "live_bytes", "put_back", "put_back_bits",
           "save", "save_bits"]

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


def _bytes_at(address: int, size: int) -> memoryview:
    """A writable view of ``size`` bytes of memory at ``address``."""
    return memoryview((ctypes.c_char * size).from_address(address)).cast("B")


def _kept(views: dict[int, tuple], obj: Any, make: Any) -> tuple:
    """``(obj, *make(obj))``: views of ``obj``'s state, made once per object and
    kept with it in ``views`` (the reference keeps the memory valid and its id
    unused by another object; at most 64 kept)."""
    kept = views.get(id(obj))
    if kept is None or kept[0] is not obj:
        if len(views) >= 64:
            views.clear()
        kept = views[id(obj)] = (obj, *make(obj))
    return kept


_VIEWS: dict[int, tuple[random.Random, memoryview]] = {}  # id -> (generator, its bytes)


def _read(r: random.Random, at: int) -> RawState:
    # the state's bytes through a kept view, copied out by tobytes()
    view = _kept(_VIEWS, r, lambda r: (_bytes_at(id(r) + at, _SIZE),))[1]
    return RawState(view.tobytes(), r.gauss_next)


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


# ------------------------------------------------------------ NumPy's PCG64
_PCG64 = np.random.PCG64


class RawBits:
    """A ``PCG64``'s state as NumPy holds it: ``pcg`` (state and increment, 32
    bytes) and ``extra`` (``has_uint32`` and ``uinteger``, 8 bytes)."""

    __slots__ = ("extra", "pcg")

    def __init__(self, pcg: bytes, extra: bytes) -> None:
        self.pcg, self.extra = pcg, extra

    def as_dict(self) -> dict[str, Any]:
        """The ``bit_generator.state`` value of this state."""
        little = sys.byteorder == "little"
        state, inc = self.pcg[:16], self.pcg[16:]
        if not little:  # (a 128-bit int in native order, as the probe checked)
            state, inc = state[::-1], inc[::-1]
        return {"bit_generator": "PCG64",
                "state": {"state": int.from_bytes(state, "little"),
                          "inc": int.from_bytes(inc, "little")},
                "has_uint32": int.from_bytes(self.extra[:4], sys.byteorder, signed=True),
                "uinteger": int.from_bytes(self.extra[4:], sys.byteorder)}


_BIT_VIEWS: dict[int, tuple[Any, memoryview, memoryview]] = {}  # id -> (bitgen, pcg, extra)


def _pcg_views(bg: Any) -> tuple[memoryview, memoryview]:
    at = bg.ctypes.state_address  # struct {pcg64_random_t *pcg; int has; uint32 u}
    pcg = ctypes.c_void_p.from_address(at).value
    return _bytes_at(pcg, 32), _bytes_at(at + ctypes.sizeof(ctypes.c_void_p), 8)


def _bit_views(bg: Any) -> tuple[Any, memoryview, memoryview]:
    # writable views of the generator's state (the PCG's 32 bytes, the buffered
    # draw's 8), kept with it
    return _kept(_BIT_VIEWS, bg, _pcg_views)


def _probe_bits() -> bool:
    """Whether the quick copy of a ``PCG64`` gives its ``state`` and puts it back."""
    if (sys.implementation.name != "cpython" or ctypes.sizeof(ctypes.c_int) != 4
            or ctypes.sizeof(ctypes.c_void_p) != 8):
        return False
    try:
        for seed in (0, 1, 2**70 + 5, 12345):
            g = np.random.Generator(_PCG64(seed))
            for _ in range(3):
                _, pcg, extra = _bit_views(g.bit_generator)
                saved = RawBits(pcg.tobytes(), extra.tobytes())
                if saved.as_dict() != g.bit_generator.state:
                    return False
                g.random(3)
                g.integers(0, 7, size=3, dtype=np.int32)  # (a 32-bit draw kept, or used)
                g.bit_generator.random_raw(2)
            other = np.random.Generator(_PCG64(7))
            _, pcg, extra = _bit_views(other.bit_generator)
            pcg[:], extra[:] = saved.pcg, saved.extra
            g.bit_generator.state = saved.as_dict()
            if (other.bit_generator.state != g.bit_generator.state
                    or other.integers(0, 2**31, size=5, dtype=np.int32).tolist()
                    != g.integers(0, 2**31, size=5, dtype=np.int32).tolist()):
                return False
    except Exception:  # any surprise: the state dict as before
        return False
    finally:
        _BIT_VIEWS.clear()
    return True


BITS_OK = _probe_bits()


def save_bits(bg: Any) -> Any:
    """``bg.state``, or for a ``PCG64`` the same state as a :class:`RawBits` (quicker)."""
    if BITS_OK and type(bg) is _PCG64:
        _, pcg, extra = _bit_views(bg)
        return RawBits(pcg.tobytes(), extra.tobytes())
    return bg.state


def put_back_bits(bg: Any, state: Any) -> None:
    """``bg.state = state`` for a state :func:`save_bits` gave (either kind)."""
    if type(state) is RawBits:
        if BITS_OK and type(bg) is _PCG64:
            _, pcg, extra = _bit_views(bg)
            pcg[:], extra[:] = state.pcg, state.extra
            return
        state = state.as_dict()
    bg.state = state


def live_bytes(r: Any, bg: Any) -> tuple[memoryview, memoryview, memoryview] | None:
    """Views of the live bytes :func:`save` and :func:`save_bits` would copy: ``r``'s
    state, ``bg``'s PCG state and its buffered draw (a :class:`RawState`'s ``raw``, a
    :class:`RawBits`' ``pcg`` and ``extra``), for a caller that copies them at once (a
    step's snapshot joins them with the ledger's arrays: ``stepcopy.StepNumbers``); None
    where either would give another kind of state."""
    if AT is None or type(r) is not random.Random or not BITS_OK or type(bg) is not _PCG64:
        return None
    kept = _LIVE.get(id(r))  # (the pair's views, made once: one look-up a step)
    if kept is None or kept[0] is not r or kept[1] is not bg:
        if len(_LIVE) >= 64:
            _LIVE.clear()
        kept = _LIVE[id(r)] = (r, bg, (_kept(_VIEWS, r, _state_view)[1], *_bit_views(bg)[1:]))
    return kept[2]


# id(r) -> (r, bg, live_bytes(r, bg)) for the pair last read with r: the views _kept holds,
# in one look-up (the references keep the memory valid and the id unused, as in _kept)
_LIVE: dict[int, tuple[Any, Any, tuple[memoryview, memoryview, memoryview]]] = {}


def _state_view(r: random.Random) -> tuple[memoryview]:
    return (_bytes_at(id(r) + AT, _SIZE),)  # (AT: checked by the caller)
