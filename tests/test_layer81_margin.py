"""helper-81 (issue 15): the settle stage's margin call with fewer passes.

* ``layer.requirements`` with one CCP (id 0) clearing every loan: the book's
  bincount scaled in place (``cleared_by_ccp``'s own path, no id lists);
* ``layer.call_margin``: the returned cells found once (their count is the
  emptiness test) and "nobody short" read off the largest ``need - cash``;
* ``CentralCounterparty.margin_held`` / ``default_fund`` through
  ``fastmath.total`` (``float(x.sum())``'s own reduction).

Checked bit for bit against the former forms (029761d, kept here), against a
plain loop in book order, on awkward values (-0.0, NaN, inf, subnormals) and
on whole runs with the former forms patched back in.
"""

from __future__ import annotations

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.accounting import values
from finsim_mesa.infrastructure import layer
from finsim_mesa.infrastructure.ccp import cleared_by_ccp
from finsim_mesa.infrastructure.layer import _cells
from finsim_mesa.infrastructure.router import OUTCOMES
from finsim_mesa.market import capped_share
from tests.support import model_state


def former_requirements(ccps, rate):  # 029761d
    if not ccps:
        return np.zeros((0, 0))
    model = ccps[0].model
    return rate * cleared_by_ccp(model.ledger.loans, [c.ccp_id for c in ccps], model.n_banks)


def former_call_margin(L, ccps, router, rate, cfg, sell, t):  # 029761d
    node0 = cfg.n_banks + cfg.n_exchanges
    delta = former_requirements(ccps, rate)
    np.subtract(delta, L.margin, out=delta)
    active = L.active if np.count_nonzero(L.status) else None
    if active is not None:
        np.multiply(delta, active[:, None], out=delta)
    back = np.minimum(delta, 0.0)
    auditing = router.auditing
    if np.count_nonzero(back):
        L.move_to_ccp("margin", back)
        if auditing:
            i, c, f = _cells(back)
            returned = -back.ravel()[f]
            router.record_owned("margin_return", node0 + c, i, returned, returned,
                                router.bank_exchange[i], c, 0.0, 0, "returned", t)
    call = np.maximum(delta, 0.0)
    need = call[:, 0] if call.shape[1] == 1 else call.sum(axis=1)
    called = float(need.sum())
    if not np.count_nonzero(need):
        return called
    short = np.maximum(need - L.cash, 0.0)
    if not np.count_nonzero(short):
        L.move_to_ccp("margin", call)
        if auditing:
            i, c, f = _cells(call)
            called_f = call.ravel()[f]
            router.record_owned("margin_call", i, node0 + c, called_f, called_f,
                                router.bank_exchange[i], c, 0.0, 0, "posted", t)
        return called
    i, c, f = _cells(call)
    fire_price = L.prices * (1 - cfg.liquidation_discount)
    liquid = values(L.holdings, fire_price)
    sell(L.holdings * capped_share(short, liquid)[:, None], fire_price, "margin_sales")
    frac = capped_share(L.cash, need)
    pay = call * frac[:, None]
    L.move_to_ccp("margin", pay)
    outcome = np.where(frac[i] < 1 - 1e-12, OUTCOMES.index("short"), OUTCOMES.index("posted"))
    router.record_owned("margin_call", i, node0 + c, call.ravel()[f], pay.ravel()[f],
                        router.bank_exchange[i], c, 0.0, 0, outcome, t)
    failing = (need > 0) & (frac < 1 - 1e-12)
    if active is not None:
        failing &= active
    L.mark_default(failing, t)
    return called


def _bits(a) -> bytes:
    a = np.asarray(a)
    return str(a.dtype).encode() + str(a.shape).encode() + np.ascontiguousarray(a).tobytes()


def _loop_requirements(m, rate):
    """rate x what each member owes each CCP, summed in book order by a Python loop."""
    lb, n, C = m.ledger.loans, m.n_banks, len(m.ccps)
    out = np.zeros((n, C))
    owed = lb.principal + lb.accrued
    for b, c, o in zip(lb.borrower.tolist(), lb.ccp.tolist(), owed.tolist(), strict=True):
        if c >= 0:
            out[b, c] = out[b, c] + o
    return rate * out


def _model(**kw):
    base = dict(n_banks=60, n_exchanges=2, n_ccps=1, scenario="systemic", brain="greedy",
                agent_collect_every=0, steps=10**6, rng=5)
    m = FinancialModel(**{**base, **kw})
    m.run_for(6)
    return m


@pytest.mark.parametrize("kw", [{}, {"ccp_clearing_share": 0.6},
                                {"n_ccps": 2, "venue_rule": "random"},
                                {"n_exchanges": 1, "ccp_clearing_share": 0.0}])
@pytest.mark.parametrize("rate", [0.05, np.float64(0.3), 1.0, np.float32(0.07), 2])
def test_requirements_as_former_form_and_a_loop(kw, rate):
    m = _model(**kw)
    lb = m.ledger.loans
    # awkward owed values on a few loans: -0.0, a subnormal, a huge one
    lb.principal[:3] = [-0.0, 5e-324, 1e300]
    lb.accrued[:3] = [-0.0, 0.0, 1e300]
    got = layer.requirements(m.ccps, rate)
    assert _bits(got) == _bits(former_requirements(m.ccps, rate))
    # (values: a book with no cleared loan gives NumPy's integer bincount of nothing, as before)
    assert _bits(got.astype(float)) == _bits(_loop_requirements(m, rate))
    assert got.shape == (m.n_banks, len(m.ccps))


def test_requirements_nan_and_inf_owed():
    m = _model()
    lb = m.ledger.loans
    lb.accrued[1] = np.nan
    lb.principal[2] = np.inf
    got = layer.requirements(m.ccps, 0.05)
    assert _bits(got) == _bits(former_requirements(m.ccps, 0.05))
    assert np.isnan(got).any() and np.isinf(got).any()


def test_requirements_no_ccp_and_ccp_not_zero():
    assert layer.requirements([], 0.1).shape == (0, 0)
    m = _model(n_ccps=2, venue_rule="random")
    one = [m.ccps[1]]  # a CCP whose id is not 0: the general path
    assert _bits(layer.requirements(one, 0.2)) == _bits(former_requirements(one, 0.2))


@pytest.mark.parametrize("kw", [{}, {"n_ccps": 2, "venue_rule": "random"}])
def test_requirements_empty_book(kw):
    """An empty book (every loan repaid or written off): NumPy's bincount of nothing is
    int64 even with weights, so the in-place scaling must not run on it (the stress
    test's seed 100020 raised a UFuncTypeError in call_margin); the former form's
    float zeros, and call_margin runs through."""
    m = _model(**kw)
    m.ledger.loans.keep(np.zeros(len(m.ledger.loans), dtype=bool))
    got = layer.requirements(m.ccps, 0.05)
    assert got.dtype == np.float64 and not got.any()
    assert _bits(got) == _bits(former_requirements(m.ccps, 0.05))
    layer.call_margin(m.ledger, m.ccps, m.router, 0.05, m.config, m._sell, m.t + 1)
    m.step()


def _over_rows():
    tiny = 5e-324
    return [np.array(r, dtype=float) for r in (
        [-1.0, -2.0], [0.0, -1.0], [-0.0, -0.0], [0.0], [tiny, -1.0], [-tiny, -tiny],
        [np.nan, -1.0], [-np.inf, -1.0], [np.inf, -1.0], [-1.0, np.nan], [1.0, 2.0],
        [-np.inf], [np.nan])]


@pytest.mark.parametrize("over", _over_rows())
def test_nobody_short_predicate(over):
    # call_margin's test against the former count of max(over, 0)'s non-zeros
    assert (layer._max(over) <= 0.0) == (not np.count_nonzero(np.maximum(over, 0.0)))


def _twins(kw, step):
    a, b = _model(**kw), _model(**kw)
    for m in (a, b):
        m.run_for(step)
    return a, b


def _margin_state(m):
    L = m.ledger
    audit = [_bits(col) for rec in m.router._audit for col in rec.values()]
    return [_bits(L.margin), _bits(L.cash), _bits(L.ccp_cash), _bits(L.holdings),
            _bits(L.status), _bits(L.prices), *audit]


@pytest.mark.parametrize("kw", [{}, {"n_ccps": 2, "venue_rule": "random",
                                     "ccp_clearing_share": 0.7}])
@pytest.mark.parametrize("case", ["return", "call", "short", "unaudited", "default",
                                  "nothing", "equal", "nan", "single"])
def test_call_margin_as_former_form(kw, case):
    a, b = _twins(kw, 3)
    assert _margin_state(a) == _margin_state(b)
    scale = {"return": 0.5, "call": 1.5, "short": 5.0, "unaudited": 1.2, "default": 1.3,
             "nothing": 0.0, "equal": 1.0, "nan": 1.5, "single": 1.0}[case]
    out = []
    for m, f in ((a, layer.call_margin), (b, former_call_margin)):
        L = m.ledger
        if case == "short":
            L.cash *= 0.05
            L.holdings *= 0.01
        if case == "unaudited":
            m.collect_data = False
        if case == "default":
            gone = np.zeros(L.n, dtype=bool)
            gone[[2, 7]] = True
            L.mark_default(gone, m.t)
        if case == "nothing":  # no margin held either: nothing returned or called
            L.margin[:] = 0.0
        rate = m.margin_rate * scale
        if case == "equal":  # each member's cash exactly what it is called for
            need = (layer.requirements(m.ccps, rate) - L.margin).clip(0.0).sum(axis=1)
            L.cash[:] = np.where(need > 0, need, L.cash)
        if case == "nan":  # a member called for margin with a NaN cash: the general path
            need = (layer.requirements(m.ccps, rate) - L.margin).clip(0.0).sum(axis=1)
            L.cash[int(np.flatnonzero(need > 0)[0])] = np.nan
        if case == "single":  # one member holds more than required, the rest exactly that
            L.margin[:] = layer.requirements(m.ccps, rate)
            L.margin[int(np.flatnonzero(L.margin[:, 0] > 0)[0]), 0] += 1.0
        out.append(np.float64(f(L, m.ccps, m.router, rate, m.config, m._sell, m.t)).tobytes())
    assert out[0] == out[1]
    assert _margin_state(a) == _margin_state(b)


@pytest.mark.parametrize("kw", [
    dict(n_banks=120, scenario="liquidity_crisis", brain="rule_based", rng=3),
    dict(n_banks=80, scenario="asset_crash", brain="mappo", n_exchanges=1, rng=4),
    dict(n_banks=60, scenario="systemic", brain="greedy", n_ccps=2, ccp_clearing_share=0.5,
         venue_rule="random", exchange_capacity=0.0005, rng=6),
])
def test_whole_runs_as_former_forms(kw, monkeypatch):
    base = dict(n_exchanges=2, n_ccps=1, agent_collect_every=1, steps=10**6)
    a = FinancialModel(**{**base, **kw})
    a.run_for(30)
    monkeypatch.setattr(layer, "call_margin", former_call_margin)
    monkeypatch.setattr(layer, "requirements", former_requirements)
    b = FinancialModel(**{**base, **kw})
    b.run_for(30)
    assert model_state(a) == model_state(b)


def test_ccp_sums_as_float_sum():
    m = _model(n_ccps=2, venue_rule="random")
    L = m.ledger
    cases = [lambda: None,
             lambda: L.margin.__setitem__((slice(0, 4), 1), [-0.0, 5e-324, 1e308, 1e308]),
             lambda: L.fund.__setitem__((slice(0, 3), 0), [np.nan, -0.0, 1.0]),
             lambda: L.fund.__setitem__((slice(None), 0), -0.0),
             lambda: L.margin.__setitem__((slice(None), 0), -np.inf),
             # the order of the sum shows: 1e16 + 1 rounds back to 1e16
             lambda: L.fund.__setitem__((slice(None), 1), np.resize([1e16, 1.0, -1e16, 1.0], L.n)),
             lambda: L.margin.__setitem__((slice(None), 1), np.resize([3.0, 1e16, 1.0, -1e16],
                                                                      L.n))]
    with np.errstate(over="ignore", invalid="ignore"):
        for edit in cases:
            edit()
            for c in m.ccps:
                col_m, col_f = L.margin[:, c.ccp_id], L.fund[:, c.ccp_id]
                assert _bits(c.margin_held) == _bits(float(col_m.sum()))
                assert _bits(c.default_fund) == _bits(float(col_f.sum()))
                assert type(c.margin_held) is float and type(c.default_fund) is float
