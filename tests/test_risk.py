"""Systemic-risk measures against hand computations and a naive second implementation."""

import numpy as np
import pytest
import scipy.sparse as sp

from finsim_mesa import risk


def naive_debtrank(E, eq, h0, v):
    """Battiston et al. (2012) written node by node, as in the paper."""
    n = len(eq)
    W = [[(min(1.0, E[i][j] / eq[i]) if eq[i] > 0 else 1.0) if E[i][j] > 0 else 0.0
          for j in range(n)] for i in range(n)]
    h = list(h0)
    s = ["D" if x > 0 else "U" for x in h0]
    while "D" in s:
        new_h = [min(1.0, h[i] + sum(W[i][j] * h[j] for j in range(n) if s[j] == "D"))
                 for i in range(n)]
        s = ["I" if s[i] == "D" else ("D" if s[i] == "U" and new_h[i] > 0 else s[i])
             for i in range(n)]
        h = new_h
    total = sum(v[i] * h[i] for i in range(n))
    return h, total - sum(v[i] * h0[i] for i in range(n))


def test_debtrank_hand_example():
    # A lent 5 to B, B lent 4 to C; equities 10, 2, 5. C fails:
    # B loses min(1, 4/2) = 100%, then A loses min(1, 5/10) * 1 = 50%.
    E = np.array([[0, 5.0, 0], [0, 0, 4.0], [0, 0, 0]])
    res = risk.debtrank(E, np.array([10.0, 2.0, 5.0]), np.array([0, 0, 1.0]),
                        value=np.array([0.2, 0.3, 0.5]))
    np.testing.assert_allclose(res.distress, [0.5, 1.0, 1.0])
    assert res.total == pytest.approx(0.9)
    assert res.debtrank == pytest.approx(0.4)
    assert res.steps == 3


def test_debtrank_each_bank_propagates_once():
    # A cycle: without the once-only rule distress would loop forever.
    E = np.array([[0, 1.0], [1.0, 0]])
    res = risk.debtrank(E, np.array([4.0, 4.0]), np.array([0.4, 0.0]),
                        value=np.array([0.5, 0.5]))
    # B gets 0.25 * 0.4 = 0.1; then B propagates 0.25 * 0.1 back to inactive A
    np.testing.assert_allclose(res.distress, [0.425, 0.1])


@pytest.mark.parametrize("seed", range(8))
def test_debtrank_matches_naive_implementation(seed):
    rng = np.random.default_rng(seed)
    n = 15
    E = rng.exponential(1.0, (n, n)) * (rng.random((n, n)) < 0.3)
    np.fill_diagonal(E, 0)
    eq = rng.exponential(2.0, n)
    eq[rng.random(n) < 0.1] = 0.0
    h0 = np.where(rng.random(n) < 0.2, rng.random(n), 0.0)
    v = rng.random(n)
    v = v / v.sum()
    res = risk.debtrank(sp.csr_matrix(E), eq, h0, value=v)
    h, r = naive_debtrank(E.tolist(), eq.tolist(), h0.tolist(), v.tolist())
    np.testing.assert_allclose(res.distress, h, atol=1e-12)
    assert res.debtrank == pytest.approx(r, abs=1e-12)


def test_debtrank_per_bank_equals_single_runs():
    rng = np.random.default_rng(3)
    n = 40
    E = rng.exponential(1.0, (n, n)) * (rng.random((n, n)) < 0.1)
    np.fill_diagonal(E, 0)
    eq = rng.exponential(3.0, n)
    batch = risk.debtrank_per_bank(E, eq, batch=7)
    single = [risk.debtrank(E, eq, np.eye(n)[j]).debtrank for j in range(n)]
    np.testing.assert_allclose(batch, single, atol=1e-12)


def test_liquidity_stress_and_composite():
    assert risk.liquidity_index(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == 1.0
    assert risk.liquidity_index(np.array([1.0]), np.array([0.0])) == float("inf")
    eq0 = np.array([10.0, 30.0])
    # bank 0 lost 50%, bank 1 defaulted: weights 10 and 30 -> (5 + 30) / 40
    assert risk.stress_index(np.array([5.0, 1.0]), eq0, np.array([False, True])) == \
        pytest.approx(35 / 40)
    calm = risk.systemic_risk_index(0, 0, 0, 1.0, 1.0, 1.0)
    worst = risk.systemic_risk_index(1, 1, 1, 0.0, 0.0, 1.0)
    assert calm == 0.0 and worst == pytest.approx(1.0)
    mid = risk.systemic_risk_index(0.5, 0, 0, 1.0, 1.0, 1.0)
    assert mid == pytest.approx(0.5 * risk.SRI_WEIGHTS["debtrank"])


def test_rank_systemic_breaks_ties_by_size():
    order = risk.rank_systemic(np.array([0.1, 0.5, 0.5, 0.2]), size=np.array([1, 1, 9, 1]))
    assert order.tolist() == [2, 1, 3, 0]
    assert risk.rank_systemic(np.array([0.3, 0.1]), top=1).tolist() == [0]
