"""helper-38 (issue 15): the observe stage with fewer NumPy calls — the bank
columns written into bank_observations' own new matrix (no overlap checks for
the distress column), the neighbour-default column left at +0.0 while nobody
is in default, and the four system-wide columns written as one block. Checked
bit for bit against the checked path (a caller's ``out``) and against plain
loops of the columns' definitions."""

import numpy as np
import pytest

from finsim_mesa import FinancialModel, observation, risk
from finsim_mesa.observation import OBS, OBS_DIM, bank_observations


def _args(m):
    return (m.ledger, m.sheets, m.market, m.measures, m.flows.withdrawals, m.network,
            m.reference.size0, m.config, m.t, slice(None))


def _neighbour_defaults(m):
    """Share of each bank's network neighbours in default, by a loop over the links."""
    n, net = m.ledger.n, m.network
    count = [0.0] * n
    for s, d in zip(net.src.tolist(), net.dst.tolist(), strict=True):
        count[s] += float(m.ledger.status[d] != 0)
    return np.array([c / g if g > 0 else 0.0 for c, g in zip(count, net.degree, strict=True)])


@pytest.mark.parametrize("defaults", [False, True])
@pytest.mark.parametrize("seed", [1, 2])
def test_fresh_matrix_is_the_checked_paths(seed, defaults):
    m = FinancialModel(n_banks=60, scenario="systemic", rng=seed, steps=40)
    m.run_for(5)
    L = m.ledger
    if defaults:
        L.status[::7] = 1
    else:
        L.status[:] = 0
    L.equity0[3] = 0.0  # distress 1 without positive initial equity
    L.equity[4] = -0.0
    got = bank_observations(*_args(m))
    assert got.shape == (L.n, OBS_DIM) and got.flags.f_contiguous
    given = np.full((L.n, OBS_DIM), np.nan, order="F")
    ref = bank_observations(*_args(m), out=given)  # the caller's array: the checked path
    assert ref is given
    assert got.tobytes(order="F") == ref.tobytes(order="F")
    # the changed columns against their definitions
    h = risk.distress(L.equity, L.equity0, L.defaulted)
    assert got[:, OBS["own_distress"]].tobytes() == h.tobytes()
    nd = _neighbour_defaults(m)
    assert got[:, OBS["neighbour_defaults"]].tobytes() == nd.tobytes()
    assert bool(nd.any()) == defaults
    scale = m.config.base_rate + m.config.rate_stress_spread
    system = [float(np.clip(m.market.price_index, 0, 2)),
              float(np.clip(10 * m.measures.price_return, -1, 1)),
              m.market.rate / scale, m.measures.market_stress]
    for j, value in zip(range(OBS["price"], OBS["market_stress"] + 1), system, strict=True):
        assert got[:, j].tobytes() == np.full(L.n, value).tobytes()


def test_observe_is_the_bank_columns_in_a_new_column_major_matrix():
    m = FinancialModel(n_banks=40, scenario="liquidity_crisis", rng=4, steps=30)
    for _ in range(8):
        m.step()
        o = observation.observe(m)
        assert o.shape == (40, OBS_DIM) and o.flags.f_contiguous and o.flags.owndata
        former = np.empty((40, OBS_DIM), order="F")  # 87a6056's observe: a slice of it
        bank_observations(*_args(m)[:-1], slice(None), out=former[:, :OBS_DIM])
        assert o.tobytes(order="F") == former.tobytes(order="F")
        assert o is not m.decisions.observations


@pytest.mark.parametrize("kw", [dict(n_exchanges=1, n_ccps=1), dict(n_assets=2)])
def test_wider_observations_keep_their_columns(kw):
    m = FinancialModel(n_banks=30, rng=3, steps=20, **kw)
    m.run_for(3)
    o = observation.observe(m)
    assert o.flags.f_contiguous and o.shape[1] > OBS_DIM
    bank = bank_observations(*_args(m)[:-1],
                             np.flatnonzero(m.ledger.loans.ccp < 0) if m.router else slice(None))
    assert o[:, :OBS_DIM].tobytes(order="F") == bank.tobytes(order="F")


def test_distress_into_a_new_array_is_distress():
    rng = np.random.default_rng(38)
    e, e0 = rng.standard_normal(50), rng.standard_normal(50)
    e0[:5] = [0.0, -0.0, np.nan, -1.0, 1e-300]
    e[5:8] = [np.nan, -0.0, np.inf]
    d = rng.random(50) < 0.2
    h = np.zeros(50)
    assert risk._distress_into(h, e, e0, d) is h
    assert h.tobytes() == risk.distress(e, e0, d).tobytes()
    ref = np.array([1.0 if di else (min(max(1 - a / b, 0.0), 1.0) if b > 0 else 1.0)
                    for a, b, di in zip(e, e0, d, strict=True)])
    np.testing.assert_array_equal(h, ref)  # NaN where a NaN equity has e0 > 0
