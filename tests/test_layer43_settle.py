"""helper-43's clear-stage shortcut with the infrastructure layer (issue 15):
``resolution.settle_in_full`` also settles a clearing with CCPs and a router
in which everybody pays in full. Checked against the general path
(``resolution.clear_due`` with ``Ledger.settle`` and the router's audit) on
the same ledgers, bit for bit (signed zeros included) and record for record,
where it applies and where it must decline (then nothing is done); at the
boundary of the test, where the clearing's leg order (bilateral legs, then
the cleared ones) decides between paying from cash and an emergency sale."""

import copy

import numpy as np
import pytest
from support import ledger_bits, stages_until_clear

from finsim_mesa import FinancialModel
from finsim_mesa.config import ModelConfig
from finsim_mesa.ledger import Ledger
from finsim_mesa.resolution import clear_due, settle_in_full


def _audit_bits(records) -> list:
    return [{k: (str(v.dtype), v.shape, v.tobytes()) for k, v in rec.items()} for rec in records]


def _seller(L: Ledger, log: list):
    """The model's emergency sale (``market.sell_to_market``) on ``L``, each call
    logged as bytes."""
    def sell(units, prices, kind):
        log.append((units.tobytes(), units.shape, prices.tobytes(), kind))
        if np.count_nonzero(units):
            L.sell_assets(units, prices, kind=kind)
    return sell


def _router_copy(router):
    if router is None:
        return None
    r = copy.copy(router)
    r._audit = []
    return r


CASES = [
    dict(n_banks=100, brain="rule_based", scenario="liquidity_crisis", n_exchanges=2, n_ccps=1,
         rng=12),
    dict(n_banks=80, brain="random", scenario="systemic", n_exchanges=1, n_ccps=1, rng=5),
    # half the trades cleared: bilateral and cleared legs mixed in one clearing
    dict(n_banks=60, brain="greedy", scenario="systemic", n_exchanges=3, n_ccps=2,
         ccp_clearing_share=0.5, venue_rule="random", rng=17),
    dict(n_banks=50, brain="rule_based", scenario="liquidity_crisis", n_exchanges=2, n_ccps=0,
         rng=8),  # a router without CCPs
    dict(n_banks=40, brain="greedy", scenario="liquidity_crisis", rng=3),  # the layer off
]


@pytest.mark.parametrize("kw", CASES)
def test_layer_shortcut_is_the_general_clearing_bit_for_bit(kw):
    m = FinancialModel(steps=10**9, agent_collect_every=0, **kw)
    seen = {"fast": 0, "declined": 0, "mixed": 0, "sold": 0}
    rng = np.random.default_rng(0)
    for step in range(40):
        if not m.running:
            break
        stages_until_clear(m)
        L, cfg, n = m.ledger, m.config, m.n_banks
        if not np.count_nonzero(L.defaulted & ~L.resolved):  # (nobody in resolution)
            if step % 5 == 1:  # signed zeros where the postings of zeros show them
                L.cash[rng.integers(0, n)] = -0.0
                L.funding[rng.integers(0, n, 3)] = -0.0
                L.equity[rng.integers(0, n)] = -0.0
                L.ccp_cash[:] = np.where(rng.random(L.ccp_cash.size) < 0.5, -0.0, L.ccp_cash)
            due = L.loans.maturity <= m.t
            ext_due = np.minimum(m.flows.withdrawals, L.deposits)
            cleared = L.loans.ccp[due] >= 0
            before = ledger_bits(L)
            fast, general = copy.deepcopy(L), copy.deepcopy(L)
            r_fast, r_general = _router_copy(m.router), _router_copy(m.router)
            sold_fast, sold_general = [], []
            if settle_in_full(fast, cfg, due.copy(), ext_due.copy(), r_fast, m.t,
                              _seller(fast, sold_fast)):
                seen["fast"] += 1
                seen["mixed"] += bool(0 < np.count_nonzero(cleared) < cleared.size)
                seen["sold"] += bool(sold_fast)
                res = clear_due(general, cfg, due, ext_due, np.zeros(n, dtype=bool),
                                _seller(general, sold_general), m.t, m.ccps, r_general)
                assert res.rounds == 0 and not res.defaulted.any()
                assert sold_fast == sold_general
                assert ledger_bits(fast) == ledger_bits(general)
                if m.router is not None:
                    assert len(r_fast._audit) == len(r_general._audit) == int(due.any())
                    assert _audit_bits(r_fast._audit) == _audit_bits(r_general._audit)
            else:
                seen["declined"] += 1
                assert ledger_bits(fast) == before and not sold_fast  # nothing done
                assert r_fast is None or not r_fast._audit
        m.clear()
        m.price()
        m.record()
    assert seen["fast"] > 0, seen
    if kw.get("ccp_clearing_share") == 0.5:
        assert seen["mixed"] > 0, seen
    if kw["scenario"] == "liquidity_crisis":
        assert seen["sold"] > 0, seen  # withdrawals: some banks sell to pay
    if kw["scenario"] == "systemic":
        assert seen["declined"] > 0 or m.t < 10, seen


def _boundary_ledger(cash0: float) -> tuple[Ledger, np.ndarray, np.ndarray]:
    """Bank 0 owes 1.0 on a cleared loan (first in the book) and 2⁻⁵³ twice on
    bilateral ones: summed in the book's order its obligations are 1.0, in the
    clearing's (bilateral first) 1 + 2⁻⁵²; its cash ``cash0``, securities to sell."""
    n = 4
    L = Ledger(np.array([cash0, 5.0, 5.0, 5.0]), np.full((n, 1), 10.0), np.full(n, 1.0),
               np.array([1.0]))
    L.setup_infrastructure(1, 0)
    L.ccp_capital[:] = L.ccp_cash[:] = 0.5
    tiny = 2.0 ** -53
    L.loans.append(np.array([1, 2, 2]), np.array([0, 0, 0]), np.array([1.0, tiny, tiny]),
                   np.zeros(3), 1, ccp=np.array([0, -1, -1]))
    return L, np.ones(3, dtype=bool), np.zeros(n)


def test_at_the_boundary_the_legs_are_summed_in_the_clearings_order():
    cfg = ModelConfig()
    outcomes = set()
    for k in range(-6, 7):
        cash0 = 1.0 + k * 2.0 ** -52
        L, due, ext_due = _boundary_ledger(cash0)
        fast, general = copy.deepcopy(L), copy.deepcopy(L)
        sold = []
        res = clear_due(general, cfg, due.copy(), ext_due.copy(), np.zeros(L.n, dtype=bool),
                        lambda *a, out=sold: out.append(a), 1, [], None)
        assert not res.defaulted.any()
        in_full = not sold  # the general path pays from cash, or sells a little first
        outcomes.add(in_full)
        assert settle_in_full(fast, cfg, due, ext_due) == in_full, cash0
        if in_full:
            assert ledger_bits(fast) == ledger_bits(general)
        else:
            assert ledger_bits(fast) == ledger_bits(L)
    assert outcomes == {True, False}  # both sides of the boundary were seen


def test_at_the_boundary_the_emergency_sale_is_the_general_paths():
    """With a seller: one ulp of obligations decides whether bank 0 sells (a
    tiny share) before it pays; the shortcut sells exactly what the general
    path sells, on both sides of the boundary."""
    cfg = ModelConfig()
    sales = set()
    for k in range(-6, 7):
        L, due, ext_due = _boundary_ledger(1.0 + k * 2.0 ** -52)
        fast, general = copy.deepcopy(L), copy.deepcopy(L)
        sold_fast, sold_general = [], []
        assert settle_in_full(fast, cfg, due.copy(), ext_due.copy(), None, 1,
                              _seller(fast, sold_fast))
        clear_due(general, cfg, due, ext_due, np.zeros(L.n, dtype=bool),
                  _seller(general, sold_general), 1, [], None)
        assert sold_fast == sold_general
        assert ledger_bits(fast) == ledger_bits(general)
        sales.add(bool(sold_fast))
    assert sales == {True, False}


def test_declines_when_a_ccp_cannot_be_tested_and_leaves_everything():
    m = FinancialModel(n_banks=60, brain="rule_based", n_exchanges=2, n_ccps=1, rng=3,
                       steps=10**9)
    m.run_for(3)
    stages_until_clear(m)
    L, cfg = m.ledger, m.config
    due, ext_due = L.loans.maturity <= m.t, np.minimum(m.flows.withdrawals, L.deposits)
    assert np.count_nonzero(L.loans.ccp[due] >= 0)
    r = _router_copy(m.router)
    assert settle_in_full(copy.deepcopy(L), cfg, due, ext_due, r, m.t)  # applies as it is
    assert len(r._audit) == 1
    L.ccp_capital[0] = np.nan  # the CCP's resources unknown: the general path decides
    before = ledger_bits(L)
    r = _router_copy(m.router)
    assert not settle_in_full(L, cfg, due, ext_due, r, m.t)
    assert ledger_bits(L) == before and not r._audit


def test_a_layer_model_with_the_shortcut_runs_as_with_the_general_path(monkeypatch):
    """Whole runs with 2 exchanges + 1 CCP (with defaults, so both paths are
    taken): the stage with the shortcut against the stage without it."""
    import finsim_mesa.resolution as R

    def run():
        m = FinancialModel(n_banks=80, brain="rule_based", scenario="systemic", rng=7,
                           n_exchanges=2, n_ccps=1, steps=30)
        m.run_for(30)
        return (ledger_bits(m.ledger), m.datacollector.get_model_vars_dataframe(),
                m.router.audit(), [c.snapshot() for c in m.ccps])

    fast = run()
    monkeypatch.setattr(R, "settle_in_full", lambda *a: False)
    slow = run()
    assert fast[0] == slow[0]
    assert fast[1].equals(slow[1])
    assert fast[2].equals(slow[2])
    assert repr(fast[3]) == repr(slow[3])
