"""helper-55 (issue 15): the layer's reads in the observe and record stages.

infrastructure_observations, update_infrastructure and netting_efficiency are
checked bit for bit against their former forms (kept here), on models with one
CCP clearing every loan, with a bilateral loan in the book, with several CCPs
and partial clearing, and with an empty book; the one-CCP health clip against
NumPy's own clip, zeros' signs and NaN included."""

from __future__ import annotations

import math

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.fastmath import clip, count_nonzero, flatnonzero, mean, total
from finsim_mesa.infrastructure.ccp import netting_efficiency
from finsim_mesa.measures import update_infrastructure
from finsim_mesa.observation import (
    _EXCHANGE_HI,
    _EXCHANGE_SCALE,
    INFRA_OBS_DIM,
    OBS,
    OBS_DIM,
    _clip01,
    infrastructure_observations,
)
from finsim_mesa.state import Measures

# ------------------------------------------------------------ former forms (95c95ff)


def former_netting_efficiency(loans, ccp_id, n, sheets=None):
    mask = loans.ccp == ccp_id
    m = slice(None) if np.count_nonzero(mask) == mask.size else flatnonzero(mask)
    owed = loans.owed_at(m)
    gross = float(owed.sum())
    if gross <= 0:
        return 0.0
    if sheets is not None and isinstance(m, slice):
        net = sheets.interbank_assets - sheets.interbank_liabilities
    else:
        net = (np.bincount(loans.lender[m], weights=owed, minlength=n)
               - np.bincount(loans.borrower[m], weights=owed, minlength=n))
    return 1.0 - float(np.maximum(-net, 0.0).sum()) / gross


def former_observations(L, total_assets, exchanges, ccps, router, margin_rate, cfg, sheets):
    base = max(cfg.exchange_base_fee, 1e-12)
    slope, wait = max(cfg.exchange_fee_slope, 1e-12), max(cfg.max_order_wait, 1)
    raw = np.array([(e.utilisation, (e.fee_rate / base - 1) / slope,
                     e.backlog / e.queue.max_throughput, e.mean_delay / wait)
                    for e in exchanges], dtype=float).reshape(-1, 4)
    table = np.minimum(np.maximum(raw, 0.0), _EXCHANGE_HI) / _EXCHANGE_SCALE
    o = np.empty((L.n, INFRA_OBS_DIM), order="F")
    i = OBS_DIM
    o[:, :4] = np.take(table, router.bank_exchange, axis=0, mode="clip")
    if ccps:
        lb = L.loans
        m = lb.ccp >= 0
        if count_nonzero(m) == m.size:
            m = slice(None)
        if sheets is not None and isinstance(m, slice):
            cleared_net = sheets.interbank_assets - sheets.interbank_liabilities
        else:
            owed = lb.owed_at(m)
            cleared_net = (np.bincount(lb.lender[m], weights=owed, minlength=L.n)
                           - np.bincount(lb.borrower[m], weights=owed, minlength=L.n))
        health = clip(np.array([c.default_fund_health for c in ccps]), 0, 1)
        o[:, OBS["ccp_margin_rate"] - i] = margin_rate
        for name, a, lo in (("posted_margin", L.margin.sum(axis=1), 0.0),
                            ("net_ccp_exposure", cleared_net, -1.0)):
            col = o[:, OBS[name] - i]
            np.divide(a, total_assets, out=col)
            np.maximum(col, lo, out=col)
            np.minimum(col, 1.0, out=col)
        col = o[:, OBS["default_fund_health"] - i]
        if health.size == 1:
            col[...] = health[0]
        else:
            np.take(health, router.bank_ccp, out=col, mode="clip")
    return o


def former_update(m, L, exchanges, ccps, router, t, sheets):
    m.exchange_utilisation = mean(np.array([e.utilisation for e in exchanges]))
    m.congested_exchanges = int(sum(e.congested for e in exchanges))
    m.order_backlog = total([e.backlog for e in exchanges])
    m.orders_expired = total([e.expired for e in exchanges])
    m.margin_posted = float(L.margin.sum())
    m.netting_efficiency = (mean(np.array([former_netting_efficiency(L.loans, c.ccp_id, L.n,
                                                                     sheets)
                                           for c in ccps])) if ccps else 0.0)
    m.default_fund_used = total([c.fund_used for c in ccps])
    m.uncovered_loss = total([c.uncovered for c in ccps])
    m.routed_transactions = router.transactions(t)


# ------------------------------------------------------------ helpers

_FIELDS = ("exchange_utilisation", "congested_exchanges", "order_backlog", "orders_expired",
           "margin_posted", "netting_efficiency", "default_fund_used", "uncovered_loss",
           "routed_transactions")


def _bits(x) -> bytes:
    return np.asarray(x, dtype=float).tobytes()


def _model(kind: str) -> FinancialModel:
    if kind == "one_ccp":
        kw = dict(n_banks=120, n_exchanges=2, n_ccps=1, scenario="systemic", rng=7)
    elif kind == "congested":  # queues left waiting: backlog, expiries, congestion
        kw = dict(n_banks=80, n_exchanges=2, n_ccps=1, exchange_capacity=0.0005,
                  max_order_wait=2, scenario="liquidity_crisis", rng=3)
    elif kind == "two_ccps":  # every loan cleared, by two CCPs: no bilateral loan
        kw = dict(n_banks=60, n_exchanges=2, n_ccps=2, venue_rule="random", scenario="systemic",
                  rng=5)
    else:  # several CCPs, partial clearing: bilateral loans in the book
        kw = dict(n_banks=60, n_exchanges=3, n_ccps=2, ccp_clearing_share=0.5,
                  venue_rule="random", exchange_capacity=0.0005, scenario="systemic", rng=17)
    return FinancialModel(brain="greedy", agent_collect_every=0, steps=10**6, **kw)


def _check(model: FinancialModel) -> None:
    L, ta = model.ledger, model.sheets.total_assets
    ta1 = np.where(ta > 0, ta, 1.0)
    args = (L, ta1, model.exchanges, model.ccps, model.router, model.margin_rate, model.config)
    for sheets in (model.sheets, None):
        new = infrastructure_observations(*args, sheets=sheets)
        old = former_observations(*args, sheets=sheets)
        assert new.tobytes() == old.tobytes()
        out = np.full((L.n, 40), np.nan, order="F")  # written into a view, as observe does
        infrastructure_observations(*args, out=out[:, OBS_DIM:OBS_DIM + INFRA_OBS_DIM],
                                    sheets=sheets)
        assert out[:, OBS_DIM:OBS_DIM + INFRA_OBS_DIM].tobytes() == old.tobytes()
        for c in model.ccps:
            assert _bits(netting_efficiency(L.loans, c.ccp_id, L.n, sheets)) == _bits(
                former_netting_efficiency(L.loans, c.ccp_id, L.n, sheets))
        a, b = Measures(), Measures()
        update_infrastructure(a, L, model.exchanges, model.ccps, model.router, model.t, sheets)
        former_update(b, L, model.exchanges, model.ccps, model.router, model.t, sheets)
        for f in _FIELDS:
            assert type(getattr(a, f)) is type(getattr(b, f)), f
            assert _bits(getattr(a, f)) == _bits(getattr(b, f)), f


# ------------------------------------------------------------ tests


@pytest.mark.parametrize("kind", ["one_ccp", "congested", "two_ccps", "several"])
def test_reads_equal_former_forms_bit_for_bit_along_a_run(kind):
    model = _model(kind)
    _check(model)  # before the first step (no history yet)
    seen_partial = seen_congested = False
    for _ in range(12):
        model.step()
        _check(model)
        seen_partial |= bool(np.any(model.ledger.loans.ccp < 0))
        seen_congested |= any(e.congested or e.backlog > 0 for e in model.exchanges)
    if kind == "two_ccps":  # each CCP's own rows, though no loan is bilateral
        ids = model.ledger.loans.ccp
        assert ids.min() == 0 and ids.max() == 1
    if kind == "several":
        assert seen_partial  # the masked (not whole-book) paths were exercised
    if kind == "congested":
        assert seen_congested  # the exchanges' figures were not all zeros


def test_one_ccp_with_a_bilateral_loan_and_odd_fund_health():
    model = _model("one_ccp")
    model.run_for(3)
    L = model.ledger
    L.loans.ccp[len(L.loans) // 2] = -1  # one loan left bilateral: the masked path
    _check(model)
    ccp = model.ccps[0]
    fund = L.fund[:, 0].sum()
    for initial in (fund / 2, fund * 2, 0.0):  # health above 1, below 1, the default 1
        ccp.initial_fund = initial
        _check(model)
    ccp.initial_fund = fund
    L.fund[:, 0] = -L.fund[:, 0]  # a negative fund: health below 0, clipped to 0
    _check(model)


def test_empty_book():
    model = _model("one_ccp")
    model.step()
    L = model.ledger
    L.loans.keep(np.zeros(len(L.loans), dtype=bool))
    assert len(L.loans) == 0 and L.loans.ccp.size == 0
    _check(model)


def test_clip01_is_numpys_clip_bit_for_bit():
    values = [-0.0, 0.0, math.nan, -math.nan, math.inf, -math.inf, 0.5, 1.0, 1.0 + 1e-16,
              2.0, -1e-300, 5e-324, -5e-324, 1.0 - 2**-53, -3.0]
    for x in values:
        want = float(clip(np.array([x]), 0, 1)[0])
        got = _clip01(x)
        if math.isnan(want):
            assert math.isnan(got)
        else:
            assert _bits(got) == _bits(want), x  # (a zero's sign included)
