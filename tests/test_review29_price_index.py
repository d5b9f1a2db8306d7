"""Market.price_index of one asset class (issue 15's Python-float shortcut) gives
what ``float(np.mean(prices / initial_prices))`` gives for every price, not
only for the positive finite ones a run produces: an initial price of 0 (a
market built or restored by hand) gave inf / NaN, not ZeroDivisionError, and
a zero price of either sign gave +0.0 (NumPy's sum adds to +0.0)."""

import math

import numpy as np
import pytest

from finsim_mesa.config import ModelConfig
from finsim_mesa.market import Market

NAN, INF = math.nan, math.inf


def _numpy_reference(p: float, p0: float) -> float:
    """The definition, written with NumPy's mean (its pairwise sum, divided by the count)."""
    with np.errstate(all="ignore"):
        return float(np.mean(np.array([p]) / np.array([p0])))


@pytest.mark.parametrize(("p0", "p"), [
    (1.0, 0.5), (0.0, 0.5), (0.0, 0.0), (0.0, -0.0), (-0.0, 1.0), (1.0, -0.0), (-1.0, 0.0),
    (-1.0, -0.0), (1.0, NAN), (NAN, 1.0), (0.0, NAN), (1.0, INF), (INF, 1.0), (INF, INF),
    (3.0, 0.1), (1e-300, 1e300), (2.0, -3.0)])
def test_one_class_price_index_is_numpys_mean(p0, p):
    market = Market(ModelConfig(), np.ones(1), np.array([p0]))
    market.prices = np.array([p])
    with np.errstate(all="ignore"):
        got = market.price_index
    want = _numpy_reference(p, p0)
    assert type(got) is float
    # sign-sensitive: the same bits (NaN: both NaN)
    assert np.float64(got).tobytes() == np.float64(want).tobytes() or (
        math.isnan(got) and math.isnan(want))


def test_set_prices_with_a_zero_initial_price_keeps_numpys_inf():
    """set_prices reads price_index twice: no ZeroDivisionError mid-update."""
    market = Market(ModelConfig(), np.ones(1), np.array([0.0]))
    with np.errstate(all="ignore"):
        market.set_prices(np.array([0.5]))
        assert market.prices.tolist() == [0.5]
        assert market.price_index == INF
