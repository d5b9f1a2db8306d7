"""One copy of several arrays of numbers for a step's transaction (issue 15).

:func:`~finsim_mesa.state.snapshot_model`'s quick copy (``shallow_logs``, taken
before every step and dropped after it unless the step fails) copied the
ledger's 16 arrays and the loan book's 8 row arrays one by one: 24 small
arrays made and freed a step. :class:`Packed` joins their bytes into one
``bytes`` object instead and keeps the arrays themselves for their layout
only; the arrays are read back from the bytes only if the step fails
(``Ledger.restore``, ``LoanBook.load``).
"""

from __future__ import annotations

from collections.abc import Iterator
from operator import attrgetter
from typing import Any

import numpy as np

__all__ = ["PACK_MAX_BYTES", "Packed", "PackedDict", "pack"]

# Above this many bytes in all, one copy per array (the former form). Measured
# interleaved (session 29): at 30-100 banks (~10-40 kB) the packed copy takes the step
# to ~0.98x; at 1,000 banks with 2 exchanges + 1 CCP (~0.3 MB) it made the step
# 1.03-1.06x in later steps, and at 100,000 banks (~35 MB a step, glibc's malloc
# thresholds moved) a quarter of the steps ran ~20% slower (1.05x in all).
PACK_MAX_BYTES = 2**16


_NBYTES = attrgetter("nbytes")


def _nbytes(arrays: tuple[np.ndarray, ...]) -> int:
    return sum(map(_NBYTES, arrays))  # (a C getter mapped: no generator frame per array)


def pack(arrays: tuple[np.ndarray, ...]) -> Packed | tuple[np.ndarray, ...]:
    """A step's copy of ``arrays``: one :class:`Packed` up to :data:`PACK_MAX_BYTES`
    in all, else a copy of each (``a.copy()``); either iterates to the arrays as they
    were."""
    if _nbytes(arrays) > PACK_MAX_BYTES:
        return tuple(a.copy() for a in arrays)
    return Packed(arrays)


class Packed:
    """A step's copy of several arrays of numbers (issue 15): their bytes joined into
    one ``bytes`` object (one copy, instead of one array per array), and the arrays
    themselves for their layout alone (dtype, shape: never set in place in this
    package, tested), read back only if the step fails. Iterating gives the arrays
    as they were (read-only views of the bytes; an array without entries: itself,
    as the step's copy always held it), in C order. Not for arrays of objects (their
    bytes are pointers): the ledger's arrays and a book's rows hold numbers (tested)."""

    __slots__ = ("_raw", "_refs")

    def __init__(self, arrays: tuple[np.ndarray, ...]) -> None:
        self._refs = arrays
        try:
            self._raw = b"".join(arrays)
        except TypeError:  # an array not C-contiguous: its C-order copy (as .copy() gives)
            self._raw = b"".join([np.ascontiguousarray(a) for a in arrays])

    def at(self, i: int) -> np.ndarray | bytes:
        """The ``i``-th array as it was (a memoryview joined: its bytes as they were)."""
        ref = self._refs[i]
        at = _nbytes(self._refs[:i])
        if type(ref) is memoryview:
            return self._raw[at:at + ref.nbytes]
        if not ref.size:
            return ref
        return np.frombuffer(self._raw, ref.dtype, ref.size, at).reshape(ref.shape)

    def __iter__(self) -> Iterator[np.ndarray]:
        return map(self.at, range(len(self._refs)))

    def __len__(self) -> int:
        return len(self._refs)


_GETTERS: dict[tuple[str, ...], Any] = {}  # names -> their attrgetter


class PackedDict(dict):
    """A dict whose entries ``names`` are an object's arrays as they were, held as one
    :class:`Packed` copy and read back (``self[name]``) only if asked for."""

    __slots__ = ("_names", "_packed")

    @classmethod
    def of(cls, obj: Any, names: tuple[str, ...]) -> PackedDict | dict[str, np.ndarray]:
        """``obj``'s arrays ``names``, copied (the other entries: added by the caller)."""
        getter = _GETTERS.get(names)
        if getter is None:
            getter = _GETTERS[names] = (attrgetter(*names) if len(names) > 1
                                        else lambda o: (getattr(o, names[0]),))
        arrays = getter(obj)
        if _nbytes(arrays) > PACK_MAX_BYTES:  # (large: one copy each, see PACK_MAX_BYTES)
            return dict(zip(names, (a.copy() for a in arrays), strict=True))
        out = cls()
        out._names, out._packed = names, Packed(arrays)
        return out

    def __missing__(self, key: str) -> np.ndarray:
        if key not in self._names:
            raise KeyError(key)
        return self._packed.at(self._names.index(key))
