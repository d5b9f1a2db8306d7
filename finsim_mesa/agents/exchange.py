"""The exchange agent: a trading venue with limited capacity and congestion fees."""

from __future__ import annotations

from typing import TYPE_CHECKING

import mesa

from finsim_mesa.infrastructure import ExchangeQueue, ExchangeStats

if TYPE_CHECKING:
    from finsim_mesa.model import FinancialModel


class Exchange(mesa.Agent):
    """A trading venue. Member banks' interbank trades queue here and are
    processed up to ``queue.max_throughput`` per step (see
    :class:`~finsim_mesa.infrastructure.ExchangeQueue`).

    Args:
        model: the owning model.
        exchange_id: index among the model's exchanges.
        queue: the order queue (capacity, fees, waiting rules).
        node: the exchange's node in ``model.grid``.
    """

    def __init__(self, model: FinancialModel, exchange_id: int, queue: ExchangeQueue,
                 node: int) -> None:
        super().__init__(model)
        self.exchange_id = exchange_id
        self.queue = queue
        self.node = node

    @property
    def last(self) -> ExchangeStats | None:
        """Statistics of the last processed step (None before the first)."""
        return self.queue.history[-1] if self.queue.history else None

    @property
    def utilisation(self) -> float:
        """Last step's demand / capacity (may exceed 1)."""
        return self.last.utilisation if self.last else 0.0

    @property
    def congested(self) -> bool:
        """Whether utilisation exceeded the congestion threshold last step."""
        return bool(self.last.congested) if self.last else False

    @property
    def fee_rate(self) -> float:
        """Fee rate charged last step."""
        return self.last.fee_rate if self.last else self.queue.base_fee

    @property
    def backlog(self) -> float:
        """Money waiting in the queue."""
        return self.queue.backlog

    @property
    def mean_delay(self) -> float:
        """Mean waiting time (steps) of the orders processed last step."""
        return self.last.mean_delay if self.last else 0.0

    @property
    def expired(self) -> float:
        """Money of orders that expired last step."""
        return self.last.expired if self.last else 0.0

    @property
    def processed(self) -> float:
        """Money processed last step."""
        return self.last.processed if self.last else 0.0

    @property
    def members(self) -> int:
        """Number of member banks."""
        return int((self.model.router.bank_exchange == self.exchange_id).sum())

    # the columns every agent reports (see FinancialModel's agent reporters)
    @property
    def cash(self) -> float:
        """Fees earned so far (money)."""
        return float(self.model.ledger.exchange_cash[self.exchange_id])

    equity = cash
    capital_ratio = None
    defaulted = False

    def __repr__(self) -> str:
        return f"Exchange({self.exchange_id}, utilisation={self.utilisation:.2f})"
