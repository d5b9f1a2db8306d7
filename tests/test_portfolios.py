"""Overlapping portfolios: asset classes, leverage rules, real balance sheets,
forced-default costs, and the replications against their references."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from finsim_mesa import ConfigError, FinancialModel, ShockError
from finsim_mesa.balance_sheets import read_table
from finsim_mesa.deleveraging import impact_per_5pct, leverage, sale_units
from finsim_mesa.scenarios import Scenario

REPL = Path(__file__).resolve().parents[1] / "replications"
sys.path.insert(0, str(REPL))

QUIET = dict(brain="passive", deposit_rate=0.0, asset_return=0.0, base_rate=0.0,
             rate_stress_spread=0.0, agent_collect_every=0, collapse_threshold=1.0)


def crash(s, asset=None):
    return Scenario(name="crash", price_volatility=0.0, crash_step=1, crash_magnitude=s,
                    crash_asset=asset)


# ----------------------------------------------------------------- the EBA sample
def test_eba_balance_sheets_are_built_as_the_reference_builds_them():
    m = FinancialModel(balance_sheets="eba2018", rng=1, **QUIET)
    raw = pd.read_csv(Path(__file__).resolve().parents[1] / "finsim_mesa/data/eba2018.csv")
    assert m.n_banks == 48 == len(raw) and m.node_labels == list(raw.bank_id)
    assert m.market.names == ["corporate_bonds", "government_bonds"]
    assets = raw.cet1 / (raw.leverage_pct / 100)
    L = m.ledger
    np.testing.assert_allclose(L.total_assets(), assets, rtol=1e-12)
    np.testing.assert_allclose(L.cash, 0.05 * assets, rtol=1e-12)
    np.testing.assert_allclose(L.holdings[:, 0], raw.debt_securities - raw.government_bonds)
    np.testing.assert_allclose(L.holdings[:, 1], raw.government_bonds)
    np.testing.assert_allclose(L.other_assets, assets - raw.debt_securities - 0.05 * assets,
                               rtol=1e-12)
    np.testing.assert_allclose(L.funding, (assets - raw.cet1) / 2, rtol=1e-12)
    np.testing.assert_allclose(L.deposits, (assets - raw.cet1) / 2, rtol=1e-12)
    np.testing.assert_allclose(L.equity, raw.cet1, rtol=1e-12)
    np.testing.assert_allclose(leverage(L), raw.leverage_pct / 100, rtol=1e-12)
    assert m.graph.number_of_edges() == 0 and len(L.loans) == 0
    m.check()


def test_eba_fire_sales_equal_the_reference_implementation_everywhere():
    """Defaults and the share of tradable assets sold, at every shock (both rules)
    and every price impact, equal those of ox-inet-resilience/firesale_stresstest
    (numbers in replications/reference/, obtained by running its code)."""
    import eba2018_fire_sales as eba

    ref = json.loads(eba.REFERENCE.read_text())
    results = eba.experiments()
    assert set(results) == {"threshold", "leverage_targeting", "price_impact_threshold"}
    for key, rows in results.items():
        assert len(rows) == len(ref[key]) == 21
        for (param, defaults, sold), r in zip(rows, ref[key], strict=True):
            assert param == pytest.approx(r["param"])
            assert defaults == r["total_defaults"], (key, param)
            assert sold == pytest.approx(r["sold"], abs=1e-9), (key, param)
    # and the experiment shows what it is about: targeting sells more at small shocks
    thr, tgt = results["threshold"], results["leverage_targeting"]
    assert tgt[1][2] > 5 * thr[1][2]


@pytest.mark.parametrize("text, needle", [
    ("bank_id,cet1,debt_securities,government_bonds\nA,1,1,0\n", "missing columns"),
    ("bank_id,cet1,leverage_pct,debt_securities,government_bonds\nA,-1,5,1,0\n", ">= 0"),
    ("bank_id,cet1,leverage_pct,debt_securities,government_bonds\nA,1,150,1,0\n",
     r"must lie in \(0, 1\)"),
    ("bank_id,cet1,leverage,debt_securities,government_bonds\nA,1,1.5,1,0\n",
     r"must lie in \(0, 1\)"),
    ("bank_id,cet1,leverage_pct,debt_securities,government_bonds\nA,1,5,1,2\n",
     "more government bonds"),
    ("bank_id,cet1,leverage_pct,debt_securities,government_bonds\nA,x,5,1,0\n",
     "is not a number"),
    ("bank_id,cet1,leverage_pct,debt_securities,government_bonds\nA,1,5,30,0\n",
     "exceed its assets"),
])
def test_user_tables_are_checked(text, needle, tmp_path):
    path = tmp_path / "banks.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        read_table(str(path))


def test_a_user_table_in_the_same_format_loads(tmp_path):
    path = tmp_path / "banks.csv"
    path.write_text("bank_id,cet1,leverage,debt_securities,government_bonds\n"
                    "A,10,0.05,50,20\nB,5,0.1,10,10\n")
    m = FinancialModel(balance_sheets=str(path), rng=1, **QUIET)
    np.testing.assert_allclose(m.ledger.total_assets(), [200, 50])
    np.testing.assert_allclose(m.ledger.holdings, [[30, 20], [0, 10]])
    with pytest.raises(ConfigError, match="no such file"):
        FinancialModel(balance_sheets=str(tmp_path / "none.csv"), rng=1)
    with pytest.raises(ConfigError, match="without an interbank network"):
        FinancialModel(balance_sheets="eba2018", graph=nx.empty_graph(48), rng=1)
    with pytest.raises(ConfigError, match="has 2 banks but n_banks=5; leave n_banks out"):
        FinancialModel(balance_sheets=str(path), n_banks=5, rng=1)
    assert FinancialModel(balance_sheets=str(path), n_banks=2, rng=1).n_banks == 2


# ----------------------------------------------------------------- asset classes
def test_one_named_class_is_the_default_model_bit_for_bit():
    a = FinancialModel(n_banks=20, scenario="systemic", brain="random", rng=3)
    b = FinancialModel(n_banks=20, scenario="systemic", brain="random", rng=3,
                       asset_classes=[{"name": "securities"}])
    a.run_for(25)
    b.run_for(25)
    pd.testing.assert_frame_equal(a.datacollector.get_model_vars_dataframe(),
                                  b.datacollector.get_model_vars_dataframe(), check_exact=True)


def test_classes_have_their_own_price_impact_depth_and_price():
    classes = [{"name": "gov", "impact": 0.0, "price": 2.0},
               {"name": "corp", "impact": 1.0, "depth": 1e6}, {"name": "eq", "impact": 0.5}]
    m = FinancialModel(n_banks=10, asset_classes=classes, rng=1, **QUIET)
    assert m.config.n_assets == 3 and list(m.market.impact) == [0.0, 1.0, 0.5]
    np.testing.assert_array_equal(m.ledger.prices, [2.0, 1.0, 1.0])
    assert m.market.units_outstanding[1] == 1e6
    np.testing.assert_allclose(m.market.units_outstanding[[0, 2]],
                               m.ledger.holdings.sum(axis=0)[[0, 2]])
    # equal weights by value: at price 2 a bank holds half the units of gov
    np.testing.assert_allclose(2 * m.ledger.holdings[:, 0], m.ledger.holdings[:, 2])
    q = np.array([5.0, 5.0, 5.0])
    new = m.market.impact_prices(q)
    np.testing.assert_allclose(new, m.market.prices * np.exp(
        -m.market.impact * q / m.market.units_outstanding))
    df = FinancialModel(n_banks=10, asset_classes=classes, rng=1, **QUIET)
    df.run_for(2)
    cols = df.datacollector.get_model_vars_dataframe().columns
    assert {"price_gov", "price_corp", "price_eq"} <= set(cols)
    with pytest.raises(ConfigError, match="names unique"):
        FinancialModel(n_banks=5, asset_classes=[{"name": "a"}, {"name": "a"}], rng=1)
    with pytest.raises(ConfigError, match="asset_classes"):
        FinancialModel(n_banks=5, asset_classes=[{"name": "a b"}], rng=1)


def test_a_crash_can_hit_one_class():
    classes = [{"name": "gov"}, {"name": "corp"}]
    m = FinancialModel(n_banks=10, asset_classes=classes, scenario=crash(0.2, "gov"),
                       rng=1, **QUIET)
    m.step()
    assert m.ledger.prices[0] == pytest.approx(0.8) and m.ledger.prices[1] == 1.0
    m.apply_shock("price_crash", 0.5, asset="corp")
    assert m.ledger.prices[1] == pytest.approx(0.5) and m.ledger.prices[0] == pytest.approx(0.8)
    with pytest.raises(ShockError, match="asset = 'bonds'"):
        m.apply_shock("price_crash", 0.1, asset="bonds")
    with pytest.raises(ConfigError, match="crash_asset = 'bonds'"):
        FinancialModel(n_banks=10, asset_classes=classes, scenario=crash(0.2, "bonds"), rng=1)


def test_sales_by_liquidity_rank_take_the_most_liquid_first():
    holdings = np.array([[10.0, 10.0, 10.0]])
    prices = np.array([1.0, 2.0, 1.0])
    units = sale_units(holdings, prices, np.array([25.0]), np.array([2, 0, 1]))
    np.testing.assert_allclose(units, [[0.0, 10.0, 5.0]])  # rank 0 (20), then rank 1 (5)
    units = sale_units(holdings, prices, np.array([20.0]), None)  # pro rata by value
    np.testing.assert_allclose(units @ prices, [20.0])
    np.testing.assert_allclose(units / holdings, 0.5)


def test_heterogeneous_portfolios_are_drawn_per_bank():
    m = FinancialModel(n_banks=200, n_assets=3, portfolio_concentration=0.5, rng=2)
    mix = m.ledger.holdings / m.ledger.holdings.sum(axis=1, keepdims=True)
    assert mix.std(axis=0).min() > 0.2  # banks specialise
    same = FinancialModel(n_banks=200, n_assets=3, rng=2)
    mix = same.ledger.holdings / same.ledger.holdings.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(mix, 1 / 3)


# ----------------------------------------------------------------- leverage rules
def one_bank_model(rule, cash_share=0.05, shock=0.0, **kw):
    """The 48 EBA banks, one round of deleveraging (so only the banks' own
    leverage, not others' sales, decides who acts)."""
    return FinancialModel(balance_sheets="eba2018", deleveraging_rule=rule,
                          scenario=crash(shock, "government_bonds") if shock else
                          Scenario(name="calm", price_volatility=0.0), fire_sale_rounds=1,
                          price_impact=impact_per_5pct(0.01), rng=1, steps=5, **QUIET, **kw)


def test_threshold_rule_acts_below_the_buffer_and_repays_funding_with_cash_first():
    m = one_bank_model("threshold")
    lev0 = leverage(m.ledger)
    funding0, cash0 = m.ledger.funding.copy(), m.ledger.cash.copy()
    m.step()
    below = lev0 < 0.04  # DE21 (3.41%) and NL33 (3.49%)
    assert below.sum() == 2 and not m.ledger.defaulted.any()
    L = m.ledger
    # the banks below the buffer paid cash into their funding loan, the others did not
    assert np.all(L.funding[below] < funding0[below]) and np.all(L.cash[below] < cash0[below])
    np.testing.assert_array_equal(L.funding[~below], funding0[~below])
    assert np.all(leverage(L)[below] > lev0[below])


def test_leverage_targeting_acts_below_the_target_and_defaults_below_the_minimum():
    m = one_bank_model("leverage_targeting")
    lev0 = leverage(m.ledger)
    funding0 = m.ledger.funding.copy()
    m.step()
    acted = m.ledger.funding < funding0
    np.testing.assert_array_equal(acted, lev0 < 0.05)
    m = one_bank_model("threshold", shock=0.3)
    m.step()
    assert m.ledger.defaulted.sum() > 0
    with pytest.raises(ConfigError, match="leverage_min"):
        one_bank_model("threshold", leverage_min=0.06)


# ----------------------------------------------------------------- defects fixed
@pytest.mark.parametrize("impact", [0.05, 0.1, 0.5])
@pytest.mark.parametrize("shock", [0.0999, 0.1, 0.1001])
def test_no_equity_left_means_default_not_escape(shock, impact):
    """100 identical banks, a shock of (about) their capital ratio: a bank with no
    equity left used to sell everything at the round's price and escape (0
    defaults at exactly 0.1 with impact >= 0.1, 100 just below and above)."""
    m = FinancialModel(graph=nx.empty_graph(100), size_dispersion=0.0, capital_ratio=0.1,
                       capital_requirement=0.05, interbank_share=0.0, liquidity_share=0.0,
                       marketable_share=1.0, price_impact=impact, scenario=crash(shock),
                       rng=1, steps=2, **QUIET)
    m.step()
    assert m.measures.n_defaults == 100


def test_a_sale_bears_its_own_price_impact():
    """One bank forced to sell: the sale executes at the mid price of the
    clearing that carries its impact, not at the price before it."""
    m = FinancialModel(graph=nx.empty_graph(2), size_dispersion=0.0, capital_ratio=0.1,
                       capital_requirement=0.09, interbank_share=0.0, liquidity_share=0.05,
                       marketable_share=1.0, price_impact=0.5, fire_sale_rounds=1,
                       scenario=crash(0.02), rng=1, steps=2, **QUIET)
    L = m.ledger
    m.t = 1  # the stages of step 1, one by one
    m.shock()
    h0, cash0 = L.holdings[:, 0].copy(), L.cash.copy()
    p_old = L.prices[0]
    m.price()
    sold = h0 - L.holdings[:, 0]
    assert sold.sum() > 0
    p_new = L.prices[0]
    np.testing.assert_allclose(p_new, max(p_old * np.exp(-0.5 * sold.sum()
                                                         / m.market.units_outstanding[0]),
                                          0.2), rtol=1e-12)
    np.testing.assert_allclose(L.cash - cash0, sold * (p_old + p_new) / 2, rtol=1e-12)


@pytest.mark.parametrize("alpha, paid_in_full", [(1.0, True), (0.5, False)])
def test_a_forced_default_bears_default_costs(alpha, paid_in_full):
    """A solvent bank put in default by a shock: without default costs its
    creditors are paid in full; with them they recover what it realises."""
    e = np.zeros((3, 3))
    e[1, 0] = e[2, 0] = 10.0  # bank 0 owes banks 1 and 2
    m = FinancialModel(exposures=e, default_cost_alpha=alpha, default_cost_beta=alpha,
                       marketable_share=1.0, liquidation_discount=0.0, price_impact=0.0,
                       scenario=Scenario(name="calm", price_volatility=0.0), rng=1, **QUIET)
    lent = m.ledger.interbank_assets()[1:].copy()
    eq = m.ledger.equity[1:].copy()
    m.apply_shock("default", banks=[0])
    m.step()
    loss = eq - m.ledger.equity[1:]  # prices do not move: only credit losses
    if paid_in_full:
        assert np.all(loss < 1e-6 * lent)
    else:
        assert np.all(loss > 0.1 * lent)
    m.check()


# ----------------------------------------------------------------- networks
def test_directed_erdos_renyi_has_the_mean_out_degree():
    m = FinancialModel(n_banks=1000, topology="erdos_renyi", mean_degree=6.0, directed=True,
                       rng=2)
    assert m.graph.is_directed()
    out = np.bincount(m.ledger.loans.lender, minlength=1000)
    assert out.mean() == pytest.approx(6.0, rel=0.05)
    und = FinancialModel(n_banks=1000, topology="erdos_renyi", mean_degree=6.0, rng=2)
    assert np.bincount(und.ledger.loans.lender, minlength=1000).mean() == pytest.approx(
        3.0, rel=0.05)


# ----------------------------------------------------------------- replications
@pytest.mark.slow
def test_gai_kapadia_window_within_binomial_error():
    """P(contagion) at a few degrees against the paper, with a tolerance of three
    binomial standard errors plus 0.05 for reading the paper's figure."""
    import gai_kapadia as gk

    trials = {1: 40, 2: 20, 5: 40, 8: 40}
    for z, n in trials.items():
        p_hat, extent = gk.window([z], n, first_seed=7)[z]
        p = gk.PAPER[z]
        tol = 3 * np.sqrt(max(p * (1 - p), 0.01) / n) + 0.05
        assert abs(p_hat - p) <= tol, (z, p_hat, p, tol)
        if z == 5:
            assert extent > 0.9  # when contagion happens it takes most of the system


def test_fire_sale_spiral_partial_cascades_need_several_classes():
    import fire_sale_spiral as fs

    shocks = np.array([0.1, 0.2, 0.3, 0.4])
    one = fs.grid(1, shocks=shocks, impacts=(0.2,))
    three = fs.grid(3, shocks=shocks, impacts=(0.2,))
    assert set(np.unique(one)) <= {0, fs.N}  # all or nothing
    assert fs.partial_share(one) == 0.0 and fs.partial_share(three) >= 0.5


def test_real_balance_sheets_default_to_the_leverage_rule():
    """EBA banks' risk-weighted capital ratios are mostly below the generated
    sheets' capital_requirement: under the capital rule a calm `normal` run sold
    94% of the bonds in its first step. With balance sheets the default rule is
    the stress tests' threshold rule; an explicit rule is kept."""
    m = FinancialModel(balance_sheets="eba2018", scenario="normal", rng=1,
                       agent_collect_every=0, brain="passive")
    assert m.config.deleveraging_rule == "threshold"
    held0 = m.ledger.holdings.sum(axis=0).copy()
    m.run_for(3)
    assert (m.ledger.holdings.sum(axis=0) / held0).min() > 0.5
    explicit = FinancialModel(balance_sheets="eba2018", deleveraging_rule="capital", rng=1,
                              agent_collect_every=0)
    assert explicit.config.deleveraging_rule == "capital"
    assert FinancialModel(n_banks=10, rng=1).config.deleveraging_rule == "capital"
