"""helper-52 (issue 15, 100,000 banks): ``resolution.clear_due`` without CCPs
reads what is owed on the due loans only (``LoanBook.owed_at``), not on the
whole book, and posts one array of payments for both legs (a bilateral loan's
borrower pays its lender what the lender receives).

The reference is the former ``clear_due``, kept below as it was (95c95ff):
twin models, one stepping with it, must stay equal bit for bit (the walk of
everything reachable from the model, ``support.model_state``), on runs where
banks default (recovery rates below 1) with and without the exchanges' audit.
"""

from __future__ import annotations

import numpy as np
import pytest
from support import model_state

from finsim_mesa import FinancialModel, resolution
from finsim_mesa.accounting import values
from finsim_mesa.clearing import clear_legs
from finsim_mesa.fastmath import flatnonzero, leading
from finsim_mesa.infrastructure import layer
from finsim_mesa.infrastructure.router import OUTCOMES
from finsim_mesa.market import capped_share

_holds_unsellable = resolution._holds_unsellable


def former_clear_due(L, cfg, due: np.ndarray, ext_due: np.ndarray,
              resolving, sell, t, ccps, router):
    """One Eisenberg–Noe clearing of the loans in ``due`` (mask over the book) and
    the external dues ``ext_due`` (shape (n,)), settled into the ledger."""
    n, C = L.n, L.ccp_cash.size
    lb = L.loans
    owed = lb.owed
    fire_price = L.prices * (1 - cfg.liquidation_discount)
    liquid = values(L.holdings, fire_price)
    alpha, beta = cfg.default_cost_alpha, cfg.default_cost_beta  # arrays when needed
    if not C:  # no CCPs: every leg is bilateral, the institutions are the banks
        bi = leading(flatnonzero(due))  # a slice when the due loans come first (read-only use)
        leg = owed  # nothing set off
        anyone = False  # (what the CCPs' set-off asks)
        b_borrower = lb.borrower[bi]
        # clamp round-off (e.g. cash after a margin payment that used all of it)
        e = np.maximum(L.cash + liquid, 0.0)
        rows, cols, vals, ext, forced = b_borrower, lb.lender[bi], owed[bi], ext_due, resolving
        paid_on = bi
    else:
        cle = due & (lb.ccp >= 0)
        n_cleared = np.count_nonzero(cle)
        anyone = np.count_nonzero(resolving) > 0
        seized_m, seized_f = np.zeros((n, C)), np.zeros((n, C))  # nothing seized yet
        leg = owed  # the borrower's leg, after set-off (read only)
        if anyone and n_cleared:
            seized_m, seized_f, leg = layer.seize_collateral(L, lb, cle, resolving, owed)
        elif n_cleared:  # seize_collateral's own no-set-off path: cash's -0.0
            L.cash += 0.0  # turns to +0.0 as its moves of zeros would
        paid_on = flatnonzero(due)  # the due loans, in book order
        if n_cleared == paid_on.size:  # every due loan cleared (the usual case)
            bi, ci = paid_on[:0], paid_on
        else:
            bi, ci = flatnonzero(due & (lb.ccp < 0)), flatnonzero(cle)
        b_borrower, c_borrower, c_node = lb.borrower[bi], lb.borrower[ci], n + lb.ccp[ci]
        rows = np.concatenate([b_borrower, c_borrower, c_node])
        cols = np.concatenate([lb.lender[bi], c_node, lb.lender[ci]])
        vals = np.concatenate([owed[bi], leg[ci], owed[ci]])
        survivors_fund = (np.where(resolving[:, None], 0.0, L.fund) if anyone
                          else L.fund).sum(axis=0)
        seized = (seized_m + seized_f).sum(axis=0) if anyone else np.zeros(C)
        e = np.empty(n + C)
        np.add(L.cash, liquid, out=e[:n])
        e[n:] = L.ccp_capital + survivors_fund + seized
        np.maximum(e, 0.0, out=e)
        ext = np.zeros(n + C)
        ext[:n] = ext_due
        a, b = np.ones(n + C), np.ones(n + C)  # the CCPs' shares are 1
        a[:n], b[:n] = alpha, beta
        alpha, beta = a, b
        forced = np.zeros(n + C, dtype=bool)
        forced[:n] = resolving
    # the ledger's legs are valid by construction: the trusted path, which also
    # skips the matrices when nobody is short (most clearings)
    res = clear_legs(rows, cols, vals, e, ext, alpha=alpha, beta=beta, forced=forced)
    rec = res.recovery
    b_paid = np.zeros(len(lb))
    l_paid = np.zeros(len(lb))
    b_paid[bi] = l_paid[bi] = owed[bi] * rec[b_borrower]
    if C:
        b_paid[ci] = leg[ci] * rec[c_borrower]
        l_paid[ci] = owed[ci] * rec[c_node]
    inflow = np.bincount(lb.lender[paid_on], weights=l_paid[paid_on], minlength=n)
    pay = res.payments[:n]
    # cash short of what must be paid is raised by emergency sales at the
    # liquidation discount (defaulters sell everything)
    short = np.maximum(pay - L.cash - inflow, 0.0)
    if (np.count_nonzero(res.defaulted) or np.count_nonzero(short)
            or _holds_unsellable(L.holdings, liquid)):
        share = np.where(res.defaulted[:n], 1.0, capped_share(short, liquid))
        sell(L.holdings * share[:, None], fire_price, "emergency_sales")
        cost = np.where(res.defaulted[:n], L.cash + inflow - pay, 0.0)
        cost[cost < 1e-12 * np.maximum(1.0, res.obligations[:n])] = 0.0
    else:  # nobody short or in default (most clearings): the share sold is 0 for every
        cost = np.zeros(n)  # bank with securities worth something, and the others hold none
    # everybody paid in full and nothing was set off (most clearings): every loan's
    # borrower paid what it owed, so no CCP has a loss and every repayment is "paid"
    in_full = ((router is not None or C) and not anyone
               and np.count_nonzero(rec[:n] != 1.0) == 0)
    if not C:
        waterfalls = None
    elif in_full:  # run_waterfalls would find each loss 0 (the same sums of equal terms)
        waterfalls = np.zeros(C), np.zeros((n, C))
    else:
        waterfalls = layer.run_waterfalls(L, ccps, cle, b_paid, seized_m, seized_f, resolving,
                                          t, owed)
    if router is not None:  # audit before the settled rows leave the book
        d = paid_on if C else flatnonzero(due)
        paid = b_paid[d]
        if in_full:  # b_paid is the leg (x 1.0), >= leg x (1 - 1e-12)
            outcome = "paid"
        else:
            outcome = np.where(paid >= leg[d] * (1 - 1e-12), OUTCOMES.index("paid"),
                               np.where(paid > 0, OUTCOMES.index("partial"),
                                        OUTCOMES.index("unpaid")))
        lender = lb.lender[d]
        router.record("repayment", lb.borrower[d], lender, paid, l_paid[d],
                      router.bank_exchange[lender], lb.ccp[d], 0.0, 0, outcome, t)
    if waterfalls is None or in_full:  # (in full: nothing seized or charged, each a
        L.settle(due, b_paid, l_paid, ext_due, rec[:n], cost)  # +0.0: x - 0.0 is x)
    else:
        L.settle(due, b_paid, l_paid, ext_due, rec[:n], cost, seized_m, seized_f, *waterfalls)
    return res


CASES = [  # (model settings, steps): banks default; with exchanges (the audit), no CCP
    (dict(n_banks=60, scenario="systemic", rng=5), 40),
    (dict(n_banks=80, scenario="systemic", rng=11, n_exchanges=2), 40),
    (dict(n_banks=50, scenario="systemic", rng=3, n_exchanges=1, n_ccps=1), 30),
]


@pytest.mark.parametrize(("settings", "steps"), CASES)
def test_clear_due_is_the_former_one(settings, steps, monkeypatch):
    calls = {"short": 0, "due": 0}
    former = former_clear_due

    def counted(L, cfg, due, *args):
        res = former(L, cfg, due, *args)
        calls["due"] += int(np.count_nonzero(due))
        calls["short"] += int(np.count_nonzero(res.recovery[:L.n] < 1.0))
        return res

    new = FinancialModel(**settings, agent_collect_every=1)
    new.run_for(steps)
    monkeypatch.setattr(resolution, "clear_due", counted)
    old = FinancialModel(**settings, agent_collect_every=1)
    old.run_for(steps)
    monkeypatch.undo()
    assert calls["due"] > 0 and calls["short"] > 0  # loans settled, some partly paid
    assert model_state(new) == model_state(old)
    assert new.datacollector.get_model_vars_dataframe().equals(
        old.datacollector.get_model_vars_dataframe())
