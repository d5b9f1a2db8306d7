"""helper-77 (issue 15, the act / settle / clear stages at 30-100 banks): the same
results with fewer or cheaper NumPy calls.

* the min / max of small arrays as ``a[a.argmin()]`` / ``a[a.argmax()]`` instead of
  ``np.minimum.reduce`` / ``np.maximum.reduce`` (~4x cheaper at 30-200 entries):
  ``LoanBook._groups`` (CCP ids, link ids), ``consolidate`` (maturities),
  ``link_ids``, ``settle_in_full``'s -inf test and ``_surely_pays``;
* ``settle_in_full`` without the external-due postings when every due is +0.0
  (``_plus_zeros``: no withdrawals, the usual case);
* ``pays_in_full`` with 0-d constants instead of Python scalars for float64 p̄;
* ``new_loans`` compares with the 0-d ``ZERO``; ``append`` and ``consolidate``
  write the eight columns by ``map(setitem, ...)``.

References: the former forms kept below (the reductions, Python scalars), a plain
loop for the consolidation, and ``resolution.settle_in_full`` with
``_plus_zeros`` forced False (which runs every former statement). Mutations tried
(each made a test here fail): ``_plus_zeros`` by ``count_nonzero(x)`` (-0.0 dues),
without its shape test, the -inf test by ``pbar.argmax()``; ``pays_in_full`` with
``terms + 4`` as ``terms * 4``, with ``_TOL`` for any tol and the constants for any
dtype; the consolidation's maturity test dropped; ``_surely_pays``' min by argmax;
the dues' cash posting skipped. (``count_nonzero(x)`` for ``_plus_zeros`` changes
nothing in ``settle_in_full``: ``cash += received`` has turned every -0.0 cash to
+0.0 before a -0.0 due could show; the test of its definition catches it.)
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from support import ledger_bits, stages_until_clear

from finsim_mesa import FinancialModel, resolution
from finsim_mesa.clearing import pays_in_full
from finsim_mesa.fastmath import ZERO
from finsim_mesa.loans import LoanBook

SPECIAL = np.array([0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 5e-324, -5e-324, 1e308, 3.5])


# ------------------------------------------------------------ min / max by argmin
@pytest.mark.parametrize("seed", range(40))
def test_argmin_argmax_give_the_reductions_decisions(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 300))
    ints = rng.integers(-3, 50, k)
    assert ints[ints.argmin()] == np.minimum.reduce(ints)
    assert ints[ints.argmax()] == np.maximum.reduce(ints)
    x = rng.choice(SPECIAL, k) if seed % 2 else rng.normal(size=k)
    # settle_in_full's test of p̄ (NaN and -inf decline in both forms)
    assert bool(x[x.argmin()] > -np.inf) == bool(np.minimum.reduce(x) > -np.inf)
    # _surely_pays against its former reductions
    funds = float(rng.choice([0.0, -1.0, 1e299, np.nan, 5.0]))
    former = bool(np.minimum.reduce(x) >= ZERO
                  and np.maximum.reduce(x) * k + max(funds, 0.0) < 1e300)
    if k <= 100_000 and abs(funds) < 1e300:
        assert resolution._surely_pays(x, funds) == former


# ------------------------------------------------------------ consolidation
def _reference_consolidate(cols: dict, start: int) -> dict:
    """A plain loop: the rows from ``start`` on grouped by (lender, borrower, ccp);
    unchanged if a group mixes rates or maturities (``!=``, NaN differs); else one
    row per group, groups in key order, the first row's terms, principal and
    accrued summed from 0.0 in row order."""
    n = len(cols["lender"])
    if n - start < 2:
        return cols
    groups: dict = {}
    for i in range(start, n):
        key = (int(cols["lender"][i]), int(cols["borrower"][i]), int(cols["ccp"][i]))
        groups.setdefault(key, []).append(i)
    if len(groups) == n - start:
        return cols
    for rows in groups.values():
        r0 = rows[0]
        for i in rows:
            if cols["rate"][i] != cols["rate"][r0] or cols["maturity"][i] != cols["maturity"][r0]:
                return cols
    out = {k: list(v[:start]) for k, v in cols.items()}
    for key in sorted(groups):
        rows = groups[key]
        r0 = rows[0]
        for k in ("lender", "borrower", "rate", "maturity", "ccp", "link"):
            out[k].append(cols[k][r0])
        for k in ("principal", "accrued"):
            s = 0.0
            for i in rows:
                s = s + float(cols[k][i])
            out[k].append(s)
    return {k: np.array(v, dtype=cols[k].dtype) for k, v in out.items()}


def _cols(book: LoanBook) -> dict:
    return {k: getattr(book, k).copy() for k in LoanBook._ROWS}


def _bits(cols: dict) -> dict:
    return {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in cols.items()}


@pytest.mark.parametrize("seed", range(60))
def test_consolidate_against_a_plain_loop(seed):
    rng = np.random.default_rng(seed)
    lb = LoanBook()
    banks = int(rng.integers(2, 9))
    m0 = int(rng.integers(0, 20))
    lb.append(rng.integers(0, banks, m0), rng.integers(0, banks, m0), rng.random(m0),
              np.full(m0, 0.02), 4)
    lb.link_ids()
    start = len(lb)
    k = int(rng.integers(2, 40))
    lender, borrower = rng.integers(0, banks, k), rng.integers(0, banks, k)
    amount = rng.choice(SPECIAL[[0, 1, 6, 9]], k) if seed % 3 == 0 else rng.random(k)
    rate = np.full(k, 0.03)
    if seed % 5 == 1:
        rate[rng.integers(0, k)] = 0.04  # may mix a group's rates
    if seed % 7 == 2:
        rate[rng.integers(0, k)] = np.nan
    maturity = np.full(k, 9) if seed % 4 else rng.integers(8, 10, k)
    kind = seed % 6
    ccp = (None if kind < 2 else np.full(k, 1) if kind == 2
           else rng.integers(-1, 2, k) if kind == 3 else np.full(k, -1) if kind == 4
           else np.full(k, 0))
    link = lb.links.ids(lender, borrower) if seed % 2 else None  # mark path / sort path
    lb.append(lender, borrower, amount, rate, maturity, ccp, link)
    lb.accrued[start:] = rng.choice(SPECIAL[[0, 1, 6, 9]], k)
    if link is None:
        lb.link_ids(assign=False)
    before = _cols(lb)
    expected = _reference_consolidate(before, start)
    lb.consolidate(start)
    got = _cols(lb)
    assert _bits({k: v for k, v in got.items() if k != "link"}) == _bits(
        {k: v for k, v in expected.items() if k != "link"})
    if link is not None:
        assert _bits({"link": got["link"]}) == _bits({"link": expected["link"]})
    # the link ids, where known, name each row's pair
    ids = lb.link_ids()
    assert np.array_equal(lb.links.ids(lb.lender, lb.borrower), ids)


def test_a_book_with_unknown_links_gets_them_looked_up():
    lb = LoanBook()
    lb.append(np.array([0, 1]), np.array([1, 0]), np.ones(2), np.full(2, 0.01), 3)
    assert np.array_equal(lb.link_ids(assign=False), [-1, -1])
    ids = lb.link_ids()
    assert (ids >= 0).all() and np.array_equal(ids, lb.links.ids(lb.lender, lb.borrower))


# ------------------------------------------------------------ settle_in_full's dues
def test_plus_zeros_against_its_definition():
    f = resolution._plus_zeros
    assert f(np.zeros(5), 5)
    for bad in ([0.0, -0.0], [0.0, np.nan], [0.0, 5e-324], [1.0, 0.0]):
        assert not f(np.array(bad), 2)
    assert not f(np.zeros(5), 4)  # another shape
    assert not f(np.zeros(5, dtype=np.float32), 5)
    assert not f(np.zeros((5, 1)), 5)
    assert not f([0.0, 0.0], 2)
    rng = np.random.default_rng(3)
    for _ in range(200):
        x = rng.choice(SPECIAL[:3], int(rng.integers(1, 6)))
        assert f(x, x.size) == bool(np.all((x == 0) & ~np.signbit(x)))


def _recorder(sold: list):
    """A ``sell`` that records its calls (units, prices, kind) as bytes."""
    return lambda units, prices, kind: sold.append((units.tobytes(), prices.tobytes(), kind))


def _edge_ledger(m: FinancialModel, rng, case: int):
    L = copy.deepcopy(m.ledger)
    n = L.n
    i = rng.integers(0, n, 3)
    if case == 1:
        L.deposits[i[0]], L.deposits[i[1]] = 0.0, -0.0
    elif case == 2:
        L.deposits[i[0]] = -3.0
    elif case == 3:
        L.deposits[i[0]] = np.nan
    elif case == 4:
        L.cash[i[0]], L.funding[i[1]] = -0.0, -0.0
    return L


@pytest.mark.parametrize("kw", [dict(n_banks=30, brain="rule_based", rng=1),
                                dict(n_banks=40, brain="greedy", scenario="liquidity_crisis",
                                     rng=3),
                                dict(n_banks=30, n_exchanges=1, n_ccps=1, rng=2)])
def test_settle_in_full_as_with_every_due_posted(kw, monkeypatch):
    """Against the same function with ``_plus_zeros`` False: the former statements."""
    m = FinancialModel(steps=10**9, agent_collect_every=0, **kw)
    rng = np.random.default_rng(0)
    seen = posted = sales = 0
    for step in range(25):
        stages_until_clear(m)
        L, cfg, n, t = m.ledger, m.config, m.n_banks, m.t
        if not np.count_nonzero(L.defaulted & ~L.resolved):
            due = L.loans.maturity <= t
            for case in range(5):
                for dues in ("zeros", "minus_zero", "model", "some", "large"):
                    ext = (np.zeros(n) if dues == "zeros" else np.minimum(m.flows.withdrawals,
                                                                          L.deposits))
                    if dues == "minus_zero":  # (at the bank whose cash is -0.0 in case 4)
                        ext[np.random.default_rng(step * 10 + case).integers(0, n, 3)[0]] = -0.0
                    if dues == "some":  # a few withdrawals
                        ext[rng.integers(0, n, 3)] = 0.01 * L.deposits[rng.integers(0, n, 3)]
                    if dues == "large":  # some banks short of cash: emergency sales
                        j = rng.integers(0, n, 4)
                        ext[j] = 0.5 * L.deposits[j]
                    sold_new, sold_general = [], []
                    a, b = _edge_ledger(m, np.random.default_rng(step * 10 + case), case), None
                    b = copy.deepcopy(a)
                    ok_new = resolution.settle_in_full(
                        a, cfg, due.copy(), ext.copy(), None, t,
                        _recorder(sold_new))
                    with monkeypatch.context() as mp:
                        mp.setattr(resolution, "_plus_zeros", lambda x, n: False)
                        ok_old = resolution.settle_in_full(b, cfg, due.copy(), ext.copy(),
                                                           None, t, lambda *x: None)
                    assert ok_new == ok_old
                    assert ledger_bits(a) == ledger_bits(b)
                    seen += ok_new
                    if ok_new and not L.ccp_cash.size:  # and the general path's postings
                        c = _edge_ledger(m, np.random.default_rng(step * 10 + case), case)
                        res = resolution.clear_due(
                            c, cfg, due.copy(), ext.copy(), np.zeros(n, dtype=bool),
                            _recorder(sold_general),
                            t, [], None)
                        assert res.rounds == 0 and ledger_bits(c) == ledger_bits(a)
                        assert sold_new == sold_general
                        sales += bool(sold_new)
                    posted += ok_new and dues == "some"
        m.clear()
        m.price()
        m.record()
    assert seen > 0 and posted and (sales or kw.get("n_ccps"))


# ------------------------------------------------------------ pays_in_full
_EPS8 = 8.0 * np.finfo(float).eps


def former_pays_in_full(pbar, inflow, terms, external_assets, tol=1e-9):
    thresh = pbar - tol * np.maximum(1.0, pbar)
    resources = external_assets + inflow
    slack = _EPS8 * (terms + 4) * resources
    return np.count_nonzero(resources - slack >= thresh) == pbar.size


@pytest.mark.parametrize("seed", range(40))
def test_pays_in_full_against_its_former_form(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    dtype = np.float32 if seed % 8 == 7 else np.float64
    pbar = (rng.random(n) * 10.0 ** rng.integers(-3, 4)).astype(dtype)
    if seed % 3 == 0:
        pbar[rng.integers(0, n)] = rng.choice(SPECIAL)
    terms = rng.integers(0, 50, n).astype(np.int32 if seed % 5 == 0 else np.int64)
    thresh = pbar - 1e-9 * np.maximum(1.0, pbar)
    # resources on the boundary of the former test: at the threshold plus its slack,
    # give or take an ulp or two
    target = thresh / (1 - _EPS8 * (terms + 4))
    resources = np.nextafter(target, np.inf * rng.choice([-1, 1], n)).astype(np.float64)
    inflow = resources * rng.random(n)
    ext = resources - inflow
    tol = 1e-9 if seed % 4 else float(rng.choice([1e-12, 1e-6, 0.0]))
    for e in (ext, np.maximum(ext, 0.0), ext * 0.5):
        assert pays_in_full(pbar, inflow, terms, e, tol) == former_pays_in_full(
            pbar, inflow, terms, e, tol)
        for j in range(n):  # one institution at a time: each boundary decides alone
            keep = np.arange(n) == j
            assert pays_in_full(pbar[keep], inflow[keep], terms[keep], e[keep], tol) == (
                former_pays_in_full(pbar[keep], inflow[keep], terms[keep], e[keep], tol))


# ------------------------------------------------------------ new_loans' filter
def test_comparing_with_zero_as_a_0d_float64():
    x = np.concatenate([SPECIAL, -SPECIAL, np.random.default_rng(1).normal(size=50)])
    assert np.array_equal(x != ZERO, x != 0)
