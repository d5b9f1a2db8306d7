"""helper-76: DebtRank's rounds on fewer than ``risk._SCAN_BELOW`` entries with every
weight in [0, 1] (``risk._growing``): a round's distressed banks found as those the last
round moved off 0, ``np.where(h before, 0, h after)``, instead of the inactive mask.
Checked bit for bit (distress, both sums, rounds) against the former scan kept here,
SciPy's CSR product (``risk.debtrank``) and a plain loop, with signed zeros, NaN
distress, absent links, zero weights, banks without equity, and against the general
rounds where a weight is negative or NaN (the former path, still taken)."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from finsim_mesa import risk
from finsim_mesa.links import LinkTable
from finsim_mesa.model import FinancialModel


def _case(seed: int, n: int, pairs: int, shocked: int):
    rng = np.random.default_rng(seed)
    table = LinkTable()
    table.ids(rng.integers(0, n, pairs), rng.integers(0, n, pairs))
    rows, cols = table.csr_entries()
    exposures = rng.random(rows.size) * 30.0
    exposures[rng.random(rows.size) < 0.05] = -0.0
    exposures[rng.random(rows.size) < 0.1] = 0.0
    present = rng.random(rows.size) < 0.9
    equity = rng.random(n) * 20.0 + 1.0
    equity[rng.random(n) < 0.05] = -1.0  # no positive equity: weight 1
    h0 = np.zeros(n)
    h0[rng.choice(n, shocked, replace=False)] = rng.random(shocked) * 0.5 + 0.01
    h0[rng.choice(n, 2, replace=False)] = -0.0
    if seed % 2:
        h0[rng.choice(n, 1)] = np.nan  # (a NaN distress: never distressed, stays NaN)
        h0[rng.choice(n, 1)] = 1.0
    return table, rows, cols, exposures, present, equity, h0, rng.random(n) + 0.5


def _former_scan(rows, cols, data, h0, v):
    """The rounds before helper-76 on a small table: every entry each round, the
    undistressed columns' distress read as 0, the inactive banks kept in a mask."""
    n = h0.size
    h, distressed, inactive, steps = h0, h0 > 0, np.zeros(n, dtype=bool), 0
    for _ in range(n + 1):
        if not distressed.any():
            break
        push = np.bincount(rows, weights=data * np.where(distressed, h, 0.0)[cols], minlength=n)
        inactive |= distressed
        h = np.minimum(1.0, h + push)
        distressed = (h > 0) & ~inactive
        steps += 1
    return h, float(v @ h), float(v @ h0), steps


def _plain(rows, cols, data, h0):
    """Battiston et al.'s rounds in Python floats, each row's terms in entry order."""
    h, state, steps = h0.tolist(), ["d" if x > 0 else "u" for x in h0.tolist()], 0
    while "d" in state:
        push = [0.0] * len(h)
        for i, j, w in zip(rows.tolist(), cols.tolist(), data.tolist(), strict=True):
            if state[j] == "d":
                push[i] += w * h[j]
        state = ["i" if s == "d" else s for s in state]
        h = [x + p for x, p in zip(h, push, strict=True)]
        h = [x if math.isnan(x) or x < 1.0 else 1.0 for x in h]  # (np.minimum(1, x))
        state = ["d" if s == "u" and x > 0 else s for s, x in zip(state, h, strict=True)]
        steps += 1
    return np.array(h), steps


def _bits(a, b):
    assert a[0].tobytes() == b[0].tobytes()
    assert np.array(a[1:3]).tobytes() == np.array(b[1:3]).tobytes()
    assert a[3] == b[3]


@pytest.mark.parametrize("seed,n,pairs,shocked", [
    (1, 30, 110, 9), (2, 30, 60, 3), (3, 100, 400, 20), (4, 100, 150, 40), (5, 12, 120, 1),
    (6, 250, 1000, 30), (7, 40, 300, 40), (8, 30, 30, 0)])
def test_growing_rounds_are_the_former_scan_scipy_and_a_plain_loop(seed, n, pairs, shocked):
    table, rows, cols, exposures, present, equity, h0, value = _case(seed, n, pairs, shocked)
    assert cols.size < risk._SCAN_BELOW
    h0 = risk.clip(h0, 0.0, 1.0)
    v = risk._values(None, value, n)
    data = risk._entry_weights(exposures, equity, rows, present)
    called = []
    real = risk._growing
    try:
        risk._growing = lambda *a: called.append(1) or real(*a)
        got = risk._rounds(rows, cols, exposures, equity, h0, v, present, table.by_column(n))
    finally:
        risk._growing = real
    assert called  # (the new form ran)
    ref = _former_scan(rows, cols, data, h0, v)
    _bits(got, ref)
    hp, sp_steps = _plain(rows, cols, data, h0)
    assert got[0].tobytes() == hp.tobytes() and got[3] == sp_steps
    W = sp.csr_matrix((exposures, cols, np.searchsorted(rows, np.arange(n + 1))), shape=(n, n))
    res = risk.debtrank(W, equity, h0, value, present=present)
    assert res.distress.tobytes() == got[0].tobytes() and res.steps == got[3]
    assert not h0.flags.writeable or got[0] is h0 or not np.shares_memory(got[0], h0)
    if shocked:
        assert got[3] >= 1


@pytest.mark.parametrize("bad", [-1.0, np.nan])
def test_a_negative_or_nan_weight_takes_the_general_rounds(bad):
    table, rows, cols, exposures, present, equity, h0, value = _case(3, 100, 400, 20)
    exposures[::7] *= -1.0 if bad < 0 else 1.0
    if np.isnan(bad):
        exposures[5] = np.nan
    h0 = risk.clip(h0, 0.0, 1.0)
    v = risk._values(None, value, 100)
    called = []
    real = risk._growing
    try:
        risk._growing = lambda *a: called.append(1) or real(*a)
        got = risk._rounds(rows, cols, exposures, equity, h0, v, present, table.by_column(100))
    finally:
        risk._growing = real
    assert not called
    hp, steps = _plain(rows, cols, risk._entry_weights(exposures, equity, rows, present), h0)
    assert hp.tobytes() == got[0].tobytes() and steps == got[3]


def test_record_stage_at_30_and_100_banks_gives_the_former_scan(monkeypatch):
    seen = []
    real = risk._rounds

    def both(rows, cols, exposures, equity, h0, v, present, by_column):
        out = real(rows, cols, exposures, equity, h0, v, present, by_column)
        data = risk._entry_weights(exposures, equity, rows, present)
        _bits(out, _former_scan(rows, cols, data, h0, v))
        seen.append(out[3])
        return out

    monkeypatch.setattr(risk, "_rounds", both)
    for n in (30, 100):
        m = FinancialModel(n_banks=n, brain="rule_based", agent_collect_every=0, steps=10**9,
                           rng=2)
        m.run_for(40)
    assert len(seen) > 20 and max(seen) >= 2
