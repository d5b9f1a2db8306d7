"""helper-43: lookahead copies of a model (``collect_data`` off) keep no audit,
so the layer skips gathering the audit's columns there (``router.auditing``).
Checked against the same runs with the columns gathered (the former code path:
``auditing`` forced on, records then dropped by ``record`` itself): the same
ledgers, flows and CCP/exchange states, bit for bit; with ``collect_data`` on,
every record is still written."""

import numpy as np
import pytest
from support import ledger_bits

from finsim_mesa import FinancialModel
from finsim_mesa.infrastructure.router import InfrastructureRouter


def _run(kw, steps, collect):
    m = FinancialModel(steps=10**9, agent_collect_every=0, **kw)
    m.collect_data = collect
    margin = []
    for _ in range(steps):
        if not m.running:
            break
        m.step()
        margin.append(float(m.flows.margin_called).hex())
    return m, margin


@pytest.mark.parametrize("kw", [
    dict(n_banks=80, scenario="liquidity_crisis", n_exchanges=2, n_ccps=1, rng=12),
    dict(n_banks=60, scenario="systemic", n_exchanges=3, n_ccps=2, ccp_clearing_share=0.5,
         rng=17),
])
def test_a_lookahead_run_without_the_audits_columns_is_the_run_with_them(kw, monkeypatch):
    calls = []
    real = InfrastructureRouter.record

    def spy(self, *a, **k):
        calls.append(a[0])
        return real(self, *a, **k)

    monkeypatch.setattr(InfrastructureRouter, "record", spy)
    lean, lean_margin = _run(kw, 25, collect=False)
    lean_calls = list(calls)
    monkeypatch.setattr(InfrastructureRouter, "auditing", property(lambda self: True))
    calls.clear()
    full, full_margin = _run(kw, 25, collect=False)
    assert ledger_bits(lean.ledger) == ledger_bits(full.ledger)
    assert lean_margin == full_margin
    assert repr([c.snapshot() for c in lean.ccps]) == repr([c.snapshot() for c in full.ccps])
    assert not lean.router._audit and not full.router._audit  # (no audit either way)
    # margin calls and returns and roll-overs were gathered only in the forced run
    # (repayments too, where settle_in_full settled: clear_due's are gathered as before)
    skipped = {"margin_call", "margin_return", "rollover"}
    assert skipped <= set(calls) and not skipped & set(lean_calls)
    assert calls.count("repayment") > lean_calls.count("repayment")


def test_with_data_collected_every_kind_is_recorded():
    m, _ = _run(dict(n_banks=80, scenario="liquidity_crisis", n_exchanges=2, n_ccps=1,
                     rng=12), 15, collect=True)
    kinds = set(m.router.audit()["kind"].astype(str))
    assert {"loan", "rollover", "repayment", "margin_call", "margin_return"} <= kinds
    assert m.router.transactions() == sum(a["amount"].size for a in m.router._audit) > 0
    assert np.all(m.router.audit()["step"].to_numpy() >= 1)
