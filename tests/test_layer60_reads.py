"""helper-60 (issue 15): what the layer (2 exchanges + 1 CCP) made the loan book,
the ledger, the clear stage and the infrastructure observations do more than
they must.

* ``LoanBook._groups`` of a block whose loans all have one CCP (with one CCP
  and ``ccp_clearing_share = 1``, every new loan) groups by pair alone: checked
  against ``np.unique`` of the (lender, borrower, CCP) key, on the mark path
  and the sort path, with one CCP id, several, and none;
* ``Ledger.infrastructure_assets`` with one CCP reads the two columns (their
  sum + 0.0) instead of two row sums: byte for byte the former form, signed
  zeros and NaN included;
* ``resolution._ccps_pay`` (the CCPs' test of ``settle_in_full`` in Python
  floats) decides as ``clearing.pays_in_full`` on the same inputs, at the
  boundary between passing and failing, NaN, infinities and signed zeros
  included;
* ``infrastructure_observations`` gathers the exchanges' columns straight into
  the output (the rows of its transpose): the same bytes as the former gather
  for a column-major output, a row-major one and a new one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.clearing import pays_in_full
from finsim_mesa.ledger import Ledger
from finsim_mesa.loans import LoanBook
from finsim_mesa.observation import (
    _EXCHANGE_HI,
    _EXCHANGE_SCALE,
    INFRA_OBS_DIM,
    infrastructure_observations,
)
from finsim_mesa.resolution import _ccps_pay

# ------------------------------------------------------------ _groups


def _unique_groups(book: LoanBook, start: int):
    """np.unique's (first row, inverse) of the (lender, borrower, CCP) key."""
    t = slice(start, None)
    key = np.stack([book.lender[t], book.borrower[t], book.ccp[t]], axis=1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return first, inverse.ravel()


def _book(seed: int, ccps: str, linked: bool) -> tuple[LoanBook, int]:
    rng = np.random.default_rng(seed)
    lb = LoanBook()
    m0, k = 20, 300
    lb.append(rng.integers(0, 9, m0), rng.integers(0, 9, m0), rng.random(m0), np.full(m0, 0.01),
              3)
    ccp = {"none": np.full(k, -1), "one0": np.zeros(k, dtype=np.int64),
           "one2": np.full(k, 2), "mixed": rng.integers(-1, 3, k)}[ccps]
    lb.append(rng.integers(0, 9, k), rng.integers(0, 9, k), rng.random(k), np.full(k, 0.01), 7,
              ccp)
    if linked:
        lb.link_ids()  # every row's link known: the mark path; else the sort path
    return lb, m0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ccps", ["none", "one0", "one2", "mixed"])
@pytest.mark.parametrize("linked", [True, False])
def test_groups_are_numpys_unique_of_the_pair_and_ccp_key(seed, ccps, linked):
    book, start = _book(seed, ccps, linked)
    got = book._groups(slice(start, None))
    first, inverse = _unique_groups(book, start)
    assert got is not None  # 300 rows over 81 pairs: groups of several rows
    np.testing.assert_array_equal(got[0], first)
    np.testing.assert_array_equal(got[1], inverse)


def test_groups_of_distinct_rows_are_none():
    lb = LoanBook()
    lb.append(np.arange(5), np.arange(1, 6), np.ones(5), np.full(5, 0.01), 3, np.full(5, 1))
    lb.link_ids()
    assert lb._groups(slice(0, None)) is None


# ------------------------------------------------------------ infrastructure_assets


def former_infrastructure_assets(L: Ledger) -> np.ndarray:
    return (L.margin.sum(axis=1) + L.fund.sum(axis=1) if L.margin.shape[1]
            else np.zeros(L.n))


@pytest.mark.parametrize("c", [0, 1, 2, 3])
def test_infrastructure_assets_is_the_former_form_byte_for_byte(c):
    rng = np.random.default_rng(c)
    n = 40
    L = Ledger(np.ones(n), np.ones((n, 1)), np.zeros(n), np.ones(1))
    L.setup_infrastructure(c, 1)
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e300, -1e-300, 5e-324])
    for acct in (L.margin, L.fund):  # every pair of specials, and random values
        acct[:] = rng.choice(special, size=acct.shape) if c else acct
        acct[: n // 2] = rng.normal(size=acct[: n // 2].shape) * 10.0 ** rng.integers(-5, 5)
    if c:  # both -0.0 in one row: +0.0 from the row sums
        L.margin[0], L.fund[0] = -0.0, -0.0
        L.margin[1], L.fund[1] = -0.0, 0.0
    with np.errstate(invalid="ignore"):  # (inf + -inf)
        got, want = L.infrastructure_assets(), former_infrastructure_assets(L)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    if c == 1:
        assert not np.signbit(got[0]) and not np.signbit(got[1])


def test_one_ccp_columns_without_the_zero_would_differ():
    """The reason for the + 0.0: two -0.0 entries add up to -0.0, their row
    sums to +0.0 (the broken form, the columns' plain sum, is caught above)."""
    m = np.array([[-0.0]])
    assert np.signbit(m[:, 0] + m[:, 0])[0] and not np.signbit(m.sum(axis=1) + m.sum(axis=1))[0]


# ------------------------------------------------------------ _ccps_pay


def _reference(owed, terms, funds) -> bool:
    C = owed.size
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.maximum(funds + np.zeros(C), 0.0)
        return bool(pays_in_full(owed + np.zeros(C), owed, terms, e))


def _boundary_fund(o: float, k: int) -> float:
    """The smallest fund (to the float) with which a CCP owing ``o`` on ``k``
    terms passes (bisection on pays_in_full itself), or nan if none does."""
    lo, hi = 0.0, 1.0
    while not _reference(np.array([o]), np.array([k]), np.array([hi])):
        hi *= 2.0
        if hi > 1e30:
            return math.nan
    if _reference(np.array([o]), np.array([k]), np.array([lo])):
        return lo
    while math.nextafter(lo, hi) < hi:
        mid = lo + (hi - lo) / 2.0
        if mid in (lo, hi):
            break
        lo, hi = (lo, mid) if _reference(np.array([o]), np.array([k]), np.array([mid])) \
            else (mid, hi)
    return hi


def test_ccps_pay_decides_as_pays_in_full_at_the_boundary():
    rng = np.random.default_rng(60)
    flips = 0
    for _ in range(60):  # so many terms that the round-off bound passes the tolerance
        o = float(rng.uniform(0.5, 2.0) * 10.0 ** rng.integers(-3, 6))
        k = int(rng.integers(600_000, 3_000_000))
        f = _boundary_fund(o, k)
        if math.isnan(f) or f == 0.0:
            continue
        for x in (math.nextafter(f, 0.0), f, math.nextafter(f, math.inf)):
            args = np.array([o]), np.array([k]), np.array([x])
            assert _ccps_pay(*args) == _reference(*args)
        flips += 1
    assert flips > 20  # the boundary was found (the test fails there on a broken form)


def test_ccps_pay_decides_as_pays_in_full_on_random_and_special_inputs():
    rng = np.random.default_rng(7)
    special = [0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e-300, 1e300, -1e300]
    cases = 0
    for _ in range(3000):
        C = int(rng.integers(1, 4))
        owed = np.where(rng.random(C) < 0.3, rng.choice(special, C),
                        rng.normal(size=C) * 10.0 ** rng.integers(-8, 12, C))
        funds = np.where(rng.random(C) < 0.3, rng.choice(special, C),
                         rng.normal(size=C) * 10.0 ** rng.integers(-8, 12, C))
        terms = rng.integers(0, 10 ** int(rng.integers(1, 8)), C)
        assert _ccps_pay(owed, terms, funds) == _reference(owed, terms, funds), (owed, terms, funds)
        cases += not _reference(owed, terms, funds)
    assert cases > 100  # both outcomes were met


def test_ccps_pay_broken_form_is_caught():
    """A form with another round-off bound (k + 3 terms) decides otherwise at the
    boundary the test above checks."""
    o, k = 1.0, 1_000_000
    f = _boundary_fund(o, k)
    x = math.nextafter(f, 0.0)  # fails the reference
    assert not _reference(np.array([o]), np.array([k]), np.array([x]))
    broken = (x + o) - 8.0 * np.finfo(float).eps * float(k + 3) * (x + o) >= o - 1e-9 * max(1.0, o)
    assert broken  # the k + 3 form passes where the reference fails


# ------------------------------------------------------------ infrastructure_observations


def former_exchange_columns(exchanges, router, cfg) -> np.ndarray:
    base = max(cfg.exchange_base_fee, 1e-12)
    slope, wait = max(cfg.exchange_fee_slope, 1e-12), max(cfg.max_order_wait, 1)
    raw = np.array([(e.utilisation, (e.fee_rate / base - 1) / slope,
                     e.backlog / e.queue.max_throughput, e.mean_delay / wait)
                    for e in exchanges], dtype=float).reshape(-1, 4)
    table = np.minimum(np.maximum(raw, 0.0), _EXCHANGE_HI) / _EXCHANGE_SCALE
    return np.take(table, router.bank_exchange, axis=0, mode="clip")


@pytest.mark.parametrize("kw", [dict(n_exchanges=2, n_ccps=1),
                                dict(n_exchanges=3, n_ccps=2, exchange_capacity=0.0005)])
def test_exchange_columns_are_the_former_gather_in_any_output_order(kw):
    m = FinancialModel(n_banks=60, scenario="systemic", brain="greedy", rng=3, steps=30, **kw)
    for _ in range(12):
        m.step()
        L = m.ledger
        ta = m.sheets.total_assets
        args = (L, np.where(ta > 0, ta, 1.0), m.exchanges, m.ccps, m.router, m.margin_rate,
                m.config)
        want = former_exchange_columns(m.exchanges, m.router, m.config)
        big = np.full((L.n, 16 + INFRA_OBS_DIM), np.nan, order="F")  # as observe() passes it
        outs = [None, big[:, 16:], np.full((L.n, INFRA_OBS_DIM), np.nan)]  # + a row-major one
        got = [infrastructure_observations(*args, out=o, sheets=m.sheets) for o in outs]
        for g in got:
            assert g[:, :4].tobytes() == np.ascontiguousarray(want).tobytes()
            assert g.tobytes() == got[0].tobytes() and not np.isnan(g).any()
        assert np.isnan(big[:, :16]).all()  # nothing written outside its columns


# ------------------------------------------------------------ _surely_pays


def _one_ccp_reference(owed: np.ndarray, funds: float) -> bool:
    """settle_in_full's former test of one CCP owed on every leg: the exact sum."""
    ccp_owed = np.bincount(np.zeros(owed.size, dtype=np.int64), weights=owed, minlength=1)
    terms = np.bincount(np.zeros(owed.size, dtype=np.int64), minlength=1)
    return _reference(ccp_owed, terms, np.array([funds]))


def test_surely_pays_only_where_the_exact_test_passes():
    from finsim_mesa.resolution import _surely_pays
    rng = np.random.default_rng(15)
    sure = 0
    for i in range(400):
        k = int(rng.choice([1, 2, 7, 50, 1750, 20_000, 100_000]))
        scale = 10.0 ** rng.integers(-300, 290)
        owed = rng.random(k) * scale
        if i % 5 == 0:
            owed[rng.integers(0, k)] = 0.0 if i % 10 else -0.0
        funds = float(rng.choice([0.0, -1.0, 1e-300, 1e299, -1e299])
                      * (1 if i % 3 else rng.random()))
        if _surely_pays(owed, funds):
            sure += 1
            assert _one_ccp_reference(owed, funds), (k, scale, funds)
    assert sure > 250  # (the large scales and funds are declined, as they must be)


@pytest.mark.parametrize("case", ["negative", "nan", "inf", "terms", "funds_nan", "funds_big",
                                  "sum_big"])
def test_surely_pays_declines_where_the_bounds_do_not_hold(case):
    from finsim_mesa.resolution import _surely_pays
    owed, funds = np.ones(100), 10.0
    if case == "negative":
        owed[3] = -1e-300
    elif case == "nan":
        owed[5] = np.nan
    elif case == "inf":
        owed[0] = np.inf
    elif case == "terms":  # so many legs that the round-off bound passes the tolerance:
        owed = np.ones(600_000)  # the exact test fails with no fund
        funds = 0.0
        assert not _one_ccp_reference(owed, funds)
    elif case == "funds_nan":
        funds = float("nan")
    elif case == "funds_big":
        funds = 1e300
    else:
        owed = np.full(100, 1e299)  # (a sum near the overflow)
    assert not _surely_pays(owed, funds)


def test_settle_in_full_without_the_bound_is_the_same_along_a_run(monkeypatch):
    """The clear stage with _surely_pays declining every time (the exact sum) and
    as shipped: the same ledger bytes step by step."""
    from finsim_mesa import resolution
    calls = {"sure": 0}
    real = resolution._surely_pays

    def counted(*a):
        calls["sure"] += 1
        return real(*a)

    a = FinancialModel(n_banks=120, scenario="systemic", brain="rule_based", rng=9,
                       n_exchanges=2, n_ccps=1)
    b = FinancialModel(n_banks=120, scenario="systemic", brain="rule_based", rng=9,
                       n_exchanges=2, n_ccps=1)
    monkeypatch.setattr(resolution, "_surely_pays", counted)
    for _ in range(20):
        a.step()
        with monkeypatch.context() as mp:
            mp.setattr(resolution, "_surely_pays", lambda *x: False)
            b.step()
        for k in a.ledger._ARRAYS:
            assert getattr(a.ledger, k).tobytes() == getattr(b.ledger, k).tobytes(), k
        assert a.ledger.loans.principal.tobytes() == b.ledger.loans.principal.tobytes()
    assert calls["sure"] > 5
