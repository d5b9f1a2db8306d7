"""The bank agent: a thin Mesa agent whose numbers live in the model's ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING

import mesa

if TYPE_CHECKING:
    from finsim_mesa.model import FinancialModel


class Bank(mesa.Agent):
    """A bank on the interbank network.

    Its balance sheet is row ``bank_id`` of ``model.ledger``; the attributes
    below read through to it (money in currency units).

    Args:
        model: the owning model.
        bank_id: row in the ledger and node in ``model.grid`` (0..n-1).
    """

    def __init__(self, model: FinancialModel, bank_id: int) -> None:
        super().__init__(model)
        self.bank_id = bank_id

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
        return float(self.model.state["total_assets"][self.bank_id])

    @property
    def capital_ratio(self) -> float:
        """Equity / risk-weighted assets (0 once defaulted)."""
        return float(self.model.state["capital_ratio"][self.bank_id])

    @property
    def defaulted(self) -> bool:
        """Whether the bank is in default."""
        return bool(self.model.ledger.status[self.bank_id])

    @property
    def reward(self) -> float:
        """Reward of the last step."""
        return float(self.model.rewards[self.bank_id])

    @property
    def brain(self) -> str:
        """Name of the brain that decides for this bank."""
        return self.model.brain_names[self.bank_id]

    def balance_sheet(self) -> dict[str, float]:
        """This bank's balance sheet and ratios now (money, ratios)."""
        s, i = self.model.state, self.bank_id
        return {
            "cash": self.cash,
            "securities": float(s["asset_values"][i]),
            "other_assets": float(self.model.ledger.other_assets[i]),
            "interbank_assets": float(s["interbank_assets"][i]),
            "total_assets": self.total_assets,
            "deposits": self.deposits,
            "interbank_liabilities": float(s["interbank_liabilities"][i]),
            "equity": self.equity,
            "capital_ratio": self.capital_ratio,
            "defaulted": float(self.defaulted),
        }

    def __repr__(self) -> str:
        return f"Bank({self.bank_id}, equity={self.equity:.2f}, defaulted={self.defaulted})"
