"""helper-39's clear-stage shortcut (issue 15): a clearing in which everybody
pays in full is settled by :func:`resolution.settle_in_full` without the
general machinery. Checked against the general path (``resolution.clear_due``
with ``Ledger.settle``) on the same ledgers, bit for bit, signed zeros
included, on states where it applies and where it must decline (and then
leave the ledger untouched); its test against ``eisenberg_noe`` itself."""

import copy

import numpy as np
import pytest
from support import ledger_bits, stages_until_clear

from finsim_mesa import FinancialModel
from finsim_mesa.clearing import eisenberg_noe, pays_in_full
from finsim_mesa.loans import LoanBook
from finsim_mesa.resolution import clear_due, settle_in_full


def _bits(a) -> bytes:
    a = np.asarray(a)
    return str(a.dtype).encode() + str(a.shape).encode() + np.ascontiguousarray(a).tobytes()


def _rest(m: FinancialModel) -> None:
    m.clear()
    m.price()
    m.record()


CASES = [
    dict(n_banks=30, brain="rule_based", rng=1),
    dict(n_banks=30, brain="greedy", scenario="liquidity_crisis", rng=3),  # withdrawals
    dict(n_banks=60, brain="random", scenario="systemic", rng=5),  # defaults: declines
    dict(n_banks=50, brain="myopic", scenario="asset_crash", topology="core_periphery", rng=4),
    dict(n_banks=120, brain="conservative", n_assets=2, scenario="systemic", rng=9),
    dict(n_banks=40, brain="passive", interbank_share=0.4, capital_ratio=0.07,
         default_cost_alpha=0.6, default_cost_beta=0.5, scenario="systemic", rng=16),
]


@pytest.mark.parametrize("kw", CASES)
def test_settle_in_full_is_the_general_clearing_bit_for_bit(kw):
    m = FinancialModel(steps=10**9, agent_collect_every=0, **kw)
    seen = {"fast": 0, "declined": 0}
    rng = np.random.default_rng(0)
    sold = []
    for step in range(40):
        if not m.running:
            break
        stages_until_clear(m)
        L, cfg, n = m.ledger, m.config, m.n_banks
        if not np.count_nonzero(L.defaulted & ~L.resolved):  # (nobody in resolution)
            if step % 6 == 1:  # signed zeros where the postings of zeros show them
                L.funding[rng.integers(0, n, 3)] = -0.0
                L.equity[rng.integers(0, n)] = -0.0
            due = L.loans.maturity <= m.t
            ext_due = np.minimum(m.flows.withdrawals, L.deposits)
            before = ledger_bits(L)
            fast, general = copy.deepcopy(L), copy.deepcopy(L)
            if settle_in_full(fast, cfg, due.copy(), ext_due.copy()):
                seen["fast"] += 1
                res = clear_due(general, cfg, due, ext_due, np.zeros(n, dtype=bool),
                                lambda *a: sold.append(a), m.t, [], None)
                assert res.rounds == 0 and not res.defaulted.any() and not sold
                assert ledger_bits(fast) == ledger_bits(general)
            else:
                seen["declined"] += 1
                assert ledger_bits(fast) == before  # nothing done
        _rest(m)
    assert seen["fast"] > 0
    if kw.get("scenario") == "systemic":
        assert seen["declined"] > 0 or m.t < 10, seen


def test_a_model_with_the_shortcut_runs_as_with_the_general_path(monkeypatch):
    """Whole runs: the stage with the shortcut against the stage without it."""
    import finsim_mesa.resolution as R

    def run():
        m = FinancialModel(n_banks=50, brain="rule_based", scenario="systemic", rng=7, steps=30)
        m.run_for(30)
        return ledger_bits(m.ledger), m.datacollector.get_model_vars_dataframe()

    fast_state, fast_data = run()
    monkeypatch.setattr(R, "settle_in_full", lambda *a: False)
    slow_state, slow_data = run()
    assert fast_state == slow_state
    assert fast_data.equals(slow_data)


def test_remove_is_keep_of_the_other_rows():
    rng = np.random.default_rng(1)
    for m in (0, 1, 5, 40):
        for trial in range(6):
            book = LoanBook()
            book.append(rng.integers(0, 9, m), rng.integers(0, 9, m), rng.random(m),
                        rng.random(m), rng.integers(3, 9, m))
            if trial % 2:
                rows = np.flatnonzero(rng.random(m) < 0.4)
            else:
                rows = slice(0, int(rng.integers(0, m + 1)))
            mask = np.ones(m, dtype=bool)
            mask[rows] = False
            ref = copy.deepcopy(book)
            ref.keep(mask)
            book.remove(rows)
            for name in LoanBook._ROWS:
                assert _bits(getattr(book, name)) == _bits(getattr(ref, name)), name
            # the book goes on working from there (appends land after the kept rows)
            book.append(np.array([1]), np.array([2]), np.array([3.0]), np.array([0.1]), 9)
            assert len(book) == int(mask.sum()) + 1 and book.principal[-1] == 3.0


def test_pays_in_full_only_when_eisenberg_noe_finds_nobody_short():
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(300):
        n = int(rng.integers(2, 9))
        L = rng.random((n, n)) * (rng.random((n, n)) < 0.5)
        np.fill_diagonal(L, 0.0)
        ext = rng.random(n) * rng.integers(0, 2)
        e = rng.random(n) * rng.choice([0.1, 1.0, 5.0])
        pbar = L.sum(axis=1) + ext
        legs = np.nonzero(L)
        inflow = np.bincount(legs[1], weights=L[legs], minlength=n)
        terms = np.bincount(legs[1], minlength=n)
        if pays_in_full(np.bincount(legs[0], weights=L[legs], minlength=n) + ext, inflow,
                        terms, e):
            hits += 1
            res = eisenberg_noe(L, e, ext)
            assert not res.defaulted.any() and np.array_equal(res.payments, res.obligations)
        # a bank whose resources fall short of its obligations is never passed
        if np.any(e + inflow < pbar * (1 - 1e-6) - 1e-9):
            assert not pays_in_full(pbar, inflow, terms, e)
    assert 0 < hits < 300


def test_declines_when_a_bank_holds_securities_worth_nothing():
    """Such a bank sells them in the general path's emergency sale (its share of
    ``capped_share`` is 1 even when nobody is short): the shortcut must not settle."""
    m = FinancialModel(n_banks=30, brain="rule_based", n_assets=2, rng=2, steps=10**9)
    m.run_for(3)
    stages_until_clear(m)
    L, cfg = m.ledger, m.config
    due, ext_due = L.loans.maturity <= m.t, np.minimum(m.flows.withdrawals, L.deposits)
    assert settle_in_full(copy.deepcopy(L), cfg, due, ext_due)  # applies as it is
    L.holdings[5, 0], L.prices[1] = 0.0, 0.0  # bank 5 holds only class 1, worth nothing
    held = float(L.holdings[5, 1])
    assert held > 0
    before = ledger_bits(L)
    assert not settle_in_full(L, cfg, due, ext_due)
    assert ledger_bits(L) == before
    sold = []
    clear_due(L, cfg, due, ext_due, np.zeros(30, dtype=bool), lambda *a: sold.append(a),
              m.t, [], None)
    assert sold and sold[0][0][5, 1] == held  # the general path sells them


def test_not_tried_from_the_fast_path_size_on(monkeypatch):
    """Large systems (``FAST_PATH_MIN_N`` banks on) clear the general way: the
    shortcut is not tried there (someone is often short, and the declined test
    would be done twice). Scaled down here: the threshold set to 30 banks."""
    import finsim_mesa.resolution as R

    def run(threshold):
        monkeypatch.setattr(R, "FAST_PATH_MIN_N", threshold)
        calls = []
        real = R.settle_in_full

        def spy(*a):
            calls.append(1)
            return real(*a)

        monkeypatch.setattr(R, "settle_in_full", spy)
        m = FinancialModel(n_banks=30, brain="rule_based", rng=4, steps=20)
        m.run_for(20)
        return len(calls), ledger_bits(m.ledger)

    tried, state = run(31)
    skipped, general = run(30)
    assert tried > 0 and skipped == 0
    assert state == general
