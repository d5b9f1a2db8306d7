"""helper-58: DebtRank rounds after the first that gather few distressed columns
update only the rows their entries reach (``risk._rounds``), gathers by
``take(mode="clip")``, and the observation's due loans found by a binary search
(``observation.due_rows``). Checked bit for bit against SciPy's CSR product
(``risk.debtrank``), against the former forms kept here, with signed zeros,
absent links, banks without equity and a NaN exposure."""

import numpy as np
import pytest
import scipy.sparse as sp

from finsim_mesa import debtrank_columns, observation, risk
from finsim_mesa.fastmath import flatnonzero, leading
from finsim_mesa.links import LinkTable
from finsim_mesa.model import FinancialModel


def _case(seed: int, n: int, pairs: int, shocked: int, nan: bool = False):
    rng = np.random.default_rng(seed)
    table = LinkTable()
    table.ids(rng.integers(0, n, pairs), rng.integers(0, n, pairs))
    rows, cols = table.csr_entries()
    exposures = rng.random(rows.size) * 30.0
    exposures[rng.random(rows.size) < 0.05] = -0.0
    exposures[rng.random(rows.size) < 0.05] = 0.0
    if nan:
        exposures[rows.size // 2] = np.nan
    present = rng.random(rows.size) < 0.9
    equity = rng.random(n) * 20.0 + 1.0
    equity[rng.random(n) < 0.01] = -1.0  # no positive equity: weight 1
    h0 = np.zeros(n)
    h0[rng.choice(n, shocked, replace=False)] = rng.random(shocked) * 0.5 + 0.5
    h0[rng.choice(n, 5, replace=False)] = -0.0  # (a signed zero the first round turns +0.0)
    value = rng.random(n) + 0.5
    return table, rows, cols, exposures, present, equity, h0, value


def _same(a, b):
    assert a.distress.tobytes() == b.distress.tobytes()
    assert np.array([a.debtrank, a.total]).tobytes() == np.array([b.debtrank, b.total]).tobytes()
    assert a.steps == b.steps


def _former_rounds(rows, cols, exposures, equity, h0, v, present, by_column):
    """The rounds before helper-58: every round a bincount over all banks."""
    data = risk._entry_weights(exposures, equity, rows, present)
    h, distressed, inactive, steps = h0, h0 > 0, np.zeros(h0.size, dtype=bool), 0
    for _ in range(h0.size + 1):
        if not distressed.any():
            break
        sel = flatnonzero(distressed[cols])
        push = np.bincount(rows[sel], weights=data[sel] * h[cols[sel]], minlength=h0.size)
        inactive |= distressed
        h = np.minimum(1.0, h + push)
        distressed = (h > 0) & ~inactive
        steps += 1
    return h, float(v @ h), float(v @ h0), steps


@pytest.mark.parametrize("seed,n,pairs,shocked,nan", [
    (1, 4000, 24_000, 20, False), (2, 6000, 40_000, 60, False), (3, 3000, 30_000, 10, True),
    (4, 5000, 20_000, 150, False)])
def test_rounds_on_the_reached_rows_give_scipys_and_the_former_bits(
        monkeypatch, seed, n, pairs, shocked, nan):
    table, rows, cols, exposures, present, equity, h0, value = _case(seed, n, pairs, shocked, nan)
    calls = []
    column_entries = risk._column_entries

    def counted(by_column, ids):
        calls.append(ids.size)
        return column_entries(by_column, ids)

    monkeypatch.setattr(risk, "_column_entries", counted)
    got = risk.debtrank_entries(rows, cols, exposures, equity, h0, value, present=present,
                                by_column=table.by_column(n))
    # the columns' path ran in rounds after the first (those update the reached rows only)
    assert len(calls) >= 2 and got.steps >= 3
    csr = sp.csr_matrix((exposures, cols, np.searchsorted(rows, np.arange(n + 1))), shape=(n, n))
    _same(got, risk.debtrank(csr, equity, h0, value, present=present))
    v = risk._values(None, value, n)
    ref = _former_rounds(rows, cols, exposures, equity, risk.clip(h0, 0.0, 1.0), v, present, None)
    assert ref[0].tobytes() == got.distress.tobytes() and ref[3] == got.steps
    assert np.array([ref[1], ref[1] - ref[2]]).tobytes() == np.array([got.total, got.debtrank]
                                                                      ).tobytes()
    assert nan or got.debtrank > 0


def test_rounds_at_the_model_give_the_former_bits():
    """The record stage's inputs at 12,000 banks: the same distress as the former
    rounds. Since big66 the record stage takes DebtRank's rounds by column
    (``debtrank_columns.column_rounds``, from ``risk._COLUMN_PATH_MIN_ENTRIES``
    link entries) on steps with distress (big61 skips them without): each call is
    compared with the former rounds on the same entries."""
    m = FinancialModel(n_banks=12_000, brain="rule_based", agent_collect_every=0, steps=10**9,
                       rng=3, scenario="systemic")
    seen = []
    column_rounds = debtrank_columns.column_rounds

    def both(rows, exposures, equity, h0, present, by_column):
        out = column_rounds(rows, exposures, equity, h0, present, by_column)
        order, ptr = by_column
        cols = np.empty(order.size, dtype=np.int64)  # each entry's column, in entry order
        cols[order] = np.repeat(np.arange(h0.size), np.diff(ptr))
        ref = _former_rounds(rows, cols, exposures, equity, h0, np.ones(h0.size), present,
                             None)
        assert out.tobytes() == ref[0].tobytes()
        seen.append(ref[3])
        return out

    debtrank_columns.column_rounds = both
    try:
        m.run_for(6)
    finally:
        debtrank_columns.column_rounds = column_rounds
    assert len(seen) >= 3 and max(seen) >= 10, seen


def _former_due(maturity, t):
    return leading(flatnonzero(maturity <= t))


def _as_rows(r, size):
    return np.arange(size)[r]


@pytest.mark.parametrize("seed", range(6))
def test_due_rows_are_the_masks(seed):
    rng = np.random.default_rng(seed)
    for size in (0, 1, 2, 7, 50, 400, 5000, 9000):
        sorted_m = np.sort(rng.integers(0, 10, size))
        for m in (sorted_m, rng.permutation(sorted_m), sorted_m[::-1].copy(),
                  np.concatenate((sorted_m, [0])) if size else sorted_m):
            for t in (-1, 0, 3, 5, 9, 12):
                got, ref = observation.due_rows(m, t), _former_due(m, t)
                assert type(got) is type(ref)
                assert _as_rows(got, m.size).tolist() == _as_rows(ref, m.size).tolist()
                assert _as_rows(got, m.size).tolist() == np.flatnonzero(m <= t).tolist()


def test_observations_with_the_former_due_rows(monkeypatch):
    """The bank columns bit for bit with the former mask form, on a book in
    maturity order and on the same book with its rows reversed (the binary search
    used at any book size here)."""
    monkeypatch.setattr(observation, "_SEARCH_FROM", 0)
    m = FinancialModel(n_banks=300, brain="rule_based", agent_collect_every=0, steps=10**9,
                       rng=5)
    m.run_for(6)
    args = (m.ledger, m.sheets, m.market, m.measures, m.flows.withdrawals, m.network,
            m.reference.size0, m.config, m.t + 1, slice(None))  # (as the next step sees it)
    lb = m.ledger.loans
    assert 0 < np.count_nonzero(lb.maturity <= m.t + 2) < lb.maturity.size
    for flip in (False, True):
        if flip:
            for name in lb._FIELDS:
                setattr(lb, name, getattr(lb, name)[::-1].copy())
            assert not isinstance(observation.due_rows(lb.maturity, m.t + 2), slice)
        got = observation.bank_observations(*args)
        with monkeypatch.context() as mp:
            mp.setattr(observation, "due_rows", _former_due)
            ref = observation.bank_observations(*args)
        assert got.tobytes() == ref.tobytes()
        assert np.any(got[:, observation.OBS["due_next"]] > 0)
