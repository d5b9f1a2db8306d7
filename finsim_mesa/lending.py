"""Interbank lending in the act stage: roll-over of maturing loans and new loans
matched between network neighbours.

:func:`match_lending` is a pure function of arrays (no model): each lender
splits its offer over its neighbours pro rata to what they ask (within the
large-exposure room left on each pair), and a borrower offered more than it
asked scales all its offers down pro rata. Money in currency units.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from finsim_mesa.fastmath import ONE, ZERO, count_nonzero, flatnonzero
from finsim_mesa.observation import due_rows

if TYPE_CHECKING:
    from finsim_mesa.config import ModelConfig
    from finsim_mesa.ledger import Ledger
    from finsim_mesa.network import Adjacency

__all__ = ["MIN_LOAN", "match_lending", "new_loans", "roll_over"]

MIN_LOAN = 1e-9  # matched amounts at or below this are dropped (money)


def match_lending(offer: np.ndarray, request: np.ndarray, src: np.ndarray, dst: np.ndarray,
                  room: np.ndarray) -> np.ndarray:
    """Amounts lent along each directed link ``src[e] → dst[e]``, shape (e,).

    Args:
        offer: shape (n,), what each bank offers to lend in all.
        request: shape (n,), what each bank asks to borrow in all.
        src, dst: shape (e,), lender and borrower of each candidate link.
        room: shape (e,), what the lender may still lend to that borrower.

    Each lender ``i`` gives link ``e`` the share ``offer_i · want_e / Σ want``
    of its offer (never more than ``want_e = min(request_dst, room_e)``); a
    borrower offered more than its request has all its links scaled down to it.
    So no lender lends more than it offers, no borrower gets more than it asks,
    and no pair exceeds its room.
    """
    n = offer.size
    want = np.minimum(request[dst], room)
    asked = np.bincount(src, weights=want, minlength=n)
    per = asked[src]  # (gathered once for the division and its test)
    x = np.minimum(np.divide(offer[src] * want, per, out=np.zeros(src.size), where=per > ZERO),
                   want)
    got = np.bincount(dst, weights=x, minlength=n)
    over = got > request
    if count_nonzero(over):  # (else every scale is 1.0, and x * 1.0 is x)
        scale = np.divide(request, got, out=np.ones(n), where=over)
        x *= np.minimum(scale, ONE)[dst]
    return x


def new_loans(L: Ledger, network: Adjacency, lend: np.ndarray, hoard: np.ndarray,
              borrow: np.ndarray, cfg: ModelConfig
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """This step's new interbank loans from the banks' actions (shape (n,) each).

    A bank offers ``lend`` × its cash above the reserve target ×
    ``max_lend_fraction`` (the target rises from ``reserve_ratio`` to
    ``liquidity_share`` of its assets with ``hoard``) and asks for ``borrow`` ×
    ``max_borrow_fraction`` × its assets; a pair's room is
    ``large_exposure_limit`` × the lender's equity less what it already lends
    to that borrower. Returns (lender, borrower, amount, link id in the loan
    book's link table) of the matched loans.

    Only the links whose lender's offer and whose borrower's request are not 0
    are matched: on the others :func:`match_lending` gives 0 and adds only zeros
    to the sums it forms, so leaving them out changes no bit (tested against
    matching every link).
    """
    owed = L.loans.owed  # one pass for the assets and the pairs' exposures (same book)
    ta = L.total_assets(owed)
    reserve = ta * (cfg.reserve_ratio + hoard * max(cfg.liquidity_share - cfg.reserve_ratio, 0.0))
    offer = lend * np.maximum(L.cash - reserve, ZERO) * cfg.max_lend_fraction
    request = borrow * cfg.max_borrow_fraction * ta
    src, dst = network.src, network.dst
    if src.size == 0 or not count_nonzero(offer) or not count_nonzero(request):
        return _no_loans()
    # the links that can carry a loan (!= 0, not > 0: a negative or NaN request
    # or offer would enter the sums, so it is kept as matching every link keeps it;
    # both are float64, compared with the 0-d ZERO: no Python scalar converted)
    e = flatnonzero((offer != ZERO)[src] & (request != ZERO)[dst])
    if not e.size:
        return _no_loans()
    s, d = src[e], dst[e]
    ids = L.loans.links.edge_ids(src, dst)[e]  # the candidate links' ids, gathered once
    held = L.loans.held_on_links(ids, owed)  # = exposure_matrix()[s, d], without building it
    room = np.maximum(cfg.large_exposure_limit * np.maximum(L.equity[s], ZERO) - held, ZERO)
    x = match_lending(offer, request, s, d, room)
    k = flatnonzero(x > MIN_LOAN)  # one pass for the gathers
    return s[k], d[k], x[k], ids[k]


def _no_loans() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`new_loans`' result when no loan is matched (made only then)."""
    empty = np.zeros(0, dtype=np.int64)
    return empty, empty, np.zeros(0), empty


def roll_over(L: Ledger, hoard: np.ndarray, rate: float, spread: np.ndarray, t: int,
              maturity: int) -> dict[str, np.ndarray]:
    """Roll over the maturing loans between active banks, except the share
    ``hoard`` (shape (n,)) of each lender's: at ``rate`` plus ``spread`` (per
    borrower, shape (n,)) per step, due at step ``maturity``.

    Returns the renewed loans as columns (lender, borrower, amount, ccp).
    """
    lb, status = L.loans, L.status
    rows = due_rows(lb.maturity, t)  # the due loans (slice(0, k): they come first)
    if count_nonzero(status):  # a bank out (status ACTIVE is 0): only the due loans whose
        out = status[lb.lender[rows]] | status[lb.borrower[rows]]  # banks are both active
        if count_nonzero(out):  # (the rows, in order, a mask of them would give)
            kept = flatnonzero(np.logical_not(out))  # (positions among the due rows)
            rows = kept if isinstance(rows, slice) else rows[kept]
    return L.rollover(rows, 1.0 - hoard[lb.lender[rows]], rate + spread[lb.borrower[rows]],
                      maturity)
