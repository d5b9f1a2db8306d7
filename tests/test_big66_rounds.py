"""DebtRank's rounds on the entries grouped by column (debtrank_columns.column_rounds, the
record stage's form from 10,000 link entries): bit for bit the former form
(risk._rounds, which sums each row's terms in entry order) and a plain loop."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from finsim_mesa import debtrank_columns, measures, risk


def _network(n: int, links: int, seed: int, nonpositive: int = 0, absent: float = 0.0):
    """Random entries in CSR order (rows non-decreasing, columns ascending within a
    row, no repeated pair), grouped by column as LinkTable.by_column does."""
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(0, n, links) * n + rng.integers(0, n, links))
    rows, cols = keys // n, keys % n
    E = rng.lognormal(0.0, 1.0, keys.size) * (rng.random(keys.size) < 0.8)  # some 0
    eq = rng.lognormal(1.0, 0.7, n)
    eq[rng.choice(n, nonpositive, replace=False)] = -rng.random(nonpositive)
    present = None if absent == 0.0 else rng.random(keys.size) >= absent
    order = np.argsort(cols, kind="stable")
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(cols, minlength=n), out=ptr[1:])
    return rows, cols, E, eq, present, (order, ptr), rng


def _plain(rows, cols, E, eq, h0, present):
    """Battiston et al.'s rounds as a loop over the entries, in entry order."""
    n = h0.size
    data = [1.0 if not eq[i] > 0 else min(1.0, float(E[k]) / float(eq[i]))
            for k, i in enumerate(rows)]
    if present is not None:
        data = [d * float(p) for d, p in zip(data, present, strict=True)]
    h = [float(x) for x in h0]
    distressed = [x > 0 for x in h]
    inactive = [False] * n
    while any(distressed):
        push = [0.0] * n
        for k in range(rows.size):
            if distressed[cols[k]]:
                push[rows[k]] += data[k] * h[cols[k]]
        inactive = [a or b for a, b in zip(inactive, distressed, strict=True)]
        h = [min(1.0, x + p) for x, p in zip(h, push, strict=True)]
        distressed = [x > 0 and not a for x, a in zip(h, inactive, strict=True)]
    return np.array(h)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("part_share", [16, 10**9, 0])  # as shipped, always / never partial
def test_bits_of_the_former_form_and_a_plain_loop(seed, part_share, monkeypatch):
    monkeypatch.setattr(debtrank_columns, "_PART_SHARE", part_share)
    n = 80
    rows, cols, E, eq, present, by_column, rng = _network(
        n, 4 * n, seed, nonpositive=seed % 3, absent=0.2 * (seed % 2))
    for start in (1, 3, 40):  # one bank, a few, half of them distressed at first
        h0 = np.zeros(n)
        h0[rng.choice(n, start, replace=False)] = rng.choice([1.0, 0.3, 1e-9], start)
        kept = h0.copy()
        h = debtrank_columns.column_rounds(rows, E, eq, h0, present, by_column)
        former = risk._rounds(rows, cols, E, eq, h0, np.full(n, 1.0 / n), present, None)[0]
        assert h.tobytes() == former.tobytes()
        assert h.tobytes() == _plain(rows, cols, E, eq, h0, present).tobytes()
        assert h0.tobytes() == kept.tobytes()  # not written to
        assert np.count_nonzero(h > h0) > 0  # the cascade went somewhere


def test_many_banks_against_debtrank_entries():
    """At 20,000 banks (columns without entries, long cascades) against the
    public debtrank_entries (its own column-gather form and its scan form)."""
    n = 20_000
    rows, cols, E, eq, present, by_column, rng = _network(n, 4 * n, 7, nonpositive=5,
                                                          absent=0.1)
    v = rng.random(n)
    for start in (1, 50, 7000):
        h0 = np.zeros(n)
        h0[rng.choice(n, start, replace=False)] = rng.random(start)
        h = debtrank_columns.column_rounds(rows, E, eq, h0, present, by_column)
        for bc in (by_column, None):
            r = risk.debtrank_entries(rows, cols, E, eq, h0, v, present, bc)
            assert h.tobytes() == r.distress.tobytes()
        assert r.steps > 3


def test_kept_arrays_follow_the_pattern_and_the_thread():
    n = 300
    a = _network(n, 4 * n, 1)
    b = _network(n, 4 * n, 2)  # same sizes, another pattern: its rows must be used
    h0 = np.zeros(n)
    h0[[3, 77]] = 1.0
    want = [risk._rounds(x[0], x[1], x[2], x[3], h0, np.ones(n), None, None)[0] for x in (a, b)]
    for _ in range(2):
        for x, w in zip((a, b), want, strict=True):
            assert debtrank_columns.column_rounds(x[0], x[2], x[3], h0, None, x[5]).tobytes() \
                == w.tobytes()
    got = []
    t = threading.Thread(target=lambda: got.append(
        debtrank_columns.column_rounds(b[0], b[2], b[3], h0, None, b[5])))
    t.start()
    t.join()
    assert got[0].tobytes() == want[1].tobytes()


def test_record_stage_uses_it_with_the_same_figures(monkeypatch):
    """A 3,000-bank model (over 10,000 link entries after 2 steps) under a shock: the record stage's
    DebtRank figures equal the former form's on the same ledger."""
    from finsim_mesa import FinancialModel
    m = FinancialModel(n_banks=3000, brain="rule_based", agent_collect_every=0, steps=10**6,
                       rng=3)
    m.run_for(2)
    assert _entries(m) >= risk._COLUMN_PATH_MIN_ENTRIES
    calls = []
    real = debtrank_columns.column_rounds
    monkeypatch.setattr(debtrank_columns, "column_rounds", lambda *a: calls.append(1) or real(*a))
    L = m.ledger
    h = np.zeros(L.n)
    h[:40] = 0.5
    v = measures._economic_values(m.reference.assets0, L.n)
    got = measures._debtrank_sums(L, h, v, False)
    assert calls
    rows, cols, E, present = L.loans.exposure_entries(False)
    former = risk._rounds(rows, cols, E, np.asarray(L.equity0, dtype=float), h, v, present,
                          None)
    assert got == (former[1], former[2])
    assert former[1] > former[2]  # something propagated


def _entries(m) -> int:
    return int(m.ledger.loans.exposure_entries(False, present=False)[0].size)
