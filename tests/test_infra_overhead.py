"""The infrastructure layer's shortcuts (issue 15) give what the general code gives.

Each shortcut is checked against an independent reference: a Python loop over
a queue or the loan book, ``np.nonzero`` and 2-D indexing, columns repeated
with ``np.full``, per-bank formulas written out one bank at a time.
"""

import numpy as np
import pandas as pd
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.infrastructure import layer
from finsim_mesa.infrastructure.ccp import cleared_by_ccp
from finsim_mesa.infrastructure.exchange import ExchangeQueue
from finsim_mesa.infrastructure.router import AUDIT_COLUMNS, KINDS, OUTCOMES
from finsim_mesa.loans import LoanBook
from finsim_mesa.observation import OBS, OBS_DIM, infrastructure_observations


# ------------------------------------------------------------ exchange queues
def fifo_reference(amount: np.ndarray, submitted: np.ndarray, capacity: float,
                   max_wait: int, step: int) -> tuple[int, list[int], list[int]]:
    """Strict FIFO, one order at a time: the number processed (the running sum,
    added in order, within capacity), the rows that expire and those that wait."""
    total, p = 0.0, 0
    for a in amount:
        total += a
        if total > capacity * (1 + 1e-12):
            break
        p += 1
    rest = range(p, amount.size)
    return (p, [j for j in rest if step - submitted[j] >= max_wait],
            [j for j in rest if step - submitted[j] < max_wait])


@pytest.mark.parametrize("seed", range(12))
def test_queue_processing_equals_a_fifo_loop(seed):
    """Queues that fit whole (the shortcut) and queues that do not, the last
    order exactly at capacity included: the processed, expired and waiting
    orders are a one-order-at-a-time FIFO loop's, and the step's figures are
    the sums over them."""
    rng = np.random.default_rng(seed)
    capacity = 10.0
    q = ExchangeQueue(capacity, congestion_threshold=0.6, base_fee=0.01, fee_slope=3.0,
                      max_wait=2)
    for step in range(1, 7):
        k = int(rng.integers(0, 6))
        amount = rng.uniform(0.5, 4.0, k)
        if seed % 3 == 0 and k:  # the queue's total exactly at capacity
            amount *= (capacity - q.backlog) / amount.sum() if q.backlog < capacity else 1.0
            amount = amount[amount > 0]
        if amount.size:
            q.submit(rng.integers(0, 9, amount.size), rng.integers(0, 9, amount.size),
                     amount, step)
        before = {name: col.copy() for name, col in q.orders.items()}
        done, gone, s = q.process(step)
        p, expired, waiting = fifo_reference(before["amount"], before["submitted"], capacity,
                                             2, step)
        for name, col in before.items():
            np.testing.assert_array_equal(done[name], col[:p])
            np.testing.assert_array_equal(gone[name], col[expired])
            np.testing.assert_array_equal(q.orders[name], col[waiting])
        amt = before["amount"]
        demand = float(amt.sum())
        assert (s.step, s.demand, s.processed, s.processed_orders) == (
            step, demand, float(amt[:p].sum()), p)
        assert (s.waiting, s.waiting_orders) == (float(amt[waiting].sum()), len(waiting))
        assert (s.expired, s.expired_orders) == (float(amt[expired].sum()), len(expired))
        assert s.utilisation == demand / capacity and s.fee_rate == q.fee_rate(demand / capacity)
        assert s.fees == s.fee_rate * s.processed
        delays = step - before["submitted"][:p]
        assert s.mean_delay == (float(np.mean(delays)) if p else 0.0)
        assert q.history[-1] is s


def test_a_queue_keeps_its_own_copy_of_the_orders():
    """Orders given as arrays are copied into the queue, whether it was empty
    (the shortcut) or not: changing the caller's arrays afterwards changes
    nothing queued; columns keep their dtypes."""
    q = ExchangeQueue(1.0)  # small: the first orders wait
    snd, rcv, amt = np.array([1, 2]), np.array([3, 4]), np.array([0.8, 0.9])
    q.submit(snd, rcv, amt, step=1, rate=np.array([0.01, 0.02]))
    q.submit(snd, rcv, amt, step=1)
    snd[:], amt[:] = 7, 5.0
    assert q.orders["sender"].tolist() == [1, 2, 1, 2]
    assert q.orders["amount"].tolist() == [0.8, 0.9, 0.8, 0.9]
    assert q.orders["rate"].tolist() == [0.01, 0.02, 0.0, 0.0]
    assert {k: v.dtype.kind for k, v in q.orders.items()} == {
        "order_id": "i", "sender": "i", "receiver": "i", "amount": "f", "rate": "f",
        "submitted": "i", "kind": "i"}
    q.submit(5, 6, 0.25, step=2)  # one order given as numbers
    assert q.orders["order_id"].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("bad", [[np.nan], [np.inf], [-np.inf], [0.0], [-1.0], [1.0, np.nan],
                                 [2.0, -0.0], [1.0, np.inf]])
def test_a_queue_refuses_amounts_that_are_not_finite_and_positive(bad):
    q = ExchangeQueue(10.0)
    with pytest.raises(ValueError, match="finite and > 0"):
        q.submit(np.zeros(len(bad), dtype=int), np.ones(len(bad), dtype=int), np.array(bad), 1)
    assert q.backlog_orders == 0 and q._next_id == 0
    assert q.submit(np.zeros(0, dtype=int), np.zeros(0, dtype=int), np.zeros(0), 1).size == 0


# ------------------------------------------------------------ the audit
def test_audit_columns_given_as_numbers_are_full_columns():
    """record() repeats a column given as one number (shared read-only views):
    each record holds what ``np.full`` would (values, dtype, shape, so the same
    bytes in snapshots and fingerprints), arrays are copied, and audit() and
    transactions() read them as before."""
    m = FinancialModel(n_banks=10, n_exchanges=2, n_ccps=1, rng=2)
    router = m.router
    router._audit.clear()
    snd, rcv = np.array([1, 2, 3]), np.array([4, 5, 6])
    amt = np.array([1.0, 2.0, 3.0])
    router.record("loan", snd, rcv, amt, 0.0, 1, np.array([0, -1, 0]), 0.25, 2, "failed", 7)
    router.record("margin_call", np.int64(4), rcv[:2], amt[:2], np.float64(0.5), np.array([0, 1]),
                  0, np.array([0.1, 0.2]), np.int32(0), np.array([7, 8]), 8)
    router.record("rollover", snd[:0], rcv[:0], amt[:0], 0.0, 0, 0, 0.0, 0, "renewed", 8)
    router.record("repayment", snd, rcv, amt, -0.0, 0, -1, np.nan, 1, "paid", 8)
    snd[:] = 0  # the audit holds copies
    want = pd.DataFrame({
        "step": np.array([7, 7, 7, 8, 8, 8, 8, 8], dtype=np.int32),
        "kind": pd.Categorical.from_codes([0, 0, 0, 3, 3, 2, 2, 2], KINDS),
        "sender": np.array([1, 2, 3, 4, 4, 1, 2, 3], dtype=np.int32),
        "receiver": np.array([4, 5, 6, 4, 5, 4, 5, 6], dtype=np.int32),
        "amount": [1.0, 2.0, 3.0, 1.0, 2.0, 1.0, 2.0, 3.0],
        "received": [0.0, 0.0, 0.0, 0.5, 0.5, -0.0, -0.0, -0.0],
        "exchange": np.array([1, 1, 1, 0, 1, 0, 0, 0], dtype=np.int16),
        "ccp": np.array([0, -1, 0, 0, 0, -1, -1, -1], dtype=np.int16),
        "fee": [0.25, 0.25, 0.25, 0.1, 0.2, np.nan, np.nan, np.nan],
        "delay": np.array([2, 2, 2, 0, 0, 1, 1, 1], dtype=np.int16),
        "outcome": pd.Categorical.from_codes([2, 2, 2, 7, 8, 4, 4, 4], OUTCOMES)})
    got = router.audit()
    assert list(got.columns) == list(AUDIT_COLUMNS)
    pd.testing.assert_frame_equal(got, want)
    assert np.signbit(got["received"].iloc[-1]) and not np.signbit(got["received"].iloc[0])
    dtypes = {"step": np.int32, "kind": np.int8, "sender": np.int32, "receiver": np.int32,
              "amount": float, "received": float, "exchange": np.int16, "ccp": np.int16,
              "fee": float, "delay": np.int16, "outcome": np.int8}
    rows = 0
    for rec in router._audit:  # each record: full columns of its length and dtype
        k = rec["amount"].size
        assert set(rec) == set(AUDIT_COLUMNS)
        for c, col in rec.items():
            assert col.shape == (k,) and col.dtype == np.dtype(dtypes[c]), c
            ref = want[c].cat.codes.to_numpy() if c in ("kind", "outcome") else want[c].to_numpy()
            assert col.tobytes() == ref[rows:rows + k].astype(dtypes[c]).tobytes(), c
        rows += k
    assert router._audit[0]["fee"].flags.writeable is False  # a shared constant
    assert (router.transactions(), router.transactions(7), router.transactions(8)) == (8, 3, 5)


def test_audit_constants_grow_and_stay_what_they_were():
    """A constant column longer than any before is a new array; the records
    handed out earlier keep their values."""
    m = FinancialModel(n_banks=10, n_exchanges=1, rng=2)
    router = m.router
    router._audit.clear()
    for k in (3, 50, 7, 400):
        router.record("loan", np.arange(k), np.arange(k), np.ones(k), 0.0, 0, -1, 0.0, 0,
                      "processed", 9)
    for rec in router._audit:
        assert rec["fee"].tobytes() == np.zeros(rec["amount"].size).tobytes()
        assert rec["step"].tolist() == [9] * rec["amount"].size


# ------------------------------------------------------------ CCP books
@pytest.mark.parametrize("n_ccps", [1, 2])
def test_cleared_by_ccp_of_a_fully_cleared_book_equals_a_loop(n_ccps):
    """Every loan novated (the whole-book shortcut): what each member owes each
    CCP is a loan-by-loan sum in book order, bit for bit."""
    rng = np.random.default_rng(n_ccps)
    n, m = 11, 400
    lender = rng.integers(0, n, m)
    book = LoanBook(lender, (lender + rng.integers(1, n, m)) % n, rng.lognormal(size=m),
                    rng.random(m) * 0.1, np.full(m, 0.01), np.full(m, 5),
                    rng.integers(0, n_ccps, m))
    book.accrued = rng.random(m)
    want = np.zeros((n, n_ccps))
    for k in range(m):
        want[book.borrower[k], book.ccp[k]] += book.principal[k] + book.accrued[k]
    got = cleared_by_ccp(book, list(range(n_ccps)), n)
    assert got.shape == (n, n_ccps) and np.array_equal(got, want)


@pytest.mark.parametrize("columns", [1, 2, 3])
def test_cells_are_nonzeros_in_order(columns):
    """layer._cells: the rows, columns and flat gathers of np.nonzero, in its
    order (a C-ordered and an F-ordered array alike)."""
    rng = np.random.default_rng(columns)
    a = rng.normal(size=(40, columns)) * (rng.random((40, columns)) < 0.4)
    for arr in (a, np.asfortranarray(a)):
        i, c, f = layer._cells(arr)
        want_i, want_c = np.nonzero(arr)
        np.testing.assert_array_equal(i, want_i)
        np.testing.assert_array_equal(np.broadcast_to(c, want_c.shape), want_c)
        np.testing.assert_array_equal(arr.ravel()[f], arr[want_i, want_c])


# ------------------------------------------------------------ settle
def test_orders_a_lender_cannot_pay_fail_and_the_rest_are_booked():
    """book_orders when some orders fail (not the all-settle shortcut): the
    failed ones are audited as such and lend nothing; the others become loans
    and pay their fee, each as its own audit row."""
    m = FinancialModel(n_banks=12, n_exchanges=2, n_ccps=1, brain="passive", rng=3)
    L = m.ledger
    for s, r, a in [(0, 1, 0.5), (2, 3, 0.4), (0, 4, 0.3), (5, 6, 0.2)]:
        m.router.submit_transaction(s, r, a)
    L.cash[0] = 0.6  # affords its first order and fee, not the second
    fees0, rows, t = L.exchange_cash.sum(), len(L.loans), m.t + 1
    m.t = t
    m.settle()
    audit = m.router.audit()
    audit = audit[(audit.step == t) & (audit.kind == "loan")]
    got = {(int(r.sender), int(r.receiver)): (r.outcome, r.received, r.fee)
           for r in audit.itertuples()}
    assert {k: v[0] for k, v in got.items()} == {
        (0, 1): "processed", (2, 3): "processed", (0, 4): "failed", (5, 6): "processed"}
    assert got[(0, 4)][1:] == (0.0, 0.0) and all(got[k][2] > 0 for k in [(0, 1), (2, 3)])
    new = {(int(a), int(b)): p for a, b, p in zip(L.loans.lender[rows:], L.loans.borrower[rows:],
                                                  L.loans.principal[rows:], strict=True)}
    assert new == {(0, 1): 0.5, (2, 3): 0.4, (5, 6): 0.2}
    assert L.exchange_cash.sum() - fees0 == pytest.approx(audit.fee.sum(), rel=1e-12)


# ------------------------------------------------------------ observations
@pytest.mark.parametrize("params", [
    {"n_exchanges": 2, "n_ccps": 1},
    {"n_exchanges": 3, "n_ccps": 2, "ccp_clearing_share": 0.5, "exchange_capacity": 0.002}])
def test_infrastructure_columns_equal_per_bank_formulas(params):
    """The 8 infrastructure columns (exchange columns computed per exchange and
    gathered; the net CCP exposure over the whole book when every loan is
    cleared) against the documented formulas written out bank by bank."""
    m = FinancialModel(n_banks=30, scenario="systemic", rng=8, **params)
    cfg = m.config
    for _ in range(5):
        m.run_for(2)
        L, lb = m.ledger, m.ledger.loans
        ta = np.where(m.sheets.total_assets > 0, m.sheets.total_assets, 1.0)
        got = infrastructure_observations(L, ta, m.exchanges, m.ccps, m.router, m.margin_rate,
                                          cfg)
        want = np.empty_like(got)
        for i in range(m.n_banks):
            ex = m.exchanges[m.router.bank_exchange[i]]
            ccp = m.ccps[m.router.bank_ccp[i]]
            lent = borrowed = 0.0
            for k in range(len(lb)):
                if lb.ccp[k] >= 0 and lb.lender[k] == i:
                    lent += lb.principal[k] + lb.accrued[k]
                if lb.ccp[k] >= 0 and lb.borrower[k] == i:
                    borrowed += lb.principal[k] + lb.accrued[k]
            row = {
                "exchange_congestion": np.clip(ex.utilisation, 0, 2) / 2,
                "exchange_fee_level": np.clip((ex.fee_rate / cfg.exchange_base_fee - 1)
                                              / cfg.exchange_fee_slope, 0, 1),
                "queue_backlog": np.clip(ex.backlog / ex.queue.max_throughput, 0, 3) / 3,
                "expected_delay": np.clip(ex.mean_delay / cfg.max_order_wait, 0, 1),
                "ccp_margin_rate": m.margin_rate,
                "posted_margin": np.clip(L.margin[i].sum() / ta[i], 0, 1),
                "net_ccp_exposure": np.clip((lent - borrowed) / ta[i], -1, 1),
                "default_fund_health": np.clip(ccp.default_fund_health, 0, 1)}
            for name, value in row.items():
                want[i, OBS[name] - OBS_DIM] = value
        np.testing.assert_array_equal(got, want)


def test_orders_given_away_are_kept_and_copies_otherwise():
    """submit(copy=False) keeps the caller's contiguous arrays as an empty
    queue's columns (the router hands over arrays it just gathered); a strided
    or differently typed array, a queue with orders waiting, or copy=True
    give the queue its own columns; the values are the same either way."""
    q = ExchangeQueue(1.0)
    snd, rcv, amt, rate = np.array([1, 2]), np.array([3, 4]), np.array([0.7, 0.8]), np.ones(2)
    q.submit(snd, rcv, amt, 1, rate=rate, copy=False)
    assert q.orders["sender"] is snd and q.orders["amount"] is amt and q.orders["rate"] is rate
    q.submit(snd, rcv, amt, 1, copy=False)  # orders waiting: concatenated, a new column
    assert q.orders["sender"] is not snd and q.orders["sender"].tolist() == [1, 2, 1, 2]
    assert q.orders["rate"].tolist() == [1.0, 1.0, 0.0, 0.0]
    r = ExchangeQueue(10.0)
    wide = np.array([[5, 6], [7, 8]])
    r.submit(wide[:, 0], rcv.astype(np.int32), amt, 1, copy=False)
    assert r.orders["sender"].tolist() == [5, 7] and r.orders["sender"].flags.c_contiguous
    assert r.orders["receiver"].dtype == np.int64 and r.orders["receiver"].tolist() == [3, 4]
    s = ExchangeQueue(10.0)
    s.submit(snd, rcv, amt, 1)
    assert s.orders["sender"] is not snd and s.backlog == 1.5
    s.process(1)
    assert s.backlog == 0.0 and s.backlog_orders == 0


@pytest.mark.parametrize("params", [{"n_exchanges": 2, "n_ccps": 1},
                                    {"n_exchanges": 2, "n_ccps": 2, "ccp_clearing_share": 0.6}])
def test_net_ccp_exposure_from_the_sheets_is_the_books_sum(params):
    """With the observe stage's sheets (up to date) the net CCP exposure column
    of a fully cleared book is taken from their interbank totals: bit for bit
    what summing the book gives; with bilateral loans the book is summed."""
    m = FinancialModel(n_banks=40, scenario="systemic", rng=9, **params)
    for _ in range(4):
        m.run_for(3)
        ta = np.where(m.sheets.total_assets > 0, m.sheets.total_assets, 1.0)
        args = (m.ledger, ta, m.exchanges, m.ccps, m.router, m.margin_rate, m.config)
        with_sheets = infrastructure_observations(*args, sheets=m.sheets)
        assert with_sheets.tobytes() == infrastructure_observations(*args).tobytes()
