"""helper-38 (issue 15): the exogenous price move of one asset class in Python
floats (the same IEEE operations in the same order as NumPy's elementwise
ones; NumPy's log and exp kept) gives the former arrays' bits and draws the
same numbers from the generator."""

import numpy as np
import pytest

from finsim_mesa import FinancialModel


def _former(market, volatility, rng):
    """Market.exogenous_prices as it was (87a6056), on arrays."""
    eps = rng.standard_normal(market.prices.size)
    logp = np.log(market.prices)
    logp += market.cfg.mean_reversion * (np.log(market.fundamentals) - logp) + volatility * eps
    return np.maximum(np.exp(logp), market.floor)


@pytest.mark.parametrize("assets", [1, 3])
def test_exogenous_prices_give_the_former_bits(assets):
    m = FinancialModel(n_banks=10, n_assets=assets, rng=1)
    market = m.market
    draw = np.random.default_rng(38)
    for trial in range(3000):
        market.prices = draw.lognormal(0.0, 0.5 if trial % 3 else 3.0, assets)
        market.fundamentals = draw.lognormal(0.0, 0.3, assets)
        market.cfg = market.cfg.model_copy(update=dict(mean_reversion=float(draw.random())))
        volatility = [0.0, 0.02, float(draw.random()), 1e-300][trial % 4]
        seed = int(draw.integers(1 << 32))
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        got = market.exogenous_prices(volatility, a)
        want = _former(market, volatility, b)
        assert got.tobytes() == want.tobytes()
        assert a.bit_generator.state == b.bit_generator.state


@pytest.mark.parametrize("scenario", ["asset_crash", "systemic"])
def test_a_run_gives_the_former_runs_bits(monkeypatch, scenario):
    m = FinancialModel(n_banks=20, scenario=scenario, rng=4, steps=60)
    for _ in range(30):
        m.step()
    with monkeypatch.context() as patch:
        patch.setattr("finsim_mesa.market.Market.exogenous_prices", _former)
        ref = FinancialModel(n_banks=20, scenario=scenario, rng=4, steps=60)
        for _ in range(30):
            ref.step()
    assert m.market.prices.tobytes() == ref.market.prices.tobytes()
    assert m.ledger.equity.tobytes() == ref.ledger.equity.tobytes()
    assert m.rng.bit_generator.state == ref.rng.bit_generator.state
