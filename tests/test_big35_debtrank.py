"""helper-35: DebtRank rounds in which many banks are distressed multiply every
entry (undistressed columns' distress read as 0) instead of gathering the
distressed columns' entries. Checked bit for bit against SciPy's CSR product
(``risk.debtrank``, which sums every stored entry in row order), against a
plain Python loop of Battiston et al.'s dynamics, and against the gathering
path, with signed zeros, absent links and a NaN exposure."""

import numpy as np
import pytest
import scipy.sparse as sp
from support import per_entry_impact_weights

from finsim_mesa import risk
from finsim_mesa.links import LinkTable


def _case(seed: int, n: int, pairs: int, share: float):
    rng = np.random.default_rng(seed)
    table = LinkTable()
    table.ids(rng.integers(0, n, pairs), rng.integers(0, n, pairs))
    rows, cols = table.csr_entries()
    exposures = rng.random(rows.size) * 10.0
    exposures[rng.random(rows.size) < 0.05] = -0.0  # a settled loan's -0.0
    exposures[rng.random(rows.size) < 0.05] = 0.0
    present = rng.random(rows.size) < 0.9
    equity = rng.random(n) * 20.0 + 1.0
    equity[rng.random(n) < 0.02] = -1.0  # no positive equity: weight 1
    h0 = np.where(rng.random(n) < share, rng.random(n), 0.0)
    value = rng.random(n) + 0.5
    return table, rows, cols, exposures, present, equity, h0, value


def _same(a, b):
    assert a.distress.tobytes() == b.distress.tobytes()
    assert np.array([a.debtrank, a.total]).tobytes() == np.array([b.debtrank, b.total]).tobytes()
    assert a.steps == b.steps


def _gathering(monkeypatch, *args, **kwargs):
    with monkeypatch.context() as m:
        m.setattr(risk, "_SCAN_SHARE", 0)  # never scan: the former rounds
        return risk.debtrank_entries(*args, **kwargs)


@pytest.mark.parametrize("seed,n,pairs,share", [(1, 300, 2000, 0.9), (2, 3000, 20_000, 0.6),
                                                (3, 5000, 40_000, 1.0), (4, 2000, 12_000, 0.4)])
def test_scanning_rounds_give_scipys_and_the_gathering_bits(monkeypatch, seed, n, pairs, share):
    table, rows, cols, exposures, present, equity, h0, value = _case(seed, n, pairs, share)
    assert risk._SCAN_SHARE * np.count_nonzero(h0) > n  # the first round scans
    got = risk.debtrank_entries(rows, cols, exposures, equity, h0, value, present=present,
                                by_column=table.by_column(n))
    csr = sp.csr_matrix((exposures, cols, np.searchsorted(rows, np.arange(n + 1))), shape=(n, n))
    assert csr.has_canonical_format
    _same(got, risk.debtrank(csr, equity, h0, value, present=present))
    _same(got, _gathering(monkeypatch, rows, cols, exposures, equity, h0, value,
                          present=present, by_column=table.by_column(n)))
    assert got.debtrank > 0


def test_scanning_round_against_a_plain_loop():
    """Battiston et al.'s dynamics written out with Python floats, each row's
    terms added in entry order from 0.0 (as a CSR product adds them)."""
    _table, rows, cols, exposures, present, equity, h0, value = _case(5, 120, 700, 0.95)
    got = risk.debtrank_entries(rows, cols, exposures, equity, h0, value, present=present)
    n = h0.size
    w = [0.0] * rows.size
    for k in range(rows.size):
        eq = float(equity[rows[k]])
        w[k] = 1.0 if not eq > 0 else min(1.0, float(exposures[k]) / eq)
        w[k] = w[k] * float(present[k])
    h = [min(max(float(x), 0.0), 1.0) for x in h0]
    distressed = [x > 0 for x in h]
    inactive = [False] * n
    steps = 0
    while any(distressed):
        push = [0.0] * n
        for k in range(rows.size):
            push[rows[k]] += w[k] * (h[cols[k]] if distressed[cols[k]] else 0.0)
        inactive = [a or b for a, b in zip(inactive, distressed, strict=True)]
        h = [min(1.0, a + b) for a, b in zip(h, push, strict=True)]
        distressed = [x > 0 and not i for x, i in zip(h, inactive, strict=True)]
        steps += 1
    assert got.distress.tolist() == h and got.steps == steps


def test_a_nan_exposure_keeps_the_gathering_rounds(monkeypatch):
    """NaN x 0 is NaN: an undistressed column's NaN exposure must not reach the
    sums (the gathering rounds skip it), so such inputs never scan."""
    _table, rows, cols, exposures, present, equity, h0, value = _case(6, 400, 3000, 0.8)
    # a bank j never distressed (no distress, no exposures, positive equity) that
    # owes others: its creditors' NaN exposures to j are never read by a gathering
    j = next(j for j in np.flatnonzero(h0 == 0) if np.count_nonzero(cols == j))
    exposures[rows == j] = 0.0
    equity[j] = 5.0
    exposures[cols == j] = np.nan
    got = risk.debtrank_entries(rows, cols, exposures, equity, h0, value, present=present)
    _same(got, _gathering(monkeypatch, rows, cols, exposures, equity, h0, value,
                          present=present))
    assert got.distress[j] == 0.0 and np.isfinite(got.distress).all()


@pytest.mark.parametrize("share", [0.001, 0.01, 0.04, 0.06])
def test_column_entries_sorted_or_marked_are_the_columns_entries(share):
    """``_column_entries`` (sorted for few entries, marked for more) against
    NumPy's membership test: the positions of the chosen columns' entries in
    entry order; and the rounds that use it against the scanning rounds."""
    rng, n = np.random.default_rng(int(share * 1000)), 6000
    table = LinkTable()
    table.ids(rng.integers(0, n, 50_000), rng.integers(0, n, 50_000))
    rows, cols = table.csr_entries()
    chosen = np.flatnonzero(rng.random(n) < share)
    got = risk._column_entries(table.by_column(n), chosen)
    assert np.array_equal(got, np.flatnonzero(np.isin(cols, chosen)))
    marked = risk._MARK_FROM * got.size > cols.size
    assert marked == (share >= 0.04)  # both ways are exercised
    exposures = rng.random(rows.size) * 10.0
    equity = rng.random(n) * 20.0 + 1.0
    h0 = np.zeros(n)
    h0[chosen] = rng.random(chosen.size)
    value = rng.random(n) + 0.5
    fast = risk.debtrank_entries(rows, cols, exposures, equity, h0, value,
                                 by_column=table.by_column(n))
    _same(fast, risk.debtrank_entries(rows, cols, exposures, equity, h0, value))


@pytest.mark.parametrize("seed", range(4))
def test_entry_weights_are_the_impact_weights_per_entry(seed):
    """The per-bank divisor against the per-entry form (the former one) and a
    plain loop of the definition, with every kind of float in the inputs."""
    rng = np.random.default_rng(seed)
    n, nnz = 50, 400
    rows = np.sort(rng.integers(0, n, nnz))
    specials = np.array([0.0, -0.0, -1.0, np.nan, np.inf, 1e-300, 1e300])
    equity = np.where(rng.random(n) < 0.3, rng.choice(specials, n), rng.random(n) * 5)
    exposures = np.where(rng.random(nnz) < 0.2, rng.choice(specials[[0, 1, 3, 4, 5]], nnz),
                         rng.random(nnz) * 10)
    if seed == 0:
        equity = np.abs(equity) + 1.0  # every bank with positive equity
    for present in (None, rng.random(nnz) < 0.8):
        with np.errstate(invalid="ignore", over="ignore"):
            got = risk._entry_weights(exposures, equity, rows, present)
            want = per_entry_impact_weights(exposures, equity[rows], present)
        assert got.tobytes() == want.tobytes()
        for k in range(nnz):
            eq = float(equity[rows[k]])
            if not eq > 0:
                w = 1.0
            else:
                q = float(exposures[k]) / eq if eq != np.inf else float(exposures[k]) * 0.0
                w = q if q != q else min(1.0, q)  # NaN stays NaN (as np.minimum keeps it)
            if present is not None:
                w = w * float(present[k])
            assert np.array([w]).tobytes() == got[k:k + 1].tobytes() or (
                w != w and np.isnan(got[k])), (k, w, got[k])


def _model_debtrank(m, present_always: bool):
    """The record stage's DebtRank of ``m``'s book: the loan marks always
    passed (the former call) or as ``update_full`` passes them now."""
    from finsim_mesa.measures import update_full

    L = m.ledger
    if present_always:
        rows, cols, E, present = L.loans.exposure_entries(m.router is not None)
        return risk.debtrank_entries(rows, cols, E, L.equity0, risk.distress(
            L.equity, L.equity0, L.defaulted), value=m.reference.assets0, present=present,
            by_column=L.loans.links.by_column(L.n))
    update_full(m.measures, L, m.sheets, m.reference.assets0, m.reference.liquidity0,
                m.router is not None)
    return m.measures


@pytest.mark.parametrize("kw", [dict(n_banks=300, scenario="systemic", rng=2),
                                dict(n_banks=200, scenario="normal", rng=3, n_exchanges=1,
                                     n_ccps=1)])
def test_debtrank_without_loan_marks_when_every_creditor_has_equity(kw):
    """With every initial equity positive a link without loans weighs +0.0
    either way, so update_full leaves the marks out: the same DebtRank, bit
    for bit; with a bank of no initial equity it passes them (the same bits
    too: that bank's distress is 1 from the start, so its weight-1 row changes
    nothing, but the marks are kept rather than relying on that)."""
    from finsim_mesa import FinancialModel

    m = FinancialModel(steps=20, **kw)
    m.run_for(6)
    L = m.ledger
    assert np.count_nonzero(L.equity0 > 0) == L.n
    rows, cols, exposure, present = L.loans.exposure_entries(m.router is not None)
    assert not present.all()  # some links carry no loan now
    unmarked = L.loans.exposure_entries(m.router is not None, present=False)
    assert unmarked[3] is None and unmarked[2].tobytes() == exposure.tobytes()
    want = _model_debtrank(m, True)
    got = _model_debtrank(m, False)
    assert np.array([got.debtrank, got.debtrank_total]).tobytes() == np.array(
        [want.debtrank, want.total]).tobytes()
    # a creditor on a link without loans, to a distressed borrower, has no
    # initial equity: weight 1 there
    h = risk.distress(L.equity, L.equity0, L.defaulted)
    absent = np.flatnonzero(~present)
    k = absent[np.argmax(h[cols[absent]])]
    assert h[cols[k]] > 0
    L.equity0[rows[k]] = 0.0
    want = _model_debtrank(m, True)
    got = _model_debtrank(m, False)
    assert np.array([got.debtrank, got.debtrank_total]).tobytes() == np.array(
        [want.debtrank, want.total]).tobytes()
