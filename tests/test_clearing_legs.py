"""The trusted path of the clear stage (``clearing.clear_legs``): bit for bit
``eisenberg_noe`` on the same obligations, including at the edge of the default
test, and no matrix at all when nobody is short."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from finsim_mesa import clearing
from finsim_mesa.clearing import FAST_PATH_MIN_N, clear_legs, eisenberg_noe


@st.composite
def legs(draw):
    """Random legs (duplicates and zero amounts included) and resources placed
    anywhere from deep default to plenty — some exactly at, or a few ulps
    around, the edge of the default test."""
    n = draw(st.integers(2, 30))
    m = draw(st.integers(0, 4 * n))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    debtor = rng.integers(0, n, m)
    creditor = (debtor + rng.integers(1, n, m)) % n  # never a self-leg
    amount = rng.exponential(1.0, m) * (rng.random(m) < 0.9)
    ext = rng.exponential(1.0, n) * (rng.random(n) < 0.5)
    pbar = np.bincount(debtor, weights=amount, minlength=n) + ext
    inflow = np.bincount(creditor, weights=amount, minlength=n)
    cushion = draw(st.sampled_from(["edge", "near", "stress", "plenty"]))
    if cushion == "edge":  # resources exactly at p̄ − tol·max(1, p̄), give or take ulps
        target = pbar - 1e-9 * np.maximum(1.0, pbar)
        e = np.maximum(target - inflow, 0.0)
        ulps = rng.integers(-4, 5, n)
        e = np.array([np.nextafter(x, np.inf if u > 0 else -np.inf) if u else x
                      for x, u in zip(e, ulps, strict=True)])
        e = np.maximum(e, 0.0)
    elif cushion == "near":
        e = np.maximum(pbar - inflow + rng.normal(0, 1e-9, n), 0.0)
    elif cushion == "stress":
        e = rng.exponential(0.5, n)
    else:
        e = pbar + rng.exponential(1.0, n)
    forced = rng.random(n) < draw(st.sampled_from([0.0, 0.0, 0.2]))
    alpha = np.full(n, draw(st.sampled_from([1.0, 0.6])))
    beta = np.full(n, draw(st.sampled_from([1.0, 0.5])))
    return debtor, creditor, amount, e, ext, alpha, beta, forced


def same(a, b):
    assert a.method == b.method
    for name in ("payments", "obligations", "defaulted", "default_round", "recovery"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.rounds == b.rounds


@settings(max_examples=300, deadline=None)
@given(legs())
def test_trusted_path_is_eisenberg_noe_bit_for_bit(case):
    debtor, creditor, amount, e, ext, alpha, beta, forced = case
    n = e.size
    L = sp.coo_matrix((amount, (debtor, creditor)), shape=(n, n))  # as the clear stage did
    want = eisenberg_noe(L, e, ext, alpha=alpha, beta=beta, forced=forced)
    same(clear_legs(debtor, creditor, amount, e, ext, alpha, beta, forced), want)


def test_nobody_short_builds_no_matrix(monkeypatch):
    rng = np.random.default_rng(1)
    n, m = 200, 800
    debtor = rng.integers(0, n, m)
    creditor = (debtor + rng.integers(1, n, m)) % n
    amount = rng.exponential(1.0, m)
    pbar = np.bincount(debtor, weights=amount, minlength=n)
    e = pbar  # enough even if nobody paid anything
    want = eisenberg_noe(sp.coo_matrix((amount, (debtor, creditor)), shape=(n, n)), e)

    def forbidden(*args, **kwargs):
        raise AssertionError("a matrix was built")

    monkeypatch.setattr(clearing.sp, "csr_matrix", forbidden)
    monkeypatch.setattr(clearing.sp, "csc_matrix", forbidden)
    got = clear_legs(debtor, creditor, amount, e, np.zeros(n), np.ones(n), np.ones(n),
                     np.zeros(n, dtype=bool))
    same(got, want)
    with pytest.raises(AssertionError, match="matrix"):  # someone short: it must build one
        e2 = e.copy()
        e2[0] = 0.0
        clear_legs(debtor, creditor, amount, e2, np.full(n, 1e3), np.ones(n), np.ones(n),
                   np.zeros(n, dtype=bool))


def test_large_systems_take_the_fast_path_like_eisenberg_noe():
    rng = np.random.default_rng(2)
    n = FAST_PATH_MIN_N
    debtor = np.repeat(np.arange(n), 3)
    creditor = (debtor + rng.integers(1, n, debtor.size)) % n
    amount = rng.uniform(5, 15, debtor.size)
    pbar = np.bincount(debtor, weights=amount, minlength=n)
    e = rng.uniform(0, 1, n) * pbar * 0.3
    ones, none = np.ones(n), np.zeros(n, dtype=bool)
    got = clear_legs(debtor, creditor, amount, e, np.zeros(n), ones, ones, none)
    want = eisenberg_noe(sp.csr_matrix((amount, (debtor, creditor)), shape=(n, n)), e)
    assert got.method == want.method == "picard"
    np.testing.assert_array_equal(got.defaulted, want.defaulted)
    np.testing.assert_array_equal(got.default_round, want.default_round)
    np.testing.assert_allclose(got.payments, want.payments, rtol=1e-12, atol=1e-10)
