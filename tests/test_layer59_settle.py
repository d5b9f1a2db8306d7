"""helper-59 (issue 15): the layer's settle stage with fewer passes, checked
against the former forms (kept here, from 7c9fe3b) and plain references:

* ``layer._affordable`` — every order affordable known from each lender's total
  (a bincount) and a round-off bound, without the sort by lender; else the
  sorted running sums as before;
* ``ExchangeQueue.process`` — everything fits known from the total and a bound,
  without the running sums; the waits formed once for the stats and the
  exchange's ``delay`` column;
* ``cleared_by_ccp`` with one CCP read in one pass (``count_nonzero``);
* ``_column`` of a Python int looked up by (value, dtype).
"""

from __future__ import annotations

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.accounting import values
from finsim_mesa.fastmath import stable_order
from finsim_mesa.infrastructure import layer
from finsim_mesa.infrastructure.ccp import cleared_by_ccp
from finsim_mesa.infrastructure.exchange import _EMPTY_ORDERS, ExchangeQueue, ExchangeStats, _full
from finsim_mesa.infrastructure.router import OUTCOMES, _column, _Constants
from finsim_mesa.loans import LoanBook
from finsim_mesa.market import capped_share


# ------------------------------------------------------------ former forms (7c9fe3b)
def former_affordable(snd, need, cash, n):
    order = stable_order(snd, n)
    by_sender, need_o = snd[order], need[order]
    cs = np.cumsum(need_o)
    first = np.empty(snd.size, dtype=bool)
    first[:1] = True
    np.not_equal(by_sender[1:], by_sender[:-1], out=first[1:])
    within = cs - np.maximum.accumulate(np.where(first, cs - need_o, 0.0))
    affordable = np.empty(snd.size, dtype=bool)
    affordable[order] = within <= cash[by_sender] * (1 + 1e-12)
    return affordable


def former_book_orders(L, router, processed, cfg, t):
    done = [o for o in processed if o]
    kept = router.submitted_links(done)
    link, distinct = (None, False) if kept is None else kept
    if not done:
        return 0.0, 0.0
    orders = {key: np.concatenate([o[key] for o in done]) for key in done[0]}
    first_new = len(L.loans)
    snd, rcv, amt = orders["sender"], orders["receiver"], orders["amount"]
    need = amt * (1.0 + orders["fee_rate"])
    affordable = former_affordable(snd, need, L.cash, L.n)
    active = L.active
    ok = affordable & active[snd] & active[rcv]
    k = int(np.count_nonzero(ok))
    if k == ok.size:
        booked, bad = orders, None
    else:
        bad = ~ok
        booked = {key: col[ok] for key, col in orders.items()}
        link = None if link is None else link[ok]
    snd, rcv, amt = booked["sender"], booked["receiver"], booked["amount"]
    fee = amt * booked["fee_rate"]
    L.lend(snd, rcv, amt, booked["rate"], t + cfg.loan_maturity, booked["ccp"], link=link)
    L.charge_fees(snd, fee, booked["exchange"])
    if not distinct:
        L.loans.consolidate(first_new)
    router.record("loan", snd, rcv, amt, amt, booked["exchange"], booked["ccp"], fee,
                  booked["delay"], "processed", t)
    if bad is not None:
        router.record("loan", orders["sender"][bad], orders["receiver"][bad],
                      orders["amount"][bad], 0.0, orders["exchange"][bad], orders["ccp"][bad],
                      0.0, orders["delay"][bad], "failed", t)
    return float(fee.sum()), float(amt.sum())


def former_exchange_process(ex, t):
    """Exchange.process as it was, on a queue processed by the plain running sums."""
    model, router = ex.model, ex.model.router
    done, expired, stats = _plain_process(ex.queue, t)
    x = ex.exchange_id
    if expired["amount"].size:
        router.record("loan", expired["sender"], expired["receiver"], expired["amount"],
                      0.0, x, -1, 0.0, t - expired["submitted"], "expired", t)
    k = done["amount"].size
    if not k:
        return None
    ccp = _full(k, ex.ccp_id)
    share = model.config.ccp_clearing_share
    if ex.ccp_id >= 0 and share < 1.0:
        ccp = np.where(model.rng.random(k) < share, ccp, -1)
    return {"sender": done["sender"], "receiver": done["receiver"],
            "amount": done["amount"], "rate": done["rate"], "exchange": _full(k, x),
            "ccp": ccp, "fee_rate": _full(k, stats.fee_rate),
            "delay": t - done["submitted"]}


def _plain_process(q, step):
    """ExchangeQueue.process as it was (7c9fe3b): the running sums always formed,
    the statistics through the dataclass."""
    o = q.orders
    if not o["amount"].size:
        stats = ExchangeStats(
            step=step, demand=0.0, processed=0.0, processed_orders=0, waiting=0.0,
            waiting_orders=0, expired=0.0, expired_orders=0, utilisation=0.0,
            congested=0.0 > q.congestion_threshold, fee_rate=q.fee_rate(0.0),
            fees=0.0, mean_delay=0.0)
        q.history.append(stats)
        return dict(o), dict(o), stats
    amount = o["amount"]
    demand = float(np.add.reduce(amount))
    utilisation = demand / q.max_throughput
    rate = q.fee_rate(utilisation)
    running = amount.cumsum()
    limit = q.max_throughput * (1 + 1e-12)
    if running[-1] <= limit:
        q.orders = dict(_EMPTY_ORDERS)
        delays = step - o["submitted"]
        count = delays.size
        stats = ExchangeStats(
            step=step, demand=demand, processed=demand, processed_orders=count, waiting=0.0,
            waiting_orders=0, expired=0.0, expired_orders=0, utilisation=utilisation,
            congested=utilisation > q.congestion_threshold, fee_rate=rate,
            fees=rate * demand, mean_delay=int(delays.sum()) / count)
        q.history.append(stats)
        return o, dict(_EMPTY_ORDERS), stats
    done = running <= limit
    expired = ~done & (step - o["submitted"] >= q.max_wait)
    p = int(np.count_nonzero(done))
    processed = {k: v[:p] for k, v in o.items()}
    if np.count_nonzero(expired):
        waiting = ~done & ~expired
        gone = {k: v[expired] for k, v in o.items()}
        q.orders = {k: v[waiting] for k, v in o.items()}
    else:
        gone = {k: v[:0] for k, v in o.items()}
        q.orders = {k: v[p:] for k, v in o.items()}
    used = float(processed["amount"].sum())
    delays = step - processed["submitted"]
    stats = ExchangeStats(
        step=step, demand=demand, processed=used, processed_orders=p,
        waiting=q.backlog, waiting_orders=q.backlog_orders,
        expired=float(gone["amount"].sum()), expired_orders=int(expired.sum()),
        utilisation=utilisation, congested=utilisation > q.congestion_threshold,
        fee_rate=rate, fees=rate * used,
        mean_delay=int(delays.sum()) / delays.size if delays.size else 0.0)
    q.history.append(stats)
    return processed, gone, stats


# ------------------------------------------------------------ affordability
def _random_orders(rng, n, k, tight):
    snd = rng.integers(0, n, k)
    need = rng.lognormal(size=k) * 10.0 ** rng.integers(-3, 4, k)
    owes = np.bincount(snd, weights=need, minlength=n)
    cash = owes * rng.uniform(1.0, 3.0, n)
    if tight:  # some lenders' cash exactly their total, a partial sum, or just below
        pick = rng.random(n) < 0.3
        scale = rng.choice([1.0, 1 - 1e-13, 1 + 1e-13, 0.5, 1 + 1e-12], pick.sum())
        cash[pick] = owes[pick] * scale
        cash[rng.random(n) < 0.05] = -1.0
        cash[rng.random(n) < 0.05] = 0.0
    return snd, need, cash


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("tight", [False, True])
def test_affordable_equals_the_sorted_running_sums(seed, tight):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(2, 60)), int(rng.integers(1, 400))
    snd, need, cash = _random_orders(rng, n, k, tight)
    want = former_affordable(snd, need, cash, n)
    got = layer._affordable(snd, need, cash, n)
    if got is None:  # the shortcut: every order affordable
        assert want.all()
    else:
        assert np.array_equal(got, want)
    if not tight:  # cash >= each lender's total: the shortcut is taken
        assert got is None


def test_affordable_bound_covers_the_running_sums_round_off():
    """Lenders sorted after one with huge orders: their running sums carry the
    round-off of the huge ones. With cash exactly each lender's own total, the
    totals alone would call every order affordable; the sorted sums fail some,
    and the bound hands those cases to them."""
    rng = np.random.default_rng(5)
    n, failing = 30, 0
    for _ in range(20):
        snd = np.concatenate([np.zeros(5, dtype=np.int64), rng.integers(1, n, 200)])
        need = np.concatenate([np.full(5, 3e15) * rng.uniform(1, 2, 5),
                               rng.uniform(1.05, 1.95, 200)])  # (ulp / 2 to 1 ulp there)
        perm = rng.permutation(snd.size)
        snd, need = snd[perm], need[perm]
        cash = np.bincount(snd, weights=need, minlength=n)
        want = former_affordable(snd, need, cash, n)
        got = layer._affordable(snd, need, cash, n)
        assert got is not None and np.array_equal(got, want)
        failing += int((~want).sum())
    assert failing > 0


# ------------------------------------------------------------ the queue
@pytest.mark.parametrize("seed", range(30))
def test_queue_near_its_capacity_processes_what_the_running_sums_allow(seed):
    """Totals within a few ulps of the capacity: the shortcut (total plus a bound)
    never processes what the running sums would not."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 300))
    amount = rng.lognormal(size=k)
    cap = float(np.cumsum(amount)[-1]) * (1 + rng.choice([-3e-16, 0.0, 3e-16, -1.1e-12,
                                                          -0.9e-12, 1e-3]))
    got, ref = ExchangeQueue(cap, max_wait=1), ExchangeQueue(cap, max_wait=1)
    for q in (got, ref):
        q.submit(np.zeros(k, dtype=int), np.ones(k, dtype=int), amount, 0)
    a, b = got.process(0), _plain_process(ref, 0)
    for x, y in zip(a[:2], b[:2], strict=True):
        assert x.keys() == y.keys() and all(np.array_equal(x[c], y[c]) for c in x)
    assert a[2] == b[2]
    assert {c: v.tobytes() for c, v in got.orders.items()} == {
        c: v.tobytes() for c, v in ref.orders.items()}


def test_queue_whose_running_sum_alone_exceeds_its_capacity_keeps_the_rest():
    """Amounts whose pairwise total is within the capacity and whose running
    sum is not (its round-off is larger): the last orders wait, as the running
    sums say; the total alone (no bound) would process them all."""
    found = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        amount = rng.lognormal(size=2000) * 1e3
        seq, pw = float(np.cumsum(amount)[-1]), float(np.add.reduce(amount))
        if not pw < seq:
            continue
        cap = pw / (1 + 1e-12)  # a capacity whose limit, cap x (1 + 1e-12), is in [pw, seq)
        while cap * (1 + 1e-12) < pw:
            cap = np.nextafter(cap, np.inf)
        while cap * (1 + 1e-12) >= seq:
            cap = np.nextafter(cap, -np.inf)
        if not pw <= cap * (1 + 1e-12) < seq:
            continue
        found += 1
        got, ref = ExchangeQueue(cap), ExchangeQueue(cap)
        for q in (got, ref):
            q.submit(np.zeros(amount.size, dtype=int), np.ones(amount.size, dtype=int), amount, 0)
        a, b = got.process(0), _plain_process(ref, 0)
        assert a[2] == b[2] and a[2].waiting_orders > 0
        assert all(np.array_equal(a[0][c], b[0][c]) for c in a[0])
        if found == 5:
            break
    assert found


def test_exchange_delays_are_the_waits_of_the_orders_it_processed():
    """The waits the queue formed are taken only for the very column it handed
    out: after a queue processed directly (its waits left unread) and a step
    over capacity (the general path forms none), the waits are t - submitted."""
    m = FinancialModel(n_banks=20, n_exchanges=1, n_ccps=1, brain="passive", rng=4)
    ex = m.exchanges[0]
    q = ex.queue
    q.submit(np.array([1, 2]), np.array([3, 4]), np.array([1.0, 2.0]), 2)
    q.process(2)  # everything fits: the waits kept, not read
    q.max_throughput = 2.5
    q.submit(np.array([1, 2, 5]), np.array([3, 4, 6]), np.array([1.0, 1.0, 1.0]), 4)
    q.submit(np.array([7]), np.array([8]), np.array([1.0]), 5)
    out = ex.process(6)  # over capacity: two orders processed, two wait
    assert out["delay"].tolist() == [2, 2] and q.backlog_orders == 2
    out = ex.process(7)  # the rest fit: waits of 3 and 2 steps
    assert out["delay"].tolist() == [3, 2] and q.backlog_orders == 0


def _twins(**kw):
    base = dict(n_banks=120, n_exchanges=2, n_ccps=1, scenario="systemic", brain="greedy",
                agent_collect_every=0, steps=10**6, rng=9)
    base.update(kw)
    return FinancialModel(**base), FinancialModel(**base)


def _bits(m):
    L, lb = m.ledger, m.ledger.loans
    arrays = [L.cash, L.equity, L.exchange_cash, L.margin, L.ccp_cash, L.status, *(
        getattr(lb, f) for f in lb._FIELDS), lb.link_ids(False)]
    audit = [(c, col.dtype.str, col.tobytes()) for rec in m.router._audit
             for c, col in rec.items()]
    history = [vars(h) for ex in m.exchanges for h in ex.queue.history]
    return [a.tobytes() for a in arrays], audit, history


@pytest.mark.parametrize("kw", [
    {}, {"exchange_capacity": 0.002, "max_order_wait": 1},
    {"n_exchanges": 3, "n_ccps": 2, "ccp_clearing_share": 0.6, "venue_rule": "random"},
    {"n_exchanges": 1, "scenario": "liquidity_crisis"}])
def test_settle_equals_former_forms_bit_for_bit(kw, monkeypatch):
    """Twin models stepped together, one with the former book_orders and
    Exchange.process: the same ledger, loan book, audit records (values and
    dtypes) and exchange statistics after every step, incl. orders that fail
    (lenders short of cash, banks in default) and queues over capacity."""
    a, b = _twins(**kw)
    from finsim_mesa.infrastructure import exchange as exchange_module

    new_process, new_book_orders = exchange_module.Exchange.process, layer.book_orders
    for step in range(25):
        if step == 8:  # lenders short of cash and a bank in default: orders fail
            for m in (a, b):
                m.ledger.cash[::3] *= 0.01
                gone = np.zeros(m.ledger.n, dtype=bool)
                gone[[4, 17]] = True
                m.ledger.mark_default(gone, m.t)
        a.step()
        monkeypatch.setattr(layer, "book_orders", former_book_orders)
        monkeypatch.setattr(exchange_module.Exchange, "process", former_exchange_process)
        b.step()
        monkeypatch.setattr(layer, "book_orders", new_book_orders)
        monkeypatch.setattr(exchange_module.Exchange, "process", new_process)
        assert _bits(a) == _bits(b), step
    failed = int(sum((rec["outcome"] == 2).sum() for rec in a.router._audit))
    assert failed > 0  # (orders failed: the general paths ran)


# ------------------------------------------------------------ CCPs and the audit
@pytest.mark.parametrize("share", [1.0, 0.6, 0.0])
def test_cleared_by_one_ccp_equals_a_loop(share):
    rng = np.random.default_rng(3)
    n, m = 13, 500
    lender = rng.integers(0, n, m)
    ccp = np.where(rng.random(m) < share, 0, -1)
    book = LoanBook(lender, (lender + rng.integers(1, n, m)) % n, rng.lognormal(size=m),
                    rng.random(m) * 0.1, np.full(m, 0.01), np.full(m, 5), ccp)
    want = np.zeros((n, 1))
    for k in range(m):
        if book.ccp[k] == 0:
            want[book.borrower[k], 0] += book.principal[k] + book.accrued[k]
    got = cleared_by_ccp(book, [0], n)
    assert got.shape == (n, 1) and got.tobytes() == (want + 0.0).tobytes()
    assert cleared_by_ccp(LoanBook(), [0], n).tobytes() == np.zeros((n, 1)).tobytes()


def test_int_columns_are_np_full_through_growth_and_clearing():
    """The int lookup (value, dtype) hands out what np.full gives, also after its
    column grew and after the cache was cleared (more than 256 keys)."""
    c = _Constants()
    rng = np.random.default_rng(1)
    for step in range(600):
        for value, dtype in ((step, np.int32), (3, np.int8), (-1, np.int16), (0, np.int16)):
            k = int(rng.integers(0, 700))
            got = _column(value, k, dtype, c)
            want = np.full(k, value, dtype=dtype)
            assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
            assert not got.flags.writeable
    held = {id(v) for v in c.arrays.values()}
    assert len(c.arrays) <= 257 and all(id(v) in held for v in c.ints.values())


# ------------------------------------------------------------ submitting
def former_submit_many(router, sender, receiver, amount, rate, step, link=None):  # 7c9fe3b
    ids = np.empty(sender.size, dtype=np.int64)
    venue = router.bank_exchange[sender]
    for x, ex in enumerate(router.exchanges):
        m = venue == x
        if np.count_nonzero(m):
            ids[m] = ex.submit(sender[m], receiver[m], amount[m], rate[m], step, copy=False)
    return ids


def _queues(m):
    return [{c: (v.dtype.str, v.tobytes()) for c, v in ex.queue.orders.items()}
            for ex in m.exchanges]


@pytest.mark.parametrize("n_exchanges", [1, 2, 3])
@pytest.mark.parametrize("waiting", [False, True])
def test_submit_many_queues_what_a_mask_per_exchange_queued(n_exchanges, waiting):
    """The orders grouped by a stable sort by venue: each queue gets the same
    columns (values, dtypes, order) and the ids come back in the order given."""
    kw = dict(n_banks=40, n_exchanges=n_exchanges, n_ccps=1, brain="passive", rng=6,
              venue_rule="random")
    a, b = FinancialModel(**kw), FinancialModel(**kw)
    rng = np.random.default_rng(n_exchanges)
    for step in range(3):
        k = int(rng.integers(0, 80))
        snd, rcv = rng.integers(0, 40, k), rng.integers(0, 40, k)
        amt, rate = rng.random(k) + 0.1, rng.random(k) * 0.01
        link = a.ledger.loans.links.ids(snd, rcv)
        if waiting and step == 1:  # orders already queued: concatenated behind them
            for m in (a, b):
                m.router.submit_transaction(1, 2, 0.5)
        got = a.router.submit_many(snd, rcv, amt, rate, step, link)
        want = former_submit_many(b.router, snd, rcv, amt, rate, step, link)
        assert got.tolist() == want.tolist()
        assert _queues(a) == _queues(b)
    # an empty queue keeps the columns it is given: they are not the caller's arrays
    a, b = FinancialModel(**kw), FinancialModel(**kw)
    cols = [rng.integers(0, 40, 30), rng.integers(0, 40, 30), rng.random(30) + 0.1,
            rng.random(30) * 0.01]
    a.router.submit_many(*cols, 0)
    former_submit_many(b.router, *cols, 0)
    for c in cols:
        c[:] = 7
    assert _queues(a) == _queues(b)


def test_submitted_columns_are_the_processed_orders_concatenated():
    """Held whole only when every exchange that got orders kept and processed
    them: then each column is what book_orders' concatenation of the exchanges'
    outputs gives; with one exchange's orders waiting (it processed none of
    them), or a patched list of outputs, None."""
    m = FinancialModel(n_banks=60, n_exchanges=3, n_ccps=1, brain="passive", rng=8,
                       venue_rule="random")
    m.run_for(2)
    r = m.router
    rng = np.random.default_rng(0)
    snd, rcv = rng.integers(0, 60, 90), rng.integers(0, 60, 90)
    link = m.ledger.loans.links.ids(snd, rcv)
    r.submit_many(snd, rcv, (rng.random(90) + 0.1) * 1e-4, np.full(90, 0.01), m.t, link)
    done = [p for p in (ex.process(m.t) for ex in m.exchanges) if p]
    got_link, _ = r.submitted_links(done)
    whole = r.submitted_columns(got_link)
    assert whole is not None and len(done) == 3
    for key in ("sender", "receiver", "amount", "rate", "exchange"):
        want = np.concatenate([p[key] for p in done])
        assert whole[key].dtype == want.dtype and whole[key].tobytes() == want.tobytes()
    assert r.submitted_columns(got_link) is None  # used once
    # exchange 2 over capacity with orders already waiting: it processes none of
    # this step's orders, the other two process theirs whole
    ex2 = m.exchanges[2]
    ex2.queue.max_throughput = 1e-6
    r.submit_transaction(int(np.flatnonzero(r.bank_exchange == 2)[0]),
                         int(np.flatnonzero(r.bank_exchange == 0)[0]), 1.0)
    r.submit_many(snd, rcv, (rng.random(90) + 0.1) * 1e-4, np.full(90, 0.01), m.t, link)
    done = [p for p in (ex.process(m.t) for ex in m.exchanges) if p]
    assert len(done) == 2 and ex2.queue.backlog_orders > 0
    got = r.submitted_links(done)  # the two exchanges' links, without exchange 2's columns
    assert got is not None and got[0].size == sum(p["sender"].size for p in done)
    assert r.submitted_columns(got[0]) is None
    # the links of another call: not these columns
    ex2.queue.max_throughput = 1e9
    ex2.process(m.t)  # (its queue emptied)
    r.submit_many(snd[:5], rcv[:5], np.full(5, 1e-4), np.full(5, 0.01), m.t, link[:5])
    done = [p for p in (ex.process(m.t) for ex in m.exchanges) if p]
    got_link, _ = r.submitted_links(done)
    assert r.submitted_columns(got_link.copy()) is None


# ------------------------------------------------------------ margin
def former_call_margin(L, ccps, router, rate, cfg, sell, t):  # 7c9fe3b
    active = L.active
    node0 = cfg.n_banks + cfg.n_exchanges
    delta = layer.requirements(ccps, rate)
    np.subtract(delta, L.margin, out=delta)
    np.multiply(delta, active[:, None], out=delta)
    back = np.minimum(delta, 0.0)
    if np.count_nonzero(back):
        L.move_to_ccp("margin", back)
        if router.auditing:
            i, c, f = layer._cells(back)
            returned = -back.ravel()[f]
            router.record("margin_return", node0 + c, i, returned, returned,
                          router.bank_exchange[i], c, 0.0, 0, "returned", t)
    call = np.maximum(delta, 0.0)
    need = call[:, 0] if call.shape[1] == 1 else call.sum(axis=1)
    called = float(need.sum())
    if not np.count_nonzero(need):
        return called
    short = np.maximum(need - L.cash, 0.0)
    if not np.count_nonzero(short):
        L.move_to_ccp("margin", call)
        if router.auditing:
            i, c, f = layer._cells(call)
            called_f = call.ravel()[f]
            router.record("margin_call", i, node0 + c, called_f, called_f,
                          router.bank_exchange[i], c, 0.0, 0, "posted", t)
        return called
    i, c, f = layer._cells(call)
    fire_price = L.prices * (1 - cfg.liquidation_discount)
    liquid = values(L.holdings, fire_price)
    sell(L.holdings * capped_share(short, liquid)[:, None], fire_price, "margin_sales")
    frac = capped_share(L.cash, need)
    pay = call * frac[:, None]
    L.move_to_ccp("margin", pay)
    outcome = np.where(frac[i] < 1 - 1e-12, OUTCOMES.index("short"), OUTCOMES.index("posted"))
    router.record("margin_call", i, node0 + c, call.ravel()[f], pay.ravel()[f],
                  router.bank_exchange[i], c, 0.0, 0, outcome, t)
    L.mark_default((need > 0) & (frac < 1 - 1e-12) & active, t)
    return called


def _margin_bits(m):
    L = m.ledger
    audit = [(c, col.dtype.str, col.tobytes()) for rec in m.router._audit
             for c, col in rec.items()]
    return [L.margin.tobytes(), L.cash.tobytes(), L.ccp_cash.tobytes(), L.holdings.tobytes(),
            L.status.tobytes(), L.default_step.tobytes(), np.asarray(L.prices).tobytes(), audit]


@pytest.mark.parametrize("n_ccps", [1, 2])
@pytest.mark.parametrize("case", ["return", "call", "short"])
@pytest.mark.parametrize("defaults", [False, True])
def test_call_margin_with_and_without_defaults_equals_the_former_form(n_ccps, case, defaults):
    """Nobody in default: the product with the active mask is left out; members
    short of cash sell and default as before (the mask of the banks active when
    the margin was called). Bit for bit against the former form."""
    kw = dict(n_banks=80, n_exchanges=2, n_ccps=n_ccps, scenario="systemic", brain="greedy",
              agent_collect_every=0, steps=10**6, rng=13)
    if n_ccps > 1:
        kw.update(venue_rule="random", ccp_clearing_share=0.7)
    a, b = FinancialModel(**kw), FinancialModel(**kw)
    scale = {"return": 0.5, "call": 1.5, "short": 5.0}[case]
    called = []
    for m, f in ((a, layer.call_margin), (b, former_call_margin)):
        m.run_for(6)
        L = m.ledger
        if defaults:
            gone = np.zeros(L.n, dtype=bool)
            gone[[3, 40]] = True
            L.mark_default(gone, m.t)
        assert bool(L.status.any()) == defaults
        if case == "short":
            L.cash *= 0.05
            L.holdings *= 0.01
        called.append(np.float64(f(L, m.ccps, m.router, m.margin_rate * scale, m.config,
                                   m._sell, m.t)).tobytes())
    assert called[0] == called[1]
    assert _margin_bits(a) == _margin_bits(b)
    if case == "short":  # (members did default here)
        assert int(a.ledger.status.sum()) > 2 * defaults


def test_stats_of_an_empty_queue_are_the_dataclass():
    """An empty queue's statistics (built as one instance dict) equal the
    dataclass's own, field for field, in order, and stay frozen."""
    for threshold in (0.5, 1.0):
        got, ref = ExchangeQueue(3.0, threshold, 0.001, 2.0), ExchangeQueue(3.0, threshold,
                                                                           0.001, 2.0)
        a, b = got.process(4)[2], _plain_process(ref, 4)[2]
        assert type(a) is ExchangeStats and a == b and list(vars(a).items()) == list(
            vars(b).items())
        assert [type(v) for v in vars(a).values()] == [type(v) for v in vars(b).values()]
        with pytest.raises(AttributeError):
            a.demand = 1.0
