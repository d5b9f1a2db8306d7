"""A model's fingerprint: SHA-256 of its whole changing state.

The journal (:mod:`finsim_mesa.api.journal`) stores one with every row and
replay compares them, so a simulation is served after a restart only if it
is bit-identical to the one before. The state is what
``FinancialModel.snapshot()`` holds (ledger, market, the generators, the
run-time dataclasses, shock log, brains, router, exchanges, CCPs; sparse
matrices by their CSR arrays), fed to the hash with type tags, lengths,
shapes, dtypes and exact bits, so two states with equal fingerprints are
equal bit for bit. Caches a read fills (:data:`DERIVED`) are left out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from typing import Any

import numpy as np
import scipy.sparse as sp

from finsim_mesa.state import snapshot_model

__all__ = ["fingerprint"]

# caches filled on first read and derived from state that is fingerprinted
# (DebtRank on the initial network: reference.exposures0, equity0, assets0):
# left out, so a read (GET /metrics/risk) never changes a fingerprint and a
# replay, which does not repeat reads, still matches
DERIVED = {("Reference", "debtrank0")}


def _feed(h: Any, v: Any) -> None:
    """Feed ``v`` to the hash ``h`` unambiguously (type tags, lengths, exact bits)."""
    if isinstance(v, np.ndarray):
        if v.dtype == object:
            h.update(b"O")
            _feed(h, v.tolist())
            return
        h.update(f"A{v.dtype.str}{v.shape}".encode())
        h.update(np.ascontiguousarray(v).tobytes())
    elif sp.issparse(v):  # e.g. reference.exposures0, as stored (CSR arrays)
        m = v.tocsr()
        h.update(f"S{m.shape}".encode())
        for part in (m.data, m.indices, m.indptr):
            _feed(h, part)
    elif isinstance(v, np.generic):
        _feed(h, v.item())
    elif v is None or isinstance(v, bool):
        h.update(repr(v).encode())
    elif isinstance(v, int):
        h.update(b"i%d;" % v)
    elif isinstance(v, float):
        h.update(b"f" + struct.pack("<d", v))
    elif isinstance(v, str | bytes):
        b = v.encode() if isinstance(v, str) else v
        h.update(b"s%d:" % len(b) + b)
    elif isinstance(v, dict):
        h.update(b"d%d{" % len(v))
        for k in sorted(v, key=repr):
            _feed(h, k)
            _feed(h, v[k])
    elif isinstance(v, list | tuple):
        h.update(b"l%d[" % len(v))
        if all(type(x) is int for x in v):  # e.g. the 625 words of random's state: at once
            h.update(",".join(map(str, v)).encode() + b"]")
            return
        for x in v:
            _feed(h, x)
    elif dataclasses.is_dataclass(v):
        name = type(v).__name__
        h.update(name.encode())
        for f in dataclasses.fields(v):
            if (name, f.name) in DERIVED:
                continue
            _feed(h, f.name)
            _feed(h, getattr(v, f.name))
    else:
        raise TypeError(f"cannot fingerprint a {type(v).__name__}")


def fingerprint(model: Any) -> str:
    """SHA-256 (hex) of the model's whole changing state (its ``snapshot()``):
    equal fingerprints mean bit-identical states, step counter included."""
    h = hashlib.sha256()
    _feed(h, snapshot_model(model))
    return h.hexdigest()
