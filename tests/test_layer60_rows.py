"""helper-60 (issue 15): the act and clear stages read the due loans as rows
(``observation.due_rows``: ``slice(0, k)`` found by binary search in a book in
maturity order) instead of a mask over the whole book — the layer's book holds
~8,100 loans instead of ~5,900 at 1,000 banks, and each mask pass grows with it.

``Ledger.rollover`` and ``resolution.settle_in_full`` take the rows as well as a
mask (``loans.row_indices``): checked byte for byte against the mask form on
the same books, and ``lending.roll_over`` / ``clear_and_resolve`` along model
runs against their former forms (kept below)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from finsim_mesa import FinancialModel, lending, resolution
from finsim_mesa.fastmath import count_nonzero, flatnonzero, leading
from finsim_mesa.ledger import Ledger
from finsim_mesa.loans import row_indices
from finsim_mesa.observation import due_rows


def former_roll_over(L, hoard, rate, spread, t, maturity):
    lb = L.loans
    active = L.active
    maturing = lb.maturity <= t
    if count_nonzero(active) < active.size:
        due = flatnonzero(maturing)
        maturing[due[~(active[lb.lender[due]] & active[lb.borrower[due]])]] = False
    rows = leading(flatnonzero(maturing))
    return L.rollover(maturing, 1.0 - hoard[lb.lender[rows]], rate + spread[lb.borrower[rows]],
                      maturity)


def former_clear_and_resolve(L, cfg, withdrawals, sell, t, ccps, router):
    """resolution.clear_and_resolve at 7c9fe3b (the mask of what matures)."""
    R = resolution
    n = L.n
    resolving = L.defaulted & ~L.resolved
    depth = 0
    for _ in range(n + 1):
        anyone = count_nonzero(resolving) > 0
        if anyone:
            L.liquidate_other_assets(flatnonzero(resolving), cfg.liquidation_discount)
            sell(L.holdings * resolving[:, None], L.prices * (1 - cfg.liquidation_discount),
                 "liquidations")
        lb = L.loans
        due = lb.maturity <= t
        ext_due = np.minimum(withdrawals, L.deposits)
        if anyone:
            due |= resolving[lb.borrower] | resolving[lb.lender]
            ext_due = np.where(resolving, L.deposits, ext_due)
        withdrawals[:] = 0.0
        failed = None
        if not (count_nonzero(due) or count_nonzero(ext_due)):
            pass
        elif (anyone or n >= R.FAST_PATH_MIN_N
              or not R.settle_in_full(L, cfg, due, ext_due, router, t, sell)):
            res = R.clear_due(L, cfg, due, ext_due, resolving, sell, t, ccps, router)
            depth += res.rounds
            failed = res.defaulted[:n]
        if anyone:
            L.wind_down(flatnonzero(resolving))
        new = L.mark_default(R.insolvent(L) if failed is None else failed | R.insolvent(L), t)
        if new.size == 0:
            break
        resolving = np.zeros(n, dtype=bool)
        resolving[new] = True
    return depth


def _ledger_bytes(L: Ledger) -> bytes:
    parts = [getattr(L, k).tobytes() for k in L._ARRAYS]
    parts += [getattr(L.loans, k).tobytes() for k in L.loans._ROWS]
    parts.append(repr(sorted(L.external_in.items())).encode())
    parts.append(repr(sorted(L.external_out.items())).encode())
    return b"".join(parts)


def test_row_indices_of_each_form():
    mask = np.array([True, True, False, True, False])
    np.testing.assert_array_equal(row_indices(mask), [0, 1, 3])
    np.testing.assert_array_equal(row_indices(np.array([2, 4])), [2, 4])
    np.testing.assert_array_equal(row_indices(slice(0, 3)), [0, 1, 2])
    assert row_indices(slice(0, 0)).size == 0
    assert resolution._how_many(mask) == 3 and resolution._how_many(slice(0, 4)) == 4
    assert resolution._how_many(np.array([5, 7])) == 2
    assert resolution._how_many(np.zeros(3, dtype=bool)) == 0


def _book_ledger(seed: int, ordered: bool) -> Ledger:
    rng = np.random.default_rng(seed)
    n, m = 12, 400
    L = Ledger(rng.random(n) * 100, rng.random((n, 1)) * 10, rng.random(n) * 50, np.ones(1))
    mat = np.sort(rng.integers(3, 9, m)) if ordered else rng.integers(3, 9, m)
    lender = rng.integers(0, n, m)
    borrower = (lender + rng.integers(1, n, m)) % n
    L.loans.append(lender, borrower, rng.random(m), rng.random(m) * 0.01, mat)
    L.loans.accrued[:] = rng.random(m) * 0.1
    return L


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ordered", [True, False])
def test_rollover_of_rows_is_the_rollover_of_the_mask(seed, ordered):
    L0 = _book_ledger(seed, ordered)
    t = 5
    mask = L0.loans.maturity <= t
    rows = due_rows(L0.loans.maturity, t)
    assert isinstance(rows, slice) == ordered  # both forms are met
    k = int(count_nonzero(mask))
    rng = np.random.default_rng(seed + 100)
    share, rate = rng.random(k) * 1.2 - 0.1, rng.random(k) * 0.02
    share[: k // 5] = 0.0  # some loans not rolled: the gathered form
    outs = []
    for due in (mask, rows, row_indices(mask)):
        L = copy.deepcopy(L0)
        out = L.rollover(due, share, rate, 11)
        outs.append((_ledger_bytes(L), {key: v.tobytes() for key, v in out.items()}))
    assert outs[0] == outs[1] == outs[2]


@pytest.mark.parametrize("seed", range(6))
def test_settle_in_full_of_rows_is_that_of_the_mask(seed):
    L0 = _book_ledger(seed, True)
    from finsim_mesa.config import ModelConfig
    cfg = ModelConfig(n_banks=L0.n)
    L0.cash += 1e3  # everybody pays in full
    t = 6
    mask = L0.loans.maturity <= t
    ext = np.random.default_rng(seed).random(L0.n)
    states = []
    for due in (mask, due_rows(L0.loans.maturity, t), flatnonzero(mask)):
        L = copy.deepcopy(L0)
        assert resolution.settle_in_full(L, cfg, due, ext.copy())
        states.append(_ledger_bytes(L))
    assert states[0] == states[1] == states[2]
    assert len(L.loans) == len(L0.loans) - int(count_nonzero(mask))


@pytest.mark.parametrize("kw", [dict(), dict(n_exchanges=2, n_ccps=1),
                                dict(n_exchanges=3, n_ccps=2, ccp_clearing_share=0.5)])
@pytest.mark.parametrize("search", [False, True])
def test_runs_with_the_former_roll_over_and_clear_are_the_same(monkeypatch, kw, search):
    """Two models, one with the former roll_over and clear_and_resolve (masks
    over the book), step by step equal byte for byte, contagion depth included
    (defaults too: the systemic scenario); ``search``: due_rows's binary search
    at any book size (it starts at 4,096 loans)."""
    from finsim_mesa import observation
    if search:
        monkeypatch.setattr(observation, "_SEARCH_FROM", 0)
    a = FinancialModel(n_banks=80, scenario="systemic", brain="rule_based", rng=4, **kw)
    b = FinancialModel(n_banks=80, scenario="systemic", brain="rule_based", rng=4, **kw)
    for _ in range(25):
        a.step()
        with monkeypatch.context() as mp:
            mp.setattr(lending, "roll_over", former_roll_over)
            mp.setattr(resolution, "clear_and_resolve", former_clear_and_resolve)
            b.step()
        assert _ledger_bytes(a.ledger) == _ledger_bytes(b.ledger)
        assert a.flows.contagion_depth == b.flows.contagion_depth
    assert a.ledger.defaulted.any()  # resolution rounds were met too
