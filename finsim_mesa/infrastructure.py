"""Market-infrastructure mechanics as pure functions and small classes.

These are the building blocks of the exchange and CCP agents (issue 3); they
need no model and are tested on their own:

* :func:`default_waterfall` — a CCP's four-layer default waterfall;
* :func:`multilateral_netting` — exact multilateral netting of gross bilateral
  obligations through a CCP, with its netting efficiency;
* :class:`ExchangeQueue` — an exchange's per-step processing capacity, FIFO
  queue, settlement delays, expiry and congestion-dependent fees.

Money in currency units; rates are fractions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = [
    "ExchangeQueue",
    "ExchangeStats",
    "NettingResult",
    "WaterfallResult",
    "default_waterfall",
    "multilateral_netting",
]

WATERFALL_LAYERS = ("defaulter_margin", "defaulter_fund", "ccp_capital", "mutualised")


@dataclass(frozen=True)
class WaterfallResult:
    """How a default loss was absorbed.

    Attributes:
        loss: the loss given to the waterfall (money, ≥ 0).
        layers: money absorbed by each layer, in order: the defaulter's margin,
            the defaulter's default-fund contribution, the CCP's own capital
            (skin in the game), the survivors' mutualised contributions.
        survivor_charges: shape (m,), what each surviving member's
            contribution absorbed (pro rata to contributions).
        uncovered: loss left after all four layers (money, ≥ 0), never dropped.
    """

    loss: float
    layers: dict[str, float]
    survivor_charges: np.ndarray
    uncovered: float

    @property
    def absorbed(self) -> float:
        """Total absorbed by the four layers."""
        return float(np.sum(list(self.layers.values())))


def default_waterfall(
    loss: float,
    defaulter_margin: float,
    defaulter_fund: float,
    ccp_capital: float,
    survivor_funds: np.ndarray,
) -> WaterfallResult:
    """Allocate a member-default ``loss`` through the four layers, in order.

    Each layer absorbs ``min(what is left, its size)``; the mutualised layer
    charges surviving members pro rata to their default-fund contributions.

    Args:
        loss: loss to cover (money, ≥ 0).
        defaulter_margin: margin posted by the defaulter (money, ≥ 0).
        defaulter_fund: the defaulter's default-fund contribution (money, ≥ 0).
        ccp_capital: the CCP's own capital committed (money, ≥ 0).
        survivor_funds: shape (m,), surviving members' contributions (money, ≥ 0).

    Raises:
        ValueError: negative or non-finite inputs.
    """
    funds = np.asarray(survivor_funds, dtype=float).reshape(-1)
    values = {"loss": loss, "defaulter_margin": defaulter_margin,
              "defaulter_fund": defaulter_fund, "ccp_capital": ccp_capital}
    for name, v in values.items():
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite amount >= 0, got {v!r}")
    if not np.all(np.isfinite(funds)) or (funds < 0).any():
        raise ValueError("survivor_funds must be finite amounts >= 0")
    left = float(loss)
    layers: dict[str, float] = {}
    for name, size in zip(WATERFALL_LAYERS[:3], (defaulter_margin, defaulter_fund, ccp_capital),
                          strict=True):
        take = min(left, float(size))
        layers[name] = take
        left -= take
    pool = float(funds.sum())
    take = min(left, pool)
    charges = funds * (take / pool) if pool > 0 else np.zeros_like(funds)
    layers["mutualised"] = take  # the charges are this amount split pro rata
    left -= take
    return WaterfallResult(float(loss), layers, charges, max(left, 0.0))


@dataclass(frozen=True)
class NettingResult:
    """Multilateral netting through a CCP.

    Attributes:
        net: shape (n,), each member's net position vs the CCP (money):
            positive = the CCP owes the member, negative = the member owes the CCP.
        gross: total gross obligations ``Σ_ij G[i, j]`` before netting.
        bilateral: total after bilateral netting, ``Σ_{i<j} |G[i, j] − G[j, i]|``.
        multilateral: total payments after multilateral netting, ``Σ_i max(0, −net_i)``.
    """

    net: np.ndarray
    gross: float
    bilateral: float
    multilateral: float

    @property
    def efficiency(self) -> float:
        """Share of gross obligations removed by multilateral netting (0 if none)."""
        return 1.0 - self.multilateral / self.gross if self.gross > 0 else 0.0

    @property
    def bilateral_efficiency(self) -> float:
        """Share removed by bilateral netting alone, for comparison."""
        return 1.0 - self.bilateral / self.gross if self.gross > 0 else 0.0


def multilateral_netting(gross: np.ndarray | sp.spmatrix) -> NettingResult:
    """Net the gross obligations ``gross[i, j]`` (what *i* owes *j*) through a CCP.

    After novation every member faces only the CCP, so its obligations reduce to
    one net amount: what it is owed minus what it owes. The CCP's book balances
    (net positions sum to zero).

    Raises:
        ValueError: not square, negative or non-finite entries.
    """
    G = sp.csr_matrix(gross, dtype=float) if sp.issparse(gross) else \
        sp.csr_matrix(np.asarray(gross, dtype=float))
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(f"gross positions must be a square (n, n) matrix, got {G.shape}")
    if not np.all(np.isfinite(G.data)) or (G.data < 0).any():
        raise ValueError("gross positions must be finite and non-negative")
    net = np.asarray(G.sum(axis=0)).ravel() - np.asarray(G.sum(axis=1)).ravel()
    bilateral = 0.5 * float(abs(G - G.T).sum())  # each pair counted twice
    return NettingResult(net, float(G.sum()), bilateral, float(np.maximum(-net, 0.0).sum()))


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


ORDER_FIELDS = ("order_id", "sender", "receiver", "amount", "rate", "submitted", "kind")


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
               kind: int = 0) -> np.ndarray:
        """Queue orders (arrays of equal length, or scalars for one); returns their ids."""
        amount = np.atleast_1d(np.asarray(amount, dtype=float))
        if not np.all(np.isfinite(amount)) or (amount <= 0).any():
            raise ValueError("order amounts must be finite and > 0")
        k = amount.size
        ids = np.arange(self._next_id, self._next_id + k)
        self._next_id += k
        new = {"order_id": ids, "sender": np.broadcast_to(sender, k),
               "receiver": np.broadcast_to(receiver, k), "amount": amount,
               "rate": np.broadcast_to(rate, k), "submitted": np.full(k, step),
               "kind": np.full(k, kind)}
        for name in ORDER_FIELDS:
            self.orders[name] = np.concatenate([self.orders[name], new[name]]).astype(
                self.orders[name].dtype, copy=False)
        return ids

    @property
    def backlog(self) -> float:
        """Money waiting in the queue."""
        return float(self.orders["amount"].sum())

    @property
    def backlog_orders(self) -> int:
        """Number of orders waiting."""
        return int(self.orders["amount"].size)

    def process(self, step: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                                          ExchangeStats]:
        """Process this step's orders: returns (processed, expired, stats); the
        first two are column dicts like :attr:`orders`."""
        o = self.orders
        demand = float(o["amount"].sum())
        utilisation = demand / self.max_throughput
        rate = self.fee_rate(utilisation)
        # amounts are positive, so this is a prefix of the queue: strict FIFO
        done = np.cumsum(o["amount"]) <= self.max_throughput * (1 + 1e-12)
        expired = ~done & (step - o["submitted"] >= self.max_wait)
        waiting = ~done & ~expired
        processed = {k: v[done] for k, v in o.items()}
        gone = {k: v[expired] for k, v in o.items()}
        self.orders = {k: v[waiting] for k, v in o.items()}
        used = float(processed["amount"].sum())
        delays = step - processed["submitted"]
        stats = ExchangeStats(
            step=step, demand=demand, processed=used, processed_orders=int(done.sum()),
            waiting=self.backlog, waiting_orders=self.backlog_orders,
            expired=float(gone["amount"].sum()), expired_orders=int(expired.sum()),
            utilisation=utilisation, congested=utilisation > self.congestion_threshold,
            fee_rate=rate, fees=rate * used,
            mean_delay=float(delays.mean()) if delays.size else 0.0)
        self.history.append(stats)
        return processed, gone, stats
