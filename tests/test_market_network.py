"""Market mechanics and balance-sheet calibration against closed forms."""

import networkx as nx
import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.balance_sheets import calibrate
from finsim_mesa.config import make_config
from finsim_mesa.market import Market, deleveraging_units
from finsim_mesa.network import core_periphery, oriented_edges


def test_price_impact_is_exponential_with_floor():
    cfg = make_config(None, price_impact=2.0, price_floor=0.5)
    mk = Market(cfg, np.array([100.0]))
    np.testing.assert_allclose(mk.impact_prices(np.array([10.0])), np.exp(-2.0 * 0.1))
    np.testing.assert_allclose(mk.impact_prices(np.array([90.0])), 0.5)  # floored


def test_crash_lowers_fundamental_and_mean_reversion():
    cfg = make_config(None, mean_reversion=0.5)
    mk = Market(cfg, np.array([1.0]))
    mk.set_prices(mk.crash_prices(0.2))
    assert mk.fundamentals[0] == pytest.approx(0.8)
    mk.set_prices(np.array([0.4]))  # a fire-sale discount below the fundamental
    rng = np.random.default_rng(0)
    nxt = mk.exogenous_prices(0.0, rng)
    # log p moves half way to log F: sqrt(0.4 * 0.8)
    assert nxt[0] == pytest.approx(np.sqrt(0.4 * 0.8))


def test_interbank_rate_rises_with_stress():
    cfg = make_config(None, base_rate=0.001, rate_stress_spread=0.01)
    mk = Market(cfg, np.array([1.0]))
    assert mk.interbank_rate(0.0) == pytest.approx(0.001)
    assert mk.interbank_rate(0.5) == pytest.approx(0.006)
    assert mk.interbank_rate(3.0) == pytest.approx(0.011)


def test_deleveraging_restores_the_target_ratio():
    # equity 5, RWA 100 (securities 60 at price 1 + 40 other): target 0.08
    # -> sell x = 100 - 5 / 0.08 = 37.5
    units = deleveraging_units(np.array([5.0]), np.array([100.0]), np.array([[60.0]]),
                               np.array([1.0]), 0.08, np.array([True]))
    assert units[0, 0] == pytest.approx(37.5)
    assert 5.0 / (100 - 37.5) == pytest.approx(0.08)
    # not eligible: nothing; negative equity: everything
    none = deleveraging_units(np.array([5.0]), np.array([100.0]), np.array([[60.0]]),
                              np.array([1.0]), 0.08, np.array([False]))
    assert none.sum() == 0
    allx = deleveraging_units(np.array([-1.0]), np.array([100.0]), np.array([[60.0]]),
                              np.array([1.0]), 0.08, np.array([True]))
    assert allx[0, 0] == pytest.approx(60.0)


def test_fire_sale_spiral_lowers_price_more_than_the_first_sale():
    base = dict(n_banks=40, brain="passive", scenario="normal", price_impact=1.5, rng=3,
                capital_requirement=0.09, capital_ratio=0.1, marketable_share=1.0)
    prices = {}
    for forced in (False, True):
        m = FinancialModel(forced_deleveraging=forced, **base)
        m.apply_shock("price_crash", 0.05)
        m.step()
        prices[forced] = m.ledger.prices[0]
    assert prices[True] < prices[False]


def test_calibration_closed_form():
    cfg = make_config(None, n_banks=3, capital_ratio=0.1, interbank_share=0.2,
                      liquidity_share=0.1, interbank_risk_weight=0.5, marketable_share=0.25,
                      size_dispersion=0.0)
    lender = np.array([0, 0])
    borrower = np.array([1, 2])
    bs = calibrate(3, lender, borrower, cfg, np.random.default_rng(0))
    # equal sizes 100: bank 0 lends 20, 10 to each of 1 and 2
    np.testing.assert_allclose(bs.loan_amount, [10, 10])
    np.testing.assert_allclose(bs.cash, 10)
    # bank 0: illiquid 70 -> securities 17.5, other 52.5; equity = 0.1 (70 + 0.5 * 20) = 8
    assert bs.holdings[0, 0] == pytest.approx(17.5)
    assert bs.other_assets[0] == pytest.approx(52.5)
    assert bs.deposits[0] == pytest.approx(100 - 8)
    # bank 1: illiquid 90, equity 9, owes 10 -> deposits 100 - 9 - 10 = 81
    assert bs.deposits[1] == pytest.approx(81)


def test_core_periphery_and_orientation():
    rng = np.random.default_rng(1)
    g = core_periphery(50, 0.2, 1.0, 2, rng)
    core = set(range(10))
    assert all(g.degree(i) == 2 for i in range(10, 50))
    assert all(set(g.neighbors(i)) <= core for i in range(10, 50))
    lender, borrower = oriented_edges(g, rng)
    assert len(lender) == g.number_of_edges()
    assert {frozenset(e) for e in zip(lender, borrower, strict=True)} == \
        {frozenset(e) for e in g.edges()}


@pytest.mark.parametrize("graph", [nx.barabasi_albert_graph(40, 2, seed=1),
                                   nx.erdos_renyi_graph(30, 0.1, seed=2), nx.empty_graph(5),
                                   nx.path_graph(2)])
def test_neighbours_in_counts_like_the_sparse_product_and_a_hand_count(graph):
    from finsim_mesa.network import Adjacency

    n = graph.number_of_nodes()
    adj = Adjacency.from_graph(graph, n)
    rng = np.random.default_rng(3)
    for p in (0.0, 0.2, 0.7, 1.0):
        mask = rng.random(n) < p
        got = adj.neighbours_in(mask)
        hand = [sum(bool(mask[j]) for j in graph.neighbors(i)) for i in range(n)]
        assert got.dtype == np.float64 and got.tolist() == hand
        np.testing.assert_array_equal(got, adj.matrix @ mask.astype(float))
