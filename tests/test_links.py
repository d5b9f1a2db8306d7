"""The loan book's link table (issue 15, act and record stages): what is lent on
each network edge as a bincount over link ids, and DebtRank on a fixed sparsity
pattern, against independent references (dense accumulation in book order,
the CSR exposure matrix, DebtRank on dense matrices); and the model with these
paths against the model with the former CSR paths: the same defaults, numbers
within 1e-12 of each quantity's scale (the loans of one pair are now summed in
book order; SciPy's CSR summed them in the order of an unstable sort)."""

from __future__ import annotations

import contextlib
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_invariants import configs, valid_config

from finsim_mesa import FinancialModel, risk
from finsim_mesa.loans import LinkTable, LoanBook

A = np.asarray


def random_book(rng: np.random.Generator, n: int, m: int) -> LoanBook:
    lb = LoanBook()
    for _ in range(3):  # several appends, repeated pairs, some CCP-novated loans
        k = m // 3
        lender = rng.integers(0, n, k)
        borrower = (lender + rng.integers(1, n, k)) % n
        lb.append(lender, borrower, rng.random(k) * 10 ** rng.uniform(-3, 3, k),
                  rng.random(k) * 0.01, rng.integers(1, 5, k), np.where(rng.random(k) < 0.3, 0, -1))
    lb.accrued = rng.random(len(lb)) * 0.1
    return lb


def dense_in_book_order(lb: LoanBook, n: int, keep=slice(None)) -> np.ndarray:
    """Reference: ``[i, j]`` += each loan's owed amount, loan by loan."""
    out = np.zeros((n, n))
    np.add.at(out, (lb.lender[keep], lb.borrower[keep]), lb.owed[keep])
    return out


def test_link_ids_are_stable_and_new_pairs_are_appended():
    t = LinkTable()
    assert t.ids(A([], dtype=np.int64), A([], dtype=np.int64)).size == 0 and len(t) == 0
    first = t.ids(A([3, 0, 3, 1]), A([1, 2, 1, 0]))
    assert first.tolist() == [2, 0, 2, 1] and len(t) == 3  # a new batch: ids by pair order
    again = t.ids(A([1, 3, 0]), A([0, 1, 2]))
    assert again.tolist() == [first[3], first[0], first[1]]
    more = t.ids(A([2, 3]), A([2, 1]))  # one new pair, one known
    assert len(t) == 4 and more[1] == first[0] and more[0] == 3
    assert t.ids(A([3, 0, 1]), A([1, 2, 0])).tolist() == [first[0], first[1], first[3]]
    big = t.ids(A([2**31 - 1]), A([5]))  # the largest bank index the keys allow
    assert big.tolist() == [4] and t.ids(A([2**31 - 1]), A([5])).tolist() == [4]


def test_csr_pattern_has_one_entry_per_link_in_canonical_order():
    t = LinkTable()
    ids = t.ids(A([2, 0, 2, 1, 0]), A([0, 1, 1, 2, 2]))
    by_id = np.arange(1.0, len(t) + 1)
    csr = t.csr(3, by_id)
    assert csr.nnz == 5 and csr.has_canonical_format
    dense = np.zeros((3, 3))
    dense[A([2, 0, 2, 1, 0]), A([0, 1, 1, 2, 2])] = by_id[ids]
    np.testing.assert_array_equal(csr.toarray(), dense)
    t.ids(A([1]), A([1]))  # a new pair rebuilds the pattern
    assert t.csr(3, np.ones(len(t))).nnz == 6


@pytest.mark.parametrize("seed", range(5))
def test_held_on_edges_is_the_book_order_sum(seed):
    rng = np.random.default_rng(seed)
    n = 12
    lb = random_book(rng, n, 120)
    src, dst = np.nonzero(np.ones((n, n)) - np.eye(n))
    held = lb.held_on(src, dst)
    ref = dense_in_book_order(lb, n)
    np.testing.assert_array_equal(held, ref[src, dst])  # bit for bit
    csr = sp.csr_matrix((lb.owed, (lb.lender, lb.borrower)), shape=(n, n))
    np.testing.assert_allclose(held, np.asarray(csr[src, dst]).ravel(), rtol=1e-15, atol=0)
    # the book changes (loans repaid, new ones, merged): the ids follow the rows
    lb.keep(rng.random(len(lb)) < 0.6)
    lb.append(A([0, 5]), A([7, 7]), A([1.0, 2.0]), A([0.01, 0.01]), A([3, 3]))
    lb.consolidate(len(lb) - 2)
    cp = lb.copy()
    np.testing.assert_array_equal(cp.held_on(src, dst), dense_in_book_order(cp, n)[src, dst])
    links = len(lb.links)
    cp.append(A([n]), A([0]), A([1.0]), A([0.01]), A([3]))  # a pair the network lacks
    assert cp.exposures(n + 1)[0][n, 0] == 1.0 and len(cp.links) == links + 1
    assert len(lb.links) == links  # the copy's table is its own
    np.testing.assert_array_equal(lb.held_on(src, dst), dense_in_book_order(lb, n)[src, dst])


@pytest.mark.parametrize("bilateral_only", [False, True])
def test_exposures_on_the_fixed_pattern(bilateral_only):
    rng = np.random.default_rng(7)
    n = 10
    lb = random_book(rng, n, 60)
    lb.principal[:3] = lb.accrued[:3] = 0.0  # loans owing nothing still mark their pair
    keep = lb.ccp < 0 if bilateral_only else slice(None)
    E, present = lb.exposures(n, bilateral_only)
    np.testing.assert_array_equal(E.toarray(), dense_in_book_order(lb, n, keep))
    marked = np.zeros((n, n), dtype=bool)
    marked[lb.lender[keep], lb.borrower[keep]] = True
    P = sp.csr_matrix((present.astype(float), E.indices, E.indptr), shape=(n, n))
    np.testing.assert_array_equal(P.toarray() > 0, marked)
    assert E.nnz == len(lb.links) >= marked.sum()


@pytest.mark.parametrize("seed", range(4))
def test_debtrank_on_the_pattern_equals_debtrank_on_the_matrix(seed):
    rng = np.random.default_rng(seed)
    n = 15
    lb = random_book(rng, n, 90)
    lb.links.ids(*np.nonzero(np.ones((n, n))))  # pattern: every pair, most without loans
    equity = rng.uniform(-5.0, 50.0, n)  # some without positive equity: impact 1 on claims
    h0 = np.where(rng.random(n) < 0.2, rng.random(n), 0.0)
    E, present = lb.exposures(n)
    got = risk.debtrank(E, equity, h0, value=np.ones(n), present=present)
    want = risk.debtrank(dense_in_book_order(lb, n), equity, h0, value=np.ones(n))
    np.testing.assert_array_equal(got.distress, want.distress)
    assert (got.debtrank, got.total, got.steps) == (want.debtrank, want.total, want.steps)
    W = risk.impact_matrix(E, equity, present)
    W_ref = risk.impact_matrix(dense_in_book_order(lb, n), equity)
    np.testing.assert_array_equal(W.toarray(), W_ref.toarray())
    assert W.nnz == E.nnz  # the pattern is kept (explicit zeros)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bilateral_only", [False, True])
def test_debtrank_on_the_entries_equals_debtrank_on_the_matrix(seed, bilateral_only):
    """The record stage's DebtRank (NumPy on the pattern's entries, no sparse
    matrix) against SciPy's CSR DebtRank on a dense matrix built loan by loan:
    bit for bit, and within round-off of the paper's node-by-node algorithm."""
    from test_risk import naive_debtrank

    rng = np.random.default_rng(seed)
    n = 12 + seed
    lb = random_book(rng, n, 90)
    if seed % 2:
        lb.links.ids(*np.nonzero(np.ones((n, n))))  # most pairs of the pattern hold no loan
    keep = lb.ccp < 0 if bilateral_only else slice(None)
    equity = rng.uniform(-5.0, 50.0, n)
    h0 = np.where(rng.random(n) < 0.3, rng.random(n), 0.0)
    value = rng.random(n)
    rows, cols, data, present = lb.exposure_entries(bilateral_only)
    assert np.all(np.diff(rows) >= 0) and rows.size == len(lb.links)
    got = risk.debtrank_entries(rows, cols, data, equity, h0, value, present)
    dense = dense_in_book_order(lb, n, keep)
    want = risk.debtrank(dense, equity, h0, value=value)
    np.testing.assert_array_equal(got.distress, want.distress)
    assert (got.debtrank, got.total, got.steps) == (want.debtrank, want.total, want.steps)
    h, r = naive_debtrank(dense.tolist(), equity.tolist(), h0.tolist(),
                          (value / value.sum()).tolist())
    np.testing.assert_allclose(got.distress, h, rtol=1e-12, atol=1e-15)
    assert got.debtrank == pytest.approx(r, rel=1e-12, abs=1e-15)


def test_a_book_pickled_before_link_ids_existed_still_works():
    lb = random_book(np.random.default_rng(1), 6, 30)
    state = {k: v for k, v in vars(lb).items() if k not in ("link", "links")}
    old = LoanBook.__new__(LoanBook)
    old.__setstate__(state)
    src, dst = np.nonzero(np.ones((6, 6)) - np.eye(6))
    np.testing.assert_array_equal(old.held_on(src, dst), dense_in_book_order(lb, 6)[src, dst])
    again = pickle.loads(pickle.dumps(lb))
    np.testing.assert_array_equal(again.held_on(src, dst), lb.held_on(src, dst))


# --------------------------------------------- the model, former paths vs these
def _old_held(self, src, dst, subset=None, owed=None):  # owed: the same as self.owed
    if subset is not None:
        src, dst = src[subset], dst[subset]
    n = int(max(src.max(initial=0), dst.max(initial=0), self.lender.max(initial=0),
                self.borrower.max(initial=0))) + 1
    csr = sp.csr_matrix((self.owed, (self.lender, self.borrower)), shape=(n, n))
    return np.asarray(csr[src, dst]).reshape(-1)


def _old_exposures(self, n, bilateral_only=False):
    keep = self.ccp < 0 if bilateral_only else slice(None)
    return sp.csr_matrix((self.owed[keep], (self.lender[keep], self.borrower[keep])),
                         shape=(n, n)), None


@contextlib.contextmanager
def former_csr_paths():
    """The act and record stages as before issue 15 (a CSR built every step)."""
    saved = LoanBook.held_on, LoanBook.exposures
    LoanBook.held_on, LoanBook.exposures = _old_held, _old_exposures
    try:
        yield
    finally:
        LoanBook.held_on, LoanBook.exposures = saved


def _trajectory(params, steps):
    m = FinancialModel(steps=steps, **params)
    defaults = []
    while m.running and m.t < steps:
        m.step()
        defaults.append(m.ledger.default_step.copy())
    frames = [m.datacollector.get_model_vars_dataframe()]
    if m.config.agent_collect_every:
        frames.append(m.datacollector.get_agent_vars_dataframe())
    tables = [f.select_dtypes("number").to_numpy(float) for f in frames]
    scale = float(np.abs(m.ledger.equity0).max())
    return defaults, tables, m.ledger.equity / scale


def assert_same_run(params, steps):
    new = _trajectory(params, steps)
    with former_csr_paths():
        old = _trajectory(params, steps)
    assert len(new[0]) == len(old[0])
    for a, b in zip(new[0], old[0], strict=True):  # no default decision flips
        np.testing.assert_array_equal(a, b)
    for a, b in zip(new[1], old[1], strict=True):
        a, b = np.nan_to_num(a, posinf=0, neginf=0), np.nan_to_num(b, posinf=0, neginf=0)
        scale = np.maximum(np.abs(b).max(axis=0, initial=0.0), 1e-300)
        assert (np.abs(a - b) <= 1e-12 * scale).all()
    np.testing.assert_allclose(new[2], old[2], rtol=0, atol=1e-12)


@pytest.mark.parametrize("params", [
    dict(n_banks=20, scenario="systemic", brain="greedy", rng=5),
    dict(n_banks=20, scenario="asset_crash", brain="myopic", topology="erdos_renyi",
         mean_degree=3.0, rng=3),
    dict(n_banks=20, scenario="liquidity_crisis", brain="rule_based", n_exchanges=2, n_ccps=1,
         rng=7),
    dict(n_banks=300, scenario="systemic", brain="rule_based", agent_collect_every=0, rng=11),
], ids=["greedy", "myopic_er", "infra", "300_banks"])
def test_model_matches_the_former_csr_paths(params):
    assert_same_run(params, 30)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_model_matches_the_former_csr_paths_over_the_property_configs(data):
    assert_same_run(valid_config(data.draw(configs)), 25)


# ------------------------------------------------------------ capacity buffers
def test_book_with_capacity_buffers_equals_a_book_of_fresh_arrays():
    """Random appends, merges, repayments and a row array replaced from outside
    (as the infrastructure layer does with ``ccp``): the rows are those of the
    same operations on plain concatenated arrays, and appends within capacity
    write into the same buffer."""
    rng = np.random.default_rng(3)
    lb = LoanBook()
    ref = {f: [] for f in LoanBook._FIELDS}
    for step in range(40):
        k = int(rng.integers(0, 30))
        new = dict(lender=rng.integers(0, 6, k), borrower=rng.integers(0, 6, k),
                   principal=rng.random(k), accrued=np.zeros(k), rate=np.full(k, 0.01),
                   maturity=np.full(k, step + 3), ccp=np.full(k, -1))
        start = len(lb)
        buffer_before = lb.lender.base
        fits = start + k <= lb._spare.capacity - lb._spare.head  # room after the head
        lb.append(new["lender"], new["borrower"], new["principal"], new["rate"],
                  new["maturity"])
        if 0 < start and buffer_before is not None and fits:
            assert lb.lender.base is buffer_before  # no reallocation
        for f in LoanBook._FIELDS:
            ref[f] = np.concatenate([np.asarray(ref[f], dtype=getattr(lb, f).dtype), new[f]])
        lb.consolidate(start)
        # the reference merge: the same rule on a fresh book of the new rows
        fresh = LoanBook()
        fresh.append(*(ref[f][start:] for f in ("lender", "borrower", "principal", "rate",
                                                 "maturity", "ccp")))
        fresh.consolidate(0)
        for f in LoanBook._FIELDS:
            ref[f] = np.concatenate([ref[f][:start], getattr(fresh, f)])
        if step % 7 == 3:
            keep = rng.random(len(lb)) < 0.7
            lb.keep(keep)
            ref = {f: v[keep] for f, v in ref.items()}
        if step % 11 == 5:
            lb.ccp = np.where(rng.random(len(lb)) < 0.5, 0, -1)
            ref["ccp"] = lb.ccp.copy()
        lb.principal *= 1.001  # in place, as interest and roll-overs do
        ref["principal"] = ref["principal"] * 1.001
        for f in LoanBook._FIELDS:
            np.testing.assert_array_equal(getattr(lb, f), ref[f])
        assert lb.link.size == len(lb)
    assert lb._spare.arrays["lender"].size < 4 * max(len(lb), 16) + 64
    snap = lb.copy()
    lb.append(A([1]), A([2]), A([5.0]), A([0.01]), A([99]))
    assert len(snap) == len(lb) - 1 and 99 not in snap.maturity
    again = pickle.loads(pickle.dumps(lb))
    assert "arrays" not in vars(again) and len(again) == len(lb)
    again.append(A([2]), A([1]), A([1.0]), A([0.01]), A([7]))
    assert again.maturity[-2:].tolist() == [99, 7]


@pytest.mark.parametrize("seed", range(4))
def test_debtrank_by_column_equals_the_entry_scan(seed, monkeypatch):
    """Rounds with few distressed banks gather their columns' entries
    (``LinkTable.by_column``): bit for bit the scan of every entry and SciPy's
    CSR DebtRank on a matrix built loan by loan; the column path is taken."""
    rng = np.random.default_rng(seed)
    n = 2000
    lb = random_book(rng, n, 15000)
    equity = rng.uniform(0.5, 5.0, n)
    h0 = np.zeros(n)
    h0[rng.integers(0, n, 3)] = rng.random(3)  # a few banks hit: a long cascade
    value = rng.random(n)
    rows, cols, data, present = lb.exposure_entries()
    calls = []
    real = risk._column_entries
    monkeypatch.setattr(risk, "_column_entries",
                        lambda bc, c: calls.append(c.size) or real(bc, c))
    got = risk.debtrank_entries(rows, cols, data, equity, h0, value, present,
                                by_column=lb.links.by_column(n))
    scan = risk.debtrank_entries(rows, cols, data, equity, h0, value, present)
    want = risk.debtrank(dense_in_book_order(lb, n), equity, h0, value=value)
    assert calls and want.steps > len(calls) - 1
    for other in (scan, want):
        np.testing.assert_array_equal(got.distress, other.distress)
        assert (got.debtrank, got.total, got.steps) == (other.debtrank, other.total,
                                                         other.steps)
    order, ptr = lb.links.by_column(n)  # every entry once, column by column
    assert np.array_equal(np.sort(order), np.arange(cols.size))
    assert np.array_equal(cols[order], np.sort(cols, kind="stable"))
    assert np.all(np.diff(ptr) == np.bincount(cols, minlength=n))
