"""Agent data rows built from the ledger's arrays equal Mesa's own rows.

``FinsimDataCollector`` builds the banks' rows from ``Bank.COLUMNS`` (one array
per column) instead of calling each bank's properties (issue 15: agent data at
1,000 banks cost 2.5-2.9x the step). The reference here is Mesa's generic
path: the same model's collector with the column functions switched off, so
Mesa calls ``Bank.equity``, ``Bank.cash``, ... for every bank.
"""

import math

import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.agents.bank import Bank
from finsim_mesa.measures import FinsimDataCollector


def _rows_both_ways(model):
    dc = model.datacollector
    fast = list(dc._record_agents(model))
    saved, dc._columns = dc._columns, None
    try:
        slow = list(dc._record_agents(model))
    finally:
        dc._columns = saved
    return fast, slow


def _same(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        assert len(ra) == len(rb)
        for x, y in zip(ra, rb, strict=True):
            assert type(x) is type(y), (ra, rb)
            assert x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)), (ra, rb)


@pytest.mark.parametrize("kwargs", [
    dict(n_banks=40, scenario="systemic"),
    dict(n_banks=30, scenario="liquidity_crisis", n_exchanges=2, n_ccps=1),
])
def test_array_rows_equal_mesa_rows_every_step_including_defaults(kwargs):
    m = FinancialModel(rng=3, steps=10**6, **kwargs)
    assert m.datacollector._columns is not None  # the array path is the one in use
    saw_default = False
    for _ in range(25):
        m.step()
        fast, slow = _rows_both_ways(m)
        _same(fast, slow)
        saw_default |= any(r[-1] for r in fast)
    if kwargs["scenario"] == "systemic":
        assert saw_default  # the defaulted column was exercised with True values


def test_stored_records_and_dataframe_match_a_run_without_the_array_path():
    a = FinancialModel(n_banks=25, scenario="asset_crash", rng=5, agent_collect_every=2)
    b = FinancialModel(n_banks=25, scenario="asset_crash", rng=5, agent_collect_every=2)
    b.datacollector._columns = None
    a.run_for(12)
    b.run_for(12)
    assert a.datacollector._agent_records.keys() == b.datacollector._agent_records.keys()
    for k in a.datacollector._agent_records:
        _same(a.datacollector._agent_records[k], b.datacollector._agent_records[k])
    da = a.datacollector.get_agent_vars_dataframe()
    db = b.datacollector.get_agent_vars_dataframe()
    assert da.equals(db)


def test_other_reporters_use_mesas_path():
    dc = FinsimDataCollector(agent_reporters={"equity": "equity", "size": "total_assets"},
                             agent_columns=Bank.COLUMNS)
    assert dc._columns is None
    dc = FinsimDataCollector(agent_reporters=dict(Bank.REPORTERS), agent_columns=Bank.COLUMNS)
    assert dc._columns is not None
