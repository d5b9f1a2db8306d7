"""Eisenberg–Noe / Rogers–Veraart clearing against closed forms and two
independent methods (linear programming, monotone fixed-point iteration)."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from support import random_network

from finsim_mesa.clearing import eisenberg_noe, fixed_point_clearing


def lp_clearing(L, e, ext):
    """Greatest EN clearing vector as the LP max 1'p s.t. p <= pbar, p - Pi'p <= e
    (Eisenberg & Noe 2001, Lemma 4): an independent method."""
    n = len(e)
    pbar = L.sum(1) + ext
    Pi = np.divide(L, pbar[:, None], out=np.zeros_like(L), where=pbar[:, None] > 0)
    res = linprog(-np.ones(n), A_ub=np.eye(n) - Pi.T, b_ub=e,
                  bounds=list(zip(np.zeros(n), pbar, strict=True)), method="highs")
    assert res.status == 0
    return res.x


def test_no_default_pays_in_full():
    L = np.array([[0, 5.0], [3.0, 0]])
    r = eisenberg_noe(L, np.array([10.0, 10.0]))
    np.testing.assert_allclose(r.payments, [5, 3])
    assert r.rounds == 0 and not r.defaulted.any()
    np.testing.assert_allclose(r.recovery, [1, 1])


def test_single_default_closed_form():
    # A owes B 10 and has 4 of its own: A pays 4, recovery 40%; B is fine.
    L = np.array([[0, 10.0], [0, 0]])
    r = eisenberg_noe(L, np.array([4.0, 1.0]))
    np.testing.assert_allclose(r.payments, [4, 0])
    assert r.defaulted.tolist() == [True, False]
    assert r.recovery[0] == pytest.approx(0.4)
    assert r.rounds == 1


def test_course_exercise_inputs_solved_by_hand():
    # Inputs of "Big Data Finance, exercise 2" (P. Barucca): L, external assets
    # [20, 20, 10] shocked by 10%, external liabilities [17, 18, 8].
    # By hand: pbar = [21, 21, 10]. Bank 0 has 18 + 0.2*10 = 20 < 21 -> default,
    # p0 = 18 + 0.2 * p2 = 20 with p2 = 10 (bank 2: 9 + 3/21*21 = 12 >= 10);
    # bank 1: 18 + 4/21 * 20 = 21.81 >= 21 pays in full. So p = [20, 21, 10].
    L = np.array([[0, 4, 0], [0, 0, 3], [2, 0, 0]], dtype=float)
    e = 0.9 * np.array([20.0, 20.0, 10.0])
    r = eisenberg_noe(L, e, np.array([17.0, 18.0, 8.0]))
    np.testing.assert_allclose(r.payments, [20, 21, 10], atol=1e-12)
    assert r.defaulted.tolist() == [True, False, False]
    assert r.rounds == 1


def test_cycle_closed_form():
    # Ring 0 -> 1 -> 2 -> 0, each owes 10, bank 0 has e=0, others e=0: the only
    # fixed points satisfy p0 = p1 = p2 = p; greatest is p = 0 when nobody has cash
    # (every bank can pay only what it receives). With e = (0, 0, 3): bank 2 pays
    # 3 + p1, bank 0 pays p2, bank 1 pays p0 -> p = min(10, 3 + p) = 10 (solvent
    # thanks to the cycle: greatest fixed point pays all).
    L = np.array([[0, 10, 0], [0, 0, 10], [10, 0, 0]], dtype=float)
    r = eisenberg_noe(L, np.array([0.0, 0.0, 3.0]))
    np.testing.assert_allclose(r.payments, [10, 10, 10])
    # with an external creditor taking half of bank 2's payments, the cycle leaks:
    # p2 = min(20, 3 + p1) with half of it to bank 0: p0 = p2/2, p1 = p0
    # -> p2 = 3 + p2/2 -> p2 = 6, p0 = p1 = 3.
    r = eisenberg_noe(L, np.array([0.0, 0.0, 3.0]), np.array([0.0, 0.0, 10.0]))
    np.testing.assert_allclose(r.payments, [3, 3, 6], atol=1e-12)
    assert r.defaulted.all()


def test_chain_contagion_depth_counts_rounds():
    # A chain 0 -> 1 -> ... -> k: bank i owes 10 to bank i+1 and 5 outside, has
    # e = 5, so it is solvent exactly when paid in full (5 + 10 = 15). Bank 0 has
    # nothing; each next bank receives less than 10 (x' = (5 + x) * 10/15 < 10)
    # and fails one round later. The last bank owes only 5 and stays solvent.
    k = 6
    L = np.zeros((k + 1, k + 1))
    for i in range(k):
        L[i, i + 1] = 10.0
    ext = np.full(k + 1, 5.0)
    e = np.full(k + 1, 5.0)
    e[0] = 0.0
    r = eisenberg_noe(L, e, ext)
    assert r.rounds == k
    assert r.default_round.tolist() == [*range(1, k + 1), 0]


def test_rogers_veraart_closed_form():
    # A owes B 10, has e=6: defaults and realises alpha*6 = 3 (alpha = 0.5).
    L = np.array([[0, 10.0], [0, 0]])
    r = eisenberg_noe(L, np.array([6.0, 0.0]), alpha=0.5, beta=1.0)
    np.testing.assert_allclose(r.payments, [3, 0])
    # beta cuts interbank receipts of a defaulter: B owes C 10 with e=2, receives
    # A's 3 -> pays 2 + 0.5 * 3 = 3.5 with alpha=1, beta=0.5.
    L = np.array([[0, 10.0, 0], [0, 0, 10.0], [0, 0, 0]])
    r = eisenberg_noe(L, np.array([3.0, 2.0, 0.0]), alpha=1.0, beta=0.5)
    np.testing.assert_allclose(r.payments, [3, 3.5, 0])


def test_rogers_veraart_discontinuity_greatest_vector():
    # Default costs make the map discontinuous: a solvent bank pays in full even
    # though the defaulting value would be far lower.
    L = np.array([[0, 10.0], [10.0, 0]])
    r = eisenberg_noe(L, np.array([0.0, 0.0]), alpha=0.5, beta=0.5)
    np.testing.assert_allclose(r.payments, [10, 10])  # both pay: greatest vector


@st.composite
def systems(draw):
    n = draw(st.integers(2, 25))
    seed = draw(st.integers(0, 2**31 - 1))
    density = draw(st.floats(0.05, 0.9))
    stress = draw(st.floats(0.0, 2.0))
    rng = np.random.default_rng(seed)
    L = rng.exponential(1.0, (n, n)) * (rng.random((n, n)) < density)
    np.fill_diagonal(L, 0.0)
    e = rng.exponential(stress, n)
    ext = rng.exponential(1.0, n) * (rng.random(n) < 0.7)
    return L, e, ext


@settings(max_examples=150, deadline=None)
@given(systems())
def test_matches_linear_program(system):
    L, e, ext = system
    r = eisenberg_noe(L, e, ext)
    np.testing.assert_allclose(r.payments, lp_clearing(L, e, ext), atol=1e-6)
    # definition of a clearing vector, to round-off
    pbar = L.sum(1) + ext
    Pi = np.divide(L, pbar[:, None], out=np.zeros_like(L), where=pbar[:, None] > 0)
    np.testing.assert_allclose(r.payments, np.minimum(pbar, e + Pi.T @ r.payments),
                               atol=1e-9)
    assert (r.payments >= 0).all() and (r.payments <= pbar + 1e-12).all()


@settings(max_examples=100, deadline=None)
@given(systems(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_matches_fixed_point_with_default_costs(system, alpha, beta):
    L, e, ext = system
    r = eisenberg_noe(L, e, ext, alpha=alpha, beta=beta)
    p = fixed_point_clearing(L, e, ext, alpha=alpha, beta=beta)
    np.testing.assert_allclose(r.payments, p, atol=1e-7)


@settings(max_examples=100, deadline=None)
@given(systems(), st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.integers(0, 2**31 - 1))
def test_forced_defaults_bear_default_costs(system, alpha, beta, seed):
    """Institutions put in default whatever their resources (resolution) realise
    only α e + β Πᵀp: the fictitious-default algorithm equals the independent
    fixed-point iteration with the same rule, and a forced institution never
    pays more than it would without being forced."""
    L, e, ext = system
    forced = np.random.default_rng(seed).random(len(e)) < 0.3
    r = eisenberg_noe(L, e, ext, alpha=alpha, beta=beta, forced=forced)
    p = fixed_point_clearing(L, e, ext, alpha=alpha, beta=beta, forced=forced)
    np.testing.assert_allclose(r.payments, p, atol=1e-7)
    free = eisenberg_noe(L, e, ext, alpha=alpha, beta=beta)
    assert np.all(r.payments <= free.payments + 1e-9)
    pbar = L.sum(1) + ext
    Pi = np.divide(L, pbar[:, None], out=np.zeros_like(L), where=pbar[:, None] > 0)
    realisable = alpha * e + beta * (Pi.T @ r.payments)
    np.testing.assert_allclose(r.payments[forced], np.minimum(pbar, realisable)[forced],
                               atol=1e-7)


def test_a_forced_default_pays_its_creditors_less_when_defaults_cost():
    """A solvent bank put in resolution pays in full without default costs, and
    alpha e + beta inflow with them (a 2-bank case by hand)."""
    L = np.array([[0.0, 10.0], [0.0, 0.0]])  # bank 0 owes bank 1 10
    e = np.array([12.0, 1.0])
    plain = eisenberg_noe(L, e, forced=np.array([True, False]))
    assert plain.payments[0] == 10.0
    costly = eisenberg_noe(L, e, alpha=0.5, beta=1.0, forced=np.array([True, False]))
    assert costly.payments[0] == pytest.approx(6.0) and costly.defaulted[0]


def test_greatest_among_fixed_points():
    # Any other clearing vector is below the returned one: check against the
    # LP's optimum and the zero-payment fixed point of a closed cycle.
    L = np.array([[0, 5.0], [5.0, 0]])
    r = eisenberg_noe(L, np.zeros(2))
    np.testing.assert_allclose(r.payments, [5, 5])  # p = 0 is also a fixed point


def test_sparse_equals_dense_and_large_iterative_path():
    rng = np.random.default_rng(5)
    n = 2000  # above the dense-solve threshold: exercises the iterative solver
    i, j, v = random_network(rng, n, 4 * n)
    L = sp.csr_matrix((v, (i, j)), shape=(n, n))
    e = rng.exponential(0.8, n)
    ext = rng.exponential(1.0, n)
    r_sparse = eisenberg_noe(L, e, ext)
    assert r_sparse.n_defaults > 300
    r_dense = eisenberg_noe(L.toarray(), e, ext)
    np.testing.assert_allclose(r_sparse.payments, r_dense.payments, atol=1e-9)
    p = fixed_point_clearing(L, e, ext)
    np.testing.assert_allclose(r_sparse.payments, p, atol=1e-8)


def test_singular_closed_group_falls_back_to_greatest_solution():
    # Two banks owe only each other and have no cash; a third owes them.
    L = np.array([[0, 4.0, 0], [4.0, 0, 0], [1.0, 1.0, 0]])
    r = eisenberg_noe(L, np.array([0.0, 0.0, 0.5]))
    np.testing.assert_allclose(r.payments, fixed_point_clearing(L, np.array([0, 0, 0.5])),
                               atol=1e-9)


def _defaulter_systems(rng: np.random.Generator, count: int):
    """Random defaulters' systems, half of them nearly singular: a closed ring of
    debts with default costs β = 1 − 10^-s (s in [2, 8]), where the residual
    check is close to its tolerance."""
    for trial in range(count):
        n = int(rng.integers(3, 40))
        L = rng.exponential(1, (n, n)) * (rng.random((n, n)) < 0.3)
        np.fill_diagonal(L, 0)
        near = trial % 2 == 1
        if near:
            for a, b in zip(range(n), np.roll(np.arange(n), 1), strict=True):
                L[a, b] += 1.0
        pbar = L.sum(1) + (0.0 if near else rng.exponential(0.3, n))
        row, col = np.nonzero(L)
        PiT = sp.csr_matrix((L[row, col] / pbar[row], (col, row)), shape=(n, n))
        beta = (np.full(n, 1 - 10 ** -rng.uniform(2, 8)) if near
                else rng.uniform(0.5, 1, n))
        D = rng.random(n) < (0.95 if near else 0.3)
        p = pbar * (1.0 if near else rng.uniform(0.5, 1.0, n))
        yield PiT, D, p, rng.exponential(0.5, n), pbar, rng.uniform(0.5, 1, n), beta


def test_dense_defaulter_solve_equals_the_sparse_path(monkeypatch):
    """The few-defaulters solve builds ``I − βΠᵀ_DD`` and its right-hand side
    from Πᵀ's entries with NumPy; it must return what the sparse path returns
    (SciPy's slicing and products, a sparse residual check, the monotone
    iteration for singular systems) bit for bit, on random systems and on
    nearly singular ones where the two residual checks could disagree; and
    it must hand the nearly singular ones over, not decide them itself."""
    import warnings

    from finsim_mesa import clearing_rounds as cr

    dense = cr._solve_dense
    handed = []
    for PiT, D, p, e, pbar, alpha, beta in _defaulter_systems(np.random.default_rng(5), 400):
        if not D.any():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = cr._solve_defaulters(PiT, D, p, e, pbar, alpha, beta)
            handed.append(dense(PiT, D, np.flatnonzero(D), p, e, pbar, alpha, beta) is None)
            monkeypatch.setattr(cr, "_solve_dense", lambda *a: None)  # the sparse path
            want = cr._solve_defaulters(PiT, D, p, e, pbar, alpha, beta)
            monkeypatch.setattr(cr, "_solve_dense", dense)
        np.testing.assert_array_equal(got, want)
    assert 0 < sum(handed) < len(handed)  # both ways taken
    # a case where the two residual checks disagree (found by a reviewer):
    # the dense one accepts the LU solution, the sparse one does not
    f = float.fromhex
    L = np.array([[0, f("0x1.6e0de35ad8077p-3"), 1.0], [1.0, 0, f("0x1.6d066115afdbbp-1")],
                  [0, 1.0, 0]])
    pbar = L.sum(1)
    row, col = np.nonzero(L)
    PiT = sp.csr_matrix((L[row, col] / pbar[row], (col, row)), shape=(3, 3))
    e = np.array([f("0x1.5bc3bba1d6dd1p-6"), f("0x1.758a7e9ea2d13p-3"),
                  f("0x1.0420dd68df8f3p-3")])
    beta, D = np.full(3, f("0x1.fffe6887f611fp-1")), np.ones(3, dtype=bool)
    assert dense(PiT, D, np.arange(3), pbar, e, pbar, np.ones(3), beta) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = cr._solve_defaulters(PiT, D, pbar, e, pbar, np.ones(3), beta)
        monkeypatch.setattr(cr, "_solve_dense", lambda *a: None)
        want = cr._solve_defaulters(PiT, D, pbar, e, pbar, np.ones(3), beta)
    np.testing.assert_array_equal(got, want)
    lu = np.linalg.solve(np.eye(3) - beta[:, None] * PiT.toarray(), e)
    assert np.abs(np.clip(lu, 0, pbar) - want).max() > 0.1  # not the LU solution


#: bad inputs every clearing path refuses, with a word of the message
BAD_INPUTS = [
    ({"liabilities": np.ones(3)}, "2-D"),
    ({"liabilities": np.ones((2, 3))}, "square"),
    ({"external_assets": np.ones(3)}, "shape"),
    ({"external_assets": np.array([1.0, np.nan])}, "NaN"),
    ({"liabilities": np.array([[0, -1.0], [0, 0]])}, "non-negative"),
    ({"alpha": 1.5}, "alpha"),
]


@pytest.mark.parametrize(("kwargs", "match"), [
    *BAD_INPUTS,
    ({"liabilities": np.array([[1.0, 1.0], [0, 0]])}, "diagonal"),
])
def test_bad_input_is_a_clear_error(kwargs, match):
    args = {"liabilities": np.array([[0, 1.0], [1.0, 0]]), "external_assets": np.ones(2)}
    args.update(kwargs)
    alpha = args.pop("alpha", 1.0)
    with pytest.raises(ValueError, match=match):
        eisenberg_noe(args["liabilities"], args["external_assets"], alpha=alpha)


def test_per_institution_default_costs():
    # alpha as an array: bank 0 realises half its assets, bank 1 all of them
    L = np.array([[0, 10.0, 0], [0, 0, 10.0], [0, 0, 0]])
    r = eisenberg_noe(L, np.array([6.0, 2.0, 0.0]), alpha=np.array([0.5, 1.0, 1.0]))
    np.testing.assert_allclose(r.payments, [3, 5, 0])
    rng = np.random.default_rng(2)
    Lr = rng.exponential(1, (30, 30)) * (rng.random((30, 30)) < 0.3)
    np.fill_diagonal(Lr, 0)
    e = rng.exponential(0.5, 30)
    a, b = rng.uniform(0.3, 1, 30), rng.uniform(0.3, 1, 30)
    np.testing.assert_allclose(eisenberg_noe(Lr, e, alpha=a, beta=b).payments,
                               fixed_point_clearing(Lr, e, alpha=a, beta=b), atol=1e-8)
