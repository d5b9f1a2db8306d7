"""Review of issue 15's DebtRank column path (helper-27): it gives the scan's
bits on a large table, and a ``by_column`` that does not fit the entries (taken
before pairs were added) is refused instead of gathering the wrong entries."""

import numpy as np
import pytest

from finsim_mesa import risk
from finsim_mesa.links import LinkTable


def _table(rng: np.random.Generator, n: int, pairs: int) -> LinkTable:
    table = LinkTable()
    table.ids(rng.integers(0, n, pairs), rng.integers(0, n, pairs))
    return table


def _inputs(rng: np.random.Generator, table: LinkTable, n: int):
    rows, cols = table.csr_entries()
    exposures = rng.random(rows.size) * 10.0
    equity = rng.random(n) * 20.0 + 1.0
    h0 = np.zeros(n)
    h0[rng.choice(n, 12, replace=False)] = rng.random(12)  # few distressed: 16 k < n
    return rows, cols, exposures, equity, h0, rng.random(n) + 0.5


def test_the_column_path_gives_the_scans_bits():
    rng, n = np.random.default_rng(7), 4000
    table = _table(rng, n, 30_000)
    rows, cols, exposures, equity, h0, value = _inputs(rng, table, n)
    assert cols.size >= risk._COLUMN_PATH_MIN_ENTRIES
    by_column = table.by_column(n)
    fast = risk.debtrank_entries(rows, cols, exposures, equity, h0, value, by_column=by_column)
    scan = risk.debtrank_entries(rows, cols, exposures, equity, h0, value)
    assert fast.distress.tobytes() == scan.distress.tobytes()
    assert (fast.debtrank, fast.total, fast.steps) == (scan.debtrank, scan.total, scan.steps)
    assert fast.steps > 1 and fast.debtrank > 0  # it did propagate


def test_a_by_column_taken_before_pairs_were_added_is_refused():
    rng, n = np.random.default_rng(8), 4000
    table = _table(rng, n, 30_000)
    stale = table.by_column(n)
    table.ids(rng.integers(0, n, 500), rng.integers(0, n, 500))  # new pairs
    rows, cols, exposures, equity, h0, value = _inputs(rng, table, n)
    with pytest.raises(ValueError, match="by_column"):
        risk.debtrank_entries(rows, cols, exposures, equity, h0, value, by_column=stale)
    with pytest.raises(ValueError, match="by_column"):  # pointers for another n
        risk.debtrank_entries(rows, cols, exposures, equity, h0, value,
                              by_column=table.by_column(n + 1))
