"""helper-85 (issue 15): the router's grouping of orders by exchange, checked
against the former forms: the stable sort by venue with ``searchsorted`` ends
(8bf5939, kept here) and a mask per exchange (7c9fe3b, test_layer59_settle).

* ``router._grouped`` — for a few exchanges, each one's orders found in order
  (``venue == x``) instead of the radix sort; the sort where a venue is none
  of them;
* ``InfrastructureRouter.submit_many`` with no orders returns at once;
* ``InfrastructureRouter.submitted_links``: whether the links are distinct (and
  in the table) counted by ``np.bincount`` for int64 ids (a negative id is its
  ValueError), not by min, max and a mark per link (8bf5939, kept here);
* ``layer._affordable``'s certificate with one boolean operation fewer
  (``lender & ~within`` as ``lender > within``), against 8bf5939's.
"""

from __future__ import annotations

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.fastmath import count_nonzero, stable_order, sum_slack
from finsim_mesa.infrastructure import layer
from finsim_mesa.infrastructure.router import _grouped
from tests.test_layer59_settle import _queues, _random_orders, former_affordable, former_submit_many


def former_grouping(venue, x_count):  # 8bf5939, InfrastructureRouter.submit_many
    order = None if x_count == 1 and not count_nonzero(venue) else stable_order(
        venue, max(x_count, 1))
    ordered = venue if order is None else venue[order]
    return order, np.searchsorted(ordered, np.arange(1, x_count + 1)).tolist()


@pytest.mark.parametrize("x_count", [1, 2, 3, 5, 8, 9, 12])
@pytest.mark.parametrize("k", [0, 1, 7, 300])
def test_grouped_is_the_stable_sort_by_venue(x_count, k):
    """The same permutation (none for one exchange that gets everything) and
    the same ends, also with venues outside 0..x_count-1 (the sort's order)."""
    rng = np.random.default_rng(x_count * 1000 + k)
    cases = [rng.integers(0, x_count, k), np.sort(rng.integers(0, x_count, k)),
             np.full(k, x_count - 1), rng.integers(-1, x_count + 2, k)]
    for venue in cases:
        venue = venue.astype(np.int64)
        got_order, got_ends = _grouped(venue, x_count)
        want_order, want_ends = former_grouping(venue, x_count)
        assert got_ends == want_ends
        if want_order is None:
            assert got_order is None
        else:
            want_plain = np.argsort(venue.astype(np.uint16), kind="stable")  # (NumPy's own)
            assert got_order.dtype == want_order.dtype
            assert got_order.tolist() == want_order.tolist() == want_plain.tolist()


@pytest.mark.parametrize("n_exchanges", [2, 4, 9])
def test_submit_many_queues_what_a_mask_per_exchange_queued(n_exchanges):
    """Each queue gets the same columns (values, dtypes, order) as the mask per
    exchange gave them, the ids come back in the order given, also for a step
    with no orders (nothing queued, the links kept before dropped)."""
    kw = dict(n_banks=40, n_exchanges=n_exchanges, n_ccps=1, brain="passive", rng=4,
              venue_rule="random")
    a, b = FinancialModel(**kw), FinancialModel(**kw)
    rng = np.random.default_rng(n_exchanges)
    for step, (k, size) in enumerate(((60, 1e-4), (0, 1.0), (1, 1e-4), (35, 1.0), (50, 1e-4))):
        snd, rcv = rng.integers(0, 40, k), rng.integers(0, 40, k)
        amt, rate = (rng.random(k) + 0.1) * size, rng.random(k) * 0.01
        link = a.ledger.loans.links.ids(snd, rcv)
        empty = all(not ex.queue.backlog_orders for ex in a.exchanges)
        got = a.router.submit_many(snd, rcv, amt, rate, step, link)
        want = former_submit_many(b.router, snd, rcv, amt, rate, step, link)
        assert got.dtype == want.dtype and got.tolist() == want.tolist()
        assert _queues(a) == _queues(b)
        if k == 0:
            assert a.router._links is None and a.router.submitted_links([]) is None
        elif empty:  # (the queues were empty: each keeps the columns given, whole)
            assert a.router._links is not None and a.router._links[3] is not None
        for m in (a, b):
            for ex in m.exchanges:
                ex.process(step)


def test_submit_many_with_no_orders_refuses_what_it_refused():
    """No orders of a non-integer dtype: the venue lookup's IndexError, as before."""
    m = FinancialModel(n_banks=20, n_exchanges=2, n_ccps=1, brain="passive", rng=1)
    with pytest.raises(IndexError):
        m.router.submit_many(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), 0)


def former_distinct(link, size):  # 8bf5939, InfrastructureRouter.submitted_links
    distinct = False
    if link.size and int(link.min()) >= 0 and int(link.max()) < size:
        mark = np.zeros(size, dtype=bool)
        mark[link] = True
        distinct = count_nonzero(mark) == link.size
    return distinct


@pytest.mark.parametrize("case", ["distinct", "twice", "negative", "beyond", "int32",
                                  "uint64", "float", "last", "one", "huge"])
def test_submitted_links_distinct_as_the_mark_per_link(case):
    """The flag is 8bf5939's and a plain set's (ids in 0..size-1, none twice),
    the links given back those queued, for the usual ids, an id twice, a
    negative id, one beyond the table or far beyond it, the table's last id, one order, and
    int32 and uint64 ids (the former path), and float ones (refused: IndexError)."""
    m = FinancialModel(n_banks=50, n_exchanges=2, n_ccps=1, brain="passive", rng=3)
    m.run_for(1)
    r, size = m.router, len(m.ledger.loans.links)
    rng = np.random.default_rng(len(case))
    k = 1 if case == "one" else 40
    snd, rcv = rng.integers(0, 50, k), rng.integers(0, 50, k)
    link = rng.choice(size - 1, k, replace=False).astype(np.int64)  # (size - 1: "last")
    if case == "twice":
        link[7] = link[30]
    elif case == "negative":
        link[3] = -1
    elif case == "beyond":
        link[5] = size
    elif case == "huge":  # (refused by the bound, not counted: no counts of 2**40 entries)
        link[9] = 1 << 40
    elif case == "last":
        link[11] = size - 1
    elif case in ("int32", "uint64", "float"):
        link = link.astype(case)
    r.submit_many(snd, rcv, np.full(k, 1e-5), np.full(k, 0.01), m.t, link)
    done = [p for p in (ex.process(m.t) for ex in m.exchanges) if p]
    if case == "float":  # (not ids: refused by the mark's indexing, as before)
        with pytest.raises(IndexError):
            r.submitted_links(done)
        with pytest.raises(IndexError):
            former_distinct(link, size)
        return
    got_link, distinct = r.submitted_links(done)
    order = np.argsort(r.bank_exchange[snd], kind="stable")
    assert got_link.tolist() == link[order].tolist()
    plain = bool(all(0 <= i < size for i in link.tolist()) and len(set(link.tolist())) == k)
    former = former_distinct(got_link, size)
    assert distinct == plain == former and type(distinct) is type(former)
    assert plain == (case in ("distinct", "last", "int32", "uint64", "one"))


def former_certified(snd, need, cash, n):  # 8bf5939, layer._affordable's shortcut
    cap = cash * (1 + 1e-12)
    owes = np.bincount(snd, weights=need, minlength=n)
    tol = sum_slack(snd.size, float(need.sum()))
    over = ~(owes + tol <= cap)
    return not np.count_nonzero(over & (owes != 0.0))


@pytest.mark.parametrize("seed", range(30))
def test_affordable_certificate_is_the_former_one(seed):
    """The same orders certified (None) as 8bf5939's test, incl. NaN cash of a
    lender or of a bank without orders, negative cash of one without orders and
    a NaN order; else the sorted running sums (7c9fe3b's, test_layer59)."""
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(2, 60)), int(rng.integers(1, 300))
    snd, need, cash = _random_orders(rng, n, k, tight=seed % 2 == 1)
    idle = np.setdiff1d(np.arange(n), snd)
    if seed % 5 == 1 and idle.size:
        cash[idle[0]] = np.nan
    if seed % 5 == 2 and idle.size:
        cash[idle[-1]] = -5.0
    if seed % 5 == 3:
        cash[snd[0]] = np.nan
    if seed % 5 == 4:
        need[0] = np.nan
    got = layer._affordable(snd, need, cash, n)
    assert (got is None) == former_certified(snd, need, cash, n)
    if got is not None:
        assert np.array_equal(got, former_affordable(snd, need, cash, n))
