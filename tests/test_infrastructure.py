"""Infrastructure mechanics: CCP waterfall, multilateral netting, exchange queue."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finsim_mesa.infrastructure import ExchangeQueue, default_waterfall, multilateral_netting

SIZES = {"margin": 10.0, "fund": 5.0, "capital": 3.0}
SURVIVORS = np.array([4.0, 6.0, 10.0])  # 20 in all


@pytest.mark.parametrize(("loss", "expect", "uncovered"), [
    (0.0, [0, 0, 0, 0], 0.0),
    (7.0, [7, 0, 0, 0], 0.0),                 # stops in the defaulter's margin
    (12.0, [10, 2, 0, 0], 0.0),               # ... in the defaulter's fund contribution
    (17.0, [10, 5, 2, 0], 0.0),               # ... in the CCP's capital
    (28.0, [10, 5, 3, 10], 0.0),              # ... in the mutualised fund
    (50.0, [10, 5, 3, 20], 12.0),             # beyond all four layers
])
def test_waterfall_layers_in_order(loss, expect, uncovered):
    r = default_waterfall(loss, SIZES["margin"], SIZES["fund"], SIZES["capital"], SURVIVORS)
    assert list(r.layers.values()) == pytest.approx(expect)
    assert list(r.layers) == ["defaulter_margin", "defaulter_fund", "ccp_capital",
                              "mutualised"]
    assert r.uncovered == pytest.approx(uncovered)
    assert r.absorbed + r.uncovered == pytest.approx(loss)  # exactly the loss, no more
    # survivors pay pro rata to their contributions
    np.testing.assert_allclose(r.survivor_charges, SURVIVORS * expect[3] / 20.0)


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1e6), st.floats(0, 1e3), st.floats(0, 1e3), st.floats(0, 1e3),
       st.lists(st.floats(0, 1e3), min_size=0, max_size=8))
def test_waterfall_allocates_exactly_the_loss(loss, m, f, c, funds):
    r = default_waterfall(loss, m, f, c, np.array(funds))
    assert r.absorbed + r.uncovered == pytest.approx(loss, rel=1e-12, abs=1e-9)
    assert r.layers["defaulter_margin"] <= m + 1e-12
    assert (r.survivor_charges <= np.array(funds) + 1e-9).all()
    # a later layer is used only once the earlier ones are exhausted
    if r.layers["defaulter_fund"] > 0:
        assert r.layers["defaulter_margin"] == pytest.approx(m)
    if r.uncovered > 0:
        assert r.layers["mutualised"] == pytest.approx(sum(funds))


def test_waterfall_bad_input():
    with pytest.raises(ValueError, match="loss"):
        default_waterfall(-1.0, 1, 1, 1, SURVIVORS)
    with pytest.raises(ValueError, match="survivor_funds"):
        default_waterfall(1.0, 1, 1, 1, np.array([1.0, np.nan]))


def brute_force_netting(G):
    n = len(G)
    net = [0.0] * n
    for i in range(n):
        for j in range(n):
            net[j] += G[i][j]   # j is owed
            net[i] -= G[i][j]   # i owes
    bilateral = sum(abs(G[i][j] - G[j][i]) for i in range(n) for j in range(i + 1, n))
    return net, sum(map(sum, G)), bilateral, sum(-x for x in net if x < 0)


@pytest.mark.parametrize("seed", range(10))
def test_netting_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 20))
    G = rng.exponential(1.0, (n, n)) * (rng.random((n, n)) < 0.5)
    np.fill_diagonal(G, 0.0)
    r = multilateral_netting(G)
    net, gross, bilateral, multi = brute_force_netting(G.tolist())
    np.testing.assert_allclose(r.net, net, atol=1e-12)
    assert r.gross == pytest.approx(gross)
    assert r.bilateral == pytest.approx(bilateral)
    assert r.multilateral == pytest.approx(multi)
    assert abs(r.net.sum()) < 1e-9                   # the CCP's book balances
    assert r.multilateral <= r.bilateral + 1e-9 <= r.gross + 2e-9
    assert 0.0 <= r.efficiency <= 1.0


def test_netting_closed_form_cycle():
    # a ring of equal debts nets to nothing: efficiency 1
    G = np.array([[0, 5.0, 0], [0, 0, 5.0], [5.0, 0, 0]])
    r = multilateral_netting(G)
    assert r.multilateral == 0.0 and r.efficiency == 1.0
    assert r.bilateral_efficiency == 0.0  # no pair owes each other both ways
    with pytest.raises(ValueError, match="square"):
        multilateral_netting(np.ones((2, 3)))


def test_exchange_fee_rises_with_utilisation():
    q = ExchangeQueue(max_throughput=100.0, congestion_threshold=0.5, base_fee=0.001,
                      fee_slope=2.0)
    assert q.fee_rate(0.2) == q.fee_rate(0.5) == pytest.approx(0.001)
    rates = [q.fee_rate(u) for u in (0.6, 0.8, 1.0, 1.5)]
    assert rates == sorted(rates) and rates[0] > 0.001
    assert q.fee_rate(1.0) == pytest.approx(0.001 * (1 + 2.0 * 0.5))


def test_exchange_delays_past_capacity_and_expires():
    q = ExchangeQueue(max_throughput=10.0, congestion_threshold=0.8, base_fee=0.01,
                      fee_slope=1.0, max_wait=2)
    q.submit(np.arange(5), np.arange(1, 6), np.full(5, 4.0), step=1)
    done, expired, s = q.process(1)
    assert done["order_id"].tolist() == [0, 1] and s.processed == 8.0
    assert s.utilisation == pytest.approx(2.0) and s.congested
    assert s.fees == pytest.approx(8.0 * 0.01 * (1 + 1.2))
    assert s.waiting_orders == 3 and expired["order_id"].size == 0
    done, expired, s = q.process(2)
    assert done["order_id"].tolist() == [2, 3] and s.mean_delay == 1.0
    q.submit(9, 8, 11.0, step=2)  # bigger than the capacity: blocks, then expires
    q.submit(7, 6, 1.0, step=2)   # strict FIFO: waits behind it
    done, expired, s = q.process(3)
    assert done["order_id"].tolist() == [4]
    done, expired, s = q.process(4)
    assert expired["order_id"].tolist() == [5, 6] and s.expired == 12.0
    assert q.backlog == 0.0
    assert [h.step for h in q.history] == [1, 2, 3, 4]


def test_an_empty_queue_step_is_recorded_and_hands_out_its_own_columns():
    """An empty queue (the short cut): the step is in the history with nothing
    moved and the base fee, and the columns handed out stay empty when orders
    arrive later (they are not the live queue's)."""
    q = ExchangeQueue(max_throughput=10.0, congestion_threshold=0.8, base_fee=0.01,
                      fee_slope=1.0, max_wait=2)
    done, expired, s = q.process(1)
    q.submit(np.arange(3), np.arange(1, 4), np.full(3, 2.0), step=1)
    assert done["amount"].size == expired["amount"].size == 0
    assert set(done) == set(q.orders) and done is not q.orders
    assert (s.step, s.demand, s.processed, s.waiting, s.expired, s.fees) == (1, 0, 0, 0, 0, 0)
    assert s.fee_rate == q.fee_rate(0.0) == 0.01 and not s.congested
    done, _, s = q.process(2)
    assert done["amount"].tolist() == [2.0, 2.0, 2.0] and s.mean_delay == 1.0
    assert [h.step for h in q.history] == [1, 2]


def test_exchange_rejects_bad_orders():
    q = ExchangeQueue(max_throughput=10.0)
    with pytest.raises(ValueError, match="> 0"):
        q.submit(0, 1, -2.0, step=1)
    with pytest.raises(ValueError, match="> 0"):
        q.submit(0, 1, np.nan, step=1)


def test_netting_sparse_equals_dense():
    import scipy.sparse as sp

    rng = np.random.default_rng(4)
    G = rng.exponential(1.0, (12, 12)) * (rng.random((12, 12)) < 0.4)
    np.fill_diagonal(G, 0)
    a, b = multilateral_netting(G), multilateral_netting(sp.csr_matrix(G))
    np.testing.assert_allclose(a.net, b.net)
    assert (a.gross, a.bilateral, a.multilateral) == pytest.approx(
        (b.gross, b.bilateral, b.multilateral))


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"max_throughput": -1.0}, "max_throughput"),
    ({"max_throughput": 10.0, "congestion_threshold": 1.5}, "congestion_threshold"),
    ({"max_throughput": 10.0, "base_fee": 1.0}, "base_fee"),
    ({"max_throughput": 10.0, "max_wait": -1}, "max_wait"),
])
def test_exchange_bad_config(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        ExchangeQueue(**kwargs)
