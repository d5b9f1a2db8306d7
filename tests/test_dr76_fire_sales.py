"""helper-76: the fire-sale loop's first clearing skips ``ledger.revalue`` and
``market.set_prices`` when they would change no bit (``market._unchanged``: one
class, the same price bits, finite price index and holdings, no equity of ±0.0)
and sets the last return to 0.0 as ``set_prices`` does. Checked against the two
calls themselves on awkward states, and whole runs against the loop with the
skip disabled (equity, prices, last return, defaults bit for bit)."""

import copy

import numpy as np
import pytest

from finsim_mesa import market as mk
from finsim_mesa.model import FinancialModel


def _state(n=30, steps=5, seed=1, **kw):
    m = FinancialModel(n_banks=n, brain="rule_based", agent_collect_every=0, steps=10**9,
                       rng=seed, **kw)
    m.run_for(steps)
    return m.ledger, m.market


def _effect(ledger, market, prices):
    """What the two calls change: (equity bytes, ledger prices, market prices, last return)."""
    L, M = copy.deepcopy(ledger), copy.deepcopy(market)
    L.revalue(prices)
    M.set_prices(prices)
    return L.equity.tobytes(), L.prices.tobytes(), M.prices.tobytes(), M.last_return


def _bits(ledger, market):
    return (ledger.equity.tobytes(), ledger.prices.tobytes(), market.prices.tobytes())


def _change(kind, L, M):
    if kind == "zero_equity":
        L.equity[3] = 0.0
    elif kind == "minus_zero_equity":
        L.equity[3] = -0.0
    elif kind == "nan_holding":
        L.holdings[2, 0] = np.nan
    elif kind == "inf_holding":
        L.holdings[2, 0] = np.inf
    elif kind == "negative_holding":
        L.holdings[2, 0] = -1.0
    elif kind == "nan_equity":
        L.equity[4] = np.nan
    elif kind == "zero_initial_price":
        M.initial_prices = np.zeros(1)


@pytest.mark.parametrize("kind", ["plain", "zero_equity", "minus_zero_equity", "nan_holding",
                                  "inf_holding", "negative_holding", "nan_equity",
                                  "zero_initial_price", "other_price", "next_float"])
def test_unchanged_only_where_the_calls_change_nothing(kind):
    L, M = _state()
    _change(kind, L, M)
    prices = M.prices.copy()
    if kind == "other_price":
        prices *= 0.99
    if kind == "next_float":
        prices = np.nextafter(prices, 2.0)
    said = mk._unchanged(L, M, prices)
    eq, lp, mp, ret = _effect(L, M, prices)
    really = (eq, lp, mp) == _bits(L, M) and ret == 0.0 and not np.signbit(ret)
    if said:
        assert really
    assert said == (kind in ("plain", "zero_equity", "negative_holding", "nan_equity"))


def test_two_classes_are_not_skipped():
    L, M = _state(n=30, n_assets=2)
    assert not mk._unchanged(L, M, M.prices.copy())


@pytest.mark.parametrize("n,scenario,seed", [(30, None, 1), (100, None, 2), (30, "asset_crash", 3),
                                             (60, "systemic", 4), (30, "liquidity_crisis", 5)])
def test_runs_as_with_both_calls(monkeypatch, n, scenario, seed):
    def run(skip):
        if not skip:
            monkeypatch.setattr(mk, "_unchanged", lambda *a: False)
        m = FinancialModel(n_banks=n, brain="rule_based", agent_collect_every=0, steps=10**9,
                           rng=seed, scenario=scenario)
        out = []
        for _ in range(40):
            m.step()
            out.append((m.ledger.equity.tobytes(), m.market.prices.tobytes(), m.t,
                        m.market.last_return, m.ledger.defaulted.tobytes()))
        monkeypatch.undo()
        return out
    calls = []
    real = mk._unchanged
    monkeypatch.setattr(mk, "_unchanged", lambda *a: calls.append(r := real(*a)) or r)
    got = run(True)
    assert any(calls)  # (the skip was taken)
    assert got == run(False)
