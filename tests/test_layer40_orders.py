"""The booked orders' link ids (router.submitted_links) and the audit's shared
``received`` column, each against the former form."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.infrastructure.router import InfrastructureRouter

CONFIGS = [dict(n_banks=300, n_exchanges=2, n_ccps=1, rng=21),
           dict(n_banks=300, scenario="liquidity_crisis", n_exchanges=2, n_ccps=1, rng=22),
           dict(n_banks=60, scenario="systemic", n_exchanges=3, n_ccps=2,
                ccp_clearing_share=0.5, venue_rule="random", exchange_capacity=0.0005, rng=17)]


def book_links_are_the_pairs(lb):
    """Every known link id of the book is its (lender, borrower) pair's id."""
    link = lb.link_ids(assign=False)
    known = link >= 0
    return np.array_equal(lb.links.ids(lb.lender[known], lb.borrower[known]), link[known])


@pytest.mark.parametrize("kw", CONFIGS)
def test_links_kept_for_booked_orders_change_no_bit(kw, monkeypatch):
    """Twin runs, one never handing the kept links to the booking (the former
    form: the ids looked up when needed): the same ledger, audit and data."""
    taken = []
    original = InfrastructureRouter.submitted_links

    def spy(self, processed):
        got = original(self, processed)
        taken.append(got is not None)
        return got

    monkeypatch.setattr(InfrastructureRouter, "submitted_links", spy)
    a = FinancialModel(**kw)
    for _ in range(20):
        a.step()
        assert book_links_are_the_pairs(a.ledger.loans)
    monkeypatch.setattr(InfrastructureRouter, "submitted_links", lambda self, p: None)
    b = FinancialModel(**kw)
    b.run_for(20)
    for name, v in vars(a.ledger).items():
        if isinstance(v, np.ndarray):
            assert v.tobytes() == getattr(b.ledger, name).tobytes(), name
    for name in a.ledger.loans._FIELDS:
        assert getattr(a.ledger.loans, name).tobytes() == getattr(b.ledger.loans, name).tobytes()
    assert a.router.audit().equals(b.router.audit())
    assert a.datacollector.get_model_vars_dataframe().equals(
        b.datacollector.get_model_vars_dataframe())
    # the links are taken when every queue was empty and is processed whole (the
    # first two), never with waiting orders (the small exchanges of the third)
    assert any(taken) == (kw.get("exchange_capacity") is None)


@pytest.mark.parametrize("kw", CONFIGS[:2])
def test_skipped_consolidation_of_distinct_pairs_changes_no_bit(kw, monkeypatch):
    """Twin runs, one consolidating every booking (the former form, links kept):
    the same book, ledger, audit and data."""
    original = InfrastructureRouter.submitted_links
    skipped = []

    def spy(self, processed):
        got = original(self, processed)
        skipped.append(got is not None and got[1])
        return got

    monkeypatch.setattr(InfrastructureRouter, "submitted_links", spy)
    a = FinancialModel(**kw)
    a.run_for(20)
    assert any(skipped)

    def always(self, processed):
        got = original(self, processed)
        return None if got is None else (got[0], False)

    monkeypatch.setattr(InfrastructureRouter, "submitted_links", always)
    b = FinancialModel(**kw)
    b.run_for(20)
    for name in (*a.ledger.loans._FIELDS, "link"):
        assert getattr(a.ledger.loans, name).tobytes() == getattr(b.ledger.loans, name).tobytes()
    for name, v in vars(a.ledger).items():
        if isinstance(v, np.ndarray):
            assert v.tobytes() == getattr(b.ledger, name).tobytes(), name
    assert a.router.audit().equals(b.router.audit())
    assert a.datacollector.get_model_vars_dataframe().equals(
        b.datacollector.get_model_vars_dataframe())


def test_links_are_refused_when_the_orders_are_not_the_ones_kept():
    m = FinancialModel(n_banks=200, n_exchanges=2, n_ccps=1, rng=23)
    m.run_for(3)
    r = m.router
    src, dst = np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8])
    link = m.ledger.loans.links.ids(src, dst)
    r.submit_many(src, dst, np.ones(4), np.full(4, 0.01), m.t, link)
    processed = [ex.process(m.t) for ex in m.exchanges]
    done = [p for p in processed if p]
    # another list of outputs (one exchange's left out): refused, and forgotten
    assert r.submitted_links(done[:-1]) is None and r._links is None
    r.submit_many(src, dst, np.ones(4), np.full(4, 0.01), m.t, link)
    processed = [ex.process(m.t) for ex in m.exchanges]
    done = [p for p in processed if p]
    got, distinct = r.submitted_links(done)
    assert distinct  # four pairs
    # the orders in the exchanges' order, each with its own pair's link
    snd = np.concatenate([p["sender"] for p in done])
    rcv = np.concatenate([p["receiver"] for p in done])
    assert np.array_equal(got, m.ledger.loans.links.ids(snd, rcv))
    assert r.submitted_links(done) is None  # used once
    # a pair twice: not distinct (consolidation merges them)
    for s2, d2 in ((np.array([1, 1, 2]), np.array([5, 5, 6])),
                   (np.array([1, 1]), np.array([6, 5]))):
        lk = m.ledger.loans.links.ids(s2, d2)
        r.submit_many(s2, d2, np.ones(s2.size), np.full(s2.size, 0.01), m.t, lk)
        done = [p for p in (ex.process(m.t) for ex in m.exchanges) if p]
        got, distinct = r.submitted_links(done)
        assert sorted(got.tolist()) == sorted(lk.tolist())
        assert distinct == (s2.size == 2)  # the pair (1, 5) twice, or two pairs
    # orders already waiting in a queue: the queue's columns are not the arrays
    # submitted, so nothing is kept for that exchange
    r.submit_transaction(1, 5, 1.0)
    r.submit_many(src, dst, np.ones(4), np.full(4, 0.01), m.t, link)
    done = [p for p in (ex.process(m.t) for ex in m.exchanges) if p]
    assert r.submitted_links(done) is None
    # a copy of the columns (not the very arrays queued) is refused
    r.submit_many(src, dst, np.ones(4), np.full(4, 0.01), m.t, link)
    done = [{k: v.copy() for k, v in p.items()}
            for p in (ex.process(m.t) for ex in m.exchanges) if p]
    assert r.submitted_links(done) is None
    # a restore forgets them
    snap = m.snapshot()
    r.submit_many(src, dst, np.ones(4), np.full(4, 0.01), m.t, link)
    m.restore(snap)
    assert r._links is None


def test_received_given_as_the_amount_is_the_amount_column():
    """received passed as the amount array itself: the record holds the amount
    column twice (not a copy), with what a copy would hold; any other received
    is copied as before."""
    m = FinancialModel(n_banks=10, n_exchanges=2, n_ccps=1, rng=2)
    r = m.router
    r._audit.clear()
    snd, rcv = np.array([1, 2, 3]), np.array([4, 5, 6])
    amt = np.array([1.0, -0.0, np.nan])
    r.record("loan", snd, rcv, amt, amt, 1, 0, 0.0, 0, "processed", 3)
    r.record("loan", snd, rcv, amt, amt.copy(), 1, 0, 0.0, 0, "processed", 3)
    other = np.array([0.5, 0.25, 0.0])
    r.record("repayment", snd, rcv, amt, other, 1, 0, 0.0, 0, "partial", 3)
    a, b, c = r._audit
    assert a["received"] is a["amount"]
    assert b["received"] is not b["amount"] and c["received"] is not other
    assert a["received"].tobytes() == b["received"].tobytes() == amt.tobytes()
    other[:] = 9.0  # copied
    assert c["received"].tolist() == [0.5, 0.25, 0.0]
    got = r.audit()
    pd.testing.assert_series_equal(got["received"].iloc[:3], got["received"].iloc[3:6]
                                   .reset_index(drop=True), check_names=True)
    # int amounts: the float amount column (what a copy to float gives)
    r._audit.clear()
    ints = np.array([3, 4, 5])
    r.record("loan", snd, rcv, ints, ints, 1, 0, 0.0, 0, "processed", 3)
    rec = r._audit[0]
    assert rec["received"].dtype == float and rec["received"].tolist() == [3.0, 4.0, 5.0]


@pytest.mark.parametrize("value", [0, 3, -1, 2**20, True, 0.0, -0.0, 1.5, math.nan, math.inf,
                                   -math.inf, np.int64(7), np.float64(-0.0), np.float32(0.25),
                                   np.array(4), np.array([2.5])])
@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, float])
def test_audit_column_of_a_number_is_np_full(value, dtype):
    """_column's lookups (ints, floats that are neither NaN nor -0.0) and its
    general path give what np.full gives, in every length, asked in any order."""
    from finsim_mesa.infrastructure.router import _column, _Constants

    if dtype is not float and isinstance(value, float | np.floating) and not np.isfinite(value):
        return  # (no integer column holds NaN or inf)
    if isinstance(value, np.ndarray) and value.ndim and dtype is not float:
        return
    if value == 2**20 and dtype in (np.int8, np.int16):
        return  # (out of the dtype's range: np.full refuses it too)
    c = _Constants()
    for k in (3, 1, 40, 3, 100, 0, 7):
        want = np.full(k, np.asarray(value).reshape(-1)[0] if np.ndim(value) else value,
                       dtype=dtype)
        got = _column(value, k, dtype, c)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), k
    arr = np.arange(5)
    col = _column(arr, 5, dtype, c)
    assert col is not arr and col.tobytes() == arr.astype(dtype).tobytes()


def test_audit_column_of_minus_zero_after_plus_zero():
    """-0.0 equals 0.0 (and hashes alike): asked after 0.0 it must not get 0.0's
    column, nor NaN another NaN's."""
    from finsim_mesa.infrastructure.router import _column, _Constants

    c = _Constants()
    assert not np.signbit(_column(0.0, 4, float, c)).any()
    assert np.signbit(_column(-0.0, 4, float, c)).all()
    assert not np.signbit(_column(0.0, 2, float, c)).any()
    assert np.isnan(_column(math.nan, 3, float, c)).all()
    assert _column(1, 3, float, c).tolist() == [1.0] * 3  # an int 1 and a float 1.0 alike
    assert _column(True, 3, np.int8, c).tolist() == [1] * 3
