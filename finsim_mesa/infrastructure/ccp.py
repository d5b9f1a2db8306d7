"""The central counterparty agent: novation, margin, netting, default waterfall.

A CCP's accounts live in the model's ledger (``ccp_cash``, ``ccp_capital``,
members' ``margin`` and ``fund`` columns); its behaviour is here: what margin it
requires of each member (:meth:`CentralCounterparty.margin_requirement`, called
in the settle stage) and how it absorbs a member's default through the
four-layer waterfall (:meth:`CentralCounterparty.absorb_default`, called in the
clear stage). The mechanics are pure functions in
:mod:`~finsim_mesa.infrastructure.waterfall` and
:mod:`~finsim_mesa.infrastructure.netting`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import mesa
import numpy as np
import scipy.sparse as sp

from finsim_mesa.fastmath import count_nonzero, flatnonzero, total
from finsim_mesa.infrastructure.netting import NettingResult, multilateral_netting
from finsim_mesa.infrastructure.waterfall import WaterfallResult, default_waterfall

if TYPE_CHECKING:
    from finsim_mesa.loans import LoanBook
    from finsim_mesa.model import FinancialModel
    from finsim_mesa.state import Sheets

__all__ = ["CentralCounterparty", "cleared_by_ccp", "netting_efficiency"]

_min, _max = np.minimum.reduce, np.maximum.reduce  # (ndarray.min() / .max() without their layer)


def cleared_by_ccp(loans: LoanBook, ccp_ids: Sequence[int], n: int) -> np.ndarray:
    """shape (n, len(ccp_ids)): what each member owes each of these CCPs on the
    loans novated to it (money), in one pass over the book (each sum in book
    order)."""
    ids = np.asarray(ccp_ids, dtype=np.int64)
    m: np.ndarray | slice
    if ids.tolist() == list(range(ids.size)):  # all CCPs in id order (the model's
        col = loans.ccp  # call): a CCP's column is its id
        # every loan cleared (ccp_clearing_share 1): the whole book, no gathers (the
        # same rows, in book order). One CCP: its column is 0 for every loan (read in
        # one pass, not its two extremes)
        if ids.size == 1 and not count_nonzero(col):
            return np.bincount(loans.borrower, weights=loans.owed_at(slice(None)),
                               minlength=n)[:, None]
        # more: every id in 0..C-1, read off the extremes (no mask)
        if ids.size > 1 and (not col.size or (int(_min(col)) >= 0 and int(_max(col)) < ids.size)):
            m = slice(None)
        else:
            m = (col >= 0) & (col < ids.size)
    else:
        slot = np.full(int(max(ids.max(initial=-1), loans.ccp.max(initial=-1))) + 2, -1)
        slot[ids + 1] = np.arange(ids.size)  # column of each CCP id (+1: -1 is bilateral)
        col = slot[loans.ccp + 1]
        m = col >= 0
    owed = loans.owed_at(m)
    return np.bincount(loans.borrower[m] * ids.size + col[m], weights=owed,
                       minlength=n * ids.size).reshape(n, ids.size)

def netting_efficiency(loans: LoanBook, ccp_id: int, n: int, sheets: Sheets | None = None
                       ) -> float:
    """:attr:`CentralCounterparty.netting_efficiency` of CCP ``ccp_id``: the share
    of the gross obligations on the loans it cleared that multilateral netting
    removes. ``sheets``: the ledger's derived figures, up to date (as the
    record stage has them): when this CCP cleared every loan, each member's net
    position is its interbank assets less its liabilities there (the same sums,
    in book order); else, or if omitted, it is summed from the book."""
    col = loans.ccp
    # the whole book (one CCP clears every loan, read off the extremes: no mask; for
    # CCP 0 first a count, one pass: no entry non-zero is both extremes 0, what they
    # decide then): no gathers; else one pass for them (an empty book: no rows, as either
    # gives). The sums: total's, float(x.sum())'s own pairwise reduction
    m: np.ndarray | slice = (slice(None) if col.size and (
        (ccp_id == 0 and not count_nonzero(col))
        or (int(_min(col)) == ccp_id and int(_max(col)) == ccp_id)) else flatnonzero(col == ccp_id))
    owed = loans.owed_at(m)
    gross = total(owed)
    if gross <= 0:
        return 0.0
    if sheets is not None and isinstance(m, slice):
        # -(a - b) as b - a (IEEE subtraction: the same magnitude; only a zero's sign
        # differs, which the sum of these non-negative terms cannot show): in place
        short = sheets.interbank_liabilities - sheets.interbank_assets
        np.maximum(short, 0.0, out=short)
    else:
        net = (np.bincount(loans.lender[m], weights=owed, minlength=n)
               - np.bincount(loans.borrower[m], weights=owed, minlength=n))
        short = np.maximum(-net, 0.0)
    return 1.0 - total(short) / gross


_COUNTERS = ("initial_fund", "initial_capital", "fund_used", "capital_used", "margin_used",
             "uncovered", "defaults_handled", "waterfalls")


class CentralCounterparty(mesa.Agent):
    """A CCP: buyer to every seller and seller to every buyer of the trades it clears.

    Args:
        model: the owning model.
        ccp_id: index among the model's CCPs (its column in the ledger's accounts).
        node: the CCP's node in ``model.grid``.
    """

    #: agent-type reporters (column -> attribute) for Mesa's DataCollector
    REPORTERS: ClassVar[dict[str, str]] = {
        name: name for name in ("margin_held", "default_fund", "capital", "cleared_volume",
                                "netting_efficiency", "uncovered")}

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

    # ------------------------------------------------------------- behaviour
    def cleared_liabilities(self) -> np.ndarray:
        """shape (n,): what each member owes this CCP on novated loans (money)."""
        return cleared_by_ccp(self.model.ledger.loans, [self.ccp_id], self.model.n_banks)[:, 0]

    def margin_requirement(self, rate: float) -> np.ndarray:
        """shape (n,): margin each member must hold here: ``rate`` × cleared borrowing."""
        return rate * self.cleared_liabilities()

    def absorb_default(self, owed: np.ndarray, paid: np.ndarray, seized_margin: np.ndarray,
                       seized_fund: np.ndarray, survivors: np.ndarray, t: int
                       ) -> tuple[float, np.ndarray] | None:
        """Run the default waterfall on this CCP's loss in a clearing.

        Args:
            owed: shape (r,), what members owed this CCP on the loans settled now.
            paid: shape (r,), what they paid on them.
            seized_margin, seized_fund: shape (n,), defaulters' margin and fund
                contributions taken in payment (layers 1 and 2).
            survivors: shape (n,), bool: members not in resolution.
            t: the step.

        Returns:
            None when there is no loss (beyond round-off); else the CCP capital
            used (layer 3) and the charges on surviving members' fund
            contributions, shape (survivors.sum(),) (layer 4).
        """
        L = self.model.ledger
        c = self.ccp_id
        total = owed.sum()
        loss = float(total - paid.sum())
        if loss <= 1e-12 * max(1.0, float(total)):
            return None
        w: WaterfallResult = default_waterfall(
            loss, float(seized_margin.sum()), float(seized_fund.sum()),
            max(float(L.ccp_capital[c]), 0.0), np.maximum(L.fund[survivors, c], 0.0))
        self.margin_used += w.layers["defaulter_margin"]
        self.fund_used += w.layers["defaulter_fund"] + w.layers["mutualised"]
        self.capital_used += w.layers["ccp_capital"]
        self.uncovered += w.uncovered
        self.defaults_handled += int((seized_margin + seized_fund > 0).sum())
        self.waterfalls.append({"step": t, "loss": loss, **w.layers, "uncovered": w.uncovered})
        return w.layers["ccp_capital"], w.survivor_charges

    def snapshot(self) -> dict[str, Any]:
        """Copies of the CCP's counters and waterfall records."""
        # numbers as they are (immutable), the record list copied (copy.copy of each)
        state = {k: getattr(self, k) for k in _COUNTERS}
        state["waterfalls"] = list(self.waterfalls)
        return state

    def restore(self, state: dict[str, Any]) -> None:
        """Put a :meth:`snapshot` back."""
        for k in _COUNTERS:
            setattr(self, k, copy.copy(state[k]))

    # ------------------------------------------------------------- figures
    @property
    def margin_held(self) -> float:
        """Margin posted by all members now (money)."""
        return total(self.model.ledger.margin[:, self.ccp_id])  # (float(x.sum()), the same sum)

    @property
    def default_fund(self) -> float:
        """Default fund left (money)."""
        return total(self.model.ledger.fund[:, self.ccp_id])  # (float(x.sum()), the same sum)

    @property
    def default_fund_health(self) -> float:
        """Default fund left / initial default fund (1 when untouched)."""
        return self.default_fund / self.initial_fund if self.initial_fund > 0 else 1.0

    @property
    def capital(self) -> float:
        """The CCP's own capital left (skin in the game, money)."""
        return float(self.model.ledger.ccp_capital[self.ccp_id])

    @property
    def cash(self) -> float:
        """Cash held: members' margin and fund plus own capital (money)."""
        return float(self.model.ledger.ccp_cash[self.ccp_id])

    @property
    def defaulted(self) -> bool:
        """True once a loss went beyond all four layers of the waterfall."""
        return self.uncovered > 0

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
        return netting_efficiency(self.model.ledger.loans, self.ccp_id, self.model.n_banks)

    def netting(self) -> NettingResult:
        """Full multilateral-netting figures of this CCP's book (incl. bilateral)."""
        lb = self.model.ledger.loans
        m = self.cleared_book()
        n = self.model.n_banks
        G = sp.csr_matrix((lb.owed[m], (lb.borrower[m], lb.lender[m])), shape=(n, n))
        return multilateral_netting(G)

    def __repr__(self) -> str:
        return f"CentralCounterparty({self.ccp_id}, fund={self.default_fund:.2f})"
