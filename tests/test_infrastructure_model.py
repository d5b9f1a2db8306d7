"""The infrastructure layer inside the model: routing, exchanges, CCPs, audit."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from finsim_mesa import ConfigError, FinancialModel
from finsim_mesa.infrastructure import CentralCounterparty, Exchange, layer, multilateral_netting
from finsim_mesa.ledger import Ledger
from finsim_mesa.observation import INFRA_OBS_FIELDS, OBS_DIM


def infra_model(**kw):
    base = dict(n_banks=30, n_exchanges=2, n_ccps=1, scenario="normal", rng=3)
    base.update(kw)
    return FinancialModel(**base)


def test_agents_and_grid():
    m = infra_model()
    assert len(m.exchanges) == 2 and len(m.ccps) == 1
    assert all(isinstance(e, Exchange) for e in m.exchanges)
    assert isinstance(m.ccps[0], CentralCounterparty)
    G = m.grid.G
    for e in m.exchanges:
        assert G.nodes[e.node]["agent"] == [e]
        members = set(np.flatnonzero(m.router.bank_exchange == e.exchange_id).tolist())
        assert members and set(G.neighbors(e.node)) - {m.ccps[0].node} == members
        assert G.has_edge(e.node, m.ccps[0].node)
    assert m.graph.number_of_nodes() == 30  # the interbank network itself is unchanged
    # every bank registered: default-fund contribution and initial margin posted
    assert (m.ledger.fund > 0).all()
    assert m.ccps[0].initial_capital == pytest.approx(0.25 * m.ccps[0].initial_fund)
    assert m.ledger.margin.sum() > 0
    m.check()


@pytest.mark.parametrize("rule", ["size", "round_robin", "random"])
def test_venue_rules(rule):
    m = infra_model(n_banks=40, n_exchanges=3, venue_rule=rule)
    counts = np.bincount(m.router.bank_exchange, minlength=3)
    assert (counts > 0).all()
    if rule == "round_robin":
        assert m.router.bank_exchange.tolist() == [i % 3 for i in range(40)]
    if rule == "size":
        size = m.ledger.total_assets() + 0  # balanced totals: within the largest bank
        loads = np.bincount(m.router.bank_exchange, weights=m.reference.assets0, minlength=3)
        assert loads.max() - loads.min() <= m.reference.assets0.max() + 1e-9
        assert size.size == 40


def test_every_interbank_money_movement_is_routed(monkeypatch, stage_watch):
    m = infra_model(brain="greedy", scenario="liquidity_crisis")
    now = stage_watch(m)
    lent, calls = [], []
    original = Ledger.lend

    def spy(self, lender, borrower, amount, rate, maturity, ccp=None, link=None):
        calls.append((m.t, now["stage"], np.asarray(lender).copy(),
                      np.asarray(borrower).copy(), np.asarray(amount, dtype=float).copy()))
        lent.append((m.t, float(np.sum(amount))))
        return original(self, lender, borrower, amount, rate, maturity, ccp, link)

    monkeypatch.setattr(Ledger, "lend", spy)
    paid_by_step = {}
    original_settle = Ledger.settle

    def spy_settle(self, loan_mask, borrower_paid, lender_paid, *a, **k):
        paid_by_step[m.t] = paid_by_step.get(m.t, 0.0) + float(borrower_paid[loan_mask].sum())
        return original_settle(self, loan_mask, borrower_paid, lender_paid, *a, **k)

    monkeypatch.setattr(Ledger, "settle", spy_settle)
    m.run_for(30)
    audit = m.router.audit()
    loans = audit[(audit.kind == "loan") & (audit.outcome == "processed")]
    by_step = loans.groupby("step")["amount"].sum()
    assert lent and by_step.sum() > 0
    for step, amount in lent:
        assert by_step.get(step, 0.0) == pytest.approx(amount)
    rep = audit[audit.kind == "repayment"].groupby("step")["amount"].sum()
    for step, amount in paid_by_step.items():
        assert rep.get(step, 0.0) == pytest.approx(amount)
    # the routed records name the lender's exchange, and cleared ones the CCP
    assert (loans.exchange == m.router.bank_exchange[loans.sender.to_numpy()]).all()
    assert (loans.ccp >= 0).all()
    # no direct settlement: new loans are booked only in the settle stage, and each
    # is a processed order of the audit (same lender, borrower and amount)
    assert {stage for _, stage, *_ in calls} == {"settle"}
    for step in {c[0] for c in calls}:
        booked = sorted((int(i), int(j), a) for t, _, li, bi, ai in calls if t == step
                        for i, j, a in zip(li, bi, ai, strict=True))
        rows = loans[loans.step == step]
        audited = sorted(zip(rows.sender.astype(int), rows.receiver.astype(int), rows.amount,
                             strict=True))
        assert booked == audited, step


def test_congestion_raises_fees_and_delays_past_capacity():
    m = infra_model(brain="greedy", exchange_capacity=0.0005, max_order_wait=2)
    m.run_for(15)
    df = m.datacollector.get_model_vars_dataframe()
    assert (df.exchange_utilisation > m.config.congestion_threshold).any()
    assert df.congested_exchanges.max() >= 1 and df.orders_expired.sum() > 0
    ex = m.exchanges[0]
    hist = ex.queue.history
    congested = [h for h in hist if h.congested]
    calm_rate = m.config.exchange_base_fee
    assert all(h.fee_rate > calm_rate for h in congested)
    audit = m.router.audit()
    processed = audit[(audit.kind == "loan") & (audit.outcome == "processed")]
    assert processed.delay.max() >= 1  # settled in a later step than submitted
    assert (processed.fee > 0).all()
    # fees went to the exchanges and are in their cash
    assert m.ledger.exchange_cash.sum() == pytest.approx(processed.fee.sum())
    m.check()


def test_netting_efficiency_matches_brute_force_on_the_book():
    m = infra_model()
    m.run_for(10)
    lb = m.ledger.loans
    c = lb.ccp == 0
    G = np.zeros((30, 30))
    for b, l_, o in zip(lb.borrower[c], lb.lender[c], lb.owed[c], strict=True):
        G[b, l_] += o
    net = G.sum(0) - G.sum(1)
    expect = 1 - np.maximum(-net, 0).sum() / G.sum()
    assert m.ccps[0].netting_efficiency == pytest.approx(expect)
    assert multilateral_netting(sp.csr_matrix(G)).efficiency == pytest.approx(expect)
    full = m.ccps[0].netting()
    assert full.efficiency == pytest.approx(expect)
    assert full.multilateral <= full.bilateral <= full.gross


def test_ccp_member_default_end_to_end():
    """A member with cleared borrowing defaults: its margin and fund go first, the
    CCP pays its lenders in full, and the waterfall allocates exactly the loss."""
    m = infra_model(n_banks=40, scenario="normal", brain="passive", rng=7,
                    default_fund_rate=0.02)
    victim = int(np.argmax(m.ccps[0].cleared_liabilities()))
    margin0, fund0 = m.ledger.margin[victim, 0], m.ledger.fund[victim, 0]
    m.apply_shock("loss", 3.0, banks=[victim])
    m.apply_shock("default", banks=[victim])
    m.step()
    m.check()
    ccp = m.ccps[0]
    assert len(ccp.waterfalls) == 1 and ccp.defaults_handled == 1
    w = ccp.waterfalls[0]
    # layers in order: the defaulter's margin is used up before its fund, etc.
    assert w["defaulter_margin"] == pytest.approx(margin0)
    assert 0 < w["defaulter_fund"] <= fund0 + 1e-12
    absorbed = w["defaulter_margin"] + w["defaulter_fund"] + w["ccp_capital"] + w["mutualised"]
    assert absorbed + w["uncovered"] == pytest.approx(w["loss"])
    assert w["uncovered"] == 0.0 and m.measures.uncovered_loss == 0.0
    audit = m.router.audit()
    rep = audit[(audit.kind == "repayment") & (audit.step == 1) & (audit.ccp == 0)]
    from_victim = rep[rep.sender == victim]
    assert len(from_victim) and (from_victim.received > from_victim.amount).all()
    # the CCP paid lenders what the defaulter did not: exactly the waterfall's loss
    assert float((rep.received - rep.amount).sum()) == pytest.approx(w["loss"])
    # without a CCP the same default costs its lenders
    b = infra_model(n_banks=40, scenario="normal", brain="passive", rng=7, n_ccps=0,
                    default_fund_rate=0.02)
    b.apply_shock("loss", 3.0, banks=[victim])
    b.apply_shock("default", banks=[victim])
    b.step()
    rep_b = b.router.audit()
    rep_b = rep_b[(rep_b.kind == "repayment") & (rep_b.sender == victim)]
    assert len(rep_b) and (rep_b.outcome != "paid").all()


def test_uncovered_loss_is_reported_and_passed_on():
    m = infra_model(n_banks=40, brain="passive", rng=7, default_fund_rate=0.0,
                    ccp_capital_share=0.0, initial_margin_rate=0.0)
    cl = m.ccps[0].cleared_liabilities()
    victim = int(np.argmax(cl))
    m.apply_shock("loss", 5.0, banks=[victim])
    m.apply_shock("default", banks=[victim])
    m.step()
    m.check()
    ccp = m.ccps[0]
    assert ccp.uncovered > 0 and m.measures.uncovered_loss == pytest.approx(ccp.uncovered)
    w = ccp.waterfalls[0]
    assert w["defaulter_margin"] == w["defaulter_fund"] == w["ccp_capital"] == 0.0
    assert w["uncovered"] == pytest.approx(w["loss"])
    # with nothing to absorb it, the lenders on cleared loans receive less than owed:
    # the CCP's shortfall (uncovered) is what the lenders did not get
    audit = m.router.audit()
    rep = audit[(audit.kind == "repayment") & (audit.ccp == 0) & (audit.step == 1)]
    assert (rep.received < rep.amount).any()
    # with no margin, fund or capital the CCP passes on exactly what it receives
    assert float(rep.received.sum()) == pytest.approx(float(rep.amount.sum()))
    assert ccp.uncovered == pytest.approx(w["loss"])


def test_margin_calls_follow_the_price():
    m = infra_model(brain="passive")
    m.step()
    before = m.ledger.margin.sum()
    m.apply_shock("price_crash", 0.3)
    m.step()
    assert m.flows.margin_called > 0
    assert m.ledger.margin.sum() > before
    audit = m.router.audit()
    assert (audit.kind == "margin_call").any()
    m.check()


def test_margin_call_default_when_a_member_cannot_pay():
    m = infra_model(brain="passive", initial_margin_rate=0.5, marketable_share=0.0)
    cl = m.ccps[0].cleared_liabilities()
    victim = int(np.argmax(cl))
    L = m.ledger
    # the victim has put all its cash into loans to the economy (a booked swap of
    # assets: cash leaves the system, equity is unchanged)
    L.external_out["test_cash_to_loans"] += L.cash[victim]
    L.other_assets[victim] += L.cash[victim]
    L.cash[victim] = 0.0
    m.check()
    m.apply_shock("price_crash", 0.5)
    m.t += 1
    m.settle()
    assert L.defaulted[victim]
    m.check()
    audit = m.router.audit()
    call = audit[(audit.kind == "margin_call") & (audit.sender == victim)]
    assert (call.outcome == "short").all() and len(call)


def test_observation_has_eight_infrastructure_columns():
    m = infra_model()
    m.run_for(3)
    obs = m.observe()
    assert obs.shape == (30, OBS_DIM + len(INFRA_OBS_FIELDS)) == (30, 24)
    assert np.isfinite(obs).all() and obs[:, OBS_DIM:].min() >= -1 and obs.max() <= 2


def test_datacollector_has_infrastructure_reporters():
    m = infra_model()
    m.run_for(4)
    df = m.datacollector.get_model_vars_dataframe()
    for col in ("exchange_fees", "exchange_utilisation", "margin_posted", "netting_efficiency",
                "default_fund_used", "uncovered_loss", "routed_transactions"):
        assert col in df
    ex = m.datacollector.get_agenttype_vars_dataframe(Exchange)
    cc = m.datacollector.get_agenttype_vars_dataframe(CentralCounterparty)
    assert {"utilisation", "fee_rate", "backlog"} <= set(ex.columns)
    assert {"margin_held", "default_fund", "netting_efficiency"} <= set(cc.columns)


def test_router_submit_transaction_and_errors():
    m = infra_model(brain="passive")
    oid = m.router.submit_transaction(0, 1, 0.5)
    m.t += 1
    m.settle()
    audit = m.router.audit()
    row = audit[(audit.kind == "loan") & (audit.sender == 0) & (audit.receiver == 1)]
    assert len(row) == 1 and row.outcome.iloc[0] == "processed" and oid == 0
    for args, needle in [((0, 0, 1.0), "differ"), ((0, 99, 1.0), "bank id"),
                         ((0, 1, -1.0), "> 0"), ((0, 1, 1.0, "swap"), "only 'loan'")]:
        with pytest.raises(ValueError, match=needle):
            m.router.submit_transaction(*args)


@pytest.mark.parametrize(("params", "needle"), [
    ({"n_exchanges": 1, "exchange_capacity": -1.0}, "exchange_capacity"),
    ({"n_exchanges": 1, "exchange_base_fee": 1.5}, "exchange_base_fee"),
    ({"n_exchanges": 1, "initial_margin_rate": -0.1}, "initial_margin_rate"),
    ({"n_exchanges": 1, "ccp_clearing_share": 2.0}, "ccp_clearing_share"),
    ({"n_exchanges": 1, "n_ccps": 40}, "cannot exceed n_banks"),
    ({"n_ccps": 1}, "needs n_exchanges"),
    ({"n_exchanges": 1, "venue_rule": "alphabetical"}, "venue_rule"),
])
def test_bad_infrastructure_config(params, needle):
    with pytest.raises(ConfigError, match=needle):
        FinancialModel(n_banks=30, **params)


def test_partial_clearing_share_and_exchanges_only():
    m = infra_model(ccp_clearing_share=0.5, rng=4)
    share = (m.ledger.loans.ccp >= 0).mean()
    assert 0.3 < share < 0.7
    m.run_for(10)
    m.check()
    m2 = infra_model(n_ccps=0)
    m2.run_for(10)
    m2.check()
    assert (m2.ledger.loans.ccp < 0).all() and m2.ledger.margin.size == 0


def test_same_seed_same_results_with_infrastructure():
    a, b = infra_model(scenario="systemic", brain="random"), infra_model(scenario="systemic",
                                                                         brain="random")
    a.run_for(30)
    b.run_for(30)
    pd.testing.assert_frame_equal(a.datacollector.get_model_vars_dataframe(),
                                  b.datacollector.get_model_vars_dataframe())
    pd.testing.assert_frame_equal(a.router.audit(), b.router.audit())


def test_docs_list_the_infrastructure_observation_columns():
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "design.md").read_text()
    for i, (name, meaning) in enumerate(INFRA_OBS_FIELDS):
        assert f"| {OBS_DIM + i} | `{name}` | {meaning} |" in doc


def test_transactions_per_step_count_the_audit_rows_of_that_step():
    m = FinancialModel(n_banks=30, n_exchanges=2, n_ccps=1, scenario="liquidity_crisis", rng=8)
    m.run_for(12)
    audit = m.router.audit()
    per_step = audit.groupby("step").size()
    assert per_step.sum() == m.router.transactions() == len(audit) > 0
    for t in range(0, m.t + 2):
        assert m.router.transactions(t) == int(per_step.get(t, 0))
    # the model's reporter is the count of the step just run
    assert m.measures.routed_transactions == int(per_step.get(m.t, 0))


def _bank_part(m, out=None):
    from finsim_mesa import observation as ob

    L = m.ledger
    bilateral = (L.loans.ccp < 0) if m.router is not None else slice(None)
    return ob.bank_observations(L, m.sheets, m.market, m.measures, m.flows.withdrawals,
                                m.network, m.reference.size0, m.config, m.t, bilateral,
                                out=out)


def _infra_part(m, out=None):
    from finsim_mesa import observation as ob

    ta = m.sheets.total_assets
    return ob.infrastructure_observations(m.ledger, np.where(ta > 0, ta, 1.0), m.exchanges,
                                          m.ccps, m.router, m.margin_rate, m.config, out=out)


@pytest.mark.parametrize("params", [
    {}, {"n_exchanges": 2, "n_ccps": 1}, {"n_exchanges": 2, "n_ccps": 0},
    {"n_exchanges": 1, "n_ccps": 1, "n_assets": 3}, {"n_assets": 2}])
def test_observation_parts_are_written_into_one_matrix(params):
    """observe() writes each part into its columns of one array: the same matrix
    as the parts computed on their own and put side by side; each part writes
    every one of its columns (nothing is left of a NaN-filled matrix); without
    CCPs their three columns are 0 and the fund health is 1."""
    from finsim_mesa import observation as ob

    m = FinancialModel(n_banks=25, rng=4, scenario="systemic", **params)
    for _ in range(6):
        m.step()
        infra = m.router is not None
        parts = [(_bank_part, _bank_part(m))] + ([(_infra_part, _infra_part(m))] if infra else [])
        for fn, part in parts:
            filled = np.full(part.shape, np.nan)
            fn(m, out=filled)
            assert not np.isnan(filled).any()
            np.testing.assert_array_equal(filled, part)
        blocks = [part for _, part in parts]
        if m.config.n_assets > 1:
            blocks.append(ob.class_observations(m.market, m.n_banks))
        got = ob.observe(m)
        np.testing.assert_array_equal(got, np.hstack(blocks))
        assert got.shape[1] == len(ob.observation_names(m.config, m.market.names))
        if infra and not m.ccps:
            np.testing.assert_array_equal(got[:, OBS_DIM + 4:OBS_DIM + 8],
                                          np.tile([0.0, 0.0, 0.0, 1.0], (m.n_banks, 1)))


def test_requirements_of_all_ccps_in_one_pass_equal_each_ccps_own():
    """layer.requirements sums each (member, CCP) pair in one pass over the
    book: bit for bit a loan-by-loan sum in book order (times the margin rate),
    and each CCP's own margin_requirement, at the start and after steps with
    defaults and novations."""
    m = FinancialModel(n_banks=40, n_exchanges=2, n_ccps=3, ccp_clearing_share=0.7,
                       scenario="systemic", rng=6)
    for _ in range(4):
        req = layer.requirements(m.ccps, m.margin_rate)
        lb = m.ledger.loans
        owed = np.zeros((40, 3))
        for j in range(len(lb)):
            if lb.ccp[j] >= 0:
                owed[lb.borrower[j], lb.ccp[j]] += lb.principal[j] + lb.accrued[j]
        assert req.shape == (40, 3) and req.sum() > 0
        np.testing.assert_array_equal(req, m.margin_rate * owed)
        for c, ccp in enumerate(m.ccps):
            np.testing.assert_array_equal(req[:, c], ccp.margin_requirement(m.margin_rate))
        m.run_for(3)
