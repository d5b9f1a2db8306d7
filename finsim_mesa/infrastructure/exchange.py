"""Exchanges: trading venues with limited capacity, queues and congestion fees.

:class:`ExchangeQueue` is the mechanics (a pure, model-free class, tested on its
own); :class:`Exchange` is the Mesa agent that owns one queue and processes it
in the settle stage. Money in currency units; rates are fractions.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

import mesa
import numpy as np

from finsim_mesa.fastmath import sum_slack
from finsim_mesa.state import log_restore, log_state

if TYPE_CHECKING:
    from finsim_mesa.model import FinancialModel

__all__ = ["ORDER_FIELDS", "Exchange", "ExchangeQueue", "ExchangeStats"]


@dataclass(frozen=True)
class ExchangeStats:
    """One step of an exchange: demand, what was processed, waited and expired (money)."""

    step: int
    demand: float
    processed: float
    processed_orders: int
    waiting: float
    waiting_orders: int
    expired: float
    expired_orders: int
    utilisation: float
    congested: bool
    fee_rate: float
    fees: float
    mean_delay: float


_minimum, _maximum, _add = np.minimum, np.maximum, np.add
ORDER_FIELDS = ("order_id", "sender", "receiver", "amount", "rate", "submitted", "kind")
_STAT_FIELDS = tuple(f.name for f in fields(ExchangeStats))


def _full(k: int, value: Any) -> np.ndarray:
    """``np.full(k, value)``: for a Python int or float, an empty array of its
    default dtype filled (the same array, without ``np.full``'s Python layer)."""
    kind = type(value)
    if kind is int or kind is float:
        out = np.empty(k, dtype=np.int64 if kind is int else np.float64)
        out.fill(value)
        return out
    return np.full(k, value)


def _stats(**fields: Any) -> ExchangeStats:
    """``ExchangeStats(**fields)`` with every field given, without the frozen
    dataclass's ``object.__setattr__`` per field (the same instance dict, in
    field order)."""
    if len(fields) != len(_STAT_FIELDS):
        return ExchangeStats(**fields)  # (its own error)
    return _stats_of({name: fields[name] for name in _STAT_FIELDS})


def _stats_of(values: dict[str, Any]) -> ExchangeStats:
    """:func:`_stats` of ``values``, all fields in field order (the instance dict)."""
    stats = object.__new__(ExchangeStats)
    stats.__dict__.update(values)
    return stats


def _repeat(value: Any, k: int) -> np.ndarray:
    """``np.broadcast_to(value, k)``: an array of ``k`` entries as it is, without
    NumPy's Python layers; anything else broadcast."""
    if isinstance(value, np.ndarray) and value.shape == (k,):
        return value
    return np.broadcast_to(value, k)


_EMPTY_ORDERS = {name: np.zeros(0, dtype=float if name in ("amount", "rate") else np.int64)
                 for name in ORDER_FIELDS}  # (what a new queue holds)


class ExchangeQueue:
    """Capacity-limited first-in first-out order processing with congestion pricing.

    Orders are kept as columns (arrays), so thousands per step cost little.
    Each step the exchange processes orders strictly in arrival order until
    the next one would exceed ``max_throughput`` (money per step); the rest
    wait (their settlement is delayed) and an order expires once it has waited
    ``max_wait`` steps without being processed. Utilisation is this step's
    demand (queued plus new) over capacity and may exceed 1. The fee rate is
    ``base_fee × (1 + fee_slope × max(0, utilisation − congestion_threshold))``,
    charged on each processed order's amount.

    Args:
        max_throughput: money the exchange can process per step (> 0).
        congestion_threshold: utilisation above which it is congested, in (0, 1].
        base_fee: fee rate in calm conditions, in [0, 1).
        fee_slope: growth of the fee multiplier per unit of excess utilisation (≥ 0).
        max_wait: steps an order may wait before it expires (≥ 0).
    """

    def __init__(self, max_throughput: float, congestion_threshold: float = 0.8,
                 base_fee: float = 0.0005, fee_slope: float = 4.0, max_wait: int = 3) -> None:
        if not np.isfinite(max_throughput) or max_throughput <= 0:
            raise ValueError(f"max_throughput must be > 0, got {max_throughput!r}")
        if not 0 < congestion_threshold <= 1:
            raise ValueError(
                f"congestion_threshold must lie in (0, 1], got {congestion_threshold!r}")
        if not 0 <= base_fee < 1:
            raise ValueError(f"base_fee must lie in [0, 1), got {base_fee!r}")
        if fee_slope < 0:
            raise ValueError(f"fee_slope must be >= 0, got {fee_slope!r}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait!r}")
        self.max_throughput = float(max_throughput)
        self.congestion_threshold = float(congestion_threshold)
        self.base_fee = float(base_fee)
        self.fee_slope = float(fee_slope)
        self.max_wait = int(max_wait)
        self.orders = {name: np.zeros(0, dtype=float if name in ("amount", "rate") else np.int64)
                       for name in ORDER_FIELDS}
        self.history: list[ExchangeStats] = []
        self._next_id = 0

    def fee_rate(self, utilisation: float) -> float:
        """Fee rate at ``utilisation`` (demand / capacity)."""
        excess = max(0.0, utilisation - self.congestion_threshold)
        return self.base_fee * (1.0 + self.fee_slope * excess)

    def submit(self, sender: np.ndarray | int, receiver: np.ndarray | int,
               amount: np.ndarray | float, step: int, rate: np.ndarray | float = 0.0,
               kind: int = 0, copy: bool = True) -> np.ndarray:
        """Queue orders (arrays of equal length, or scalars for one); returns their ids.

        ``copy=False``: the arrays are the caller's to give away (e.g. just
        gathered); an empty queue keeps them as its columns instead of copies
        (the caller must not change them afterwards)."""
        amount = np.asarray(amount, dtype=float)
        if amount.ndim == 0:
            amount = amount.reshape(1)
        k = amount.size
        # all finite and > 0 (a NaN fails the first test, +-inf one of the two)
        if k and not (_minimum.reduce(amount) > 0 and _maximum.reduce(amount) < np.inf):
            raise ValueError("order amounts must be finite and > 0")
        ids = np.arange(self._next_id, self._next_id + k)
        self._next_id += k
        new = (ids, _repeat(sender, k), _repeat(receiver, k), amount, _repeat(rate, k),
               _full(k, step), _full(k, kind))
        orders = self.orders
        for name, col in zip(ORDER_FIELDS, new, strict=True):
            old = orders[name]
            # an empty queue (the usual case: each step processes all): the new
            # column, copied, is the queue's (what concatenating to nothing gives)
            if old.size:
                orders[name] = np.concatenate([old, col]).astype(old.dtype, copy=False)
            elif copy:
                orders[name] = np.array(col, dtype=old.dtype)
            else:  # given away: kept unless of another dtype or not one contiguous run
                orders[name] = np.ascontiguousarray(col, dtype=old.dtype)
        return ids

    @property
    def backlog(self) -> float:
        """Money waiting in the queue."""
        amount = self.orders["amount"]
        return float(amount.sum()) if amount.size else 0.0  # (an empty queue: most steps)

    @property
    def backlog_orders(self) -> int:
        """Number of orders waiting."""
        return int(self.orders["amount"].size)

    def process(self, step: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                                          ExchangeStats]:
        """Process this step's orders: returns (processed, expired, stats); the
        first two are column dicts like :attr:`orders`."""
        o = self.orders
        if not o["amount"].size:  # an empty queue (most steps): nothing moves
            stats = _stats_of({
                "step": step, "demand": 0.0, "processed": 0.0, "processed_orders": 0,
                "waiting": 0.0, "waiting_orders": 0, "expired": 0.0, "expired_orders": 0,
                "utilisation": 0.0, "congested": 0.0 > self.congestion_threshold,
                "fee_rate": self.fee_rate(0.0), "fees": 0.0, "mean_delay": 0.0})
            self.history.append(stats)
            return dict(o), dict(o), stats  # (its columns are empty: the empty columns)
        amount = o["amount"]
        demand = float(_add.reduce(amount))  # (amount.sum(), without its Python layer)
        utilisation = demand / self.max_throughput
        rate = self.fee_rate(utilisation)
        # amounts are positive, so this is a prefix of the queue: strict FIFO
        limit = self.max_throughput * (1 + 1e-12)
        k = amount.size
        # everything fits (most steps) if the running sum's last (its largest) is
        # within the limit: so is it if the total is, with room for both sums'
        # round-off (<= k u x the total each, u = eps / 2: fastmath.sum_slack)
        if demand + sum_slack(k, demand) <= limit:
            return self._process_all(step, demand, utilisation, rate)
        running = amount.cumsum()  # (np.cumsum's own call)
        if running[-1] <= limit:
            return self._process_all(step, demand, utilisation, rate)
        done = running <= limit
        expired = ~done & (step - o["submitted"] >= self.max_wait)
        p = int(np.count_nonzero(done))  # the prefix's length: its rows are slices
        processed = {k: v[:p] for k, v in o.items()}  # (the columns are never
        if np.count_nonzero(expired):  # changed in place: new orders replace them)
            waiting = ~done & ~expired
            gone = {k: v[expired] for k, v in o.items()}
            self.orders = {k: v[waiting] for k, v in o.items()}
        else:
            gone = {k: v[:0] for k, v in o.items()}
            self.orders = {k: v[p:] for k, v in o.items()}
        used = float(processed["amount"].sum())
        delays = step - processed["submitted"]
        stats = _stats(
            step=step, demand=demand, processed=used, processed_orders=p,
            waiting=self.backlog, waiting_orders=self.backlog_orders,
            expired=float(gone["amount"].sum()), expired_orders=int(expired.sum()),
            utilisation=utilisation, congested=utilisation > self.congestion_threshold,
            fee_rate=rate, fees=rate * used,
            # whole steps: the exact integer sum / count is np.mean's float
            mean_delay=int(delays.sum()) / delays.size if delays.size else 0.0)
        self.history.append(stats)
        return processed, gone, stats

    def _process_all(self, step: int, demand: float, utilisation: float, rate: float
                     ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], ExchangeStats]:
        """:meth:`process` when every order fits: the queue's columns are handed
        out whole (they are never changed in place) and the queue is left empty;
        the figures are the general case's (processed = demand: the same sum)."""
        o = self.orders
        # the empty columns of each dtype (not views of the columns handed out,
        # which would keep them alive while the queue is empty)
        self.orders = dict(_EMPTY_ORDERS)
        delays = step - o["submitted"]
        self._delays = (o["submitted"], delays)  # (read once by Exchange.process)
        count = delays.size
        stats = _stats_of({
            "step": step, "demand": demand, "processed": demand, "processed_orders": count,
            "waiting": 0.0, "waiting_orders": 0, "expired": 0.0, "expired_orders": 0,
            "utilisation": utilisation, "congested": utilisation > self.congestion_threshold,
            "fee_rate": rate, "fees": rate * demand,
            "mean_delay": int(_add.reduce(delays)) / count})  # (delays.sum(): exact ints)
        self.history.append(stats)
        return o, dict(_EMPTY_ORDERS), stats

    def snapshot(self, shallow_logs: bool = False) -> dict[str, Any]:
        """Copies of the queue's state (orders, history, capacity, next order id);
        ``shallow_logs`` (a step's transaction): the append-only history by length
        (:func:`log_state`) and the order columns themselves (they are never
        changed in place: submit and process replace them; restore copies)."""
        return {"max_throughput": self.max_throughput,
                "orders": (dict(self.orders) if shallow_logs
                           else {k: v.copy() for k, v in self.orders.items()}),
                "history": log_state(self.history, shallow_logs), "next_id": self._next_id}

    def restore(self, state: dict[str, Any]) -> None:
        """Put a :meth:`snapshot` back."""
        self.max_throughput = state["max_throughput"]
        self.orders = {k: v.copy() for k, v in state["orders"].items()}
        self.history = log_restore(state["history"])
        self._next_id = state["next_id"]


class Exchange(mesa.Agent):
    """A trading venue. Member banks' interbank loan orders queue here and are
    processed up to ``queue.max_throughput`` per step (see :class:`ExchangeQueue`);
    processed trades are handed to the exchange's CCP (novation) for a share
    ``ccp_clearing_share`` of them.

    Args:
        model: the owning model.
        exchange_id: index among the model's exchanges.
        queue: the order queue (capacity, fees, waiting rules).
        node: the exchange's node in ``model.grid``.
    """

    #: agent-type reporters (column -> attribute) for Mesa's DataCollector
    REPORTERS: ClassVar[dict[str, str]] = {
        name: name for name in ("utilisation", "fee_rate", "backlog", "processed", "expired",
                                "mean_delay")}

    def __init__(self, model: FinancialModel, exchange_id: int, queue: ExchangeQueue,
                 node: int) -> None:
        super().__init__(model)
        self.exchange_id = exchange_id
        self.queue = queue
        self.node = node
        self.ccp_id = -1  # the CCP its trades are novated to (-1: none), set by the router

    # ------------------------------------------------------------- behaviour
    def submit(self, sender: np.ndarray, receiver: np.ndarray, amount: np.ndarray,
               rate: np.ndarray, t: int, copy: bool = True) -> np.ndarray:
        """Queue loan orders (lender ``sender`` → borrower ``receiver``); returns their
        ids (``copy``: see :meth:`ExchangeQueue.submit`)."""
        return self.queue.submit(sender, receiver, amount, t, rate=rate, copy=copy)

    def process(self, t: int) -> dict[str, np.ndarray] | None:
        """Process this step's queue (stage *settle*).

        Expired orders are written to the router's audit. Returns the processed
        orders as columns (sender, receiver, amount, rate, exchange, ccp,
        fee_rate, delay), the CCP chosen for each (−1: settles bilaterally),
        or None when nothing was processed; the settle stage books them.
        """
        model = self.model
        queue = self.queue
        done, expired, stats = queue.process(t)
        x = self.exchange_id
        if expired["amount"].size:
            model.router.record_owned("loan", expired["sender"], expired["receiver"],
                                      expired["amount"], 0.0, x, -1, 0.0, t - expired["submitted"],
                                      "expired", t)
        k = done["amount"].size
        if not k:
            return None
        ccp, sub = _full(k, self.ccp_id), done["submitted"]
        kept = queue.__dict__.pop("_delays", None)  # (t - sub as the queue formed it, if it did)
        delay = kept[1] if kept is not None and kept[0] is sub else t - sub
        share = model.config.ccp_clearing_share
        if self.ccp_id >= 0 and share < 1.0:
            ccp = np.where(model.rng.random(k) < share, ccp, -1)
        return {"sender": done["sender"], "receiver": done["receiver"],
                "amount": done["amount"], "rate": done["rate"], "exchange": _full(k, x),
                "ccp": ccp, "fee_rate": _full(k, stats.fee_rate),
                "delay": delay}

    def snapshot(self, shallow_logs: bool = False) -> dict[str, Any]:
        """Copies of the exchange's state (its queue; see :meth:`ExchangeQueue.snapshot`)."""
        return {"queue": self.queue.snapshot(shallow_logs), "ccp_id": self.ccp_id}

    def restore(self, state: dict[str, Any]) -> None:
        """Put a :meth:`snapshot` back."""
        self.queue.restore(state["queue"])
        self.ccp_id = state["ccp_id"]

    # ------------------------------------------------------------- figures
    @property
    def last(self) -> ExchangeStats | None:
        """Statistics of the last processed step (None before the first)."""
        return self.queue.history[-1] if self.queue.history else None

    @property
    def utilisation(self) -> float:
        """Last step's demand / capacity (may exceed 1)."""
        h = self.queue.history  # (one lookup: these are read every step)
        return h[-1].utilisation if h else 0.0

    @property
    def congested(self) -> bool:
        """Whether utilisation exceeded the congestion threshold last step."""
        h = self.queue.history
        return bool(h[-1].congested) if h else False

    @property
    def fee_rate(self) -> float:
        """Fee rate charged last step."""
        h = self.queue.history  # (one lookup: these are read every step)
        return h[-1].fee_rate if h else self.queue.base_fee

    @property
    def backlog(self) -> float:
        """Money waiting in the queue."""
        return self.queue.backlog

    @property
    def mean_delay(self) -> float:
        """Mean waiting time (steps) of the orders processed last step."""
        h = self.queue.history  # (one lookup: these are read every step)
        return h[-1].mean_delay if h else 0.0

    @property
    def expired(self) -> float:
        """Money of orders that expired last step."""
        h = self.queue.history  # (one lookup: these are read every step)
        return h[-1].expired if h else 0.0

    @property
    def processed(self) -> float:
        """Money processed last step."""
        h = self.queue.history  # (one lookup: these are read every step)
        return h[-1].processed if h else 0.0

    @property
    def members(self) -> int:
        """Number of member banks."""
        return int((self.model.router.bank_exchange == self.exchange_id).sum())

    @property
    def cash(self) -> float:
        """Fees earned so far (money)."""
        return float(self.model.ledger.exchange_cash[self.exchange_id])

    def __repr__(self) -> str:
        return f"Exchange({self.exchange_id}, utilisation={self.utilisation:.2f})"
