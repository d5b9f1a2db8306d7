"""The fast path of ``eisenberg_noe`` (certified monotone Picard iteration)
against the linear program, the fictitious-default algorithm (``method="rounds"``)
and a plain re-implementation of the waves' definition; hard networks (no debt
outside the system, over 75% defaults) and the fall-back on nearly singular
closed default loops."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from support import random_network
from test_clearing import BAD_INPUTS, lp_clearing, systems

from finsim_mesa.clearing import FAST_PATH_MIN_N, eisenberg_noe

TOL = 1e-9  # eisenberg_noe's default-test tolerance
RESIDUAL = 1e-12  # its documented residual, relative to the largest obligation


def check_clearing_vector(L, e, ext, r, alpha=1.0, beta=1.0, forced=None):
    """The documented contract, checked from the definition with dense algebra:
    defaulters pay α e + β Πᵀp to the residual tolerance and are short, everyone
    else pays exactly p̄ and is not short."""
    L = L.toarray() if sp.issparse(L) else L
    n = len(e)
    forced = np.zeros(n, bool) if forced is None else forced
    pbar = L.sum(1) + ext
    Pi = np.divide(L, pbar[:, None], out=np.zeros_like(L), where=pbar[:, None] > 0)
    inflow = Pi.T @ r.payments
    real = alpha * e + beta * inflow
    res = np.where(forced, real, e + inflow)
    scale = TOL * np.maximum(1.0, pbar)
    D = r.defaulted
    tol = RESIDUAL * max(1.0, pbar.max()) * 10  # dense sums round differently
    assert np.all(np.abs(r.payments[D] - real[D]) <= tol)
    assert np.all(res[D] < pbar[D] - scale[D] + tol)
    np.testing.assert_allclose(r.obligations, pbar, rtol=1e-14)
    assert np.array_equal(r.payments[~D], r.obligations[~D])  # exactly in full
    assert np.all(res[~D] >= pbar[~D] - scale[~D] - tol)


def naive_waves(L, e, ext, alpha=1.0, beta=1.0, forced=None, iterations=5000):
    """The waves by their definition: wave_i = the first k with bank i short at
    Φ^{k−1}(p̄), Φ the clearing map, iterated with dense matrices."""
    n = len(e)
    forced = np.zeros(n, bool) if forced is None else forced
    pbar = L.sum(1) + ext
    Pi = np.divide(L, pbar[:, None], out=np.zeros_like(L), where=pbar[:, None] > 0)
    p = pbar.copy()
    wave = np.zeros(n, dtype=int)
    for k in range(1, iterations + 1):
        inflow = Pi.T @ p
        real = alpha * e + beta * inflow
        short = np.where(forced, real, e + inflow) < pbar - TOL * np.maximum(1.0, pbar)
        wave[short & (wave == 0)] = k
        new = np.where(short, np.minimum(pbar, real), pbar)
        if np.array_equal(new, p):
            break
        p = new
    return wave


def hard_system(n, stress, seed=0, creditors=4):
    """Every bank owes ``creditors`` random others ~10 each, nothing outside the
    system; external assets a small random share of obligations."""
    rng = np.random.default_rng(seed)
    i = np.repeat(np.arange(n), creditors)
    j = rng.integers(0, n - 1, creditors * n)
    j = np.where(j >= i, j + 1, j)
    L = sp.csr_matrix((rng.uniform(5, 15, creditors * n), (i, j)), shape=(n, n))
    pbar = np.asarray(L.sum(axis=1)).ravel()
    return L, rng.uniform(0, 1, n) * pbar * stress, np.zeros(n)


def sparse_lp(L, e, ext):
    """Greatest EN clearing vector as a sparse LP (Eisenberg & Noe 2001, Lemma 4)."""
    n = len(e)
    pbar = np.asarray(L.sum(axis=1)).ravel() + ext
    PiT = sp.csr_matrix(sp.diags(1.0 / pbar) @ L).T
    res = linprog(-np.ones(n), A_ub=sp.identity(n) - PiT, b_ub=e,
                  bounds=np.column_stack([np.zeros(n), pbar]), method="highs")
    assert res.status == 0
    return res.x


@settings(max_examples=150, deadline=None)
@given(systems())
def test_fast_path_matches_linear_program(system):
    L, e, ext = system
    r = eisenberg_noe(L, e, ext, method="picard")
    np.testing.assert_allclose(r.payments, lp_clearing(L, e, ext), atol=1e-6)
    # the fast path certifies its answer, or gives up (e.g. everybody owes a
    # closed group with nothing of its own: p = 0, reached only in the limit)
    if r.method == "picard":
        check_clearing_vector(L, e, ext, r)


@settings(max_examples=150, deadline=None)
@given(systems(), st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.integers(0, 2**31 - 1))
def test_fast_path_equals_fictitious_default_with_costs_and_forced(system, alpha, beta, seed):
    L, e, ext = system
    forced = np.random.default_rng(seed).random(len(e)) < 0.3
    fast = eisenberg_noe(L, e, ext, alpha=alpha, beta=beta, forced=forced, method="picard")
    rounds = eisenberg_noe(L, e, ext, alpha=alpha, beta=beta, forced=forced, method="rounds")
    assert rounds.method == "rounds"
    if fast.method == "picard":  # (a slow case may fall back: then it *is* rounds)
        np.testing.assert_array_equal(fast.defaulted, rounds.defaulted)
        check_clearing_vector(L, e, ext, fast, alpha, beta, forced)
    np.testing.assert_allclose(fast.payments, rounds.payments, atol=1e-7)


@settings(max_examples=100, deadline=None)
@given(systems(), st.floats(0.3, 1.0), st.floats(0.3, 1.0))
def test_waves_follow_their_definition_and_bound_the_rounds(system, alpha, beta):
    L, e, ext = system
    fast = eisenberg_noe(L, e, ext, alpha=alpha, beta=beta, method="picard")
    if fast.method != "picard":
        return
    np.testing.assert_array_equal(fast.default_round, naive_waves(L, e, ext, alpha, beta))
    rounds = eisenberg_noe(L, e, ext, alpha=alpha, beta=beta, method="rounds")
    D = fast.defaulted
    assert np.all(fast.default_round[D] >= rounds.default_round[D])
    # wave 1 and round 1 are the same banks: short even when everybody pays in full
    np.testing.assert_array_equal(fast.default_round == 1, rounds.default_round == 1)
    assert fast.rounds == fast.default_round.max(initial=0) >= rounds.rounds


def test_waves_equal_rounds_along_a_chain():
    # as test_clearing's chain: bank i fails one step after bank i - 1
    k = 6
    L = np.zeros((k + 1, k + 1))
    L[np.arange(k), np.arange(1, k + 1)] = 10.0
    e = np.full(k + 1, 5.0)
    e[0] = 0.0
    r = eisenberg_noe(L, e, np.full(k + 1, 5.0), method="picard")
    assert r.method == "picard" and r.rounds == k
    assert r.default_round.tolist() == [*range(1, k + 1), 0]


def test_waves_count_sequential_steps_where_rounds_solve_at_once():
    # Banks 0 and 2 owe each other 10; 0 also owes bank 1 10, 2 owes 10 outside;
    # both have 9 of their own, so both are short (19 < 20): round 1 = wave 1.
    # Rounds solve their spiral at once: p0 = 9 + p2/2, p2 = 9 + p0/2 -> 18, 18.
    # Bank 1 (owes 10 outside, has 0.85) then receives 9: 9.85 < 10, round 2.
    # Picard unwinds the spiral step by step (p0 = 20, 19, 18.5, 18.25, ...): bank 1
    # receives 10, 9.5, 9.25, 9.125 and is first short at p_3: wave 4.
    L = np.array([[0.0, 10.0, 10.0], [0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    e = np.array([9.0, 0.85, 9.0])
    ext = np.array([0.0, 10.0, 10.0])
    fast = eisenberg_noe(L, e, ext, method="picard")
    rounds = eisenberg_noe(L, e, ext, method="rounds")
    assert rounds.default_round.tolist() == [1, 2, 1] and rounds.rounds == 2
    assert fast.default_round.tolist() == [1, 4, 1] and fast.rounds == 4
    np.testing.assert_allclose(fast.payments, [18.0, 9.85, 18.0], atol=1e-10)
    np.testing.assert_allclose(rounds.payments, [18.0, 9.85, 18.0], atol=1e-12)
    np.testing.assert_array_equal(fast.default_round, naive_waves(L, e, ext))


@pytest.mark.parametrize(("n", "stress"), [(2000, 0.13), (2000, 0.06), (1500, 0.3)])
def test_hard_networks_without_external_debt(n, stress):
    """No debt owed outside the system (obligations circulate), 4 creditors per
    bank, > 75% defaults for the first two: the fast path certifies without
    falling back and equals the LP and the fictitious-default algorithm."""
    L, e, ext = hard_system(n, stress, seed=n)
    fast = eisenberg_noe(L, e, ext, method="picard")
    rounds = eisenberg_noe(L, e, ext, method="rounds")
    assert fast.method == "picard"
    if stress < 0.2:
        assert fast.n_defaults > 0.75 * n
    np.testing.assert_array_equal(fast.defaulted, rounds.defaulted)
    pmax = fast.obligations.max()
    np.testing.assert_allclose(fast.payments, rounds.payments, atol=100 * RESIDUAL * pmax)
    np.testing.assert_allclose(fast.payments, sparse_lp(L, e, ext), atol=1e-6 * pmax)
    check_clearing_vector(L, e, ext, fast)
    np.testing.assert_allclose(fast.recovery, fast.payments / fast.obligations)


def test_auto_takes_the_fast_path_only_for_large_systems():
    L, e, ext = hard_system(50, 0.3)
    assert eisenberg_noe(L, e, ext).method == "rounds"
    L, e, ext = hard_system(FAST_PATH_MIN_N, 0.3)
    assert eisenberg_noe(L, e, ext).method == "picard"


def nearly_closed_loop(delta, c=1e-6):
    """Banks 0 and 1 owe each other 10 and owe ``delta`` outside; bank 0 has
    ``c``: both default, p0 = c / (1 − a²), p1 = a p0 with a = 10 / (10 + δ).
    Picard converges at rate a² per two steps: hopeless for tiny δ."""
    L = np.array([[0.0, 10.0], [10.0, 0.0]])
    a = 10.0 / (10.0 + delta)
    p0 = c / (1 - a * a)
    return L, np.array([c, 0.0]), np.array([delta, delta]), np.array([p0, a * p0])


def test_nearly_singular_closed_loop_falls_back_to_rounds():
    L, e, ext, exact = nearly_closed_loop(1e-6)
    r = eisenberg_noe(L, e, ext, method="picard")
    assert r.method == "rounds"  # the fast path gave up: the direct solve answered
    assert r.defaulted.all()
    np.testing.assert_allclose(r.payments, exact, rtol=1e-6)
    # a leakier loop converges fast enough: no fall-back, same answer
    L, e, ext, exact = nearly_closed_loop(1.0, c=1.0)
    r = eisenberg_noe(L, e, ext, method="picard")
    assert r.method == "picard"
    np.testing.assert_allclose(r.payments, exact, rtol=1e-9)


def test_a_large_system_with_a_nearly_closed_loop_falls_back_and_stays_exact():
    """The loop embedded in a large healthy system (auto: the fast path first)."""
    n = FAST_PATH_MIN_N
    L, e, ext = hard_system(n, 3.0, seed=7)  # healthy: e ≥ obligations on average
    L = sp.lil_matrix(L)
    _, le, lext, exact = nearly_closed_loop(1e-6)
    L[0, :] = 0.0
    L[1, :] = 0.0
    L[:, 0] = 0.0
    L[:, 1] = 0.0
    L[0, 1] = L[1, 0] = 10.0
    e[:2], ext[:2] = le, lext
    r = eisenberg_noe(sp.csr_matrix(L), e, ext)
    assert r.method == "rounds"
    np.testing.assert_allclose(r.payments[:2], exact, rtol=1e-6)
    rest = eisenberg_noe(sp.csr_matrix(L)[2:, 2:], e[2:], ext[2:], method="picard")
    np.testing.assert_allclose(r.payments[2:], rest.payments, atol=1e-9)


def test_fast_path_leaves_the_input_alone_and_sums_duplicates():
    rng = np.random.default_rng(3)
    n, m = 300, 1500
    i, j, v = random_network(rng, n, m)
    v[::7] = 0.0  # explicit zeros, also in rows that owe nothing else
    coo = sp.coo_matrix((v, (i, j)), shape=(n, n))  # with duplicates
    csr = sp.csr_matrix(coo)
    data = csr.data.copy()
    e = rng.exponential(0.5, n)
    fast = eisenberg_noe(csr, e, method="picard")
    np.testing.assert_array_equal(csr.data, data)
    assert np.isfinite(fast.payments).all()
    np.testing.assert_allclose(fast.payments, eisenberg_noe(coo, e, method="picard").payments,
                               atol=1e-12)
    np.testing.assert_allclose(fast.payments, eisenberg_noe(coo.toarray(), e,
                                                            method="rounds").payments,
                               atol=1e-9)


@pytest.mark.parametrize(("kwargs", "match"), [
    *BAD_INPUTS,
    ({"liabilities": sp.csr_matrix(np.array([[1.0, 1.0], [0, 0]]))}, "diagonal"),
    ({"forced": np.ones(3, bool)}, "forced"),
    ({"method": "newton"}, "method"),
])
def test_bad_input_is_a_clear_error_on_every_path(kwargs, match):
    for method in ("picard", "rounds"):
        args = {"liabilities": np.array([[0, 1.0], [1.0, 0]]), "external_assets": np.ones(2),
                "method": method}
        args.update(kwargs)
        with pytest.raises(ValueError, match=match):
            eisenberg_noe(args.pop("liabilities"), args.pop("external_assets"), **args)
