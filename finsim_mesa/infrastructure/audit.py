"""The infrastructure layer's audit trail: a record of every money movement
between institutions (new loans, roll-overs, repayments, margin), kept by the
router (:class:`AuditTrail`, a mixin of
:class:`~finsim_mesa.infrastructure.router.InfrastructureRouter`).

Each record is one call's rows as columns of compact dtypes (:data:`AUDIT_COLUMNS`);
a column of one number is a read-only view of a shared constant array. Records
made by :meth:`AuditTrail.record_owned` are kept as their arguments until read
(:meth:`AuditTrail.audit`, ``_audit``), then written as :meth:`AuditTrail.record`
would have written them, bit for bit.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from finsim_mesa.state import log_restore, log_state

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AUDIT_COLUMNS", "KINDS", "OUTCOMES", "AuditTrail"]

KINDS = ("loan", "rollover", "repayment", "margin_call", "margin_return")
OUTCOMES = ("processed", "expired", "failed", "renewed", "paid", "partial", "unpaid",
            "posted", "short", "returned")
_KIND_CODE = {kind: code for code, kind in enumerate(KINDS)}  # KINDS.index, by lookup
_OUTCOME_CODE = {out: code for code, out in enumerate(OUTCOMES)}
AUDIT_COLUMNS = ("step", "kind", "sender", "receiver", "amount", "received", "exchange", "ccp",
                 "fee", "delay", "outcome")


class AuditTrail:
    """The audit records of a router (``self.model.collect_data`` off: none)."""

    model: Any

    def _start_audit(self) -> None:
        # the audit records, in order: column dicts, or record_owned's lists not yet
        # read (kept of them, none before kept_from)
        self._records: list[dict[str, np.ndarray] | list[Any]] = []
        self._kept = self._kept_from = 0
        self._constants = _Constants()

    def _audit_state(self, shallow: bool) -> tuple[Any, int]:
        """The audit's part of a snapshot (:func:`~finsim_mesa.state.log_state`),
        with the first record that may be kept as a list then."""
        return (log_state(self._records, shallow),
                self._kept_from if self._kept else len(self._records))

    def _restore_audit(self, saved: Any, kept_from: int) -> None:
        """Put an :meth:`_audit_state` back."""
        self._records = log_restore(saved)
        self._count_kept(kept_from)

    @property
    def auditing(self) -> bool:
        """Whether :meth:`record` keeps records: not in lookahead copies of a model
        (``collect_data`` off), whose callers may skip gathering the columns."""
        return bool(self.model.collect_data)

    def record(self, kind: str, sender: np.ndarray, receiver: np.ndarray, amount: np.ndarray,
               received: np.ndarray | float, exchange: np.ndarray | int, ccp: np.ndarray | int,
               fee: np.ndarray | float, delay: np.ndarray | int, outcome: np.ndarray | str,
               step: int) -> None:
        """Append audit records (columns of equal length; scalars are broadcast).
        Lookahead copies of a model (``collect_data`` off) keep no audit."""
        if not self.model.collect_data:
            return
        given, amount = amount, np.asarray(amount, dtype=float)
        k = amount.size
        if not k:
            return
        c = self._constants
        self._records.append({
            "step": _column(step, k, _I32, c), "kind": _column(_KIND_CODE[kind], k, _I8, c),
            "sender": _column(sender, k, _I32, c), "receiver": _column(receiver, k, _I32, c),
            # what was received given as the amount itself (loans, roll-overs, margin
            # posted in full): the amount column again, not a copy of it (records
            # are never changed in place)
            "amount": amount,
            "received": amount if received is given else _column(received, k, float, c),
            "exchange": _column(exchange, k, _I16, c), "ccp": _column(ccp, k, _I16, c),
            "fee": _column(fee, k, float, c), "delay": _column(delay, k, _I16, c),
            "outcome": _column(_OUTCOME_CODE[outcome] if isinstance(outcome, str) else outcome,
                               k, _I8, c),
        })

    def record_owned(self, kind: str, sender: np.ndarray | int, receiver: np.ndarray | int,
                     amount: np.ndarray, received: np.ndarray | float,
                     exchange: np.ndarray | int, ccp: np.ndarray | int,
                     fee: np.ndarray | float, delay: np.ndarray | int,
                     outcome: np.ndarray | str, step: int) -> None:
        """:meth:`record` for a caller whose float64 arrays (amount, received,
        fee) are new and never written afterwards: the audit holds them as
        they are (as record holds the amount). Each column an array of the
        amount's length (received, fee: float64) or a number: a Python int in
        range of its integer column, a Python float for received and fee, the
        outcome's name; else, or an amount not a 1-d float64 array, or a step
        not a Python int, :meth:`record` itself (and its errors, at once).

        The record is the one :meth:`record` would write, bit for bit, once
        read (:attr:`_audit`, :meth:`audit`): its integer arrays are copied to
        their audit dtypes now (``astype``, as record does; the kind and
        outcome names are their codes), the rest is kept as given, in a list,
        turned into record's column dict when read (:meth:`_unkeep`): no
        Python work per column in the step, the same bytes (a float64 array
        held is a float64 copy's bytes; a number becomes the column
        ``np.full`` gives, as in record)."""
        # (no audit kept, collect_data off: record drops it; odd columns: record's own)
        if (not self.model.collect_data or type(amount) is not _NDARRAY
                or amount.dtype is not _F64 or amount.ndim != 1 or type(step) is not int):
            return self.record(kind, sender, receiver, amount, received, exchange, ccp, fee,
                               delay, outcome, step)
        shape = amount.shape
        # (a number in range of its column's dtype, or an array of the amount's shape:
        # else record, whose np.full or broadcast refuses what it refuses, at once)
        for col, span in ((sender, _SPAN32), (receiver, _SPAN32), (received, None),
                          (exchange, _SPAN16), (ccp, _SPAN16), (fee, None), (delay, _SPAN16)):
            kind_of = type(col)
            if kind_of is _NDARRAY:
                if col.shape != shape or (span is None and col.dtype is not _F64):
                    break
            elif (kind_of is not float) if span is None else (
                    kind_of is not int or not -span <= col < span):
                break
        else:
            if type(outcome) is not str and (type(outcome) is not _NDARRAY
                                             or outcome.shape != shape):
                return self.record(kind, sender, receiver, amount, received, exchange, ccp,
                                   fee, delay, outcome, step)
            k = amount.size
            if not k:
                return None
            log = self._records
            if not self._kept:
                self._kept_from = len(log)
            log.append([k, step, _KIND_CODE[kind],
                        sender.astype(_I32) if type(sender) is _NDARRAY else sender,
                        receiver.astype(_I32) if type(receiver) is _NDARRAY else receiver,
                        amount, received,
                        exchange.astype(_I16) if type(exchange) is _NDARRAY else exchange,
                        ccp.astype(_I16) if type(ccp) is _NDARRAY else ccp, fee,
                        delay.astype(_I16) if type(delay) is _NDARRAY else delay,
                        _OUTCOME_CODE[outcome] if type(outcome) is str
                        else outcome.astype(_I8) if type(outcome) is _NDARRAY else outcome])
            self._kept += 1
            return None
        return self.record(kind, sender, receiver, amount, received, exchange, ccp, fee, delay,
                           outcome, step)

    def _unkeep(self) -> None:
        """Every record kept by :meth:`record_owned` turned into :meth:`record`'s
        column dict (in place: the list's length and order stay)."""
        log, c = self._records, self._constants
        for i in range(min(self._kept_from, len(log)) if self._kept else len(log), len(log)):
            r = log[i]
            if type(r) is not list:
                continue
            k, step, kind, sender, receiver, amount, received, exchange, ccp, fee, delay, \
                outcome = r
            # (an array column: of its dtype already, the copy record_owned made)
            log[i] = {
                "step": _column(step, k, _I32, c), "kind": _column(kind, k, _I8, c),
                "sender": sender if type(sender) is _NDARRAY else _column(sender, k, _I32, c),
                "receiver": (receiver if type(receiver) is _NDARRAY
                             else _column(receiver, k, _I32, c)),
                "amount": amount,
                "received": (received if type(received) is _NDARRAY
                             else _column(received, k, float, c)),
                "exchange": (exchange if type(exchange) is _NDARRAY
                             else _column(exchange, k, _I16, c)),
                "ccp": ccp if type(ccp) is _NDARRAY else _column(ccp, k, _I16, c),
                "fee": fee if type(fee) is _NDARRAY else _column(fee, k, float, c),
                "delay": delay if type(delay) is _NDARRAY else _column(delay, k, _I16, c),
                "outcome": (outcome if type(outcome) is _NDARRAY
                            else _column(outcome, k, _I8, c))}
        self._kept = self._kept_from = 0  # (one form of "none kept", whatever was kept)

    def _count_kept(self, start: int) -> None:
        """How many records are kept as lists, and the first, none before ``start``."""
        log = self._records
        kept = [i for i in range(min(start, len(log)), len(log)) if type(log[i]) is list]
        self._kept, self._kept_from = len(kept), kept[0] if kept else 0

    @property
    def _audit(self) -> list[dict[str, np.ndarray]]:
        """The audit records, each a dict of columns (those kept as given turned
        into columns first): the list itself."""
        if self._kept:
            self._unkeep()
        return self._records  # type: ignore[return-value]

    @_audit.setter
    def _audit(self, records: list[dict[str, np.ndarray]]) -> None:
        self._records = records  # type: ignore[assignment]
        self._count_kept(0)

    def audit(self) -> pd.DataFrame:
        """Every routed transaction so far: who, what, which exchange and CCP
        (−1: none), fee, delay (steps) and outcome."""
        import pandas as pd

        if not self._audit:
            return pd.DataFrame({c: [] for c in AUDIT_COLUMNS})
        cols = {c: np.concatenate([a[c] for a in self._audit]) for c in AUDIT_COLUMNS}
        df = pd.DataFrame(cols)
        df["kind"] = pd.Categorical.from_codes(df["kind"], KINDS)
        df["outcome"] = pd.Categorical.from_codes(df["outcome"], OUTCOMES)
        return df

    def transactions(self, step: int | None = None) -> int:
        """Number of audit records (of one step, or all)."""
        log = self._records  # (a record kept as given: its length and step lead it)
        if step is None:
            return sum(a[0] if type(a) is list else a["step"].size for a in log)
        # each record is one step's, appended in step order: read back to the step
        count = 0
        for a in reversed(log):
            at, k = (a[1], a[0]) if type(a) is list else (int(a["step"][0]), a["step"].size)
            if at < step:
                break
            if at == step:
                count += k
        return count


def _column(value: Any, k: int, dtype: Any, constants: _Constants) -> np.ndarray:
    """An audit column of ``k`` entries of ``dtype``: a copy of an array, or a
    number repeated (:meth:`_Constants.column`)."""
    if type(value) is int:  # (most one-number columns: an int has no NaN or -0.0 to
        base = constants.ints.get((value, dtype))  # tell apart, its value and the
        if base is not None and base.size >= k:  # dtype are the key)
            return base[:k]
        return constants.column(value, k, dtype)
    if type(value) in _NUMBERS:  # the other one-number columns
        return constants.column(value, k, dtype)
    if isinstance(value, np.ndarray) and value.shape == (k,):
        return value.astype(dtype)
    if np.ndim(value) == 0:
        return constants.column(value.item() if isinstance(value, np.ndarray) else value, k,
                                dtype)
    return np.broadcast_to(value, k).astype(dtype)


_I8, _I16, _I32 = np.int8, np.int16, np.int32
_NDARRAY, _F64 = np.ndarray, np.dtype(np.float64)
_SPAN16, _SPAN32 = 1 << 15, 1 << 31  # (a Python int fits int16 / int32: -span <= it < span)
_NUMBERS = frozenset((int, float, bool))


class _Constants:
    """Columns of one number repeated, ``np.full(k, value, dtype)``, handed out
    as read-only views of one shared array per (number, dtype), grown as
    needed: most audit columns are one number (the step, the kind, a zero fee),
    and a view costs a fraction of a new array. A record holds the same values,
    dtype and shape as a full column (so the same bytes in a snapshot and its
    fingerprint). Not state: a cache."""

    __slots__ = ("arrays", "ints")

    def __init__(self) -> None:
        self.arrays: dict[tuple[Any, type, Any], np.ndarray] = {}
        self.ints: dict[tuple[int, Any], np.ndarray] = {}  # those of Python ints, by (value, dtype)

    def column(self, value: Any, k: int, dtype: Any) -> np.ndarray:
        """``np.full(k, value, dtype)``, read-only."""
        if isinstance(value, float) and (value != value or (
                value == 0.0 and math.copysign(1.0, value) < 0)):
            return np.full(k, value, dtype=dtype)  # NaN: no key matches; -0.0 would match 0.0
        key = (value, type(value), dtype)
        base = self.arrays.get(key)
        if base is None or base.size < k:
            if len(self.arrays) > 256:  # one key a step (the step number): forget old ones
                self.arrays.clear()
                self.ints.clear()
            base = np.full(max(k, 0 if base is None else 2 * base.size), value, dtype=dtype)
            base.flags.writeable = False
            self.arrays[key] = base
            if type(value) is int:
                self.ints[value, dtype] = base
        return base[:k]

    def __repr__(self) -> str:
        return "<audit constant columns>"
