"""A step is all or nothing (issue 15's transaction class, LoanBook.copy without
``__init__``, the collector's mark / rollback): a step that raises in any
stage, after that stage has done its work, leaves the model as it was (the
whole-state fingerprint, Mesa's clock, every DataCollector record), and the
model then runs on exactly as a twin that never failed (the loan book's
capacity buffers included: they are rebuilt, not shared with the snapshot).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import finsim_mesa.model as model_module
from finsim_mesa import FinancialModel
from finsim_mesa.api.fingerprint import fingerprint
from finsim_mesa.infrastructure import layer


class Boom(Exception):
    """The failure injected after a stage has run."""


def _records(m: FinancialModel) -> dict[str, Any]:
    """Everything the DataCollector holds, as plain values with their types, and
    Mesa's clock."""
    dc = m.datacollector
    return {
        "model_vars": {k: [(type(v), v) for v in vals] for k, vals in dc.model_vars.items()},
        "agents": {k: list(rows) for k, rows in dc._agent_records.items()},
        "agenttypes": {k: {t: list(r) for t, r in v.items()}
                       for k, v in dc._agenttype_records.items()},
        "collection_steps": list(getattr(dc, "_collection_steps", [])),
        "steps": m.steps, "time": getattr(m, "time", None),
    }


def _then_raise(fn: Any) -> Any:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        fn(*args, **kwargs)
        raise Boom

    return wrapped


STAGES = ["shock", "observe", "decide", "act", "settle", "clear", "price", "record"]
INNER = ["book_orders", "call_margin", "update_rewards", "collect"]


def _inject(monkeypatch: pytest.MonkeyPatch, m: FinancialModel, where: str) -> None:
    if where in STAGES:
        monkeypatch.setattr(m, where, _then_raise(getattr(m, where)))
    elif where in ("book_orders", "call_margin"):
        monkeypatch.setattr(layer, where, _then_raise(getattr(layer, where)))
    elif where == "update_rewards":
        monkeypatch.setattr(model_module, where, _then_raise(model_module.update_rewards))
    else:  # the DataCollector's collect, after it recorded the step's rows
        monkeypatch.setattr(m.datacollector, "collect", _then_raise(m.datacollector.collect))


def _frames_equal(a: FinancialModel, b: FinancialModel) -> None:
    fa, fb = a.datacollector.get_model_vars_dataframe(), b.datacollector.get_model_vars_dataframe()
    assert fa.dtypes.equals(fb.dtypes) and fa.equals(fb)
    ga, gb = a.datacollector.get_agent_vars_dataframe(), b.datacollector.get_agent_vars_dataframe()
    assert ga.dtypes.equals(gb.dtypes) and ga.equals(gb)


@pytest.mark.parametrize(("infra", "where"),
                         [(infra, where) for infra in (False, True) for where in STAGES + INNER
                          if infra or where not in ("book_orders", "call_margin")])
def test_a_step_failing_anywhere_leaves_no_trace(monkeypatch, infra, where):
    kw: dict[str, Any] = dict(n_banks=16, scenario="systemic", n_assets=2, rng=11,
                              agent_collect_every=1)
    if infra:
        kw |= dict(n_exchanges=2, n_ccps=1)
    m, twin = FinancialModel(**kw), FinancialModel(**kw)
    m.run_for(3)
    twin.run_for(3)
    m.ledger.loans.append(np.array([0]), np.array([1]), np.array([1.0]),  # buffers in use
                          np.array([0.01]), np.array([m.t + 2]))
    twin.ledger.loans.append(np.array([0]), np.array([1]), np.array([1.0]),
                             np.array([0.01]), np.array([twin.t + 2]))
    before, records = fingerprint(m), _records(m)
    assert before == fingerprint(twin)
    with monkeypatch.context() as mp:
        _inject(mp, m, where)
        with pytest.raises(Boom):
            m.step()
    assert fingerprint(m) == before, where
    assert _records(m) == records, where
    for _ in range(4):  # and it runs on as if nothing had happened
        m.step()
        twin.step()
        assert fingerprint(m) == fingerprint(twin), where
    assert _records(m) == _records(twin), where
    _frames_equal(m, twin)
