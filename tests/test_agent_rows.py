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


def test_stored_rows_are_compact_and_behave_as_mesas_lists():
    import pickle

    from finsim_mesa.measures import AgentRows

    m = FinancialModel(n_banks=12, scenario="systemic", rng=2)
    m.run_for(4)
    key = max(m.datacollector._agent_records)
    rows = m.datacollector._agent_records[key]
    assert isinstance(rows, AgentRows)  # columns kept, tuples made when read
    mesa_rows = list(m.datacollector._record_agents(m))  # the same state, Mesa's shape
    _same(list(rows), mesa_rows)
    assert len(rows) == 12 and rows == mesa_rows
    _same([rows[0], rows[-1]], [mesa_rows[0], mesa_rows[-1]])
    _same(rows[2:5], mesa_rows[2:5])
    _same(list(pickle.loads(pickle.dumps(rows))), mesa_rows)
    m.step()  # later steps do not change a stored step's rows (arrays copied)
    _same(list(m.datacollector._agent_records[key]), mesa_rows)


class _MesaRows(FinancialModel):
    """The same model with Mesa's generic agent rows (the reference)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.datacollector._columns = None


def test_batch_run_agent_rows_equal_mesas_generic_rows():
    import inspect

    import mesa

    def rows(model_cls):
        params = {"n_banks": [10], "scenario": ["systemic"], "steps": [6]}
        kw = {}
        if "rng" in inspect.signature(mesa.batch_run).parameters:
            kw["rng"] = [4, 5]
        else:
            params["rng"] = [4, 5]
        out = mesa.batch_run(model_cls, parameters=params, number_processes=1, max_steps=6,
                             data_collection_period=1, display_progress=False, **kw)
        return sorted((r["iteration"], r["Step"], r["AgentID"], r["equity"], r["cash"],
                       r["capital_ratio"], r["defaulted"]) for r in out)

    got, want = rows(FinancialModel), rows(_MesaRows)
    assert len(got) == len(want) > 10 * 6
    assert got == want
