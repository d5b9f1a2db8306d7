"""The infrastructure layer's set-up and its work in the settle and clear stages.

* :func:`build` — exchanges and CCPs as Mesa agents and grid nodes, the router,
  novation of the initial loans, default funds, CCP capital, initial margin;
* :func:`book_orders` — the trades the exchanges processed become loans (settle);
* :func:`call_margin` — CCPs call or return margin, members pay or default (settle);
* :func:`seize_collateral` / :func:`run_waterfalls` — a member in resolution
  loses its margin and fund contribution to what it owes each CCP, and each CCP
  absorbs the rest of its loss through its waterfall (clear).

Money in currency units.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from finsim_mesa.accounting import values
from finsim_mesa.fastmath import ZERO, count_nonzero, flatnonzero, stable_order, sum_slack, total
from finsim_mesa.infrastructure.ccp import CentralCounterparty, cleared_by_ccp
from finsim_mesa.infrastructure.exchange import Exchange, ExchangeQueue
from finsim_mesa.infrastructure.router import OUTCOMES, InfrastructureRouter, assign_venues
from finsim_mesa.market import capped_share

if TYPE_CHECKING:
    from finsim_mesa.config import ModelConfig
    from finsim_mesa.ledger import Ledger, LoanBook
    from finsim_mesa.model import FinancialModel

__all__ = ["book_orders", "build", "call_margin", "margin_rate", "run_waterfalls",
           "seize_collateral", "stable_order"]

Sell = Callable[[np.ndarray, np.ndarray, str], None]
_max = np.maximum.reduce  # (ndarray.max() without its Python layer)


def margin_rate(cfg: ModelConfig, price_index: float) -> float:
    """Margin per unit of cleared borrowing: initial margin, scaled up as the
    collateral (securities) price falls below its initial level (variation margin)."""
    return min(1.0, cfg.initial_margin_rate / max(price_index, cfg.price_floor))


def requirements(ccps: list[CentralCounterparty], rate: float) -> np.ndarray:
    """shape (n, C): margin each member must hold at each CCP (each CCP's
    :meth:`~CentralCounterparty.margin_requirement`, all in one pass over the book)."""
    if not ccps:
        return np.zeros((0, 0))
    model = ccps[0].model
    lb = model.ledger.loans
    if len(ccps) == 1 and ccps[0].ccp_id == 0 and lb.ccp.size and not count_nonzero(lb.ccp):
        # (one CCP clearing every loan of a non-empty book, the usual case: cleared_by_ccp's
        # own path, its new float array scaled in place, x * rate being rate * x in IEEE
        # arithmetic; an empty book's bincount is NumPy's int64 zeros: the general path)
        req = np.bincount(lb.borrower, weights=lb.owed_at(slice(None)), minlength=model.n_banks)
        return np.multiply(req, rate, out=req)[:, None]
    return rate * cleared_by_ccp(lb, [c.ccp_id for c in ccps], model.n_banks)


def build(model: FinancialModel, space_graph: nx.Graph, size: np.ndarray) -> InfrastructureRouter:
    """Exchanges and CCPs as agents and grid nodes; returns the router.

    Banks are assigned to exchanges by ``venue_rule``; the initial loans are
    novated to the CCPs (share ``ccp_clearing_share``); members contribute
    ``default_fund_rate`` of their assets ``size`` (shape (n,)) to the default
    funds (at most half their cash) and post initial margin (up to their cash;
    the rest is called at the first step).
    """
    cfg, L, n = model.config, model.ledger, model.config.n_banks
    bank_exchange = assign_venues(cfg.venue_rule, cfg.n_exchanges, size, model.rng)
    L.setup_infrastructure(cfg.n_ccps, cfg.n_exchanges)
    exchanges: list[Exchange] = []
    for x in range(cfg.n_exchanges):
        members = bank_exchange == x
        queue = ExchangeQueue(max(cfg.exchange_capacity * float(size[members].sum()), 1e-9),
                              cfg.congestion_threshold, cfg.exchange_base_fee,
                              cfg.exchange_fee_slope, cfg.max_order_wait)
        ex = Exchange(model, x, queue, node=n + x)
        model.grid.place_agent(ex, n + x)
        space_graph.add_edges_from((int(i), n + x) for i in np.flatnonzero(members))
        exchanges.append(ex)
    ccps = []
    for c in range(cfg.n_ccps):
        node = n + cfg.n_exchanges + c
        ccp = CentralCounterparty(model, c, node=node)
        model.grid.place_agent(ccp, node)
        ccps.append(ccp)
    router = InfrastructureRouter(model, exchanges, cfg.n_ccps, bank_exchange)
    for x, c in enumerate(router.exchange_ccp):
        if c >= 0:
            space_graph.add_edge(n + x, n + cfg.n_exchanges + int(c))
    if not ccps:
        return router
    lb = L.loans
    home = router.bank_ccp[lb.lender]
    if cfg.ccp_clearing_share >= 1.0:
        lb.ccp = home.copy()
    elif cfg.ccp_clearing_share > 0.0:
        lb.ccp = np.where(model.rng.random(len(lb)) < cfg.ccp_clearing_share, home, -1)
    # a member pays at most half its cash into the default funds at registration
    per_ccp = np.minimum(cfg.default_fund_rate * size, 0.5 * L.cash) / cfg.n_ccps
    L.move_to_ccp("fund", np.repeat(per_ccp[:, None], cfg.n_ccps, axis=1))
    L.inject_ccp_capital(cfg.ccp_capital_share * L.fund.sum(axis=0))
    # initial margin up to the cash it has; the rest is called in the first step
    req = requirements(ccps, margin_rate(cfg, model.market.price_index))
    total = req.sum(axis=1)
    L.move_to_ccp("margin", req * capped_share(L.cash, total)[:, None])
    for c, ccp in enumerate(ccps):
        ccp.initial_fund = float(L.fund[:, c].sum())
        ccp.initial_capital = float(L.ccp_capital[c])
    return router


def book_orders(L: Ledger, router: InfrastructureRouter,
                processed: list[dict[str, np.ndarray] | None], cfg: ModelConfig, t: int
                ) -> tuple[float, float]:
    """The orders the exchanges processed (one column dict or None per exchange,
    see :meth:`Exchange.process`) become loans, novated where ``ccp`` ≥ 0; the
    lender pays the fee; a lender short of cash for amount plus fee has its
    orders fail, in order. Loans made between the same pair are merged.
    Returns (fees paid, volume lent), money."""
    done = [o for o in processed if o]
    kept = router.submitted_links(done)  # (also drops the links kept when nothing is done)
    link, distinct = (None, False) if kept is None else kept
    whole = router.submitted_columns(link)
    if not done:
        return 0.0, 0.0
    # the columns concatenated; those the router holds whole (the arrays the
    # exchanges' columns are slices of, see router.submitted_columns) as they are
    orders = {key: whole[key] if whole is not None and key in whole
              else np.concatenate([o[key] for o in done]) for key in done[0]}
    first_new = len(L.loans)
    snd, rcv, amt = orders["sender"], orders["receiver"], orders["amount"]
    need = amt * (1.0 + orders["fee_rate"])
    ok = _affordable(snd, need, L.cash, L.n)  # (None: every order is)
    if count_nonzero(L.status):  # someone in default (ACTIVE is 0): both ends must be active
        active = L.active  # (one evaluation of the mask for both ends)
        both = active[snd] & active[rcv]
        ok = both if ok is None else ok & both
    if ok is None or count_nonzero(ok) == ok.size:  # every order settles (the usual
        booked, bad = orders, None  # case): the columns as they are
    else:  # each column gathered once for the booking and its audit
        bad = ~ok
        booked = {key: col[ok] for key, col in orders.items()}
        link = None if link is None else link[ok]
    snd, rcv, amt = booked["sender"], booked["receiver"], booked["amount"]
    fee = amt * booked["fee_rate"]
    # one maturity for all (the book's column takes it as np.full would give it);
    # their link ids, when known (router.submitted_links)
    L.lend(snd, rcv, amt, booked["rate"], t + cfg.loan_maturity, booked["ccp"], link=link)
    L.charge_fees(snd, fee, booked["exchange"])
    if not distinct:  # (orders of distinct pairs: every group one row, nothing to merge)
        L.loans.consolidate(first_new)
    router.record_owned("loan", snd, rcv, amt, amt, booked["exchange"], booked["ccp"], fee,
                        booked["delay"], "processed", t)
    if bad is not None:
        router.record_owned("loan", orders["sender"][bad], orders["receiver"][bad],
                            orders["amount"][bad], 0.0, orders["exchange"][bad], orders["ccp"][bad],
                            0.0, orders["delay"][bad], "failed", t)
    return total(fee), total(amt)  # (float(x.sum()): the same pairwise sums)



def _affordable(snd: np.ndarray, need: np.ndarray, cash: np.ndarray, n: int
                ) -> np.ndarray | None:
    """Whether each order (lender ``snd``, amount plus fee ``need`` > 0) is
    affordable: its lender's orders up to it, in order, sum to at most its
    ``cash`` × (1 + 1e-12) — the running sums of the orders sorted by lender
    (a stable sort), each less the sum before the lender's first order. None
    when every order is (most steps).

    That is known without the sort when each lender's total (a ``bincount``),
    plus a bound on how far the running sums' round-off may carry them
    (``tol``, 4 (k + 2) eps × the sum of all k orders: it covers 3 k u × the
    total, u = eps / 2, with room), is within its cash × (1 + 1e-12): a
    lender's running sums grow with its orders, so its last is its largest,
    and within its total plus round-off. Else the sums are formed as before.
    """
    cap = cash * (1 + 1e-12)
    owes = np.bincount(snd, weights=need, minlength=n)
    tol = sum_slack(snd.size, total(need))
    # not certified where the bound fails or cannot be compared (a NaN cash, owed or
    # tol: the sums decide), for every lender (owes != 0; a NaN owed is one too):
    # lender and not within is lender > within, for booleans
    if not count_nonzero(np.greater(owes != 0.0, owes + tol <= cap)):
        return None
    order = stable_order(snd, n)
    by_sender, need_o = snd[order], need[order]
    cs = np.cumsum(need_o)
    first = np.empty(snd.size, dtype=bool)  # a sender's first order in the sorted queue
    first[:1] = True
    np.not_equal(by_sender[1:], by_sender[:-1], out=first[1:])
    within = cs - np.maximum.accumulate(np.where(first, cs - need_o, 0.0))
    affordable = np.empty(snd.size, dtype=bool)
    affordable[order] = within <= cap[by_sender]
    return affordable


def call_margin(L: Ledger, ccps: list[CentralCounterparty], router: InfrastructureRouter,
                rate: float, cfg: ModelConfig, sell: Sell, t: int) -> float:
    """CCPs call (or return) margin so that each member's margin equals ``rate`` ×
    its cleared borrowing. A member short of cash sells securities at the
    liquidation price (through ``sell``); one that still cannot pay is in
    default. Returns the margin called (money)."""
    node0 = cfg.n_banks + cfg.n_exchanges  # grid node of CCP 0 (its id in the audit)
    delta = requirements(ccps, rate)  # (a new array: the two steps below in place)
    np.subtract(delta, L.margin, out=delta)
    # (nobody in default, ACTIVE being 0: a product with 1.0 everywhere, which
    # changes no value, left out)
    active = L.active if count_nonzero(L.status) else None
    if active is not None:
        np.multiply(delta, active[:, None], out=delta)
    back = np.minimum(delta, ZERO)  # (delta is float64: ZERO's loop and values are 0.0's)
    auditing = router.auditing  # (lookahead copies keep no audit: its columns skipped)
    # (auditing: the cells found once, none where count_nonzero would count none)
    i, c, f = _cells(back) if auditing else (None, 0, None)
    if f.size if auditing else np.count_nonzero(back):
        L.move_to_ccp("margin", back)
        if auditing:
            returned = -back.ravel()[f]
            router.record_owned("margin_return", node0 + c, i, returned, returned,
                                router.bank_exchange[i], c, 0.0, 0, "returned", t)
    call = np.maximum(delta, ZERO)
    # (one CCP: a row's sum of one entry is that entry, the column read as it is)
    need = call[:, 0] if call.shape[1] == 1 else call.sum(axis=1)
    called = total(need)  # (float(need.sum()): the same pairwise sum)
    # (auditing: the called cells found once; a row of non-negative or NaN entries sums
    # to a non-zero exactly when one of them is one, so none is where no need is)
    i, c, f = _cells(call) if auditing else (None, 0, None)
    if not (f.size if auditing else np.count_nonzero(need)):
        return called
    over = need - L.cash  # (some entry > 0 or NaN: the short's max(over, 0) has a non-zero)
    if _max(over) <= 0.0:  # everybody can pay (most steps): capped_share is 1 for
        L.move_to_ccp("margin", call)  # all (need <= cash), so pay = call x 1 = call
        if auditing:
            called_f = call.ravel()[f]
            router.record_owned("margin_call", i, node0 + c, called_f, called_f,
                                router.bank_exchange[i], c, 0.0, 0, "posted", t)
        return called
    if not auditing:
        i, c, f = _cells(call)
    short = np.maximum(over, 0.0)
    fire_price = L.prices * (1 - cfg.liquidation_discount)
    liquid = values(L.holdings, fire_price)
    sell(L.holdings * capped_share(short, liquid)[:, None], fire_price, "margin_sales")
    frac = capped_share(L.cash, need)
    pay = call * frac[:, None]
    L.move_to_ccp("margin", pay)
    outcome = np.where(frac[i] < 1 - 1e-12, OUTCOMES.index("short"), OUTCOMES.index("posted"))
    router.record_owned("margin_call", i, node0 + c, call.ravel()[f], pay.ravel()[f],
                        router.bank_exchange[i], c, 0.0, 0, outcome, t)
    failing = (need > 0) & (frac < 1 - 1e-12)
    if active is not None:  # (else everybody was active when the margin was called)
        failing &= active
    L.mark_default(failing, t)
    return called


def _cells(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | int, np.ndarray]:
    """``np.nonzero(a)`` of a C-ordered (n, C) array as (rows, columns, flat
    indices into ``a.ravel()``), in the same order; columns is the number 0
    when C is 1 (the usual case: one CCP)."""
    if a.shape[1] == 1:  # (its one column's non-zero rows are its flat indices)
        f = a[:, 0].nonzero()[0]
        return f, 0, f
    f = flatnonzero(a)
    i, c = np.divmod(f, a.shape[1])
    return i, c, f


def seize_collateral(L: Ledger, lb: LoanBook, cleared: np.ndarray, resolving: np.ndarray,
                     owed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Waterfall layers 1 and 2 by set-off: a member in resolution first loses its
    margin, then its default-fund contribution, to what it owes each CCP on the
    cleared loans in ``cleared`` (mask over the book); the rest of its accounts
    is returned to it.

    Returns (seized margin, seized fund), each shape (n, C), and the borrower's
    leg of each loan after set-off, shape (m,). ``owed``: ``lb.owed``, if at hand.
    """
    n, C = L.n, L.ccp_cash.size
    owed = lb.owed if owed is None else owed
    leg = owed.copy()
    if not np.count_nonzero(resolving):  # nobody in resolution (most clearings): no set-off,
        L.cash += 0.0  # and the two moves of zeros below would only turn cash's -0.0 to +0.0
        return np.zeros((n, C)), np.zeros((n, C)), leg
    due_ccp = np.zeros((n, C))  # what members in resolution owe each CCP now
    np.add.at(due_ccp, (lb.borrower[cleared], lb.ccp[cleared]), owed[cleared])
    due_ccp[~resolving] = 0.0
    seized_m = np.clip(np.minimum(due_ccp, L.margin), 0.0, None)
    seized_f = np.clip(np.minimum(due_ccp - seized_m, L.fund), 0.0, None)
    rest = resolving[:, None]
    L.move_to_ccp("margin", -np.where(rest, L.margin - seized_m, 0.0))
    L.move_to_ccp("fund", -np.where(rest, L.fund - seized_f, 0.0))
    factor = np.maximum(1.0 - np.divide(seized_m + seized_f, due_ccp, out=np.zeros((n, C)),
                                        where=due_ccp > 0), 0.0)
    leg[cleared] = owed[cleared] * factor[lb.borrower[cleared], lb.ccp[cleared]]
    return seized_m, seized_f, leg


def run_waterfalls(L: Ledger, ccps: list[CentralCounterparty], cleared: np.ndarray,
                   borrower_paid: np.ndarray, seized_m: np.ndarray, seized_f: np.ndarray,
                   resolving: np.ndarray, t: int, owed: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Each CCP absorbs the loss on its cleared loans settled now (``cleared``,
    mask over the book) through its waterfall. Returns the CCPs' capital used,
    shape (C,), and the charges on members' fund contributions, shape (n, C).
    ``owed``: ``L.loans.owed``, if at hand."""
    lb = L.loans
    owed = lb.owed if owed is None else owed
    capital_used, charges = np.zeros(len(ccps)), np.zeros((L.n, len(ccps)))
    surv = ~resolving
    for c, ccp in enumerate(ccps):
        # with one CCP every cleared loan is its (ccp is -1 or 0): no pass over the
        # book for the mask; indices: one pass for the two gathers
        rows = flatnonzero(cleared if len(ccps) == 1 else cleared & (lb.ccp == c))
        res = ccp.absorb_default(owed[rows], borrower_paid[rows], seized_m[:, c],
                                 seized_f[:, c], surv, t)
        if res is not None:
            capital_used[c], charges[surv, c] = res
    return capital_used, charges
