"""Balance sheets of all banks as arrays: the one source of truth.

Every money movement is a method of :class:`Ledger`. Each method updates both
sides of the affected balance sheets *and* the banks' equity through its
profit or loss, so that the identity ``assets − liabilities = equity`` is a
real check of the bookkeeping (:meth:`Ledger.check`), not a definition.
Cash that enters or leaves the banking system is recorded by kind in
:attr:`Ledger.external_in` / :attr:`Ledger.external_out`, so money
conservation is checkable too.

Shapes: ``n`` banks, ``k`` asset classes, ``m`` outstanding interbank loans; money in
currency units."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import scipy.sparse as sp

from finsim_mesa import accounting, fastmath, packing
from finsim_mesa.loans import LoanBook, masked_terms, row_indices

__all__ = ["ACTIVE", "DEFAULTED", "Ledger", "LoanBook"]

ACTIVE, DEFAULTED = 0, 1  # the only statuses (the masks below rely on it; twice as fast as ==)


class Ledger:
    """Balance sheets of ``n`` banks.

    Assets: ``cash``; ``holdings @ prices`` (marketable securities, marked to
    market); ``other_assets`` (loans to the real economy, at book value);
    interbank loans receivable. Liabilities: ``deposits`` (external);
    interbank loans payable. ``equity`` is kept by posting every profit and loss.

    Args:
        cash: shape (n,), initial cash.
        holdings: shape (n, k), initial units of each marketable asset.
        deposits: shape (n,), initial external liabilities.
        prices: shape (k,), initial prices.
        other_assets: shape (n,), loans to the real economy (book value).
    """

    def __init__(self, cash: np.ndarray, holdings: np.ndarray, deposits: np.ndarray,
                 prices: np.ndarray, other_assets: np.ndarray | None = None,
                 funding: np.ndarray | None = None) -> None:
        self.n = int(cash.size)
        self.cash = np.asarray(cash, dtype=float).copy()
        self.holdings = np.asarray(holdings, dtype=float).reshape(self.n, -1).copy()
        self.deposits = np.asarray(deposits, dtype=float).copy()
        self.prices = np.asarray(prices, dtype=float).copy()
        self.other_assets = (np.zeros(self.n) if other_assets is None
                             else np.asarray(other_assets, dtype=float).copy())
        self.funding = (np.zeros(self.n) if funding is None
                        else np.asarray(funding, dtype=float).copy())
        self.loans = LoanBook()
        self.status = np.full(self.n, ACTIVE, dtype=np.int8)
        self.default_step = np.full(self.n, -1, dtype=np.int64)
        self.resolved = np.zeros(self.n, dtype=bool)
        self.equity = (self.cash + accounting.values(self.holdings, self.prices) + self.other_assets
                       - self.deposits - self.funding)
        self.external_in: defaultdict[str, float] = defaultdict(float)
        self.external_out: defaultdict[str, float] = defaultdict(float)
        self.initial_cash_total = float(self.cash.sum())
        self.equity0 = self.equity.copy()  # reset by finish_setup()
        self.initial_scale = 0.0  # largest total assets at the start (check tolerance)
        self.setup_infrastructure(0, 0)

    def setup_infrastructure(self, n_ccps: int, n_exchanges: int) -> None:
        """Accounts of ``n_ccps`` CCPs and ``n_exchanges`` exchanges (all zero).

        Banks' assets gain ``margin[n, C]`` (margin posted at each CCP) and
        ``fund[n, C]`` (default-fund contributions); each CCP holds that cash plus
        its own capital in ``ccp_cash[C]`` (so ``ccp_cash − Σ margin − Σ fund =
        ccp_capital``); each exchange holds the fees it earned in ``exchange_cash[X]``.
        """
        self.margin, self.fund = np.zeros((self.n, n_ccps)), np.zeros((self.n, n_ccps))
        self.ccp_cash, self.ccp_capital = np.zeros(n_ccps), np.zeros(n_ccps)
        self.exchange_cash = np.zeros(n_exchanges)

    # ------------------------------------------------------------------ views
    @property
    def active(self) -> np.ndarray:
        """shape (n,), bool: banks not in default (``status == ACTIVE``: ACTIVE is 0)."""
        return np.logical_not(self.status)

    @property
    def defaulted(self) -> np.ndarray:
        """shape (n,), bool: banks in default (``status == DEFAULTED``: it is 0 or 1)."""
        return self.status.astype(bool)

    def asset_values(self) -> np.ndarray:
        """shape (n,): market value of illiquid holdings."""
        return accounting.values(self.holdings, self.prices)

    def interbank_assets(self, owed: np.ndarray | None = None) -> np.ndarray:
        """shape (n,): loans receivable incl. accrued interest (``owed``: the book's, if known)."""
        lb = self.loans
        return np.bincount(lb.lender, weights=lb.owed if owed is None else owed, minlength=self.n)

    def interbank_liabilities(self) -> np.ndarray:
        """shape (n,): loans payable incl. accrued interest."""
        return np.bincount(self.loans.borrower, weights=self.loans.owed, minlength=self.n)

    def infrastructure_assets(self) -> np.ndarray:
        """shape (n,): margin posted and default-fund contributions at all CCPs."""
        m, f, c = self.margin, self.fund, self.margin.shape[1]  # (1 CCP: a row's sum is 0.0 + it:
        return (np.add(m[:, 0] + f[:, 0], fastmath.ZERO) if c == 1  # the sum of two + 0.0: same)
                else m.sum(axis=1) + f.sum(axis=1) if c else np.zeros(self.n))

    def total_assets(self, owed: np.ndarray | None = None) -> np.ndarray:
        """shape (n,): cash + securities + other assets + interbank assets + CCP accounts
        (none without CCPs: + 0.0 changes no sum here, which is never −0.0; tested)."""
        ta = self.cash + self.asset_values() + self.other_assets + self.interbank_assets(owed)
        return ta + self.infrastructure_assets() if self.margin.shape[1] else ta

    def system_cash(self) -> float:
        """Cash of banks, CCPs and exchanges together."""
        return float(self.cash.sum() + self.ccp_cash.sum() + self.exchange_cash.sum())

    def total_liabilities(self) -> np.ndarray:
        """shape (n,): deposits + funding loans + interbank liabilities."""
        return self.deposits + self.funding + self.interbank_liabilities()

    def risk_weighted_assets(self, weight: float, ib: np.ndarray | None = None) -> np.ndarray:
        """shape (n,): securities + other assets + weight × interbank assets (``ib``, if known)."""
        ib = self.interbank_assets() if ib is None else ib
        return self.asset_values() + self.other_assets + weight * ib

    def exposure_matrix(self, bilateral_only: bool = False) -> sp.csr_matrix:
        """shape (n, n), CSR: ``[i, j]`` = what bank *j* owes bank *i* (i's exposure to j).

        With ``bilateral_only`` loans novated to a CCP are left out (the lender's
        counterparty on them is the CCP, not the borrower)."""
        lb = self.loans
        m = lb.ccp < 0 if bilateral_only else slice(None)
        return sp.csr_matrix((lb.owed[m], (lb.lender[m], lb.borrower[m])), shape=(self.n, self.n))

    # ------------------------------------------------------------ operations
    def finish_setup(self) -> None:
        """Record the initial state as the reference for equity and cash totals."""
        self.equity = self.total_assets() - self.total_liabilities()
        self.equity0 = self.equity.copy()
        self.initial_cash_total = self.system_cash()
        self.initial_scale = float(np.abs(self.total_assets()).max(initial=0.0))

    def lend(self, lender: np.ndarray, borrower: np.ndarray, amount: np.ndarray,
             rate: np.ndarray, maturity: np.ndarray | int, ccp: np.ndarray | None = None,
             link: np.ndarray | None = None) -> None:
        """New interbank loans: cash moves lender → borrower (through the CCP when
        ``ccp`` ≥ 0, which stands between them: its cash is unchanged); no P&L.
        ``link``: their link ids, if known (:meth:`LoanBook.append`)."""
        if amount.size == 0:
            return
        np.subtract.at(self.cash, lender, amount)
        np.add.at(self.cash, borrower, amount)
        self.loans.append(lender, borrower, amount, rate, maturity, ccp, link)

    # ------------------------------------------------------- infrastructure
    def charge_fees(self, banks: np.ndarray, fees: np.ndarray, exchanges: np.ndarray) -> None:
        """Banks pay exchange fees (an expense); the exchanges' cash grows."""
        np.subtract.at(self.cash, banks, fees)
        np.subtract.at(self.equity, banks, fees)
        np.add.at(self.exchange_cash, exchanges, fees)

    def inject_ccp_capital(self, amounts: np.ndarray) -> None:
        """The CCPs' owners put in capital (cash from outside the system)."""
        self.ccp_cash += amounts
        self.ccp_capital += amounts
        self.external_in["ccp_capital"] += float(np.sum(amounts))

    def move_to_ccp(self, account: str, delta: np.ndarray) -> None:
        """Bank cash into (``delta`` > 0) or out of (< 0) its ``margin`` or ``fund``
        account at each CCP; ``delta`` has shape (n, C). No P&L."""
        acct = self.margin if account == "margin" else self.fund
        acct += delta
        self.cash -= delta.sum(axis=1)
        self.ccp_cash += delta.sum(axis=0)

    def rollover(self, mask: np.ndarray, share: np.ndarray, rate: np.ndarray,
                 maturity: int) -> dict[str, np.ndarray]:
        """Roll over ``share`` (in [0, 1]) of the loans in ``mask`` (shape (m,), or their rows,
        :func:`~finsim_mesa.loans.row_indices`): the rolled part (principal plus accrued interest)
        becomes a new loan at ``rate`` (per step) due at step ``maturity``, same CCP; the rest stays
        due; nothing is gained or lost. ``share``, ``rate``: one number, one per loan of the book or
        one per loan in ``mask`` (:func:`~finsim_mesa.loans.masked_terms`). Returns the renewed
        loans as columns (lender, borrower, amount, ccp)."""
        lb, rows, zero = self.loans, row_indices(mask), fastmath.ZERO  # (0-d float64; due first:
        at = mask if isinstance(mask, slice) else fastmath.leading(rows)  # a slice, no gathers)
        share = fastmath.clip(masked_terms(share, rows, len(lb), "share"), zero, fastmath.ONE)
        rate = masked_terms(rate, rows, len(lb), "rate")
        roll = lb.owed_at(at) * share
        rolled = fastmath.flatnonzero(roll > zero)
        pick = at  # every due loan rolled (the usual case): a slice when they come first,
        if rolled.size < rows.size:  # whose columns are copied, not gathered
            pick, roll, rate = rows[rolled], roll[rolled], rate[rolled]
        col = (lambda a: a[pick].copy()) if isinstance(pick, slice) else (lambda a: a[pick])
        lend, borr, ccp = col(lb.lender), col(lb.borrower), col(lb.ccp)
        out = {"lender": lend, "borrower": borr, "amount": roll, "ccp": ccp}
        if not rolled.size:
            return out
        lb.principal[at] *= (kept := fastmath.ONE - share)
        lb.accrued[at] *= kept
        lb.append(lend, borr, roll, rate, maturity, ccp, col(lb.link_ids(False)))
        return out

    def accrue_interest(self) -> np.ndarray:
        """One step of interest on loans (lender gains, borrower pays) and deposits.

        Deposit interest is capitalised onto the deposits (no cash moves).
        Returns the interest accrued on each loan, shape (m,)."""
        interest = self.loans.principal * self.loans.rate
        self.loans.accrued += interest
        self.equity += np.bincount(self.loans.lender, weights=interest, minlength=self.n)
        self.equity -= np.bincount(self.loans.borrower, weights=interest, minlength=self.n)
        return interest

    def charge_deposit_interest(self, rate: float) -> None:
        """Capitalise ``rate`` × deposits onto deposits (an expense)."""
        cost = self.deposits * rate
        self.deposits += cost
        self.equity -= cost

    def repay_funding(self, amounts: np.ndarray) -> None:
        """Banks repay ``amounts`` (shape (n,)) of their funding loans with cash (to
        creditors outside the system); no P&L."""
        amounts = np.minimum(np.maximum(amounts, fastmath.ZERO), self.funding)
        self.cash -= amounts
        self.funding -= amounts
        self.external_out["funding_repaid"] += fastmath.total(amounts)

    def receive_asset_income(self, yield_per_step: float) -> np.ndarray:
        """Cash yield of securities and other assets, from outside the system; shape (n,)."""
        income = yield_per_step * (self.asset_values() + self.other_assets)
        income[self.defaulted] = 0.0  # (~active, in one pass)
        self.cash += income
        self.equity += income
        self.external_in["asset_income"] += fastmath.total(income)
        return income

    def sell_assets(self, units: np.ndarray, exec_prices: np.ndarray, kind: str) -> np.ndarray:
        """Sell ``units`` (n, k) to buyers outside the system at ``exec_prices`` (k,);
        the difference to the mark price is a realised loss; returns cash raised (n,)."""
        proceeds = accounting.values(units, exec_prices)
        marked = accounting.values(units, self.prices)
        self.holdings -= units
        np.maximum(self.holdings, fastmath.ZERO, out=self.holdings)
        self.cash += proceeds
        self.equity += proceeds - marked
        self.external_in[kind] += fastmath.total(proceeds)
        return proceeds

    def revalue(self, new_prices: np.ndarray) -> np.ndarray:
        """Mark holdings to ``new_prices`` (k,); the gain or loss goes to equity."""
        new_prices = np.asarray(new_prices, dtype=float)
        change = accounting.values(self.holdings, new_prices - self.prices)
        self.equity += change
        self.prices = new_prices.copy()
        return change

    def write_down_assets(self, banks: np.ndarray, loss: np.ndarray) -> np.ndarray:
        """Bank-specific credit losses (money): other assets first, then securities
        pro rata; capped at what is held. Returns the loss taken, shape like ``banks``."""
        banks = np.asarray(banks)
        other = self.other_assets[banks]
        from_other = np.minimum(loss, other)
        self.other_assets[banks] = other - from_other
        values = self.asset_values()[banks]
        from_sec = np.minimum(loss - from_other, values)
        frac = np.divide(from_sec, values, out=np.zeros_like(from_sec), where=values > 0)
        self.holdings[banks] *= (1.0 - frac)[:, None]
        taken = from_other + from_sec
        np.subtract.at(self.equity, banks, taken)
        return taken

    def liquidate_other_assets(self, banks: np.ndarray, discount: float) -> float:
        """Sell the other assets of ``banks`` to outside buyers at ``1 − discount`` of
        book value (resolution of a defaulted bank). Returns the cash raised."""
        book = self.other_assets[banks].copy()
        proceeds = book * (1.0 - discount)
        self.cash[banks] += proceeds
        self.equity[banks] -= book - proceeds
        self.other_assets[banks] = 0.0
        self.external_in["liquidations"] += (paid := fastmath.total(proceeds))
        return paid

    def settle(self, loan_mask: np.ndarray, borrower_paid: np.ndarray, lender_paid: np.ndarray,
               ext_due: np.ndarray, ext_recovery: np.ndarray, default_cost: np.ndarray,
               seized_margin: np.ndarray | None = None, seized_fund: np.ndarray | None = None,
               capital_used: np.ndarray | None = None, fund_charges: np.ndarray | None = None
               ) -> None:
        """Settle a clearing: the loans in ``loan_mask`` and the external dues are paid.

        Args:
            loan_mask: shape (m,), loans settled now (then removed).
            borrower_paid: shape (m,), cash each borrower pays on each loan.
            lender_paid: shape (m,), cash each lender receives (equal to
                ``borrower_paid`` on bilateral loans; on a loan novated to a CCP the
                borrower pays the CCP and the CCP pays the lender).
            ext_due: shape (n,), external obligations due (deposit withdrawals; in
                resolution deposits, then the funding loan).
            ext_recovery: shape (n,), share of ``ext_due`` actually paid.
            default_cost: shape (n,), cash lost to Rogers–Veraart default costs.
            seized_margin, seized_fund: shape (n, C), a defaulted member's margin and
                default-fund contribution the CCP took in payment (layers 1 and 2).
            capital_used: shape (C,), the CCPs' own capital consumed (layer 3).
            fund_charges: shape (n, C), survivors' contributions consumed (layer 4).

        Unpaid amounts are written off (lost by the creditor, extinguished for the debtor).
        """
        lb, n = self.loans, self.n
        settled = fastmath.leading(fastmath.flatnonzero(loan_mask))  # due first: no gathers
        bp, lp = borrower_paid[settled], lender_paid[settled]
        owed = lb.owed_at(settled)
        lend, borr, ccp = lb.lender[settled], lb.borrower[settled], lb.ccp[settled]
        self.cash -= np.bincount(borr, weights=bp, minlength=n)
        self.cash += np.bincount(lend, weights=lp, minlength=n)
        self.equity -= np.bincount(lend, weights=owed - lp, minlength=n)
        self.equity += np.bincount(borr, weights=owed - bp, minlength=n)
        cleared = ccp >= 0
        if fastmath.count_nonzero(cleared):
            np.add.at(self.ccp_cash, ccp[cleared], bp[cleared] - lp[cleared])
        for acct, used in ((self.margin, seized_margin), (self.fund, seized_fund),
                           (self.fund, fund_charges)):
            if used is not None:
                acct -= used
                self.equity -= used.sum(axis=1)
        if capital_used is not None:
            self.ccp_capital -= capital_used
        lb.keep(~loan_mask)
        ext_paid = ext_due * ext_recovery
        self.cash -= ext_paid
        from_deposits = np.minimum(ext_due, self.deposits)  # then the funding loan
        self.deposits -= from_deposits
        self.funding -= ext_due - from_deposits
        self.equity += ext_due - ext_paid
        self.external_out["external_creditors"] += fastmath.total(ext_paid)
        if fastmath.count_nonzero(default_cost):
            self.cash -= default_cost
            self.equity -= default_cost
            self.external_out["default_costs"] += fastmath.total(default_cost)

    def mark_default(self, banks: np.ndarray, step: int) -> np.ndarray:
        """Put active ``banks`` (bool mask or indices) in default; returns the new ones."""
        if getattr(banks, "shape", 0) == (self.n,) and banks.dtype == "?":  # a bool mask
            if not fastmath.count_nonzero(banks):  # of nobody (the usual case): none new
                return fastmath.flatnonzero(banks)
        mask = np.zeros(self.n, dtype=bool)
        mask[banks] = True
        new = mask & self.active
        self.status[new] = DEFAULTED
        self.default_step[new] = step
        return fastmath.flatnonzero(new)

    def wind_down(self, banks: np.ndarray) -> float:
        """Close resolved banks: any cash left after all creditors are paid goes to
        the shareholders (leaves the system). Returns the amount paid out."""
        left = self.cash[banks].copy()
        self.cash[banks] = 0.0
        self.equity[banks] -= left
        self.resolved[banks] = True
        self.external_out["residual_to_shareholders"] += (paid := fastmath.total(left))
        return paid

    # --------------------------------------------------------------- checks
    def identity_gap(self) -> np.ndarray:
        """shape (n,): ``assets − liabilities − equity`` (zero up to round-off)."""
        return self.total_assets() - self.total_liabilities() - self.equity

    def cash_gap(self) -> float:
        """Change of total cash minus recorded external net inflow (zero up to round-off)."""
        return accounting.cash_gap(self)

    def check(self, rtol: float = 1e-9) -> None:
        """Raise :class:`AccountingError` if an accounting identity is broken (accounting.check)."""
        accounting.check(self, rtol)

    # ------------------------------------------------------------- snapshot
    _ARRAYS = ("cash", "holdings", "deposits", "funding", "prices", "other_assets", "status",
               "default_step", "resolved", "equity", "equity0", "margin", "fund", "ccp_cash",
               "ccp_capital", "exchange_cash")

    def snapshot(self, quick: bool = False) -> dict[str, Any]:
        """Copies of every array, the loan book and the external flows (``quick``: a step's)."""
        out = packing.PackedDict.of(self, self._ARRAYS) if quick else {  # (quick: 1 bytes copy)
            k: getattr(self, k).copy() for k in self._ARRAYS}
        out.update(loans=self.loans.save() if quick else self.loans.copy(),
                   external_in=dict(self.external_in), initial_scale=self.initial_scale,
                   external_out=dict(self.external_out), initial_cash_total=self.initial_cash_total)
        return out

    def restore(self, state: dict[str, Any]) -> None:
        """Put a :meth:`snapshot` back (copies, so the snapshot can be reused)."""
        self.__dict__.update({k: state[k].copy() for k in self._ARRAYS},
                             loans=LoanBook.load(state["loans"]),  # (a book, or save()'s rows)
                             external_in=defaultdict(float, state["external_in"]),
                             external_out=defaultdict(float, state["external_out"]),
                             **{k: state[k] for k in ("initial_cash_total", "initial_scale")})
