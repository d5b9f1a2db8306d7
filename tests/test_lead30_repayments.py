"""The repayments' audit records (resolution.settle_in_full and clear_due) are
kept through ``router.record_owned`` (issue 15): the arrays they give away are
new and never written afterwards, so whole runs audit exactly as when every
call went through ``record`` (which copies at once)."""

import pandas as pd
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.infrastructure.router import InfrastructureRouter


def _run(kw: dict, steps: int) -> FinancialModel:
    m = FinancialModel(steps=10**9, agent_collect_every=0, **kw)
    for _ in range(steps):
        m.step()
    return m


@pytest.mark.parametrize("kw", [
    dict(n_banks=120, scenario="systemic", n_exchanges=2, n_ccps=1, rng=3),
    dict(n_banks=80, scenario="asset_crash", n_exchanges=1, n_ccps=2, rng=8),
    dict(n_banks=60, scenario="normal", n_exchanges=2, n_ccps=0, rng=5),
])
def test_repayments_audit_as_with_record(kw, monkeypatch):
    owned = _run(kw, 25)
    monkeypatch.setattr(InfrastructureRouter, "record_owned", lambda self, *a: self.record(*a))
    former = _run(kw, 25)
    a, b = owned.router.audit(), former.router.audit()
    pd.testing.assert_frame_equal(a, b)
    pays = a[a["kind"] == "repayment"]
    assert len(pays) > 100  # (the call sites ran)
    if kw["scenario"] == "systemic":  # clear_due's outcomes, not only settle_in_full's
        assert {"paid", "partial"} <= set(pays["outcome"].astype(str))
