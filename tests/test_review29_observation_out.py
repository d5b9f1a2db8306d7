"""``observation.bank_observations(out=...)`` (ade6b35) with a float32 matrix
(e.g. a learning buffer): the columns were computed in float64 and rounded once
when stored; computing in place rounded every intermediate (the size and
liquidity columns, distress) to float32."""

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.observation import OBS_DIM, bank_observations


@pytest.mark.parametrize("order", ["F", "C"])
def test_bank_observations_into_float32_round_once(order):
    """Each column as float64, stored as float32: what ``out[:, j] = column`` stores."""
    m = FinancialModel(n_banks=40, scenario="systemic", rng=1)
    for _ in range(6):
        m.step()
    L = m.ledger
    args = (L, m.sheets, m.market, m.measures, m.flows.withdrawals, m.network,
            m.reference.size0, m.config, m.t, slice(None))
    want64 = bank_observations(*args)  # float64 (the model's own path)
    out = np.empty((L.n, OBS_DIM), np.float32, order=order)
    got = bank_observations(*args, out=out)
    assert got is out
    assert got.tobytes() == want64.astype(np.float32).tobytes()
