"""The model's kept agent lists (infrastructure.kept): always what Mesa's agent
sets hold, and a model that reads them kept runs bit for bit as one that reads
Mesa's sets every time (the former form)."""

from __future__ import annotations

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.infrastructure import CentralCounterparty, Exchange, ExchangeQueue
from finsim_mesa.infrastructure.kept import KeptAgentLists


def fresh(m, kind):
    """The former form: Mesa's agent set read now."""
    return tuple(m.agents_by_type.get(kind, ()))


def test_kept_lists_follow_registration_removal_and_direct_edits():
    m = FinancialModel(n_banks=20, n_exchanges=2, n_ccps=1, rng=1)
    m.run_for(2)
    for kind in (Exchange, CentralCounterparty):
        assert m.of_type(kind) == fresh(m, kind) and len(fresh(m, kind)) > 0
    assert m.exchanges == list(fresh(m, Exchange)) and m.ccps == list(fresh(m, CentralCounterparty))
    assert m.of_type(int) == () == fresh(m, int)
    # a new exchange registers: the kept list is dropped and read again
    extra = Exchange(m, 2, ExchangeQueue(1.0), node=999)
    assert m.of_type(Exchange) == fresh(m, Exchange) and extra in m.of_type(Exchange)
    # removed (Mesa deregisters it)
    extra.remove()
    assert m.of_type(Exchange) == fresh(m, Exchange) and extra not in m.of_type(Exchange)
    # one removed and another registered: as many as before, yet read again
    gone = m.of_type(Exchange)[-1]
    gone.remove()
    new = Exchange(m, 5, ExchangeQueue(1.0), node=998)
    assert m.of_type(Exchange) == fresh(m, Exchange)
    assert new in m.of_type(Exchange) and gone not in m.of_type(Exchange)
    # the agent set edited directly (no registration): another length, read again
    first = m.of_type(Exchange)[0]
    m.agents_by_type[Exchange].remove(first)
    assert m.of_type(Exchange) == fresh(m, Exchange) and first not in m.of_type(Exchange)
    # the lists handed out are the caller's
    lst = m.exchanges
    lst.clear()
    assert m.exchanges == list(fresh(m, Exchange))


def test_kept_lists_are_not_state():
    """The cache prints as a constant (the state walks of the snapshot tests see
    no difference between twins)."""
    m = FinancialModel(n_banks=10, n_exchanges=1, n_ccps=1, rng=2)
    m.of_type(Exchange)
    assert repr(m.__dict__["_kept_agents"]) == "<kept agent lists>"
    assert not hasattr(m.__dict__["_kept_agents"], "__dict__")
    assert isinstance(m, KeptAgentLists)


@pytest.mark.parametrize("kw", [dict(n_banks=200, n_exchanges=2, n_ccps=1, rng=7),
                                dict(n_banks=60, scenario="systemic", n_exchanges=3, n_ccps=2,
                                     ccp_clearing_share=0.5, venue_rule="random",
                                     exchange_capacity=0.0005, rng=17)])
def test_a_model_reading_kept_lists_runs_as_one_reading_mesa(kw, monkeypatch):
    """Twin runs, one with of_type reading Mesa's set every time: the same bits."""
    b = FinancialModel(**kw)
    with monkeypatch.context() as mp:
        mp.setattr(KeptAgentLists, "of_type", fresh)
        b.run_for(15)
    a = FinancialModel(**kw)
    a.run_for(15)
    for name, v in vars(a.ledger).items():
        if isinstance(v, np.ndarray):
            assert v.tobytes() == getattr(b.ledger, name).tobytes(), name
    assert a.router.audit().equals(b.router.audit())
    assert a.datacollector.get_model_vars_dataframe().equals(
        b.datacollector.get_model_vars_dataframe())
