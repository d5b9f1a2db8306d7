"""Unit tests of the ledger (every money-moving verb against hand arithmetic), the
loan book and the accounting checks."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from finsim_mesa import accounting
from finsim_mesa.errors import AccountingError
from finsim_mesa.ledger import ACTIVE, DEFAULTED, Ledger
from finsim_mesa.loans import LoanBook

A = np.array


def close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


def ok(L):
    """All accounting identities hold."""
    np.testing.assert_allclose(L.identity_gap(), 0.0, atol=1e-9)
    assert L.cash_gap() == pytest.approx(0.0, abs=1e-9)
    L.check()


def base(ccp0=-1, infra=(0, 0), finish=True):
    """3 banks, 2 assets (prices 2, 3); loans 0→1 (owed 30 + 2 accrued, CCP ``ccp0``)
    and 2→0 (20). Equity by hand: [82, 13, 110]; cash 230 in all."""
    L = Ledger(A([100.0, 50.0, 80.0]), A([[10.0, 0.0], [5.0, 5.0], [0.0, 20.0]]),
               A([90.0, 60.0, 70.0]), A([2.0, 3.0]), A([40.0, 30.0, 20.0]))
    L.loans.append(A([0, 2]), A([1, 0]), A([30.0, 20.0]), A([0.01, 0.02]), A([5, 3]),
                   A([ccp0, -1]))
    L.loans.accrued[0] = 2.0
    L.setup_infrastructure(*infra)
    if finish:
        L.finish_setup()
    return L


EQ = A([82.0, 13.0, 110.0])
CASH = A([100.0, 50.0, 80.0])


def test_init_and_finish_setup():
    close(base(finish=False).equity, [70.0, 45.0, 90.0])  # cash + securities + other - deposits
    L = base()
    close(L.equity, EQ)  # + receivables - payables (incl. accrued)
    close(L.equity0, EQ)
    assert L.initial_cash_total == 230.0
    close(L.interbank_assets(), [32.0, 0.0, 20.0])
    close(L.interbank_liabilities(), [20.0, 32.0, 0.0])
    ok(L)
    L = Ledger(A([10.0, 20.0]), A([[1.0], [0.0]]), A([5.0, 5.0]), A([4.0]))
    L.setup_infrastructure(1, 0)
    L.move_to_ccp("margin", A([[3.0], [0.0]]))  # before finish_setup: part of the start
    L.finish_setup()
    close(L.equity, [10.0 + 4.0 - 5.0, 15.0])  # margin is an asset
    assert L.initial_cash_total == 30.0  # CCP cash counts
    ok(L)


def test_lend_bilateral_and_through_ccp():
    L = base(infra=(1, 0))
    L.lend(A([1, 0]), A([2, 2]), A([10.0, 5.0]), A([0.03, 0.04]), A([7, 8]))
    L.lend(A([2]), A([1]), A([6.0]), A([0.05]), A([9]), A([0]))
    L.lend(A([0]), A([1]), A([]), A([]), A([]))  # empty: nothing happens
    close(L.cash, [95.0, 46.0, 89.0])
    close(L.ccp_cash, [0.0])  # the CCP stands between, its cash is unchanged
    close(L.equity, EQ)
    lb = L.loans
    assert len(lb) == 5
    assert lb.lender[2:].tolist() == [1, 0, 2] and lb.borrower[2:].tolist() == [2, 2, 1]
    assert lb.ccp[2:].tolist() == [-1, -1, 0] and lb.maturity[2:].tolist() == [7, 8, 9]
    close(lb.principal[2:], [10.0, 5.0, 6.0])
    close(lb.accrued[2:], 0.0)
    close(lb.rate[2:], [0.03, 0.04, 0.05])
    ok(L)


def test_charge_fees():
    L = base(infra=(0, 2))
    L.charge_fees(A([0, 0, 2]), A([1.0, 2.0, 4.0]), A([1, 0, 1]))
    close(L.cash, [97.0, 50.0, 76.0])
    close(L.equity - EQ, [-3.0, 0.0, -4.0])  # fees are an expense
    close(L.exchange_cash, [2.0, 5.0])
    ok(L)


def test_inject_ccp_capital_and_move_to_ccp():
    L = base(infra=(2, 0))
    L.inject_ccp_capital(A([10.0, 5.0]))
    close(L.ccp_cash, [10.0, 5.0])
    close(L.ccp_capital, [10.0, 5.0])
    assert L.external_in["ccp_capital"] == 15.0
    ok(L)
    L.move_to_ccp("margin", A([[10.0, 0.0], [0.0, 5.0], [2.0, 3.0]]))
    L.move_to_ccp("fund", A([[1.0, 1.0], [0.0, 0.0], [4.0, 0.0]]))
    L.move_to_ccp("margin", A([[-4.0, 0.0], [0.0, 0.0], [0.0, -3.0]]))  # margin returned
    close(L.cash, [100.0 - 8.0, 45.0, 80.0 - 6.0])
    close(L.margin, [[6.0, 0.0], [0.0, 5.0], [2.0, 0.0]])
    close(L.fund, [[1.0, 1.0], [0.0, 0.0], [4.0, 0.0]])
    close(L.ccp_cash, [10.0 + 13.0, 5.0 + 6.0])
    close(L.equity, EQ)  # no P&L
    ok(L)


def test_rollover():
    L = base(ccp0=0)
    out = L.rollover(A([True, True]), A([0.25, 1.5]), A([0.05, 0.06]), maturity=9)
    assert out["lender"].tolist() == [0, 2] and out["borrower"].tolist() == [1, 0]
    close(out["amount"], [8.0, 20.0])  # 0.25 of 32; share 1.5 clipped to 1
    assert out["ccp"].tolist() == [0, -1]  # the renewal keeps the CCP
    lb = L.loans
    close(lb.principal, [22.5, 0.0, 8.0, 20.0])
    close(lb.accrued, [1.5, 0.0, 0.0, 0.0])
    close(lb.rate, [0.01, 0.02, 0.05, 0.06])
    assert lb.maturity.tolist() == [5, 3, 9, 9] and lb.ccp.tolist() == [0, -1, 0, -1]
    close(L.cash, CASH)
    close(L.equity, EQ)
    ok(L)
    out = L.rollover(A([False] * 4), A([1.0] * 4), A([0.1] * 4), maturity=11)
    assert out["amount"].size == 0 and len(L.loans) == 4


@pytest.mark.parametrize("seed", range(4))
def test_rollover_terms_per_book_or_per_rolled_loan_give_the_same(seed):
    """Terms given for every loan of the book or only for the loans in the mask
    (what the act stage passes): the same renewals and the same book, and the
    loans outside the mask are left exactly as they were."""
    rng = np.random.default_rng(seed)
    books = [base(ccp0=0), base(ccp0=0)]
    for L in books:  # a longer book: a few more loans
        L.lend(A([0, 1, 2]), A([1, 2, 0]), A([3.0, 4.0, 5.0]), A([0.01] * 3), A([2, 2, 2]))
    m = len(books[0].loans)
    mask = rng.random(m) < 0.6
    share = rng.uniform(-0.2, 1.2, m) * (rng.random(m) < 0.8)  # some 0, some clipped
    rate = rng.uniform(0.0, 0.1, m)
    before = books[0].loans.copy()
    out_full = books[0].rollover(mask, share, rate, maturity=7)
    out_part = books[1].rollover(mask, share[mask], rate[mask], maturity=7)
    for k in out_full:
        np.testing.assert_array_equal(out_full[k], out_part[k])
    for f in LoanBook._FIELDS:
        np.testing.assert_array_equal(getattr(books[0].loans, f), getattr(books[1].loans, f))
        np.testing.assert_array_equal(getattr(books[0].loans, f)[:m][~mask],
                                      getattr(before, f)[~mask])
    clipped = np.clip(share[mask], 0, 1)
    np.testing.assert_array_equal(out_full["amount"], (before.owed[mask] * clipped)[clipped > 0])
    ok(books[0])


def test_rollover_terms_as_numbers_and_bad_shapes():
    """One number for every rolled loan gives what a full array of it gives; a
    shape that is neither the book's nor the rolled loans' is a clear error."""
    a, b = base(ccp0=0), base(ccp0=0)
    mask = A([True, True])
    out_a = a.rollover(mask, 0.5, 0.03, maturity=9)
    out_b = b.rollover(mask, A([0.5, 0.5]), A([0.03, 0.03]), maturity=9)
    for k in out_a:
        np.testing.assert_array_equal(out_a[k], out_b[k])
    np.testing.assert_array_equal(a.loans.rate, b.loans.rate)
    with pytest.raises(ValueError, match=r"share has shape \(3,\).*\(4,\).*\(2,\)"):
        a.rollover(A([True, False, True, False]), A([0.5, 0.5, 0.5]), 0.03, maturity=9)


def test_accrue_interest():
    L = base()
    interest = L.accrue_interest()
    close(interest, [0.3, 0.4])  # 30 × 0.01, 20 × 0.02 (on principal)
    close(L.loans.accrued, [2.3, 0.4])
    close(L.equity - EQ, [0.3 - 0.4, -0.3, 0.4])
    close(L.cash, CASH)
    ok(L)


def test_charge_deposit_interest():
    L = base()
    L.charge_deposit_interest(0.01)
    close(L.deposits, [90.9, 60.6, 70.7])
    close(L.equity - EQ, [-0.9, -0.6, -0.7])
    close(L.cash, CASH)
    ok(L)


def test_receive_asset_income_skips_defaulted():
    L = base()
    L.mark_default(A([1]), 0)
    income = L.receive_asset_income(0.01)
    close(income, [0.01 * (20 + 40), 0.0, 0.01 * (60 + 20)])
    close(L.cash, [100.6, 50.0, 80.8])
    close(L.equity - EQ, [0.6, 0.0, 0.8])
    assert L.external_in["asset_income"] == pytest.approx(1.4, rel=1e-12)
    ok(L)


def test_sell_assets_realises_discount():
    L = base()
    proceeds = L.sell_assets(A([[5.0, 0.0], [0.0, 2.0], [0.0, 0.0]]), A([1.5, 2.5]), "fire")
    close(proceeds, [7.5, 5.0, 0.0])
    close(L.holdings, [[5.0, 0.0], [5.0, 3.0], [0.0, 20.0]])
    close(L.cash, [107.5, 55.0, 80.0])
    close(L.equity - EQ, [7.5 - 10.0, 5.0 - 6.0, 0.0])  # proceeds - marked value
    assert L.external_in["fire"] == 12.5
    ok(L)


def test_revalue():
    L = base()
    new = A([1.0, 4.0])
    change = L.revalue(new)
    new[:] = 0.0  # the ledger keeps its own copy
    close(change, [-10.0, -5.0 + 5.0, 20.0])
    close(L.prices, [1.0, 4.0])
    close(L.equity - EQ, [-10.0, 0.0, 20.0])
    close(L.cash, CASH)
    ok(L)


def test_write_down_assets_other_first_then_securities_capped():
    L = base()
    taken = L.write_down_assets(A([0, 1, 2]), A([50.0, 1000.0, 30.0]))
    close(taken, [50.0, 30.0 + 25.0, 30.0])  # bank 1 capped at what it holds
    close(L.other_assets, [0.0, 0.0, 0.0])
    close(L.holdings, [[5.0, 0.0], [0.0, 0.0], [0.0, 20.0 * 5.0 / 6.0]])
    close(L.equity - EQ, [-50.0, -55.0, -30.0])
    close(L.cash, CASH)
    ok(L)


def test_liquidate_other_assets():
    L = base()
    raised = L.liquidate_other_assets(A([1, 2]), 0.25)
    assert raised == pytest.approx(22.5 + 15.0, rel=1e-12)
    close(L.cash, [100.0, 72.5, 95.0])
    close(L.other_assets, [40.0, 0.0, 0.0])
    close(L.equity - EQ, [0.0, -7.5, -5.0])  # the discount is the loss
    assert L.external_in["liquidations"] == pytest.approx(37.5, rel=1e-12)
    ok(L)


def test_settle_bilateral_with_write_off_external_dues_and_default_cost():
    L = base()
    L.settle(A([True, False]), A([24.0, 0.0]), A([24.0, 0.0]), ext_due=A([10.0, 0.0, 5.0]),
             ext_recovery=A([1.0, 0.0, 0.5]), default_cost=A([0.0, 3.0, 0.0]))
    close(L.cash, [100.0 + 24.0 - 10.0, 50.0 - 24.0 - 3.0, 80.0 - 2.5])
    close(L.deposits, [80.0, 60.0, 65.0])
    # lender writes off 32 - 24; borrower's debt of 32 extinguished for 24;
    # bank 2 pays half of 5 due; bank 1 loses 3 to default costs
    close(L.equity - EQ, [-8.0, 8.0 - 3.0, 2.5])
    assert len(L.loans) == 1 and L.loans.lender.tolist() == [2]
    close(L.loans.owed, [20.0])
    assert L.external_out["external_creditors"] == 12.5
    assert L.external_out["default_costs"] == 3.0
    ok(L)


def test_settle_cleared_loan_through_ccp_waterfall():
    L = base(ccp0=0, infra=(1, 0))
    L.inject_ccp_capital(A([6.0]))
    L.move_to_ccp("margin", A([[0.0], [5.0], [2.0]]))
    L.move_to_ccp("fund", A([[5.0], [4.0], [6.0]]))
    ok(L)
    # bank 1 pays 10 of 32 to the CCP; the CCP pays the lender in full and covers
    # 22 = margin 5 + own fund 4 + CCP capital 6 + survivors' fund 3 + 4
    L.settle(A([True, False]), A([10.0, 0.0]), A([32.0, 0.0]), np.zeros(3), np.zeros(3),
             np.zeros(3), seized_margin=A([[0.0], [5.0], [0.0]]),
             seized_fund=A([[0.0], [4.0], [0.0]]), capital_used=A([6.0]),
             fund_charges=A([[3.0], [0.0], [4.0]]))
    close(L.cash, [95.0 + 32.0, 41.0 - 10.0, 72.0])
    close(L.ccp_cash, [28.0 + 10.0 - 32.0])
    close(L.margin, [[0.0], [0.0], [2.0]])
    close(L.fund, [[2.0], [0.0], [2.0]])
    close(L.ccp_capital, [0.0])
    close(L.equity - EQ, [-3.0, 22.0 - 5.0 - 4.0, -4.0])
    assert len(L.loans) == 1
    ok(L)


def test_mark_default_only_new_ones_then_wind_down():
    L = base()
    close(L.mark_default(A([1, 2]), 4), [1, 2])
    close(L.mark_default(A([True, True, False]), 7), [0])
    assert L.status.tolist() == [DEFAULTED] * 3 and L.default_step.tolist() == [7, 4, 4]
    assert not L.active.any() and L.defaulted.all() and ACTIVE != DEFAULTED
    close(L.cash, CASH)  # no money moves
    close(L.equity, EQ)
    ok(L)
    assert L.wind_down(A([1])) == 50.0  # closing bank 1 pays its cash to shareholders
    close(L.cash, [100.0, 0.0, 80.0])
    close(L.equity - EQ, [0.0, -50.0, 0.0])
    assert L.resolved.tolist() == [False, True, False]
    assert L.external_out["residual_to_shareholders"] == 50.0
    ok(L)


@pytest.mark.parametrize(("edits", "message"), [
    ([("cash", 0, 1.0)], "bank 0: assets - liabilities - equity = 1.000e"),
    ([("equity", 2, -1.0)], "bank 2: assets - liabilities - equity = 1.000e"),
    ([("cash", 1, 5.0), ("equity", 1, 5.0)], "money not conserved: unexplained cash 5.000e"),
    ([("cash", 0, -150.0), ("equity", 0, -150.0), ("external_out", "theft", 150.0)],
     "bank 0 has negative cash -5.000e"),
    ([("ccp_cash", 0, 3.0), ("external_in", "gift", 3.0)],
     "CCP 0: cash - member accounts - capital = 3.000e"),
    ([("holdings", (0, 0), -11.0), ("equity", 0, -22.0)], "negative holdings"),
    ([("deposits", 1, -61.0), ("equity", 1, 61.0)], "negative deposits"),
    ([("margin", (1, 0), -1.0), ("equity", 1, -1.0), ("ccp_capital", 0, 1.0)],
     "negative margin or default-fund account"),
], ids=["cash", "equity", "money", "neg-cash", "ccp", "holdings", "deposits", "margin"])
def test_check_raises_on_broken_identity(edits, message):
    L = base(infra=(1, 0))
    L.check()
    for attr, where, delta in edits:  # break the books on purpose
        getattr(L, attr)[where] += delta
    with pytest.raises(AccountingError, match=message):
        L.check()
    with pytest.raises(AccountingError, match=message):
        accounting.check(L)


def test_cash_gap_measures_unrecorded_flows():
    L = base()
    L.cash[1] += 5.0
    assert accounting.cash_gap(L) == 5.0
    L.external_in["recorded"] += 5.0
    assert L.cash_gap() == 0.0
    L.external_out["recorded"] += 2.0
    assert L.cash_gap() == 2.0


# ------------------------------------------------------------------ loan book
def book(rows):
    """LoanBook from (lender, borrower, principal, accrued, rate, maturity, ccp) rows."""
    cols = list(zip(*rows, strict=True))
    lb = LoanBook()
    lb.append(A(cols[0]), A(cols[1]), A(cols[2], float), A(cols[4]), A(cols[5]), A(cols[6]))
    lb.accrued = A(cols[3], float)
    return lb


def rows(lb):
    return sorted(zip(*(getattr(lb, f).tolist() for f in LoanBook._FIELDS), strict=True))


def owed_by_pair(lb):
    return sp.coo_matrix((lb.owed, (lb.lender, lb.borrower)), shape=(3, 3)).toarray()


def test_loanbook_append_keep_owed_copy():
    lb = LoanBook()
    lb.append(A([0, 1]), A([1, 2]), A([5.0, 6.0]), A([0.1, 0.2]), A([3, 4]))
    lb.append(A([2]), A([0]), A([7.0]), A([0.3]), A([5]), ccp=A([1]))
    assert len(lb) == 3 and lb.ccp.tolist() == [-1, -1, 1]
    assert lb.lender.dtype == np.int64 and lb.maturity.dtype == np.int64
    lb.accrued[1] = 0.5
    close(lb.owed, [5.0, 6.5, 7.0])
    lb.keep(A([True, False, True]))
    assert lb.lender.tolist() == [0, 2] and lb.borrower.tolist() == [1, 0]
    close(lb.owed, [5.0, 7.0])
    assert lb.maturity.tolist() == [3, 5] and lb.ccp.tolist() == [-1, 1]
    cp = lb.copy()  # deep: changing the copy leaves the original alone
    cp.principal[0], cp.lender[1] = 99.0, 7
    cp.append(A([2]), A([0]), A([3.0]), A([0.1]), A([9]))
    assert len(lb) == 2 and lb.principal.tolist() == [5.0, 7.0] and lb.lender.tolist() == [0, 2]
    assert len(cp) == 3 and cp.principal[0] == 99.0


def test_consolidate_merges_alike_rows_from_start():
    head = [(0, 1, 1.0, 0.0, 0.01, 5, -1), (0, 1, 2.0, 0.0, 0.01, 5, -1)]
    lb = book([*head,
               (0, 1, 10.0, 1.0, 0.02, 6, -1), (2, 0, 3.0, 0.0, 0.03, 4, -1),
               (0, 1, 5.0, 0.5, 0.02, 6, -1), (0, 1, 7.0, 0.0, 0.02, 6, 0),
               (2, 0, 4.0, 0.25, 0.03, 4, -1), (0, 1, 1.0, 0.0, 0.02, 6, -1)])
    before = owed_by_pair(lb)
    lb.consolidate(2)
    assert len(lb) == 2 + 3
    assert rows(lb) == sorted([*head, (0, 1, 16.0, 1.5, 0.02, 6, -1),
                               (0, 1, 7.0, 0.0, 0.02, 6, 0), (2, 0, 7.0, 0.25, 0.03, 4, -1)])
    assert lb.principal[:2].tolist() == [1.0, 2.0]  # rows before start untouched
    close(owed_by_pair(lb), before)


@pytest.mark.parametrize("differ", [(0.05, 6), (0.02, 7)], ids=["rate", "maturity"])
def test_consolidate_leaves_block_alone_if_a_pair_has_different_terms(differ):
    rate, mat = differ
    lb = book([(0, 1, 10.0, 0.0, 0.02, 6, -1), (0, 1, 5.0, 0.0, rate, mat, -1),
               (2, 0, 3.0, 0.0, 0.03, 4, -1), (2, 0, 4.0, 0.0, 0.03, 4, -1)])
    before = lb.copy()
    lb.consolidate(0)  # the (2, 0) pair would merge, but the whole block stays
    assert len(lb) == 4
    for f in LoanBook._FIELDS:
        np.testing.assert_array_equal(getattr(lb, f), getattr(before, f))


def test_consolidate_edge_cases():
    three = [(1, 0, 3.0, 0.0, 0.01, 5, -1), (0, 1, 1.0, 0.0, 0.01, 5, -1),
             (0, 1, 2.0, 0.5, 0.01, 5, -1)]
    lb = book(three)
    lb.consolidate(2)  # fewer than 2 rows from start: nothing to do
    assert len(lb) == 3 and rows(lb) == sorted(three)
    lb.consolidate(1)  # exactly two rows from start, alike: merged
    assert len(lb) == 2 and lb.lender.tolist() == [1, 0]
    close(lb.principal, [3.0, 3.0])
    close(lb.owed, [3.0, 3.5])
    lb.consolidate(0)  # all pairs distinct: nothing changes
    assert len(lb) == 2 and lb.lender.tolist() == [1, 0]


@pytest.mark.parametrize("seed", range(5))
def test_consolidate_against_grouping_row_by_row(seed):
    """Random blocks (repeated pairs, CCP-novated rows, alike terms per pair):
    the merged rows are the groups of (lender, borrower, CCP) in sorted order,
    each with its first row's terms and link id, principal and accrued
    interest summed row by row in book order (bit for bit)."""
    rng = np.random.default_rng(seed)
    n, k = 7, 60
    lender = rng.integers(0, n, k)
    borrower = (lender + rng.integers(1, n, k)) % n
    ccp = np.where(rng.random(k) < 0.3, rng.integers(0, 2, k), -1)
    rate = 0.01 * (1 + borrower)  # alike terms within each pair
    principal, accrued = rng.random(k) * 10, rng.random(k)
    lb = LoanBook()
    lb.append(A([0]), A([1]), A([9.0]), A([0.5]), A([3]))  # a row before start
    lb.append(lender, borrower, principal, rate, np.full(k, 8), ccp)
    lb.accrued[1:] = accrued
    link = lb.link_ids()[1:].copy()
    groups: dict[tuple[int, int, int], list[int]] = {}
    for j in range(k):
        groups.setdefault((int(lender[j]), int(borrower[j]), int(ccp[j])), []).append(j)
    lb.consolidate(1)
    assert len(lb) == 1 + len(groups) < 1 + k
    assert (lb.principal[0], lb.accrued[0]) == (9.0, 0.0)
    for r, key in enumerate(sorted(groups), start=1):
        js = groups[key]
        assert (lb.lender[r], lb.borrower[r], lb.ccp[r]) == key
        assert (lb.link[r], lb.rate[r], lb.maturity[r]) == (link[js[0]], rate[js[0]], 8)
        p = a = 0.0
        for j in js:
            p, a = p + principal[j], a + accrued[j]
        assert (lb.principal[r], lb.accrued[r]) == (p, a)


@pytest.mark.parametrize("seed", range(4))
def test_keep_drops_rows_as_boolean_indexing_does(seed):
    """keep(mask) leaves the book that boolean indexing of every row array gives:
    for masks that drop a first block of rows (the usual case, moved in place
    by slices), for scattered masks, for all and for none."""
    rng = np.random.default_rng(seed)
    m = 50
    lb = LoanBook()
    lb.append(rng.integers(0, 9, m), rng.integers(0, 9, m), rng.random(m), rng.random(m),
              np.sort(rng.integers(1, 9, m)), np.where(rng.random(m) < 0.3, 0, -1))
    lb.accrued = rng.random(m)
    lb.link_ids()
    cut = int(rng.integers(0, m))
    masks = [np.arange(m) >= cut, rng.random(m) < 0.6, np.ones(m, bool), np.zeros(m, bool)]
    for mask in masks:
        book = lb.copy()
        book.append(A([1]), A([2]), A([1.0]), A([0.1]), A([9]))  # buffers with spare room
        mask = np.append(mask, True)
        want = {f: getattr(book, f)[mask].copy() for f in LoanBook._ROWS}
        book.keep(mask)
        assert len(book) == int(mask.sum())
        for f in LoanBook._ROWS:
            np.testing.assert_array_equal(getattr(book, f), want[f])


# -------------------------------------------------------- snapshot, exposures
def test_snapshot_restore():
    L = base(ccp0=0, infra=(1, 1))
    L.inject_ccp_capital(A([4.0]))
    L.move_to_ccp("margin", A([[1.0], [2.0], [3.0]]))
    keys = ("cash holdings deposits prices other_assets status default_step resolved equity "
            "equity0 margin fund ccp_cash ccp_capital exchange_cash").split()
    ref, ref_loans = {k: getattr(L, k).copy() for k in keys}, rows(L.loans)
    snap = L.snapshot()
    L.lend(A([1]), A([2]), A([5.0]), A([0.1]), A([9]))
    L.accrue_interest()
    L.revalue(A([1.0, 1.0]))
    L.mark_default(A([0]), 3)
    L.wind_down(A([0]))
    L.sell_assets(L.holdings * 0.5, L.prices, "fire")
    L.charge_fees(A([2]), A([1.0]), A([0]))
    assert len(snap["loans"]) == 2 and snap["external_in"] == {"ccp_capital": 4.0}
    for k in keys:  # mutating the ledger did not touch the snapshot
        np.testing.assert_array_equal(snap[k], ref[k])
    for _ in range(2):  # the snapshot stays valid after a restore
        L.restore(snap)
        for k in keys:
            np.testing.assert_array_equal(getattr(L, k), ref[k])
        assert rows(L.loans) == ref_loans
        assert dict(L.external_in) == {"ccp_capital": 4.0} and dict(L.external_out) == {}
        assert L.initial_cash_total == 230.0
        ok(L)
        L.loans.principal[0] = 0.0  # mutate the restored state in place
        L.cash[0] = -1.0
        L.external_in["x"] += 1.0
    close(snap["loans"].principal, [30.0, 20.0])


def test_exposure_matrix():
    L = base()
    L.lend(A([0, 1, 0]), A([1, 2, 1]), A([5.0, 4.0, 1.0]), A([0.0] * 3), A([9] * 3),
           A([0, -1, -1]))
    full = L.exposure_matrix().toarray()
    expected = np.zeros((3, 3))
    expected[0, 1], expected[2, 0], expected[1, 2] = 32.0 + 5.0 + 1.0, 20.0, 4.0
    close(full, expected)
    expected[0, 1] = 33.0  # the novated loan of 5 is left out
    close(L.exposure_matrix(bilateral_only=True).toarray(), expected)


# ------------------------------------------------------------------ property
@settings(max_examples=50, deadline=None)
@given(st.data())
def test_random_verbs_keep_identities(data):
    draw = data.draw
    n, k, m0 = draw(st.integers(2, 4)), draw(st.integers(1, 2)), draw(st.integers(0, 6))
    frac, bank = st.floats(0.0, 1.0), st.integers(0, n - 1)

    def arr(*shape, hi=100.0):
        size = int(np.prod(shape))
        return A(draw(st.lists(st.floats(0.0, hi), min_size=size, max_size=size))).reshape(shape)

    def pick(strategy, size):
        return A(draw(st.lists(strategy, min_size=size, max_size=size)))

    L = Ledger(arr(n) + 50.0, arr(n, k), arr(n), arr(k) + 0.5, arr(n))
    L.loans.append(pick(bank, m0), pick(bank, m0), arr(m0), np.full(m0, 0.01), np.full(m0, 3),
                   pick(st.sampled_from([-1, 0]), m0))  # alike: consolidate merges
    L.loans.accrued = arr(m0, hi=5.0) + 0.5
    L.setup_infrastructure(1, 1)
    L.finish_setup()
    for _ in range(draw(st.integers(1, 16))):
        verb = draw(st.sampled_from(["lend", "carry", "sell", "revalue", "write", "liquidate",
                                     "rollover", "settle", "wind", "infra", "consolidate"]))
        m = len(L.loans)
        if verb == "lend":  # like the model: a batch, then consolidated
            c = draw(st.integers(1, 3))
            i, j = np.full(c, draw(bank)), np.full(c, draw(bank))
            L.lend(i, j, np.maximum(L.cash[i], 0.0) * arr(c, hi=0.3),
                   np.full(c, 0.01), np.full(c, 3), pick(st.sampled_from([-1, 0]), c))
            L.accrue_interest()
            L.loans.consolidate(m)
        elif verb == "carry":
            L.charge_deposit_interest(draw(st.floats(0.0, 0.05)))
            L.receive_asset_income(draw(st.floats(0.0, 0.05)))
        elif verb == "sell":
            L.sell_assets(L.holdings * arr(n, 1, hi=1.0), L.prices * draw(frac), "sale")
        elif verb == "revalue":
            L.revalue(L.prices * arr(k, hi=2.0))
        elif verb == "write":
            L.write_down_assets(np.arange(n), arr(n))
        elif verb == "liquidate":
            L.liquidate_other_assets(np.unique(pick(bank, 2)), draw(frac))
        elif verb == "rollover" and m:
            L.rollover(pick(st.booleans(), m), arr(m, hi=1.0), np.full(m, 0.02), 9)
        elif verb == "settle" and m:
            paid = L.loans.owed * arr(m, hi=1.0)
            L.settle(pick(st.booleans(), m), paid, paid, L.deposits * arr(n, hi=1.0),
                     arr(n, hi=1.0), arr(n, hi=1.0))
        elif verb == "wind":
            L.mark_default(pick(bank, 1), 1)
            L.wind_down(np.flatnonzero(L.defaulted))
        elif verb == "infra":
            L.charge_fees(pick(bank, 1), A([draw(frac)]), A([0]))
            L.inject_ccp_capital(A([draw(frac)]))
            L.move_to_ccp(draw(st.sampled_from(["margin", "fund"])), arr(n, 1, hi=1.0))
        elif verb == "consolidate":
            L.loans.consolidate(draw(st.integers(0, m)))
        tol = 1e-9 * max(1.0, float(np.abs(L.total_assets()).max()), L.system_cash())
        assert np.abs(L.identity_gap()).max() <= tol, verb
        assert abs(L.cash_gap()) <= tol, verb
