"""helper-65: the observation's counterparty stress with the bilateral loans as
indices or a mask (the infrastructure layer's case) gathers their rows first
(``observation._at_risk``: owed and distress of those loans only, no product over
the whole book). Checked bit for bit against the former form kept here (cc3f85d)
and a plain loop, on layer-on model states and edited books (an infinite or NaN
loan, signed zeros, NaN distress; empty, unsorted, repeated indices)."""

import numpy as np
import pytest

from finsim_mesa import FinancialModel, observation, risk
from finsim_mesa.fastmath import ZERO, flatnonzero


def _former_at_risk(lb, h, bilateral, n, few):
    """observation._at_risk at cc3f85d (the former form)."""
    hb = h.take(lb.borrower, mode="clip")
    if not few:
        return np.bincount(lb.lender[bilateral], weights=(lb.owed * hb)[bilateral],
                           minlength=n)
    w = hb[bilateral]
    sel = flatnonzero(w != ZERO)
    if isinstance(bilateral, slice):
        rows = sel if bilateral == slice(None) else np.arange(len(lb))[bilateral][sel]
    else:
        b = np.asarray(bilateral)
        rows = (flatnonzero(b) if b.dtype == bool else b)[sel]
    return np.bincount(lb.lender[rows], weights=lb.owed_at(rows) * w[sel], minlength=n)


def _loop(lb, h, bilateral, n):
    """A plain loop over the loans in bilateral's order (the reference)."""
    rows = (np.arange(len(lb))[bilateral] if isinstance(bilateral, slice)
            else flatnonzero(bilateral) if np.asarray(bilateral).dtype == bool else bilateral)
    want = np.zeros(n)
    for i in rows:
        want[lb.lender[i]] += (lb.principal[i] + lb.accrued[i]) * h[lb.borrower[i]]
    return want


def _layer_model(n=300, seed=3, ccps=2, steps=6, share=1.0):
    m = FinancialModel(n_banks=n, scenario="systemic", brain="rule_based", rng=seed,
                       agent_collect_every=0, n_exchanges=2, n_ccps=ccps,
                       ccp_clearing_share=share)
    m.run_for(steps)
    return m


def _bilaterals(lb, rng):
    mask = rng.random(len(lb)) < 0.4  # a part of the book, as if not cleared
    idx = flatnonzero(mask)
    return [slice(None), slice(5, None), slice(0, 0), mask, idx, idx[::-1].copy(),
            rng.permutation(idx), np.repeat(idx[:20], 2), idx[:0], np.zeros(len(lb), bool)]


@pytest.mark.parametrize("edit", ["none", "inf", "nan", "negzero", "nan_h"])
@pytest.mark.parametrize("distressed", [0, 4, 60, "all"])
def test_at_risk_is_the_former_bits(edit, distressed):
    m = _layer_model()
    L, lb = m.ledger, m.ledger.loans
    rng = np.random.default_rng(7)
    h = risk.distress(L.equity, L.equity0, L.defaulted)
    if distressed != "all":
        h[:] = 0.0
        h[rng.choice(L.n, distressed, replace=False)] = rng.random(distressed)
    h[rng.choice(L.n, 5, replace=False)] = -0.0
    lb.principal[::3] *= 1e12  # sums whose order shows in their last bits
    if edit == "inf":
        lb.principal[7] = np.inf
    elif edit == "nan":
        lb.accrued[11] = np.nan
    elif edit == "negzero":
        lb.principal[:40] = -0.0
        lb.accrued[:40] = -0.0
    elif edit == "nan_h":
        h[3] = np.nan
    for bilateral in _bilaterals(lb, rng):
        for few in (False, True):
            got = observation._at_risk(lb, h, bilateral, L.n, few)
            want = _former_at_risk(lb, h, bilateral, L.n, few)
            assert got.tobytes() == want.tobytes(), (bilateral, few)
        if edit == "none":  # (the few terms are the full sums where every owed is finite)
            assert got.tobytes() == _loop(lb, h, bilateral, L.n).tobytes()


@pytest.mark.parametrize("ccps,share", [(1, 1.0), (2, 1.0), (1, 0.5), (2, 0.2)])
def test_layer_observations_along_a_run_are_the_former_bits(ccps, share, monkeypatch):
    """Every step's observation with the layer on (bilateral loans as indices:
    none when every trade is cleared, some when a share is) equals the one with
    the former _at_risk; nobody, few and many banks distressed."""
    m = _layer_model(n=1200, seed=ccps, ccps=ccps, steps=0, share=share)
    calls = []

    def both(lb, h, bilateral, n, few):
        want = _former_at_risk(lb, h, bilateral, n, few)
        got = real(lb, h, bilateral, n, few)
        assert got.tobytes() == want.tobytes()
        calls.append((few, len(bilateral)))
        return got

    real = observation._at_risk
    monkeypatch.setattr(observation, "_at_risk", both)
    m.run_for(25)
    # (no bilateral loan: _at_risk not called, its sums all +0.0)
    assert (share < 1) == (len(calls) >= 10) and all(b for _, b in calls), calls


def _former_observe(model):
    """observation.observe at cc3f85d: the bilateral loans as flatnonzero(ccp < 0),
    bank_observations in its former form (test_big61_observe's, same bits)."""
    from test_big61_observe import _former_bank_observations

    L, k = model.ledger, model.config.n_assets
    width = observation.OBS_DIM + observation.INFRA_OBS_DIM + (k if k > 1 else 0)
    o = np.empty((L.n, width), order="F")
    _former_bank_observations(L, model.sheets, model.market, model.measures,
                              model.flows.withdrawals, model.network, model.reference.size0,
                              model.config, model.t, flatnonzero(L.loans.ccp < 0),
                              out=o[:, :observation.OBS_DIM])
    ta = model.sheets.total_assets
    observation.infrastructure_observations(
        L, np.where(ta > 0, ta, 1.0), model.exchanges, model.ccps, model.router,
        model.margin_rate, model.config, out=o[:, observation.OBS_DIM:][:, :8],
        sheets=model.sheets)
    if k > 1:
        o[:, width - k:] = observation.class_observations(model.market, L.n)
    return o


@pytest.mark.parametrize("ccps,share,assets", [(1, 1.0, 1), (2, 1.0, 2), (1, 0.3, 1),
                                               (2, 0.6, 1)])
def test_layer_observe_is_the_former_bits(ccps, share, assets, monkeypatch):
    """observe with the layer on (no mask over the book when every loan is cleared,
    the counterparty column left 0 without bilateral loans) equals the former."""
    m = FinancialModel(n_banks=1100, scenario="systemic", brain="rule_based", rng=ccps,
                       agent_collect_every=0, n_exchanges=2, n_ccps=ccps,
                       ccp_clearing_share=share, n_assets=assets)
    real, seen = observation.observe, []

    def both(model):
        got = real(model)
        want = _former_observe(model)
        assert got.tobytes() == want.tobytes() and got.flags.f_contiguous
        seen.append(int((model.ledger.loans.ccp < 0).sum()))
        return got

    monkeypatch.setattr(observation, "observe", both)
    m.run_for(20)
    assert len(seen) == 20 and (share < 1) == any(seen), seen


def test_empty_bilateral_leaves_counterparty_stress_zero():
    """No bilateral loan (indices of any integer dtype, empty): interbank assets
    and counterparty stress are +0.0, as the former full computation gave."""
    from test_big61_observe import _former_bank_observations

    m = _layer_model(n=500, steps=5)
    L = m.ledger
    args = (L, m.sheets, m.market, m.measures, m.flows.withdrawals, m.network,
            m.reference.size0, m.config, m.t)
    assert np.count_nonzero(risk.distress(L.equity, L.equity0, L.defaulted))
    for empty in (np.empty(0, np.intp), L.loans.ccp[:0], np.empty(0, np.int8)):
        got = observation.bank_observations(*args, empty)
        want = _former_bank_observations(*args, empty)
        assert got.tobytes() == want.tobytes()
        col = got[:, observation.OBS["counterparty_stress"]]
        assert col.tobytes() == np.zeros(L.n).tobytes()
