"""The clear stage: Eisenberg–Noe clearing of what is due, defaults, resolution.

Due are: loans at maturity (the part not rolled over), deposit withdrawals, and
*everything* owed to or by a bank in resolution (its loans are called, its
deposits paid out, its assets liquidated at ``liquidation_discount``). A bank's
external assets in the clearing are its cash plus its securities at the
liquidation price: a bank short of cash sells securities (emergency sales,
which add to the fire-sale volume) and defaults only if that is not enough.
Banks that cannot pay, or whose equity turns negative, default and are
resolved in a further clearing round within the same step, until no new
default occurs.

With CCPs, each CCP is an extra node of the clearing system: a novated loan is
two legs, borrower → CCP and CCP → lender. A member in resolution first loses
its margin and its default-fund contribution to what it owes each CCP (set-off,
layers 1 and 2); the CCP's resources are its own capital and the surviving
members' fund; its waterfall says who bears the rest (layers 3 and 4) and
anything uncovered is lost by the lenders on its loans pro rata.

In most clearings everybody pays in full (some banks after an emergency
sale): with nobody in resolution and below ``FAST_PATH_MIN_N`` banks,
:func:`settle_in_full` tests that with :func:`clear_legs`' own test (with
CCPs, on their legs too) and settles it with the general path's sales,
:meth:`Ledger.settle <finsim_mesa.ledger.Ledger.settle>`'s postings and the
router's audit records, bit for bit, without the general path's matrices'
inputs (issue 15).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from finsim_mesa.accounting import values
from finsim_mesa.clearing import _ROUNDING as ROUNDING
from finsim_mesa.clearing import FAST_PATH_MIN_N, ClearingResult, clear_legs, pays_in_full
from finsim_mesa.fastmath import ONE, ZERO, constant, count_nonzero, flatnonzero, leading, total
from finsim_mesa.infrastructure import layer
from finsim_mesa.infrastructure.router import OUTCOMES
from finsim_mesa.loans import row_indices
from finsim_mesa.market import capped_share
from finsim_mesa.observation import due_rows

if TYPE_CHECKING:
    from finsim_mesa.config import ModelConfig
    from finsim_mesa.infrastructure import CentralCounterparty, InfrastructureRouter
    from finsim_mesa.ledger import Ledger

__all__ = ["clear_and_resolve", "clear_due", "insolvent", "settle_in_full"]

Sell = Callable[[np.ndarray, np.ndarray, str], None]
_MINUS_TOL = constant(-1e-9)  # (a ufunc operand: converted once, issue 15)
_ROUNDING, _TOL = float(ROUNDING), 1e-9  # pays_in_full's round-off bound and tolerance
_F64, _I64 = np.dtype(np.float64), np.dtype(np.int64)


def insolvent(L: Ledger) -> np.ndarray:
    """shape (n,), bool: equity below zero (beyond round-off): losses exceed capital."""
    return L.equity < _MINUS_TOL * np.maximum(ONE, L.equity0)


def _holds_unsellable(holdings: np.ndarray, liquid: np.ndarray) -> bool:
    """Whether a bank whose securities are worth nothing at the liquidation price
    (``liquid``, shape (n,), not > 0) holds any: when nobody is short or in
    default, :func:`~finsim_mesa.market.capped_share` gives such banks a share
    of 1 and every other bank 0, so the emergency sale of ``holdings × share``
    sells something only then (banks resolved earlier hold nothing).

    ``liquid`` is ``holdings`` valued (a bank with ``liquid > 0`` holds something:
    ``0 × price`` is ±0.0 or NaN); with one asset class the banks worth something
    are then among those holding something, so one of those is worth nothing
    exactly when they are more (NaN holdings count in both forms)."""
    worth = count_nonzero(liquid > ZERO)
    if worth == liquid.size:
        return False
    if holdings.shape[1] == 1:  # (one class: a count, not the gather of the others' rows)
        return count_nonzero(holdings) > worth
    return bool(count_nonzero(holdings[~(liquid > ZERO)]))


def clear_and_resolve(L: Ledger, cfg: ModelConfig, withdrawals: np.ndarray, sell: Sell,
                      t: int, ccps: list[CentralCounterparty],
                      router: InfrastructureRouter | None) -> int:
    """Clear what is due at step ``t`` and resolve the banks that default, round
    after round, until no new default. ``withdrawals`` (shape (n,)) is paid out
    and zeroed. Returns the contagion depth (the clearings' default rounds)."""
    n = L.n  # (below: defaulted & ~resolved, the statuses being ACTIVE 0 and DEFAULTED 1)
    resolving = L.status > L.resolved
    depth = 0
    for _ in range(n + 1):
        anyone = count_nonzero(resolving) > 0
        if anyone:
            L.liquidate_other_assets(flatnonzero(resolving), cfg.liquidation_discount)
            sell(L.holdings * resolving[:, None], L.prices * (1 - cfg.liquidation_discount),
                 "liquidations")
        lb = L.loans
        # settle_in_full is tried (nobody in resolution, a small system): the rows of
        # what matures (slice(0, k) in a book in maturity order), else the mask
        quick = not anyone and n < FAST_PATH_MIN_N
        due = due_rows(lb.maturity, t) if quick else lb.maturity <= t
        ext_due = np.minimum(withdrawals, L.deposits)
        if anyone:
            due |= resolving[lb.borrower] | resolving[lb.lender]
            ext_due = np.where(resolving, L.deposits, ext_due)
        withdrawals[:] = 0.0
        failed = None  # nobody failed to pay
        if not (_how_many(due) or count_nonzero(ext_due)):
            pass
        elif not (quick and settle_in_full(L, cfg, due, ext_due, router, t, sell)):
            # (settle_in_full: everybody paid in full, settled as clear_due would; not
            # tried on large systems, where someone fails to pay often enough that
            # the test, done again by clear_due, costs more than the shortcut saves)
            if quick:  # (settle_in_full changed nothing) clear_due's mask
                due = lb.maturity <= t
            res = clear_due(L, cfg, due, ext_due, resolving, sell, t, ccps, router)
            depth += res.rounds
            failed = res.defaulted[:n]
        if anyone:
            L.wind_down(flatnonzero(resolving))
        new = L.mark_default(insolvent(L) if failed is None else failed | insolvent(L), t)
        if new.size == 0:
            break
        resolving = np.zeros(n, dtype=bool)
        resolving[new] = True
    return depth


def _how_many(due: np.ndarray | slice) -> int:
    """How many loans ``due`` holds: a bool mask, indices or ``slice(0, k)``."""
    if isinstance(due, slice):
        return due.stop
    return count_nonzero(due) if due.dtype == bool else due.size


def settle_in_full(L: Ledger, cfg: ModelConfig, due: np.ndarray, ext_due: np.ndarray,
                   router: InfrastructureRouter | None = None, t: int = 0,
                   sell: Sell | None = None) -> bool:
    """Settle the loans ``due`` (mask over the book, or their rows as
    :func:`~finsim_mesa.loans.row_indices` takes them) and the external dues
    ``ext_due`` (shape (n,)) if everybody pays in full; False (nothing done) if
    not. For a clearing with nobody in resolution (the caller's condition): then
    :func:`~finsim_mesa.resolution.clear_due` would clear the same legs, find
    that everybody pays in full (:func:`pays_in_full`, the test
    :func:`~finsim_mesa.clearing.clear_legs` makes) and settle as this does:

    * a bank whose cash and inflow fall short of what it pays sells that share of
      its securities first (the emergency sale, ``sell``, as there: the shares
      of :func:`~finsim_mesa.market.capped_share`, which also sells what a bank
      holds at a liquidation price of zero); without ``sell``, such a clearing
      is declined;
    * each borrower pays, each lender receives, the sums of ``owed × 1.0`` over
      its due loans (``np.bincount`` of the same weights in the same order);
    * the write-offs ``owed − paid`` are +0.0 (every ``owed`` is finite when the
      test passes: a NaN or +inf one makes p̄'s test fail, a −inf one is
      declined before it), so equity's
      four postings of zeros are one ``+= 0.0`` (−0.0 becomes +0.0, as there);
    * the external dues are paid in full (``ext_due × 1.0``), deposits first.

    With CCPs (``L.ccp_cash``) a cleared loan is two legs, borrower → CCP and
    CCP → lender, each CCP an institution after the banks whose resources are
    its capital and the members' fund: the test is made on the banks' sums in
    the clearing's leg order (the bilateral legs, then the cleared ones, as
    ``clear_due`` concatenates them) and on the CCPs' own; cash's −0.0 turns to
    +0.0 when loans are cleared (the set-off's moves of zeros), and each CCP
    owed on them gets its ``+= 0.0`` (the margin of ``paid − received``).
    ``router``: the repayments' audit records ("paid"), as ``clear_due`` writes
    them at step ``t``.
    """
    lb, n, C = L.loans, L.n, L.ccp_cash.size
    # the due loans come first: a slice, no gathers
    rows = due if isinstance(due, slice) else leading(row_indices(due))
    owed = lb.owed_at(rows)
    lender, borrower = lb.lender[rows], lb.borrower[rows]
    paid = np.bincount(borrower, weights=owed, minlength=n)
    received = np.bincount(lender, weights=owed, minlength=n)
    # (cash as it is, not clear_due's cash + 0.0: the two differ in a zero's sign only,
    # which the test's comparisons cannot see, and p̄ - cash is p̄'s, p̄ never -0.0)
    cash, pbar, inflow = L.cash, paid, received  # the banks' sums, in the clearing's order
    n_cleared = 0
    if C:
        ccp = lb.ccp[rows]  # every due loan cleared (the usual case: its least id >= 0): no mask
        every = not ccp.size or ccp[ccp.argmin()] >= 0
        cleared = None if every else ccp >= 0
        n_cleared = ccp.size if every else count_nonzero(cleared)
        if n_cleared and not every:  # bilateral legs first, then the cleared ones
            order = np.concatenate([flatnonzero(~cleared), flatnonzero(cleared)])
            pbar = np.bincount(borrower[order], weights=owed[order], minlength=n)
            inflow = np.bincount(lender[order], weights=owed[order], minlength=n)
        # one CCP owed on every due loan (the usual case): its test passes for sure
        # (_surely_pays; its funds: capital + the fund's column sum, fund.sum(axis=0)'s own
        # pairwise sum, added as Python floats) or is made on its sum; several CCPs: on theirs
        all_owed = C == 1 and every and n_cleared and _surely_pays(
            owed, float(L.ccp_capital[0]) + total(L.fund[:, 0]))
        if not all_owed:
            funds = L.ccp_capital + L.fund.sum(axis=0)
            if n_cleared:
                on, on_owed = (ccp, owed) if every else (ccp[cleared], owed[cleared])
                ccp_owed = np.bincount(on, weights=on_owed, minlength=C)
                terms = np.bincount(on, minlength=C)
            else:
                ccp_owed, terms = np.zeros(C), np.zeros(C, dtype=np.int64)
            if not _ccps_pay(ccp_owed, terms, funds):
                return False
            all_owed = count_nonzero(terms) == C
    dues = not _plus_zeros(ext_due, n)  # (none, the usual case: p̄ + 0.0 is p̄, a bincount's
    pbar = pbar + ext_due if dues else pbar  # sums, never -0.0; cash - 0.0 is cash; total 0.0)
    fire_price = L.prices * (1 - cfg.liquidation_discount)
    liquid = values(L.holdings, fire_price)
    if not (pbar[pbar.argmin()] > -np.inf  # (its min by argmin, NaN if any; a -inf obligation
            # passes the test, but the general path writes off -inf - (-inf): NaN, not +0.0)
            and pays_in_full(pbar, inflow, np.bincount(lender, minlength=n),
                             np.maximum(cash + liquid, ZERO))):
        return False
    short = np.maximum(pbar - cash - received, ZERO)
    selling = bool(count_nonzero(short)) or _holds_unsellable(L.holdings, liquid)
    if selling and sell is None:
        return False
    if n_cleared:
        L.cash += ZERO
    if selling and sell is not None:
        sell(L.holdings * capped_share(short, liquid)[:, None], fire_price, "emergency_sales")
    if router is not None and router.auditing:  # (before the settled rows leave the book)
        # (received in full: the amount itself, one column for both, as for loans;
        # owed is a new array, never written below: held by the audit as it is)
        router.record_owned("repayment", borrower, lender, owed, owed,
                            router.bank_exchange[lender], ccp if C else lb.ccp[rows], 0.0,
                            0, "paid", t)
    L.cash -= paid
    L.cash += received
    L.equity += ZERO
    if n_cleared:  # (each CCP owed on them: all of them, the usual case, in one pass)
        if all_owed:
            L.ccp_cash += ZERO
        else:
            L.ccp_cash[terms > 0] += 0.0
    lb.remove(rows)
    if dues:
        L.cash -= ext_due
    from_deposits = np.minimum(ext_due, L.deposits)  # then the funding loan
    L.deposits -= from_deposits
    L.funding -= ext_due - from_deposits
    L.external_out["external_creditors"] += total(ext_due) if dues else 0.0
    return True


def _plus_zeros(x: np.ndarray, n: int) -> bool:
    """Whether ``x`` is a float64 array of shape (n,) whose every entry is +0.0, bit
    for bit (-0.0 and NaN are not): one count of its bits read as integers."""
    return (type(x) is np.ndarray and x.dtype is _F64 and x.shape == (n,)
            and not count_nonzero(x.view(_I64)))


def _ccps_pay(owed: np.ndarray, terms: np.ndarray, funds: np.ndarray) -> bool:
    """``pays_in_full(owed + 0.0, owed, terms, np.maximum(funds + 0.0, 0.0))`` for
    the CCPs (shape (C,) each: what each owes its lenders and is owed by its
    borrowers on the due loans, how many, its capital and fund), element by
    element in Python floats: the same IEEE operations on a handful of entries
    without eight ufunc calls (tested against it, NaN and -0.0 included)."""
    for o, k, f in zip(owed.tolist(), terms.tolist(), funds.tolist(), strict=True):
        e = max(f + 0.0, 0.0)  # np.maximum's: NaN kept (max returns it: 0.0 > NaN is False)
        pbar = o + 0.0
        resources = e + o
        slack = _ROUNDING * float(k + 4) * resources
        if not resources - slack >= pbar - _TOL * (1.0 if 1.0 >= pbar else pbar):
            return False
    return True


def _surely_pays(owed: np.ndarray, funds: float) -> bool:
    """Whether one CCP owed ``owed`` on each of its legs (shape (k,)), with its
    capital and fund ``funds``, passes :func:`_ccps_pay` for sure, by bounds,
    without the sum (a serial one: ~7 µs for 1,750 legs, against two reductions).

    True only when every term is finite and ≥ 0, ``k ≤ 100,000``, ``|funds| <
    1e300`` and ``k · max(owed) + max(funds, 0) < 1e300`` (no NaN: each
    comparison fails on it). Then its sum ``o`` (any order) and ``s = fl(e + o)``
    are finite, ``0 ≤ o ≤ s`` with ``e = max(funds, 0)``, and with ``u = 2⁻⁵³``:
    ``δ = fl(ROUNDING · (k + 4)) < 1.8e-10``, ``s − fl(δ s)`` rounds to at least
    ``s (1 − 2e-10)``, and ``τ = fl(1e-9 · max(1, o)) ≥ 0.99e-9 · max(1, o)``: if
    ``o ≤ τ`` the threshold ``fl(o − τ)`` is ≤ 0 ≤ the resources; else it is at most
    ``(o − τ)(1 + u) ≤ o (1 − 2e-10)`` since ``τ (1 + u) ≥ o (2e-10 + u)``. Either way
    the test passes, so the decision is the same; otherwise the caller sums.
    """
    k = owed.size
    if k > 100_000 or not abs(funds) < 1e300:
        return False
    return bool(owed[owed.argmin()] >= ZERO  # (min and max: NaN if any, as the reductions,
                and owed[owed.argmax()] * k + max(funds, 0.0) < 1e300)  # at a quarter the cost)


def clear_due(L: Ledger, cfg: ModelConfig, due: np.ndarray, ext_due: np.ndarray,
              resolving: np.ndarray, sell: Sell, t: int, ccps: list[CentralCounterparty],
              router: InfrastructureRouter | None) -> ClearingResult:
    """One Eisenberg–Noe clearing of the loans in ``due`` (mask over the book) and
    the external dues ``ext_due`` (shape (n,)), settled into the ledger."""
    n, C = L.n, L.ccp_cash.size
    lb = L.loans
    fire_price = L.prices * (1 - cfg.liquidation_discount)
    liquid = values(L.holdings, fire_price)
    alpha, beta = cfg.default_cost_alpha, cfg.default_cost_beta  # arrays when needed
    if not C:  # no CCPs: every leg is bilateral, the institutions are the banks
        bi = leading(flatnonzero(due))  # a slice when the due loans come first (read-only use)
        # what is owed on the due loans only (owed[bi]: the same sums, not the whole book's)
        leg = owed = lb.owed_at(bi)  # nothing set off; both indexed by position in bi below
        anyone = False  # (what the CCPs' set-off asks)
        b_borrower = lb.borrower[bi]
        # clamp round-off (e.g. cash after a margin payment that used all of it)
        e = np.maximum(L.cash + liquid, 0.0)
        rows, cols, vals, ext, forced = b_borrower, lb.lender[bi], owed, ext_due, resolving
        paid_on = bi
    else:
        owed = lb.owed
        cle = due & (lb.ccp >= 0)
        n_cleared = count_nonzero(cle)
        anyone = count_nonzero(resolving) > 0
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
    if not C:  # each bilateral loan's borrower pays its lender: one array for both
        b_paid = l_paid = np.zeros(len(lb))  # (read only below and in L.settle)
        b_paid[bi] = owed * rec[b_borrower]
    else:
        b_paid, l_paid = np.zeros(len(lb)), np.zeros(len(lb))
        b_paid[bi] = l_paid[bi] = owed[bi] * rec[b_borrower]
        b_paid[ci] = leg[ci] * rec[c_borrower]
        l_paid[ci] = owed[ci] * rec[c_node]
    inflow = np.bincount(lb.lender[paid_on], weights=l_paid[paid_on], minlength=n)
    pay = res.payments[:n]
    # cash short of what must be paid is raised by emergency sales at the
    # liquidation discount (defaulters sell everything)
    short = np.maximum(pay - L.cash - inflow, 0.0)
    if (count_nonzero(res.defaulted) or count_nonzero(short)
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
               and count_nonzero(rec[:n] != 1.0) == 0)
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
            outcome: np.ndarray | str = "paid"
        else:  # (no CCPs: leg is already the due loans', d's rows in order)
            full = (leg[d] if C else leg) * (1 - 1e-12)
            outcome = np.where(paid >= full, OUTCOMES.index("paid"),
                               np.where(paid > 0, OUTCOMES.index("partial"),
                                        OUTCOMES.index("unpaid")))
        lender = lb.lender[d]  # (paid, l_paid[d]: new arrays, never written below)
        router.record_owned("repayment", lb.borrower[d], lender, paid, l_paid[d],
                            router.bank_exchange[lender], lb.ccp[d], 0.0, 0, outcome, t)
    if waterfalls is None or in_full:  # (in full: nothing seized or charged, each a
        L.settle(due, b_paid, l_paid, ext_due, rec[:n], cost)  # +0.0: x - 0.0 is x)
    else:
        L.settle(due, b_paid, l_paid, ext_due, rec[:n], cost, seized_m, seized_f, *waterfalls)
    return res
