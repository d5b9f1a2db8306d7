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

from itertools import accumulate
from typing import TYPE_CHECKING, Any

import numpy as np

from finsim_mesa.errors import ConfigError
from finsim_mesa.fastmath import count_nonzero, stable_order
from finsim_mesa.infrastructure import audit as _trail
from finsim_mesa.infrastructure.audit import AUDIT_COLUMNS, KINDS, OUTCOMES, AuditTrail

if TYPE_CHECKING:
    from finsim_mesa.infrastructure.exchange import Exchange

__all__ = ["AUDIT_COLUMNS", "KINDS", "OUTCOMES", "InfrastructureRouter", "assign_venues"]

_min, _max = np.minimum.reduce, np.maximum.reduce
_I64 = np.dtype(np.int64)
_column, _Constants = _trail._column, _trail._Constants  # (where they were before, session 30)


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


class InfrastructureRouter(AuditTrail):
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
        self._start_audit()  # (AuditTrail: the audit records)
        # the link ids of the orders last submitted (see submitted_links): a cache
        self._links: tuple[Any, ...] | None = None
        self._whole: tuple[np.ndarray, dict[str, np.ndarray]] | None = None  # (submitted_columns)

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
                    rate: np.ndarray, step: int, link: np.ndarray | None = None) -> np.ndarray:
        """Queue loan orders on each sender's exchange; returns the order ids.

        ``link``: each order's link id in the loan book's link table, if known;
        kept with the columns queued (see :meth:`submitted_links`)."""
        exchanges, k = self.exchanges, sender.size
        venue = self.bank_exchange[sender]
        if not k:  # (no orders, e.g. when no bank lends: no exchange gets any)
            self._links = None
            return np.empty(0, dtype=np.int64)
        # the orders grouped by exchange, in order within each (a stable sort by
        # venue: what a mask per exchange gathers), as new arrays: each exchange
        # gets a slice of them, which its (empty) queue may keep as its columns
        x_count = len(exchanges)
        order, ends = _grouped(venue, x_count)
        if order is None:
            sender, receiver, amount, rate = (sender.copy(), receiver.copy(), amount.copy(),
                                              rate.copy())
        else:
            sender, receiver, amount, rate = sender[order], receiver[order], amount[order], \
                rate[order]
            venue = venue[order]
        ids = np.empty(k, dtype=np.int64)
        kept, lo, queued_on = [], 0, 0
        for ex, hi in zip(exchanges, ends, strict=True):
            if hi > lo:
                queued_on += 1
                snd, rcv = sender[lo:hi], receiver[lo:hi]
                ids[lo:hi] = ex.submit(snd, rcv, amount[lo:hi], rate[lo:hi], step, copy=False)
                queued = ex.queue.orders
                if link is not None and queued["sender"] is snd and queued["receiver"] is rcv:
                    kept.append((snd, rcv, lo, hi))  # (the queue was empty: kept as given)
            lo = hi
        if kept:  # (and the whole, when every exchange with orders kept them)
            whole = ({"sender": sender, "receiver": receiver, "amount": amount, "rate": rate,
                      "exchange": venue} if len(kept) == queued_on and lo == k else None)
            self._links = (self.model.ledger.loans.links, kept,
                           link.copy() if order is None else link[order], whole)
        else:
            self._links = None
        if order is None:
            return ids
        out = np.empty(k, dtype=np.int64)
        out[order] = ids  # (each order's id where it was given)
        return out

    def submitted_links(self, processed: list[dict[str, np.ndarray]]
                        ) -> tuple[np.ndarray, bool] | None:
        """The link ids of the orders ``processed`` (the exchanges' non-empty
        outputs, in order, as :func:`~finsim_mesa.infrastructure.layer.book_orders`
        concatenates them) when they are exactly the orders the last
        :meth:`submit_many` queued with their links, each exchange's whole: its
        output's sender and receiver columns are the very arrays that call left
        as the (then empty) queue's columns, and the loan book's link table is
        the one the ids were looked up in. Else None (the ids are looked up
        when needed). Either way the links kept are dropped.

        Returned with the ids: whether no two orders share a (lender, borrower)
        pair (no id twice: an id is one pair's). The orders' other columns are
        then held for :meth:`submitted_columns`.
        """
        kept, self._links, self._whole = self.__dict__.get("_links"), None, None
        if kept is None:
            return None
        table, parts, link, whole = kept
        if table is not self.model.ledger.loans.links or len(parts) != len(processed):
            return None
        for p, (snd, rcv, _, _) in zip(processed, parts, strict=True):
            if p["sender"] is not snd or p["receiver"] is not rcv:
                return None
        if whole is None:  # (some exchange's orders not kept: the kept ones' links)
            link = np.concatenate([link[lo:hi] for *_, lo, hi in parts])
        else:
            self._whole = (link, whole)
        size = len(table)
        distinct = False
        # (int64 ids below a small table's size: counted, a negative id is bincount's
        # ValueError; for a table of over 8192 links the marks below cost less)
        if link.dtype is _I64 and link.size and size <= 8192 and int(_max(link)) < size:
            try:
                counts = np.bincount(link)
            except ValueError:
                return link, False
            return link, count_nonzero(counts) == link.size
        if link.size and int(_min(link)) >= 0 and int(_max(link)) < size:
            mark = np.zeros(size, dtype=bool)
            mark[link] = True
            distinct = count_nonzero(mark) == link.size
        return link, distinct

    def submitted_columns(self, link: np.ndarray | None) -> dict[str, np.ndarray] | None:
        """The sender, receiver, amount, rate and exchange columns of the orders
        whose links :meth:`submitted_links` just gave as ``link`` (that very
        array), concatenated in their order, when every exchange that got orders
        from the last :meth:`submit_many` had kept them: that call's arrays, of
        which the exchanges' columns are slices. Else None; either way dropped."""
        held, self._whole = self.__dict__.get("_whole"), None
        return held[1] if held is not None and link is not None and held[0] is link else None

    def snapshot(self, shallow_logs: bool = False) -> dict[str, Any]:
        """Copies of the routing table and the audit records (``shallow_logs``, a
        step's transaction: the append-only audit by length,
        :func:`~finsim_mesa.state.log_state`, and the routing arrays themselves:
        nothing changes them in place, restore replaces them with copies)."""
        table = ("bank_exchange", "bank_ccp", "exchange_ccp")
        state: dict[str, Any] = {k: getattr(self, k) if shallow_logs else getattr(self, k).copy()
                                 for k in table}
        if shallow_logs:  # (a step's: records kept as given stay so, with the first's index)
            state["audit"], state["audit_kept_from"] = self._audit_state(True)
        else:  # each record a dict of full columns and no other key: the form the API's
            _ = self._audit  # fingerprint hashes (journals replay across versions)
            state["audit"] = self._audit_state(False)[0]
        return state

    def restore(self, state: dict[str, Any]) -> None:
        """Put a :meth:`snapshot` back (audit records are immutable once written)."""
        self.bank_exchange = state["bank_exchange"].copy()
        self.bank_ccp = state["bank_ccp"].copy()
        self.exchange_ccp = state["exchange_ccp"].copy()
        self._restore_audit(state["audit"], state.get("audit_kept_from", len(state["audit"])))
        self._links = self._whole = None

    # ---------------------------------------------------------------- audit
    def record_rollovers(self, rolled: dict[str, np.ndarray], step: int) -> None:
        """Audit the loans rolled over in the act stage (columns lender, borrower,
        amount, ccp)."""
        if not self.auditing:
            return
        # (Ledger.rollover's columns are new arrays, read and never written after)
        self.record_owned("rollover", rolled["lender"], rolled["borrower"], rolled["amount"],
                          rolled["amount"], self.bank_exchange[rolled["lender"]],
                          rolled["ccp"], 0.0, 0, "renewed", step)


def _grouped(venue: np.ndarray, x_count: int) -> tuple[np.ndarray | None, list[int]]:
    """(``stable_order(venue, x_count)``, or None for one exchange that gets every
    order, and where each exchange's orders end in that order): for two
    exchanges, each one's orders found in order (``venue == x``), which is the
    stable sort's permutation when every venue is one of them (else the sort;
    from three on, the sort costs less)."""
    if x_count == 1 and not count_nonzero(venue):
        return None, [venue.size]
    if x_count == 2:
        parts = [(venue == x).nonzero()[0] for x in range(x_count)]
        order = np.concatenate(parts)
        if order.size == venue.size:
            return order, list(accumulate([p.size for p in parts]))
    order = stable_order(venue, max(x_count, 1))
    return order, np.searchsorted(venue[order], np.arange(1, x_count + 1)).tolist()
