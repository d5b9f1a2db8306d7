"""helper-79: the shock and observe stages at 30-100 banks with fewer NumPy calls.

* ``observation.due_rows`` below 4,096 loans: the first ``k`` as a slice found by
  two counts of the mask (not the indices' ends);
* ``bank_observations``: the clip of the first eight columns on the transpose's
  rows with (8, 1) bounds;
* ``Market.exogenous_prices``: one class draws ``standard_normal()`` (a float),
  not ``standard_normal(1)``;
* ``ShockEngine.draw``: the active banks' ids found only when a shock needs them.

Each is checked bit for bit against the former form kept here (or in
tests/test_big61_observe.py), the generators' states included.
"""

import numpy as np
import pytest

from finsim_mesa import FinancialModel, observation
from finsim_mesa.fastmath import flatnonzero, leading
from finsim_mesa.market import Market
from finsim_mesa.scenarios import get_scenario
from finsim_mesa.scenarios.engine import Shock, ShockEngine, _pick
from finsim_mesa.scenarios.engine import _ids as engine_ids
from tests.test_big61_observe import _args, _former_bank_observations


def _as_rows(rows, size):
    """The indices that a slice or an index array ``rows`` reads."""
    return np.arange(size)[rows]


def _mat_cases():
    rng = np.random.default_rng(79)
    yield np.zeros(0, dtype=np.int64)
    for size in (1, 2, 7, 120, 400, 4095):
        srt = np.sort(rng.integers(0, 12, size))
        yield srt
        yield srt.astype(np.int32)
        yield rng.integers(0, 12, size)  # unsorted
        gap = srt.copy()
        gap[size // 2:] = 11
        gap[-1] = 0  # a due loan after ones not due: not the first k
        yield gap


@pytest.mark.parametrize("t", [-1, 0, 3, 5, 10, 11, 20])
def test_due_rows_is_the_former(t):
    """The same rows as leading(flatnonzero(maturity <= t)) (the former form) and
    np.flatnonzero, a slice exactly when those are the first k."""
    for mat in _mat_cases():
        got = observation.due_rows(mat, t)
        want = leading(flatnonzero(mat <= t))
        assert type(got) is type(want)
        if isinstance(want, slice):  # (Python ints: a NumPy int in a slice slows its users)
            assert got == want and type(got.stop) is type(want.stop) is int
        else:
            assert got.dtype == want.dtype and np.array_equal(got, want)
        assert np.array_equal(_as_rows(got, mat.size), np.flatnonzero(mat <= t))


def test_due_rows_not_first_k_gives_indices():
    """k due loans that are not the first k (count equal, positions not): indices."""
    mat = np.array([5, 0, 0, 5])
    got = observation.due_rows(mat, 1)
    assert not isinstance(got, slice) and got.tolist() == [1, 2]
    assert observation.due_rows(np.array([0, 0, 5, 5]), 1) == slice(0, 2)


@pytest.mark.parametrize("n,scenario,seed", [(30, "systemic", 1), (30, "normal", 2),
                                             (100, "liquidity_crisis", 3),
                                             (50, "asset_crash", 4)])
def test_small_runs_observe_the_former_bits(n, scenario, seed, monkeypatch):
    """Every step's bank columns at 30-100 banks equal the former form's (7c9fe3b,
    kept in test_big61_observe), with a new matrix and with a caller's F, C and
    float32 ones."""
    m = FinancialModel(n_banks=n, scenario=scenario, brain="rule_based", rng=seed,
                       agent_collect_every=0)
    real = observation.bank_observations
    seen = []

    def both(*args, **kwargs):
        want = _former_bank_observations(*args, **kwargs)
        got = real(*args, **kwargs)
        assert got.tobytes() == want.tobytes()
        for dtype, order in ((float, "F"), (float, "C"), (np.float32, "F")):
            out = np.full(want.shape, 9.0, dtype=dtype, order=order)
            assert real(*args, out=out) is out
            assert out.tobytes() == want.astype(dtype).tobytes()
        seen.append(args[0].defaulted.any())
        return got

    monkeypatch.setattr(observation, "bank_observations", both)
    m.run_for(25)
    assert len(seen) == 25


def test_edited_small_ledger_gives_the_former_bits():
    """Signed zeros, NaN, infinities and a total of about 0 at 30 banks (the
    clip's small-size path) against the former form."""
    m = FinancialModel(n_banks=30, scenario="normal", brain="rule_based", rng=7,
                       agent_collect_every=0)
    m.run_for(4)
    L = m.ledger
    L.cash[[1, 2]] = -0.0
    L.equity[3] = -0.0
    L.deposits[4], L.deposits[5] = np.nan, -np.nan
    L.cash[6], L.deposits[7], L.cash[8] = np.inf, -np.inf, -1e-300
    L.other_assets[9] = np.inf
    L.holdings[10] = 0.0
    L.other_assets[10] = -L.cash[10]
    m.refresh()
    with np.errstate(all="ignore"):
        want = _former_bank_observations(*_args(m))
        got = observation.bank_observations(*_args(m))
    assert got.tobytes() == want.tobytes()
    assert np.isnan(got[4:6, observation.OBS["deposit_funding"]]).all()


def _former_exogenous_prices(market, volatility, rng):
    """Market.exogenous_prices as of 029761d."""
    eps = rng.standard_normal(market.prices.size)
    logp = np.log(market.prices)
    if logp.size == 1 == market.fundamentals.size:
        x = logp.item()
        logp[0] = x + (market.cfg.mean_reversion * (np.log(market.fundamentals).item() - x)
                       + volatility * eps.item())
    else:
        logp += market.cfg.mean_reversion * (np.log(market.fundamentals) - logp) + volatility * eps
    return np.maximum(np.exp(logp), market.floor)


@pytest.mark.parametrize("n_assets", [1, 2, 3])
def test_exogenous_prices_are_the_former(n_assets):
    """The same prices and the same generator state after, step after step (one
    class: the float draw is the value standard_normal(1) holds)."""
    m = FinancialModel(n_banks=30, n_assets=n_assets, rng=3, agent_collect_every=0)
    market = m.market
    a, b = np.random.default_rng(11), np.random.default_rng(11)
    for i in range(300):
        vol = (0.0, 0.02, 0.5, 3.0)[i % 4]
        got = market.exogenous_prices(vol, a)
        want = _former_exogenous_prices(market, vol, b)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
        market.prices = got if i % 3 else market.floor.copy()
    assert a.bit_generator.state == b.bit_generator.state
    assert market.prices.size == n_assets


def test_one_draw_is_the_array_draws_value():
    """standard_normal() is standard_normal(1)'s value, as a float, and moves the
    generator as far."""
    for seed in range(50):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        for _ in range(20):
            x, y = a.standard_normal(), b.standard_normal(1)
            assert type(x) is float and np.float64(x).tobytes() == y.tobytes()
        assert a.bit_generator.state == b.bit_generator.state


def _former_draw(sc, step, active, size, rng):
    """ShockEngine.draw as of 029761d."""
    shocks = []
    alive = flatnonzero(active)
    if sc.default_step == step and sc.default_count:
        shocks.append(Shock("default", 1.0,
                            _pick(sc.default_target, sc.default_count, alive, size, rng)))
    if sc.crash_step == step:
        shocks.append(Shock("price_crash", sc.crash_magnitude, asset=sc.crash_asset))
    if sc.funding_active(step) and alive.size:
        hit = alive[rng.random(alive.size) < sc.funding_stress_probability]
        if hit.size:
            shocks.append(Shock("funding_withdrawal", sc.funding_stress, hit))
    if sc.shock_probability > 0 and rng.random() < sc.shock_probability and alive.size:
        count = max(1, round(sc.shock_fraction * alive.size))
        shocks.append(Shock("loss", sc.shock_magnitude,
                            _pick(sc.shock_target, count, alive, size, rng)))
    return shocks


def _same_shocks(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (g.kind, g.magnitude, g.source, g.asset) == (w.kind, w.magnitude, w.source,
                                                           w.asset)
        assert (g.banks is None) == (w.banks is None)
        if g.banks is not None:
            assert g.banks.dtype == w.banks.dtype and np.array_equal(g.banks, w.banks)


@pytest.mark.parametrize("name", ["normal", "liquidity_crisis", "asset_crash", "systemic"])
def test_draw_is_the_former(name):
    """Every scenario's shocks over 60 steps, with all, some and no banks active,
    and the generator state after, equal the former draw's."""
    sc = get_scenario(name)
    engine = ShockEngine(sc)
    size = np.random.default_rng(1).random(40)
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    kinds = set()
    for step in range(1, 61):
        active = np.ones(40, dtype=bool)
        if step % 3 == 1:
            active[::4] = False
        elif step % 3 == 2 and step > 30:
            active[:] = False
        got = engine.draw(step, active, size, a)
        want = _former_draw(sc, step, active, size, b)
        _same_shocks(got, want)
        kinds |= {s.kind for s in got}
    assert a.bit_generator.state == b.bit_generator.state
    assert kinds, name  # (each scenario draws some shock in 60 steps)


def test_ids_found_once():
    """_ids: the ids of the active banks when none are found yet, else those."""
    active = np.array([True, False, True])
    assert engine_ids(None, active).tolist() == [0, 2]
    kept = np.array([7])
    assert engine_ids(kept, active) is kept


def test_market_one_class_step_bits():
    """A 30-bank run's prices step by step equal the former exogenous draws'
    (the shock stage replayed with the former form on a copy of the state)."""
    m = FinancialModel(n_banks=30, scenario="systemic", rng=9, agent_collect_every=0)
    for _ in range(20):
        rng_copy = np.random.default_rng()
        rng_copy.bit_generator.state = m.rng.bit_generator.state
        want = _former_exogenous_prices(m.market, m.scenario_spec.price_volatility, rng_copy)
        got = m.market.exogenous_prices(m.scenario_spec.price_volatility, m.rng)
        assert got.tobytes() == want.tobytes()
        assert m.rng.bit_generator.state == rng_copy.bit_generator.state
        m.step()
    assert isinstance(m.market, Market)
