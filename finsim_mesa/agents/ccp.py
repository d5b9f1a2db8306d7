"""The central counterparty agent: novation, margin, netting, default waterfall.

The mechanics are pure functions in :mod:`finsim_mesa.infrastructure`
(:func:`default_waterfall`, :func:`multilateral_netting`); the CCP's accounts
live in the model's ledger (``ccp_cash``, ``ccp_capital``, members' ``margin``
and ``fund``); this agent reads them for Mesa and the DataCollector.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mesa
import numpy as np

from finsim_mesa.infrastructure import NettingResult, multilateral_netting

if TYPE_CHECKING:
    from finsim_mesa.model import FinancialModel


class CentralCounterparty(mesa.Agent):
    """A CCP: buyer to every seller and seller to every buyer of the trades it clears.

    Args:
        model: the owning model.
        ccp_id: index among the model's CCPs.
        node: the CCP's node in ``model.grid``.
    """

    def __init__(self, model: FinancialModel, ccp_id: int, node: int) -> None:
        super().__init__(model)
        self.ccp_id = ccp_id
        self.node = node
        self.initial_fund = 0.0
        self.initial_capital = 0.0
        self.fund_used = 0.0        # defaulters' and survivors' contributions consumed
        self.capital_used = 0.0
        self.margin_used = 0.0
        self.uncovered = 0.0        # losses beyond all four layers, cumulative
        self.defaults_handled = 0
        self.waterfalls: list[dict[str, float]] = []

    @property
    def margin_held(self) -> float:
        """Margin posted by all members now (money)."""
        return float(self.model.ledger.margin[:, self.ccp_id].sum())

    @property
    def default_fund(self) -> float:
        """Default fund left (money)."""
        return float(self.model.ledger.fund[:, self.ccp_id].sum())

    @property
    def default_fund_health(self) -> float:
        """Default fund left / initial default fund (1 when untouched)."""
        return self.default_fund / self.initial_fund if self.initial_fund > 0 else 1.0

    @property
    def capital(self) -> float:
        """The CCP's own capital left (skin in the game, money)."""
        return float(self.model.ledger.ccp_capital[self.ccp_id])

    def cleared_book(self) -> np.ndarray:
        """Mask over the loan book: loans novated to this CCP."""
        return self.model.ledger.loans.ccp == self.ccp_id

    @property
    def cleared_volume(self) -> float:
        """Money outstanding on loans this CCP has novated."""
        lb = self.model.ledger.loans
        return float(lb.owed[self.cleared_book()].sum())

    @property
    def netting_efficiency(self) -> float:
        """Share of the gross cleared obligations removed by multilateral netting
        (as :func:`multilateral_netting`, from the loan book's columns directly)."""
        lb = self.model.ledger.loans
        m = self.cleared_book()
        gross = float(lb.owed[m].sum())
        if gross <= 0:
            return 0.0
        n = self.model.n_banks
        net = (np.bincount(lb.lender[m], weights=lb.owed[m], minlength=n)
               - np.bincount(lb.borrower[m], weights=lb.owed[m], minlength=n))
        return 1.0 - float(np.maximum(-net, 0.0).sum()) / gross

    def netting(self) -> NettingResult:
        """Full multilateral-netting figures of this CCP's book (incl. bilateral)."""
        import scipy.sparse as sp

        lb = self.model.ledger.loans
        m = self.cleared_book()
        n = self.model.n_banks
        G = sp.csr_matrix((lb.owed[m], (lb.borrower[m], lb.lender[m])), shape=(n, n))
        return multilateral_netting(G)

    # the columns every agent reports
    @property
    def cash(self) -> float:
        """Cash held: members' margin and fund plus own capital (money)."""
        return float(self.model.ledger.ccp_cash[self.ccp_id])

    @property
    def equity(self) -> float:
        """Own capital (money)."""
        return self.capital

    capital_ratio = None

    @property
    def defaulted(self) -> bool:
        """True once a loss went beyond all four layers of the waterfall."""
        return self.uncovered > 0

    def __repr__(self) -> str:
        return f"CentralCounterparty({self.ccp_id}, fund={self.default_fund:.2f})"
