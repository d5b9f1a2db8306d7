"""infrastructure_observations against its former form (kept here as it was):
the same bytes in every column, over model runs and edited states (NaN and
signed zeros in the accounts, indices out of range for take's clip mode,
several CCPs, a partly cleared book)."""

from __future__ import annotations

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.fastmath import clip
from finsim_mesa.observation import INFRA_OBS_DIM, OBS, OBS_DIM, infrastructure_observations


def former_infrastructure_observations(L, total_assets, exchanges, ccps, router, margin_rate,
                                       cfg, out=None, sheets=None):
    """The former form (before helper-40), as it was."""
    x = router.bank_exchange
    # each column's value per exchange (a handful), then gathered for the banks:
    # the same elementwise arithmetic, done once per exchange instead of per bank
    util = np.array([e.utilisation for e in exchanges])
    fee = np.array([e.fee_rate for e in exchanges])
    cap = np.array([e.queue.max_throughput for e in exchanges])
    backlog = np.array([e.backlog for e in exchanges])
    delay = np.array([e.mean_delay for e in exchanges])
    o = np.empty((L.n, INFRA_OBS_DIM), order="F") if out is None else out
    i = OBS_DIM  # infrastructure columns follow the bank columns in OBS
    base = max(cfg.exchange_base_fee, 1e-12)
    per_exchange = {
        "exchange_congestion": clip(util, 0, 2) / 2,
        "exchange_fee_level": clip((fee / base - 1) / max(cfg.exchange_fee_slope, 1e-12), 0, 1),
        "queue_backlog": clip(backlog / cap, 0, 3) / 3,
        "expected_delay": clip(delay / max(cfg.max_order_wait, 1), 0, 1)}
    for name, value in per_exchange.items():
        np.take(value, x, out=o[:, OBS[name] - i], mode="clip")  # (x is in range: "clip"
        # only spares take's buffered copy)
    if ccps:
        lb = L.loans
        m: np.ndarray | slice = lb.ccp >= 0
        if np.count_nonzero(m) == m.size:  # every loan cleared: the whole book, no gathers
            m = slice(None)
        if sheets is not None and isinstance(m, slice):  # already summed, in book order
            cleared_net = sheets.interbank_assets - sheets.interbank_liabilities
        else:
            owed = lb.owed_at(m)
            cleared_net = (np.bincount(lb.lender[m], weights=owed, minlength=L.n)
                           - np.bincount(lb.borrower[m], weights=owed, minlength=L.n))
        health = clip(np.array([c.default_fund_health for c in ccps]), 0, 1)
        o[:, OBS["ccp_margin_rate"] - i] = margin_rate
        o[:, OBS["posted_margin"] - i] = clip(L.margin.sum(axis=1) / total_assets, 0, 1)
        o[:, OBS["net_ccp_exposure"] - i] = clip(cleared_net / total_assets, -1, 1)
        np.take(health, router.bank_ccp, out=o[:, OBS["default_fund_health"] - i], mode="clip")
    else:
        for name in ("ccp_margin_rate", "posted_margin", "net_ccp_exposure"):
            o[:, OBS[name] - i] = 0.0
        o[:, OBS["default_fund_health"] - i] = 1.0
    return o



def both(m, sheets=True):
    ta = m.sheets.total_assets
    args = (m.ledger, np.where(ta > 0, ta, 1.0), m.exchanges, m.ccps, m.router, m.margin_rate,
            m.config)
    kw = {"sheets": m.sheets} if sheets else {}
    got = infrastructure_observations(*args, **kw)
    want = former_infrastructure_observations(*args, **kw)
    out = np.full((m.n_banks, INFRA_OBS_DIM + 3), 7.0, order="F")[:, 1:1 + INFRA_OBS_DIM]
    assert infrastructure_observations(*args, out=out, **kw) is out
    return got, want, out


def same(a, b):
    return a.shape == b.shape and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(
        b).tobytes()


@pytest.mark.parametrize("kw", [dict(n_banks=200, n_exchanges=2, n_ccps=1, rng=41),
                                dict(n_banks=200, scenario="liquidity_crisis", n_exchanges=2,
                                     n_ccps=1, rng=42),
                                dict(n_banks=60, n_exchanges=3, n_ccps=2,
                                     ccp_clearing_share=0.5, venue_rule="random",
                                     exchange_capacity=0.0005, rng=17),
                                dict(n_banks=40, n_exchanges=1, rng=43)])
def test_equals_the_former_form_over_a_run(kw):
    m = FinancialModel(**kw)
    backlog = 0.0
    for _ in range(15):
        m.step()
        for sheets in (True, False):
            got, want, out = both(m, sheets)
            assert same(got, want) and same(out, want)
        backlog = max(backlog, *(e.backlog for e in m.exchanges))
    assert (backlog > 0) == ("exchange_capacity" in kw)  # waiting orders seen there


def test_equals_the_former_form_on_edited_states():
    m = FinancialModel(n_banks=30, n_exchanges=3, n_ccps=2, rng=44)
    m.run_for(4)
    L = m.ledger
    L.margin[:4] = [[-0.0, 0.0], [np.nan, 1.0], [np.inf, -1.0], [-0.0, -0.0]]
    L.fund[:, 1] = -0.0
    m.sheets.total_assets[:3] = [0.0, -0.0, np.nan]
    ex = m.exchanges
    h = ex[0].queue.history[-1]
    ex[0].queue.history[-1] = type(h)(**{**vars(h), "utilisation": np.nan, "fee_rate": -0.0,
                                          "mean_delay": 1e308})
    ex[1].queue.history.clear()  # no step yet: 0 / base fee
    ex[2].queue.max_throughput = 1e-300
    m.router.bank_exchange = m.router.bank_exchange.copy()
    m.router.bank_exchange[:3] = [-1, 5, 2]  # out of range: take's "clip" mode
    m.router.bank_ccp = m.router.bank_ccp.copy()
    m.router.bank_ccp[:2] = [-3, 9]
    # orders waiting: a backlog of 1.5 capacities at one exchange, far more at another
    for e, times in ((ex[1], 1.5), (ex[2], 1.0)):
        bank = int(np.flatnonzero(m.router.bank_exchange == e.exchange_id)[-1])
        other = (bank + 1) % 30
        e.submit(np.array([bank]), np.array([other]),
                 np.array([times * e.queue.max_throughput if times != 1.0 else 2.0]),
                 np.array([0.01]), m.t)
    assert ex[1].backlog > 0 and ex[2].backlog > 0
    for sheets in (True, False):
        got, want, out = both(m, sheets)
        assert same(got, want) and same(out, want)
    col = got[:, OBS["queue_backlog"] - OBS_DIM]
    assert {0.5, 1.0} <= set(col.tolist())
    # one CCP: every bank gets its fund's health, whatever bank_ccp says
    m1 = FinancialModel(n_banks=30, n_exchanges=2, n_ccps=1, rng=45)
    m1.run_for(3)
    m1.ledger.fund[:5, 0] = 0.0
    m1.router.bank_ccp = np.full(30, 4)
    got, want, out = both(m1)
    assert same(got, want) and same(out, want)
    health = got[:, OBS["default_fund_health"] - OBS_DIM]
    assert np.all(health == clip(m1.ccps[0].default_fund_health, 0, 1))
