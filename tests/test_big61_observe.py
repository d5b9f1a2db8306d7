"""helper-61: the observation's counterparty stress with nobody or few banks
distressed (``observation._at_risk``: only the terms whose distress is not 0,
none at all with nobody distressed) and the due columns from what is owed on
the due loans only; the record stage's DebtRank skipped when nobody is
distressed (``measures.update_full``). Checked bit for bit against the former
forms kept here, on model states and on edited books (an infinite or NaN loan,
signed zeros, NaN distress, the bilateral loans as a slice, indices or a mask)."""

import numpy as np
import pytest

from finsim_mesa import FinancialModel, fastmath, measures, observation, risk
from finsim_mesa.fastmath import ONE, ZERO, count_nonzero, flatnonzero
from finsim_mesa.observation import (
    _CLIP_HI,
    _CLIP_LO,
    _CLIPPED,
    _FIVE,
    _MINUS_ONE,
    _RUNOFF,
    _SYSTEM_COLUMNS,
    _THREE,
    _TINY,
    OBS,
    OBS_DIM,
    due_rows,
)


def _former_bank_observations(L, sheets, market, measures, withdrawals, network, size0, cfg, t,
                               bilateral, out=None):
    """observation.bank_observations at 7c9fe3b (the former form)."""
    ta = sheets.total_assets
    # (ZERO, ONE, _FIVE, ...: the Python numbers' values as float64 operands, converted once)
    safe = np.where(ta > ZERO, ta, ONE)
    lb = L.loans
    n = L.n
    owed = lb.owed
    # the loans due within two steps, then those due now among them, in book order
    # (slices when they come first, as in a book in maturity order)
    rows2 = due_rows(lb.maturity, t + 1)
    b2, o2 = lb.borrower[rows2], owed[rows2]
    due2 = np.bincount(b2, minlength=n, weights=o2)
    now = due_rows(lb.maturity[rows2], t)
    due_next = np.bincount(b2[now], minlength=n, weights=o2[now])
    need = due2 + withdrawals + _RUNOFF * L.deposits  # (the ledger's arrays are float64)
    # float64 columns, computed in place; another dtype's ``out`` gets them rounded
    # once, at the end (as storing each float64 column into it did)
    given = out is not None and out.dtype == np.float64
    o = out if given else np.empty((n, OBS_DIM), order="F")
    c = o.T  # c[j] is column j (one contiguous run in a column-major matrix)
    defaulted = L.defaulted
    h = c[OBS["own_distress"]]
    if given:  # (a caller's array: distress checks that it shares no input's memory)
        risk.distress(L.equity, L.equity0, defaulted, out=h)
    else:  # a new matrix: no overlap to check
        h.fill(0.0)
        risk._distress_into(h, L.equity, L.equity0, defaulted)
    # (take: the same values as h[lb.borrower], a third faster at 100,000 banks)
    at_risk = np.bincount(lb.lender[bilateral],
                          weights=(owed * h.take(lb.borrower, mode="clip"))[bilateral],
                          minlength=n)
    ib = (sheets.interbank_assets if isinstance(bilateral, slice)
          else np.bincount(lb.lender[bilateral], weights=owed[bilateral], minlength=n))
    rate_scale = cfg.base_rate + cfg.rate_stress_spread
    # the first 8 columns are ratios written in place, then clipped together to their
    # bounds (_CLIP_LO / _CLIP_HI, column by column: the same minimum and maximum)
    c[OBS["capital_ratio"]] = sheets.capital_ratio
    for name, part in (("leverage", L.equity), ("cash_ratio", L.cash), ("interbank_assets", ib),
                       ("interbank_liabilities", sheets.interbank_liabilities),
                       ("deposit_funding", L.deposits), ("due_next", due_next)):
        np.divide(part, safe, out=c[OBS[name]])
    cov = c[OBS["liquidity_coverage"]]
    cov.fill(5.0)
    np.divide(L.cash, need, out=cov, where=need > ZERO)
    ratios = o[:, :_CLIPPED]
    np.maximum(ratios, _CLIP_LO, out=ratios)
    np.minimum(ratios, _CLIP_HI, out=ratios)
    np.divide(cov, _FIVE, out=cov)  # clipped to [0, 5], divided by 5
    col = c[OBS["counterparty_stress"]]
    col.fill(0.0)  # where nothing is divided
    np.divide(at_risk, ib, out=col, where=ib > ZERO)
    col = c[OBS["neighbour_defaults"]]
    col.fill(0.0)  # where nothing is divided, and everywhere while nobody is in default
    if count_nonzero(defaulted):  # (0 / degree is +0.0: the column as filled)
        deg = network.degree
        np.divide(network.neighbours_in(defaulted), deg, out=col, where=deg > 0)
    # NumPy's clip of a float, min(max(x, lo), hi), without NumPy scalars; the four
    # columns the same for every bank written as one block (they are adjacent)
    o[:, _SYSTEM_COLUMNS] = (min(max(market.price_index, 0), 2),
                             min(max(10 * measures.price_return, -1), 1),
                             market.rate / rate_scale if rate_scale > 0 else 0.0,
                             measures.market_stress)
    # clip(log(max(ta, 1e-12) / size0) / 3, -1, 1), in place
    size = c[OBS["size"]]
    np.maximum(ta, _TINY, out=size)
    np.divide(size, size0, out=size)
    np.log(size, out=size)
    np.divide(size, _THREE, out=size)
    np.maximum(size, _MINUS_ONE, out=size)
    np.minimum(size, ONE, out=size)
    if out is not None and out is not o:
        out[...] = o
        return out
    return o




def _args(m, bilateral=slice(None)):
    L = m.ledger
    return (L, m.sheets, m.market, m.measures, m.flows.withdrawals, m.network,
            m.reference.size0, m.config, m.t, bilateral)


def _both(m, bilateral=slice(None)):
    got = observation.bank_observations(*_args(m, bilateral))
    want = _former_bank_observations(*_args(m, bilateral))
    assert got.tobytes() == want.tobytes()
    return got


def _distress(m):
    L = m.ledger
    return risk.distress(L.equity, L.equity0, L.defaulted)


def _bilaterals(m):
    mask = m.ledger.loans.ccp < 0
    return [slice(None), slice(3, None), flatnonzero(mask), mask]


@pytest.mark.parametrize("n,scenario,seed", [(300, "systemic", 1), (1000, "normal", 2),
                                             (2000, "liquidity_crisis", 3),
                                             (3000, "normal", 4)])
def test_observations_along_runs_are_the_former_bits(n, scenario, seed, monkeypatch):
    """Every step's observation (nobody, few and many distressed) equals the former."""
    m = FinancialModel(n_banks=n, scenario=scenario, brain="rule_based", rng=seed,
                       agent_collect_every=0)
    counts = []
    real = observation.bank_observations

    def both(*args, **kwargs):
        L = args[0]
        k = count_nonzero(risk.distress(L.equity, L.equity0, L.defaulted))
        counts.append(0 if not k else 1 if observation._FEW * k < L.n else 2)
        want = _former_bank_observations(*args, **kwargs)
        got = real(*args, **kwargs)
        assert got.tobytes() == want.tobytes()
        return got

    monkeypatch.setattr(observation, "bank_observations", both)
    m.run_for(30)
    assert len(counts) == 30 and len(set(counts)) >= 2, counts


def _model(n=400, seed=5):
    m = FinancialModel(n_banks=n, scenario="normal", brain="rule_based", rng=seed,
                       agent_collect_every=0)
    m.run_for(4)
    return m


@pytest.mark.parametrize("distressed", [0, 3, 40, 400])
@pytest.mark.parametrize("edit", ["none", "inf", "nan", "negzero", "nan_h"])
def test_edited_books_and_distress_give_the_former_bits(distressed, edit):
    """A loan of +inf or NaN (its terms are NaN even where distress is 0: the
    finite check of the interbank sums sends them the full way), -0.0 owed, NaN
    distress; nobody, few or every bank distressed; bilateral as slice, indices, mask."""
    m = _model()
    L = m.ledger
    rng = np.random.default_rng(distressed)
    L.equity[:] = np.maximum(L.equity, L.equity0)  # nobody distressed...
    hit = rng.choice(L.n, distressed, replace=False)
    L.equity[hit] = L.equity0[hit] * rng.uniform(0.2, 0.99, distressed)  # ...but these
    lb = L.loans
    if edit == "inf":
        lb.principal[7] = np.inf
    elif edit == "nan":
        lb.accrued[11] = np.nan
    elif edit == "negzero":
        lb.principal[:50] = -0.0
        lb.accrued[:50] = -0.0
    elif edit == "nan_h":
        L.equity[3] = np.nan
    m.refresh()
    h = _distress(m)
    assert count_nonzero(h) == distressed + (edit == "nan_h" and 3 not in hit)
    for bilateral in _bilaterals(m):
        got = _both(m, bilateral)
    col = got[:, OBS["counterparty_stress"]]
    assert (edit == "inf") <= bool(np.isnan(col).any())


def test_few_terms_are_the_full_sums():
    """``_at_risk`` with ``few`` against the full sums, on a book where most
    borrowers are distressed 0 and the loan order matters (terms of mixed sizes)."""
    m = _model(600, 8)
    L = m.ledger
    lb = L.loans
    rng = np.random.default_rng(0)
    h = np.zeros(L.n)
    h[rng.choice(L.n, 30, replace=False)] = rng.random(30)
    h[rng.choice(L.n, 5, replace=False)] = -0.0
    lb.principal[::3] *= 1e12  # sums whose order shows in their last bits
    for bilateral in _bilaterals(m):
        full = observation._at_risk(lb, h, bilateral, L.n, few=False)
        few = observation._at_risk(lb, h, bilateral, L.n, few=True)
        assert few.tobytes() == full.tobytes()
        want = np.zeros(L.n)  # a plain loop in book order
        for i in (np.arange(len(lb))[bilateral] if isinstance(bilateral, slice)
                  else flatnonzero(bilateral) if bilateral.dtype == bool else bilateral):
            want[lb.lender[i]] += (lb.principal[i] + lb.accrued[i]) * h[lb.borrower[i]]
        assert few.tobytes() == want.tobytes()
        assert count_nonzero(few)


def _former_update_full(m, h):
    L = m.ledger
    rows, cols, E, present = L.loans.exposure_entries(
        False, present=count_nonzero(L.equity0 > ZERO) < L.n)
    _, dr_total, dr_start, _ = risk._rounds(
        rows, cols, E, np.asarray(L.equity0, dtype=float), h,
        measures._economic_values(m.reference.assets0, L.n), present,
        L.loans.links.by_column(L.n))
    return dr_total - dr_start, dr_total


@pytest.mark.parametrize("kind", ["zeros", "negzeros", "few", "nan"])
def test_debtrank_skipped_without_distress_is_the_former(kind, monkeypatch):
    """update_full's DebtRank figures: the former rounds' bits; with nobody
    distressed the exposures are not read (exposure_entries not called)."""
    m = _model(500, 9)
    L = m.ledger
    h = np.zeros(L.n)
    if kind == "negzeros":
        h[::2] = -0.0
    elif kind == "few":
        h[[3, 50, 77]] = [0.5, 0.01, 1.0]
    elif kind == "nan":
        h[5] = np.nan
    calls = []
    real = type(L.loans).exposure_entries
    monkeypatch.setattr(type(L.loans), "exposure_entries",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    measures.update_full(m.measures, L, m.sheets, m.reference.assets0, m.reference.liquidity0,
                         bilateral_only=False, h=h)
    got = np.array([m.measures.debtrank, m.measures.debtrank_total])
    assert bool(calls) == (kind in ("few", "nan"))
    want = np.array(_former_update_full(m, h))
    assert got.tobytes() == want.tobytes()
    assert (kind == "few") == (got[1] > 0)


@pytest.mark.parametrize("order", ["F", "C", "none", "f32"])
@pytest.mark.parametrize("lowered", [False, True])
def test_clipped_columns_with_signed_zeros_nans_and_infinities(order, lowered, monkeypatch):
    """np.clip keeps max(-0.0, 0.0)'s -0.0: the columns clipped at 0 get + 0.0;
    NaN (either sign) and infinities as the former maximum / minimum give them;
    totals about 0 and +inf (the divisor). ``lowered``: the paths taken from
    4,096 banks (np.clip, the totals as the divisor) taken at 300."""
    if lowered:
        monkeypatch.setattr(observation, "_CLIP_FROM", 1)
        monkeypatch.setattr(fastmath, "LARGE", 1)  # (the totals as the divisor)
    m = _model(300, 6)
    L = m.ledger
    L.cash[[1, 2]] = -0.0
    L.equity[3] = -0.0
    L.deposits[4], L.deposits[5] = np.nan, -np.nan
    L.cash[6], L.deposits[7], L.cash[8] = np.inf, -np.inf, -1e-300
    L.other_assets[9] = np.inf  # total assets +inf
    L.holdings[10] = 0.0
    L.other_assets[10] = -L.cash[10]  # total assets about 0: size's log of 1e-12
    m.refresh()
    args = _args(m)
    want = _former_bank_observations(*args)
    if order == "none":
        got = observation.bank_observations(*args)
    else:
        out = np.full((L.n, OBS_DIM), 9.0, dtype=np.float32 if order == "f32" else float,
                      order="F" if order != "C" else "C")
        got = observation.bank_observations(*args, out=out)
        assert got is out
        if order == "f32":
            want = want.astype(np.float32)
    assert got.tobytes() == want.tobytes()  # (values in C order, whatever the layout)
    assert np.signbit(want[1:3, OBS["cash_ratio"]]).sum() == 0  # +0.0 where cash is -0.0
    assert np.isnan(want[4:6, OBS["deposit_funding"]]).all()


@pytest.mark.parametrize("n", [1, 5, 17, 300, 4099, 100_003])
@pytest.mark.parametrize("order", ["F", "C"])
def test_clip_ratios_is_maximum_then_minimum(n, order):
    """``_clip_ratios`` against the former maximum / minimum with the bound arrays,
    on every value class (±0, ±NaN, ±inf, tiny, in and out of bounds) in every
    column, at sizes and layouts that take NumPy's different loops."""
    vals = np.array([-0.0, 0.0, np.nan, -np.nan, np.inf, -np.inf, -1.0, 1.0, 5.0, -2.0, 0.5,
                     7.0, -1e-300, 1e-300, 4.9999999, -0.9999])
    rng = np.random.default_rng(n)
    o = np.asarray(rng.choice(vals, (n, OBS_DIM)), order=order)
    o[: vals.size % n or 1, 2] = -0.0
    want = o.copy(order=order)
    r = want[:, :_CLIPPED]
    np.maximum(r, _CLIP_LO, out=r)
    np.minimum(r, _CLIP_HI, out=r)
    observation._clip_ratios(o)
    assert o.tobytes() == want.tobytes()
    assert not np.signbit(want[:, 2][want[:, 2] == 0]).any()  # max(-0.0, 0.0) is +0.0
