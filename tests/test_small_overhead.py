"""The small-network step's shortcuts (issue 15, helper-28) give what the plain
formulas give, bit for bit.

Each shortcut is checked against an independent reference written out here
from its definition (NumPy's clip as ``minimum(maximum(x, lo), hi)``, the
documented observation formulas, the rule-based brain's rules, what the
general emergency-sale path would sell), on inputs where the shortcut applies
and where it must not.
"""

import math

import numpy as np
import pytest

from finsim_mesa import FinancialModel, risk
from finsim_mesa.agents.brains import BrainError, RuleBasedBrain, check_actions
from finsim_mesa.agents.brainset import BrainSet
from finsim_mesa.config import ModelConfig
from finsim_mesa.fastmath import mean
from finsim_mesa.market import Market, capped_share
from finsim_mesa.observation import OBS, OBS_DIM, RUNOFF, bank_observations
from finsim_mesa.resolution import _holds_unsellable


def _same_bits(a, b) -> bool:
    """Equal arrays of the same dtype and shape, signs of zeros and NaNs included."""
    a, b = np.asarray(a), np.asarray(b)
    return (a.dtype == b.dtype and a.shape == b.shape
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())


def _clip(x, lo, hi):  # NumPy's clip loop for floats
    return np.minimum(np.maximum(x, lo), hi)


# ------------------------------------------------------------ market
@pytest.mark.parametrize("k", [1, 2, 3, 9])
def test_price_index_is_numpys_mean_of_the_relative_prices(k):
    """One asset class: the quotient in Python floats; several: the mean. Both
    must be float(np.mean(prices / initial_prices)) exactly."""
    rng = np.random.default_rng(k)
    market = Market(ModelConfig(n_assets=k), np.ones(k), rng.lognormal(size=k))
    for _ in range(50):
        market.prices = market.initial_prices * rng.lognormal(sigma=0.3, size=k)
        got = market.price_index
        assert type(got) is float
        assert got == float(np.mean(market.prices / market.initial_prices))


@pytest.mark.parametrize("stress", [-0.5, -0.0, 0.0, 1e-300, 0.3, 1.0, 1.7, math.inf, math.nan])
def test_interbank_rate_clips_stress_like_numpy(stress):
    cfg = ModelConfig()
    market = Market(cfg, np.ones(1))
    got = market.interbank_rate(stress)
    want = cfg.base_rate + cfg.rate_stress_spread * float(_clip(np.float64(stress), 0.0, 1.0))
    assert type(got) is float and (got == want or (math.isnan(got) and math.isnan(want)))
    assert market.rate is got


def test_mean_of_a_matrix_is_numpys():
    x = np.random.default_rng(0).lognormal(size=(37, 5)) * 1e3
    for a in (x, x.T, x[::2]):
        assert mean(a) == float(np.mean(a))


# ------------------------------------------------------------ distress and stress
def _reference_distress(equity, equity0, defaulted):
    q = np.zeros(len(equity))
    ok = equity0 > 0
    q[ok] = equity[ok] / equity0[ok]
    h = _clip(1.0 - q, 0.0, 1.0)
    h[defaulted] = 1.0
    return h


@pytest.mark.parametrize("seed", range(4))
def test_distress_in_place_is_the_formula(seed):
    rng = np.random.default_rng(seed)
    n = 200
    equity0 = rng.lognormal(size=n)
    equity0[::13] = 0.0
    equity0[5::17] = -1.0
    equity = equity0 * rng.uniform(-0.5, 1.5, n)
    equity[::11] = equity0[::11]  # h = 1 - 1 = +0.0 exactly
    defaulted = rng.random(n) < 0.1
    want = _reference_distress(equity, equity0, defaulted)
    assert _same_bits(risk.distress(equity, equity0, defaulted), want)
    out = np.full(n, np.nan)  # garbage where it writes
    got = risk.distress(equity, equity0, defaulted, out=out)
    assert got is out and _same_bits(out, want)
    # a list is still accepted (shape from np.shape)
    assert _same_bits(risk.distress(list(equity), equity0, defaulted), want)


def test_stress_index_is_the_clipped_weighted_mean():
    rng = np.random.default_rng(1)
    equity0 = rng.lognormal(size=50)
    equity = equity0 * rng.uniform(0.0, 1.2, 50)
    defaulted = rng.random(50) < 0.2
    h = _reference_distress(equity, equity0, defaulted)
    w = np.maximum(equity0, 0)
    want = float(_clip(w @ h / np.sum(w), 0.0, 1.0))
    for got in (risk.stress_index(equity, equity0, defaulted),
                risk.stress_index(equity, equity0, defaulted, h=h)):
        assert type(got) is float and got == want
    # no positive weight: the plain mean of h
    zero = np.zeros(50)
    assert risk.stress_index(equity, equity0, defaulted, weights=zero) == float(h.mean())
    # a weighted mean that rounds above 1 is clipped to 1
    assert risk.stress_index(np.zeros(3), np.full(3, 0.1), np.ones(3, bool)) == 1.0


# ------------------------------------------------------------ observations
def _reference_bank_columns(m: FinancialModel) -> np.ndarray:
    """The 16 bank columns as OBS_FIELDS defines them, column by column."""
    L, s, t, n = m.ledger, m.sheets, m.t, m.ledger.n
    lb = L.loans
    owed = lb.principal + lb.accrued
    bil = lb.ccp < 0
    ta = s.total_assets
    safe = np.where(ta > 0, ta, 1.0)
    due2 = np.bincount(lb.borrower[lb.maturity <= t + 1], weights=owed[lb.maturity <= t + 1],
                       minlength=n)
    due1 = np.bincount(lb.borrower[lb.maturity <= t], weights=owed[lb.maturity <= t],
                       minlength=n)
    need = due2 + m.flows.withdrawals + RUNOFF * L.deposits
    h = _reference_distress(L.equity, L.equity0, L.status == 1)
    ib = np.bincount(lb.lender[bil], weights=owed[bil], minlength=n)
    at_risk = np.bincount(lb.lender[bil], weights=(owed * h[lb.borrower])[bil], minlength=n)
    deg = m.network.degree
    nbr = np.bincount(m.network.src, weights=(L.status == 1)[m.network.dst].astype(float),
                      minlength=n)
    cov = np.full(n, 5.0)
    np.divide(L.cash, need, out=cov, where=need > 0)
    cfg = m.config
    scale = cfg.base_rate + cfg.rate_stress_spread
    cols = {
        "capital_ratio": _clip(s.capital_ratio, -1.0, 1.0),
        "leverage": _clip(L.equity / safe, -1.0, 1.0),
        "cash_ratio": _clip(L.cash / safe, 0.0, 1.0),
        "liquidity_coverage": _clip(cov, 0.0, 5.0) / 5,
        "interbank_assets": _clip(ib / safe, 0.0, 1.0),
        "interbank_liabilities": _clip(s.interbank_liabilities / safe, 0.0, 1.0),
        "deposit_funding": _clip(L.deposits / safe, 0.0, 1.0),
        "due_next": _clip(due1 / safe, 0.0, 1.0),
        "counterparty_stress": np.divide(at_risk, ib, out=np.zeros(n), where=ib > 0),
        "neighbour_defaults": np.divide(nbr, deg, out=np.zeros(n), where=deg > 0),
        "price": np.full(n, float(_clip(m.market.price_index, 0.0, 2.0))),
        "price_trend": np.full(n, float(_clip(10 * m.measures.price_return, -1.0, 1.0))),
        "interbank_rate": np.full(n, m.market.rate / scale if scale > 0 else 0.0),
        "market_stress": np.full(n, m.measures.market_stress),
        "own_distress": h,
        "size": _clip(np.log(np.maximum(ta, 1e-12) / m.reference.size0) / 3, -1.0, 1.0),
    }
    out = np.empty((n, OBS_DIM))
    for name, col in cols.items():
        out[:, OBS[name]] = col
    return out


@pytest.mark.parametrize("kw", [
    dict(n_banks=30, rng=1), dict(n_banks=40, scenario="systemic", rng=2),
    dict(n_banks=30, scenario="liquidity_crisis", n_exchanges=2, n_ccps=1, rng=3),
    dict(n_banks=25, scenario="asset_crash", n_assets=3, rng=4)])
def test_bank_observations_are_the_documented_columns(kw):
    """The ratio columns divided into the matrix and clipped as one block, the
    distress written into its column: the same bits as each column computed
    on its own, in the model's matrix (column-major) and in a row-major one."""
    m = FinancialModel(brain="rule_based", steps=10**9, **kw)
    rng = np.random.default_rng(len(kw))
    saw_defaults = False
    at_hi, at_lo = np.zeros(8, bool), np.zeros(8, bool)
    for step in range(40):
        m.step()
        snap = m.snapshot()
        L, n = m.ledger, m.ledger.n
        if step % 2:  # balance sheets pushed past every bound (put back below)
            L.equity *= rng.uniform(-30.0, 30.0, n)
            L.cash *= rng.uniform(0.0, 4.0, n)
            L.deposits *= rng.uniform(0.0, 4.0, n)
            L.holdings *= rng.uniform(0.0, 3.0, L.holdings.shape)
            L.loans.accrued += rng.uniform(0.0, 20.0, len(L.loans)) * L.loans.principal
            m.flows.withdrawals[:] = rng.uniform(0.0, 1.0, n) * L.deposits
        m.refresh()
        want = _reference_bank_columns(m)
        got = m.observe()[:, :OBS_DIM]
        assert _same_bits(got, want), np.argwhere(got != want)[:3]
        L = m.ledger
        bil = np.flatnonzero(L.loans.ccp < 0) if m.router is not None else slice(None)
        args = (L, m.sheets, m.market, m.measures, m.flows.withdrawals, m.network,
                m.reference.size0, m.config, m.t, bil)
        row_major = np.full((L.n, OBS_DIM), np.nan)
        assert bank_observations(*args, out=row_major) is row_major
        assert _same_bits(row_major, want) and _same_bits(bank_observations(*args), want)
        saw_defaults |= bool(L.defaulted.any())
        at_hi |= (want[:, :8] == 1.0).any(axis=0)
        at_lo |= (want[:, :8] == -1.0).any(axis=0)
        m.restore(snap)
    # the bounds were reached (the block clip did clip): +1 in the capital ratio,
    # leverage, coverage, interbank liabilities and deposit funding, -1 in the first two
    assert at_hi[[0, 1, 3, 5, 6]].all() and at_lo[:2].all(), (at_hi, at_lo)
    assert saw_defaults or kw.get("scenario") != "systemic"  # defaulted banks seen too


# ------------------------------------------------------------ emergency sales
def _general_path_sells(holdings: np.ndarray, liquid: np.ndarray) -> bool:
    """What the general path sells when nobody is short or in default."""
    share = capped_share(np.zeros(liquid.size), liquid)
    return bool(np.count_nonzero(holdings * share[:, None]))


def test_holds_unsellable_is_whether_the_general_path_would_sell():
    rng = np.random.default_rng(5)
    for trial in range(300):
        n, k = int(rng.integers(1, 12)), int(rng.integers(1, 4))
        holdings = rng.lognormal(size=(n, k)) * (rng.random((n, k)) < 0.7)
        liquid = holdings @ rng.uniform(0.0, 2.0, k)
        pick = rng.random(n)
        liquid[pick < 0.15] = 0.0  # worth nothing (a price of 0, a liquidation discount of 1)
        liquid[pick > 0.95] = np.nan
        if trial % 3 == 0:
            holdings[liquid <= 0] = 0.0  # resolved banks: nothing left
        assert _holds_unsellable(holdings, liquid) == _general_path_sells(holdings, liquid)


@pytest.mark.parametrize("kw", [dict(scenario="systemic", rng=6),
                                dict(scenario="systemic", n_assets=2, n_exchanges=2, n_ccps=1,
                                     rng=9)])
def test_clearing_with_resolved_banks_is_the_general_paths(monkeypatch, kw):
    """Banks resolved earlier hold nothing and are worth nothing: the clearing
    now skips the emergency-sale arithmetic for them. The whole ledger, step
    after step, must be what the general path (forced here) gives; and the
    shortcut must have been taken with such banks present. (Where a bank
    worth nothing still holds securities, the general path runs:
    test_holds_unsellable_is_whether_the_general_path_would_sell.)"""
    import finsim_mesa.resolution as resolution

    real = resolution._holds_unsellable

    def run(check) -> list[bytes]:
        monkeypatch.setattr(resolution, "_holds_unsellable", check)
        m = FinancialModel(n_banks=30, brain="rule_based", steps=10**9, **kw)
        seen = []
        for _ in range(40):
            m.step()
            L = m.ledger
            seen.append(b"".join(np.ascontiguousarray(getattr(L, a)).tobytes()
                                 for a in L._ARRAYS) + repr(sorted(L.external_in.items()))
                        .encode() + repr(vars(m.measures)).encode())
        assert L.defaulted.any()
        return seen

    skipped = []

    def spy(holdings, liquid):
        got = real(holdings, liquid)
        skipped.append(not got and not np.all(liquid > 0))  # a bank worth nothing, skipped
        return got

    assert run(spy) == run(lambda holdings, liquid: True)
    assert any(skipped)

# ------------------------------------------------------------ decisions
def _reference_rule_based(o: np.ndarray, requirement: float) -> np.ndarray:
    stress = np.maximum(o[:, OBS["market_stress"]], o[:, OBS["counterparty_stress"]])
    coverage = o[:, OBS["liquidity_coverage"]] * 5.0
    distress = o[:, OBS["own_distress"]]
    headroom = o[:, OBS["capital_ratio"]] / max(requirement, 1e-9)
    calm = _clip(0.8 - stress - distress, 0.0, 1.0)
    return np.stack([calm * _clip(coverage - 1.0, 0.0, 1.0),
                     _clip(0.5 * stress + distress - 0.1, 0.0, 1.0),
                     _clip(1.5 - headroom, 0.0, 1.0),
                     _clip(1.0 - coverage, 0.0, 1.0)], axis=1)


@pytest.mark.parametrize("order", ["C", "F"])
def test_rule_based_brain_is_its_rules(order):
    rng = np.random.default_rng(7)
    o = np.asarray(rng.uniform(-0.2, 1.2, (64, OBS_DIM)), order=order)
    brain = RuleBasedBrain(0.08)
    got = brain.act(o)
    want = _reference_rule_based(o, 0.08)
    assert got.shape == (64, 4) and np.array_equal(got, want)
    assert _same_bits(np.ascontiguousarray(got), want)
    assert brain.act(o[:0]).shape == (0, 4)


def test_check_actions_still_rejects_bad_actions():
    good = np.full((3, 4), 0.5)
    assert _same_bits(check_actions("b", good, 3), good)
    for bad, word in ((np.full((3, 4), np.nan), "NaN"), (np.full((3, 4), np.inf), "NaN"),
                      (np.full((3, 4), 1.5), "outside"), (-np.ones((3, 4)), "outside")):
        arr = good.copy()
        arr[1] = bad[1]
        with pytest.raises(BrainError, match=word):
            check_actions("b", arr, 3)
    assert _same_bits(check_actions("b", np.full((2, 4), 1 + 1e-7), 2), np.ones((2, 4)))


def test_brainset_without_active_banks_or_with_two_brains_gives_zeros_for_the_rest():
    n = 6
    obs = np.asarray(np.random.default_rng(8).random((n, OBS_DIM)), order="F")
    one = BrainSet("greedy", n, "rule_based")
    nobody = np.zeros(n, bool)
    assert _same_bits(one.decide(obs, nobody, [None] * n, {}), np.zeros((n, 4)))
    two = BrainSet({0: "greedy", 1: "greedy", "default": "passive"}, n, "rule_based")
    active = np.array([True, False, True, True, True, True])
    got = two.decide(obs, active, [None] * n, {3: np.full(4, 0.25), 1: np.ones(4)})
    want = np.zeros((n, 4))
    want[0] = [1.0, 0.0, 0.0, 1.0]  # greedy; bank 1 inactive: zeros, its override ignored
    want[3] = 0.25
    assert _same_bits(got, want)


# ------------------------------------------------------------ fire sales
def _reference_fire_sale_loop(ledger, market, cfg, units_sold, t):
    """The spiral as fire_sale_loop's docstring states it, every step written out:
    the price formula each round, orders (zeros at first) added and executed."""
    from finsim_mesa.market import deleveraging_units

    start = market.prices.copy()
    total = np.asarray(units_sold, dtype=float).copy()
    forced = np.zeros_like(ledger.holdings)
    orders = np.zeros_like(ledger.holdings)
    target = cfg.capital_requirement * (1.0 + cfg.deleveraging_buffer)
    rounds = 0
    for _ in range(cfg.fire_sale_rounds + 1):
        total += orders.sum(axis=0)
        old = ledger.prices.copy()
        prices = np.maximum(start * np.exp(-market.impact * total / market.units_outstanding),
                            market.floor)
        ledger.revalue(prices)
        market.set_prices(prices)
        if np.count_nonzero(orders):
            ledger.sell_assets(orders, 0.5 * (old + prices), kind="forced_sales")
            forced += orders
            orders = np.zeros_like(orders)
        if not cfg.forced_deleveraging or rounds == cfg.fire_sale_rounds:
            break
        rwa = ledger.risk_weighted_assets(cfg.interbank_risk_weight)
        eq = ledger.equity
        ratio = np.divide(eq, rwa, out=np.full_like(eq, np.inf), where=rwa > 0)
        breach = ledger.active & (ratio < cfg.capital_requirement)
        ledger.mark_default(breach & (eq <= 0), t)
        breach &= eq > 0
        if not np.count_nonzero(breach):
            break
        orders = deleveraging_units(eq, rwa, ledger.holdings, prices, target, breach,
                                    market.sale_ranks)
        if orders.sum() <= 1e-12:
            break
        rounds += 1
    return forced, rounds


@pytest.mark.parametrize("kw", [dict(rng=1), dict(capital_requirement=0.1, rng=2),
                                dict(capital_requirement=0.11, n_assets=3, rng=3),
                                dict(capital_requirement=0.11, fire_sale_rounds=1, rng=4)])
def test_fire_sale_loop_is_the_spiral_written_out(kw):
    """Rounds without orders skip their sums, a round with nothing sold skips the
    price formula (exp(±0) = 1), nobody below the requirement skips the default
    test: the ledger, the market and the result must be the spiral's, with
    nothing sold, with this step's sales and with deleveraging rounds."""
    from finsim_mesa.market import fire_sale_loop

    m = FinancialModel(n_banks=40, scenario="systemic", brain="rule_based", steps=10**9, **kw)
    rng = np.random.default_rng(0)
    rounds_seen = set()
    for _ in range(25):
        m.step()
        for sold in (np.zeros(m.config.n_assets),
                     rng.uniform(0, 1.5, m.config.n_assets) * m.market.units_outstanding):
            snap = m.snapshot()
            want = _reference_fire_sale_loop(m.ledger, m.market, m.config, sold, m.t)
            after = m.snapshot()
            m.restore(snap)
            got = fire_sale_loop(m.ledger, m.market, m.config, sold, m.t)
            assert got[1] == want[1] and _same_bits(got[0], want[0])
            for key in m.ledger._ARRAYS:
                assert _same_bits(getattr(m.ledger, key), after["ledger"][key]), key
            assert dict(m.ledger.external_in) == after["ledger"]["external_in"]
            for key in ("prices", "fundamentals"):
                assert _same_bits(getattr(m.market, key), after["market"][key])
            assert m.market.last_return == after["market"]["last_return"]
            rounds_seen.add(got[1])
            m.restore(snap)
    assert kw.get("capital_requirement") is None or max(rounds_seen) >= 1
