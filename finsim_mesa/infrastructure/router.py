"""The infrastructure router: banks → exchanges → CCPs → banks.

While the infrastructure layer is on, no interbank money moves bank to bank
directly: new loans are orders on the lender's exchange (capacity, fees,
delays), trades are novated to the CCP linked to that exchange (for a share
``ccp_clearing_share`` of them), and every money movement between institutions
— new loans, roll-overs, repayments, margin — gets an audit record.

Venue assignment (``venue_rule``): ``size`` balances the members' total assets
across exchanges (largest bank first, each to the venue with the least assets
so far), ``round_robin`` sends bank *i* to exchange ``i mod k``, ``random``
deals a random permutation round robin (every venue gets members). Exchange
*x* clears through CCP ``x mod n_ccps``; every bank is a member of every CCP
(it contributes to each default fund) and trades through its home exchange.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from finsim_mesa.errors import ConfigError
from finsim_mesa.state import log_restore, log_state

if TYPE_CHECKING:
    import pandas as pd

    from finsim_mesa.infrastructure.exchange import Exchange

__all__ = ["AUDIT_COLUMNS", "InfrastructureRouter", "assign_venues"]

KINDS = ("loan", "rollover", "repayment", "margin_call", "margin_return")
OUTCOMES = ("processed", "expired", "failed", "renewed", "paid", "partial", "unpaid",
            "posted", "short", "returned")
AUDIT_COLUMNS = ("step", "kind", "sender", "receiver", "amount", "received", "exchange", "ccp",
                 "fee", "delay", "outcome")


def assign_venues(rule: str, n_venues: int, size: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """Venue index of each bank, shape (n,), by ``rule`` (see the module docstring)."""
    n = size.size
    if rule == "round_robin":
        return np.arange(n) % n_venues
    if rule == "random":
        out = np.empty(n, dtype=np.int64)
        out[rng.permutation(n)] = np.arange(n) % n_venues
        return out
    if rule == "size":
        load = np.zeros(n_venues)
        out = np.empty(n, dtype=np.int64)
        for i in np.argsort(-size, kind="stable"):
            v = int(np.argmin(load))
            out[i] = v
            load[v] += size[i]
        return out
    raise ConfigError(f"venue_rule = {rule!r}: choose size, round_robin or random")


class InfrastructureRouter:
    """Routes interbank transactions through exchanges and CCPs and audits them.

    Args:
        model: the owning model (its ledger, market and step are used).
        exchanges: the exchange agents, in id order (the routing table).
        n_ccps: number of CCPs (0: trades settle through the exchange only).
        bank_exchange: shape (n,), each bank's home exchange.
    """

    def __init__(self, model: Any, exchanges: list[Exchange], n_ccps: int,
                 bank_exchange: np.ndarray) -> None:
        self.model = model
        self.exchanges = exchanges
        self.bank_exchange = np.asarray(bank_exchange, dtype=np.int64)
        self.exchange_ccp = (np.arange(len(exchanges)) % n_ccps if n_ccps
                             else np.full(len(exchanges), -1))
        self.bank_ccp = self.exchange_ccp[self.bank_exchange]
        for ex, c in zip(exchanges, self.exchange_ccp, strict=True):
            ex.ccp_id = int(c)
        # audit records, one tuple per call of record(): (rows, step, kind code,
        # then the columns of AUDIT_COLUMNS after step and kind, see _column)
        self._audit: list[tuple[Any, ...]] = []

    # ----------------------------------------------------------- submitting
    def submit_transaction(self, sender: int, receiver: int, amount: float,
                           kind: str = "loan", rate: float | None = None) -> int:
        """Submit one interbank loan order from ``sender`` (lender) to ``receiver``.

        It goes to the sender's exchange and settles when the exchange processes
        it (see :meth:`Exchange.process`). Returns the order id.

        Raises:
            ValueError: unknown banks, a bank trading with itself, a defaulted
                bank, a non-positive amount or a kind other than ``loan``.
        """
        n = self.model.n_banks
        if kind != "loan":
            raise ValueError(f"kind {kind!r}: only 'loan' orders are submitted; roll-overs, "
                             "repayments and margin are routed by the model's stages")
        for name, b in (("sender", sender), ("receiver", receiver)):
            if not (isinstance(b, int | np.integer) and 0 <= b < n):
                raise ValueError(f"{name} must be a bank id in 0..{n - 1}, got {b!r}")
            if self.model.ledger.defaulted[b]:
                raise ValueError(f"{name} bank {b} is in default and cannot trade")
        if sender == receiver:
            raise ValueError("sender and receiver must differ")
        if not np.isfinite(amount) or amount <= 0:
            raise ValueError(f"amount must be > 0, got {amount!r}")
        r = self.model.market.rate if rate is None else float(rate)
        ids = self.submit_many(np.array([sender]), np.array([receiver]), np.array([amount]),
                               np.array([r]), self.model.t)
        return int(ids[0])

    def submit_many(self, sender: np.ndarray, receiver: np.ndarray, amount: np.ndarray,
                    rate: np.ndarray, step: int) -> np.ndarray:
        """Queue loan orders on each sender's exchange; returns the order ids."""
        ids = np.empty(sender.size, dtype=np.int64)
        venue = self.bank_exchange[sender]
        for x, ex in enumerate(self.exchanges):
            m = venue == x
            if np.count_nonzero(m):
                ids[m] = ex.submit(sender[m], receiver[m], amount[m], rate[m], step)
        return ids

    def snapshot(self, shallow_logs: bool = False) -> dict[str, Any]:
        """Copies of the routing table and the audit records (``shallow_logs``: the
        append-only audit by length, :func:`~finsim_mesa.state.log_state`)."""
        return {"bank_exchange": self.bank_exchange.copy(), "bank_ccp": self.bank_ccp.copy(),
                "exchange_ccp": self.exchange_ccp.copy(),
                "audit": log_state(self._audit, shallow_logs)}

    def restore(self, state: dict[str, Any]) -> None:
        """Put a :meth:`snapshot` back (audit records are immutable once written)."""
        self.bank_exchange = state["bank_exchange"].copy()
        self.bank_ccp = state["bank_ccp"].copy()
        self.exchange_ccp = state["exchange_ccp"].copy()
        self._audit = log_restore(state["audit"])

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle; audit records an earlier version pickled as dicts of full
        columns become the tuples :meth:`record` stores."""
        self.__dict__.update(state)
        self._audit = [_as_tuple(a) if isinstance(a, dict) else a for a in self._audit]

    # ---------------------------------------------------------------- audit
    def record_rollovers(self, rolled: dict[str, np.ndarray], step: int) -> None:
        """Audit the loans rolled over in the act stage (columns lender, borrower,
        amount, ccp)."""
        self.record("rollover", rolled["lender"], rolled["borrower"], rolled["amount"],
                    rolled["amount"], self.bank_exchange[rolled["lender"]], rolled["ccp"], 0.0,
                    0, "renewed", step)

    def record(self, kind: str, sender: np.ndarray, receiver: np.ndarray, amount: np.ndarray,
               received: np.ndarray | float, exchange: np.ndarray | int, ccp: np.ndarray | int,
               fee: np.ndarray | float, delay: np.ndarray | int, outcome: np.ndarray | str,
               step: int) -> None:
        """Append audit records (columns of equal length; scalars are broadcast).
        Lookahead copies of a model (``collect_data`` off) keep no audit."""
        if not self.model.collect_data:
            return
        amount = np.asarray(amount, dtype=float)
        k = amount.size
        if not k:
            return
        out = OUTCOMES.index(outcome) if isinstance(outcome, str) else outcome
        # one tuple of columns in AUDIT_COLUMNS order; a column given as one number
        # stays one number until audit() repeats it (most columns of most records)
        self._audit.append((k, step, KINDS.index(kind), _column(sender, k, np.int32),
                            _column(receiver, k, np.int32), amount,
                            _column(received, k, float), _column(exchange, k, np.int16),
                            _column(ccp, k, np.int16), _column(fee, k, float),
                            _column(delay, k, np.int16), _column(out, k, np.int8)))

    def audit(self) -> pd.DataFrame:
        """Every routed transaction so far: who, what, which exchange and CCP
        (−1: none), fee, delay (steps) and outcome."""
        import pandas as pd

        if not self._audit:
            return pd.DataFrame({c: [] for c in AUDIT_COLUMNS})
        cols = {c: np.concatenate([_expand(a[j + 1], a[0], dtype) for a in self._audit])
                for j, (c, dtype) in enumerate(zip(AUDIT_COLUMNS, _DTYPES, strict=True))}
        df = pd.DataFrame(cols)
        df["kind"] = pd.Categorical.from_codes(df["kind"], KINDS)
        df["outcome"] = pd.Categorical.from_codes(df["outcome"], OUTCOMES)
        return df

    def transactions(self, step: int | None = None) -> int:
        """Number of audit records (of one step, or all)."""
        if step is None:
            return sum(a[0] for a in self._audit)
        # each record is one step's, appended in step order: read back to the step
        count = 0
        for a in reversed(self._audit):
            if a[1] < step:
                break
            if a[1] == step:
                count += a[0]
        return count


_DTYPES = (np.int32, np.int8, np.int32, np.int32, float, float, np.int16, np.int16, float,
           np.int16, np.int8)  # of AUDIT_COLUMNS


def _as_tuple(record: dict[str, np.ndarray]) -> tuple[Any, ...]:
    """An audit record stored as a dict of full columns, as the tuple record() stores."""
    step = record["step"]
    return (step.size, int(step[0]) if step.size else 0, int(record["kind"][0]),
            *(record[c] for c in AUDIT_COLUMNS[2:]))


def _expand(value: Any, k: int, dtype: Any) -> np.ndarray:
    """A stored audit column as ``k`` entries of ``dtype`` (a number repeated)."""
    if isinstance(value, np.ndarray):
        return value
    return np.full(k, value, dtype=dtype)


def _column(value: Any, k: int, dtype: Any) -> Any:
    """An audit column of ``k`` entries of ``dtype`` as stored: a copy of an
    array, or one number (the value as given, repeated by :func:`_expand` when
    the audit is read: ``np.full(k, value, dtype)``)."""
    if type(value) in _NUMBERS:  # the usual one-number columns, first
        return value
    if isinstance(value, np.ndarray):
        if value.shape == (k,):
            return value.astype(dtype)
        if value.ndim == 0:
            return value.item()  # (not a view of the caller's array)
    elif np.ndim(value) == 0:  # a NumPy number (immutable)
        return value
    return np.broadcast_to(value, k).astype(dtype)


_NUMBERS = frozenset((int, float, bool))
