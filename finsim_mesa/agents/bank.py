"""The bank agent: a Mesa agent whose numbers live in the model's ledger.

The model's stages update all banks at once on the ledger's arrays; a
:class:`Bank` reads its own row (``bank.cash``, ``bank.capital_ratio``, …) and
offers what a rule written for one bank needs: :meth:`Bank.neighbors` on the
network, :attr:`Bank.observation` by column name and :attr:`Bank.last_action`
(see :mod:`finsim_mesa.agents.rules` for per-bank brains).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import mesa
import numpy as np

from finsim_mesa.observation import ACTION_NAMES, observation_names

if TYPE_CHECKING:
    from finsim_mesa.model import FinancialModel

__all__ = ["Action", "Bank"]


class Action(NamedTuple):
    """A bank's action, each in [0, 1] (meanings in :data:`~finsim_mesa.observation.ACTIONS`)."""

    lend: float
    hoard: float
    sell: float
    borrow: float


assert Action._fields == ACTION_NAMES


class Bank(mesa.Agent):
    """A bank on the interbank network.

    Its balance sheet is row ``bank_id`` of ``model.ledger``; the attributes
    below read through to it (money in currency units).

    Args:
        model: the owning model.
        bank_id: row in the ledger and node in ``model.grid`` (0..n-1).
    """

    #: agent-type reporters (column -> attribute) for Mesa's DataCollector
    REPORTERS: ClassVar[dict[str, str]] = {
        name: name for name in ("equity", "cash", "capital_ratio", "defaulted")}
    #: the same columns for all banks at once, shape (n_banks,) in ``bank_id``
    #: order: ``column(model).tolist()[i]`` equals the property of bank ``i``
    #: (what lets the DataCollector build its rows from the ledger's arrays)
    COLUMNS: ClassVar[dict[str, Callable[[Any], np.ndarray]]] = {
        "equity": lambda m: m.ledger.equity,
        "cash": lambda m: m.ledger.cash,
        "capital_ratio": lambda m: m.sheets.capital_ratio,
        "defaulted": lambda m: m.ledger.status.astype(bool),
    }

    def __init__(self, model: FinancialModel, bank_id: int) -> None:
        super().__init__(model)
        self.bank_id = bank_id

    # ------------------------------------------------------------ balance sheet
    @property
    def cash(self) -> float:
        """Cash (money)."""
        return float(self.model.ledger.cash[self.bank_id])

    @property
    def equity(self) -> float:
        """Equity (money)."""
        return float(self.model.ledger.equity[self.bank_id])

    @property
    def deposits(self) -> float:
        """External liabilities (money)."""
        return float(self.model.ledger.deposits[self.bank_id])

    @property
    def total_assets(self) -> float:
        """Cash + securities at market value + other assets + interbank loans (money)."""
        return float(self.model.sheets.total_assets[self.bank_id])

    @property
    def capital_ratio(self) -> float:
        """Equity / risk-weighted assets (0 once defaulted)."""
        return float(self.model.sheets.capital_ratio[self.bank_id])

    @property
    def defaulted(self) -> bool:
        """Whether the bank is in default."""
        return bool(self.model.ledger.status[self.bank_id])

    def balance_sheet(self) -> dict[str, float]:
        """This bank's balance sheet and ratios now (money, ratios)."""
        s, i = self.model.sheets, self.bank_id
        return {
            "cash": self.cash,
            "securities": float(s.asset_values[i]),
            "other_assets": float(self.model.ledger.other_assets[i]),
            "interbank_assets": float(s.interbank_assets[i]),
            "total_assets": self.total_assets,
            "deposits": self.deposits,
            "interbank_liabilities": float(s.interbank_liabilities[i]),
            "equity": self.equity,
            "capital_ratio": self.capital_ratio,
            "defaulted": float(self.defaulted),
        }

    # ------------------------------------------------------------ for rules
    def neighbors(self, include_infrastructure: bool = False) -> list[mesa.Agent]:
        """The banks linked to this one on the interbank network (through Mesa's
        ``NetworkGrid``); with ``include_infrastructure`` its exchange and CCPs too."""
        agents = self.model.grid.get_neighbors(self.pos, include_center=False)
        if include_infrastructure:
            return list(agents)
        return [a for a in agents if isinstance(a, Bank)]

    @property
    def observation(self) -> Mapping[str, float]:
        """This step's observation of the bank, by column name (read-only; columns
        and scales in :data:`~finsim_mesa.observation.OBS_FIELDS`)."""
        m = self.model
        names = observation_names(m.config, m.market.names)
        row = m.decisions.observations[self.bank_id]
        return MappingProxyType({name: float(v) for name, v in zip(names, row, strict=True)})

    @property
    def last_action(self) -> Action:
        """The action the bank took in the last step (zeros before the first)."""
        return Action(*(float(v) for v in self.model.decisions.actions[self.bank_id]))

    @property
    def reward(self) -> float:
        """Reward of the last step."""
        return float(self.model.reward.per_bank[self.bank_id])

    @property
    def brain(self) -> str:
        """Name of the brain that decides for this bank."""
        return self.model.brains.names[self.bank_id]

    def __repr__(self) -> str:
        return f"Bank({self.bank_id}, equity={self.equity:.2f}, defaulted={self.defaulted})"
