"""helper-71: the initial equity's figures kept for a run (``initial_equity``) and
plain quotients where a mask's count shows every divisor > 0, below 4,096 banks —
against the former masked forms kept here, bit for bit, with non-positive, NaN and
in-place changed initial equity, defaulted banks and zero or negative divisors."""

import numpy as np
import pytest
from test_big61_quotients import KINDS, _edit, _former_fire_sale_loop
from test_big66_rounds import _network, _plain

from finsim_mesa import FinancialModel, initial_equity, measures, observation, risk
from finsim_mesa.fastmath import LARGE, ONE, ZERO, count_nonzero, total
from finsim_mesa.market import fire_sale_loop
from finsim_mesa.state import Sheets


def _former_distress(equity, equity0, defaulted):
    """risk.distress at c218bde."""
    h = np.zeros(np.shape(equity))
    np.divide(equity, equity0, out=h, where=equity0 > ZERO)
    np.subtract(ONE, h, out=h)
    np.maximum(h, ZERO, out=h)
    np.minimum(h, ONE, out=h)
    h[np.asarray(defaulted, dtype=bool)] = 1.0
    return h


def _former_stress(equity, equity0, defaulted):
    h = _former_distress(equity, equity0, defaulted)
    w = np.maximum(np.asarray(equity0, dtype=float), ZERO)
    weight = total(w)
    if not weight > 0:
        return float(h.mean())
    return min(max(float(w @ h / weight), 0.0), 1.0)


def _former_entry_weights(exposures, equity, rows, present):
    pos = equity > ZERO
    data = np.divide(exposures, np.where(pos, equity, ONE)[rows])
    np.minimum(ONE, data, out=data)
    if count_nonzero(pos) < pos.size:
        data[~pos[rows]] = 1.0
    if present is not None:
        data *= present
    return data


def _equities(rng, n):
    """Initial equity as a run has it, then with a zero, a negative, a NaN."""
    base = rng.lognormal(1.0, 0.5, n)
    out = [base]
    for bad in (0.0, -2.0, np.nan):
        e = base.copy()
        e[rng.integers(n)] = bad
        out.append(e)
    return out


@pytest.mark.parametrize("n", [1, 30, 100, LARGE - 1, LARGE])
def test_figures_are_the_direct_ones_and_follow_the_array(n):
    rng = np.random.default_rng(n)
    for e0 in _equities(rng, n):
        f = initial_equity.figures(e0)
        if n >= LARGE:
            assert f is None
            continue
        assert f.positive.tobytes() == (e0 > 0).tobytes()
        assert f.all_positive == bool(np.all(e0 > 0))
        assert f.weights.tobytes() == np.maximum(e0, 0.0).tobytes()
        assert np.float64(f.weight).tobytes() == np.maximum(e0, 0.0).sum().tobytes()
        assert f.safe.tobytes() == np.where(e0 > 0, e0, 1.0).tobytes()
        assert not f.weights.flags.writeable and not f.positive.flags.writeable
        assert initial_equity.figures(e0) is f  # kept
        e0[0] = -1.0  # changed in place: its own figures again
        g = initial_equity.figures(e0)
        assert g is not f and not g.all_positive and not g.positive[0]
    assert initial_equity.figures(np.ones(5, dtype=np.float32)) is None
    assert initial_equity.figures(np.ones(5).astype(">f8")) is None
    assert initial_equity.figures([1.0, 2.0]) is None
    assert initial_equity.figures(np.ones((2, 3))) is None


@pytest.mark.parametrize("n", [5, 30, LARGE + 3])
def test_distress_and_stress_are_the_former(n):
    rng = np.random.default_rng(7)
    for e0 in _equities(rng, n):
        for trial in range(4):
            eq = e0 * rng.uniform(-0.5, 1.5, n)
            eq[::4] = e0[::4]  # no loss: 1 - 1 is +0.0, kept so by the clip
            if trial == 3:  # NaN, infinite, signed zero and tiny equity
                eq[rng.choice(n, 5, replace=False)] = [np.nan, np.inf, -np.inf, -0.0, 5e-324]
            dflt = np.zeros(n, dtype=bool) if trial % 2 == 0 else rng.random(n) < 0.2
            want = _former_distress(eq, e0, dflt)
            assert risk.distress(eq, e0, dflt).tobytes() == want.tobytes()
            out = rng.random(n)
            assert risk.distress(eq, e0, dflt, out=out).tobytes() == want.tobytes()
            assert risk.distress(eq, e0, dflt.astype(np.int8)).tobytes() == want.tobytes()
            got, ref = risk.stress_index(eq, e0, dflt), _former_stress(eq, e0, dflt)
            assert np.float64(got).tobytes() == np.float64(ref).tobytes()


def test_entry_weights_are_the_former():
    for seed in range(6):
        n = 40
        rows, _, E, eq, present, _, _ = _network(n, 4 * n, seed, nonpositive=seed % 3,
                                                      absent=0.2 * (seed % 2))
        for e in (eq, np.abs(eq) + 0.1):
            got = risk._entry_weights(E, e, rows, present)
            assert got.tobytes() == _former_entry_weights(E, e, rows, present).tobytes()
            assert risk._entry_weights(E, e, rows, present, np.empty(E.size)).tobytes() \
                == got.tobytes()


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n", [12, 30, 100])
def test_small_books_scan_every_round_with_the_same_bits(seed, n, monkeypatch):
    """Below _SCAN_BELOW entries every round multiplies every entry: the gathering
    rounds' bits (the former form, _SCAN_BELOW = 0) and a plain loop's."""
    rows, cols, E, eq, present, by_column, rng = _network(
        n, 4 * n, seed, nonpositive=seed % 3, absent=0.2 * (seed % 2))
    assert cols.size < risk._SCAN_BELOW
    if seed == 7:
        E[3] = np.nan  # a weight not finite: no scan, as before
    for start in (1, 3, n // 2, n):
        h0 = np.zeros(n)
        h0[rng.choice(n, start, replace=False)] = rng.choice([1.0, 0.3, 1e-9], start)
        v = rng.random(n)
        got = risk._rounds(rows, cols, E, eq, h0, v, present, by_column)
        with monkeypatch.context() as mp:
            mp.setattr(risk, "_SCAN_BELOW", 0)
            former = risk._rounds(rows, cols, E, eq, h0, v, present, by_column)
        assert got[0].tobytes() == former[0].tobytes() and got[3] == former[3]
        assert np.array(got[1:3]).tobytes() == np.array(former[1:3]).tobytes()
        if seed != 7:
            assert got[0].tobytes() == _plain(rows, cols, E, eq, h0, present).tobytes()


def _model(n, seed=3, **kw):
    m = FinancialModel(n_banks=n, scenario="systemic", brain="rule_based", rng=seed,
                       agent_collect_every=0, **kw)
    m.run_for(3)
    return m


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [30, 300])
def test_capital_ratio_is_the_masked_quotient_below_large(kind, n):
    m = _model(n)
    _edit(m, kind)
    L = m.ledger
    s = Sheets()
    measures.refresh_sheets(s, L, m.config.interbank_risk_weight)
    rwa = s.rwa
    want = np.divide(L.equity, rwa, out=np.zeros(L.n), where=(rwa > ZERO) & L.active)
    assert s.capital_ratio.tobytes() == want.tobytes()
    assert (kind == "none") == bool(np.all(rwa > 0) and not count_nonzero(L.status))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("requirement", [0.06, 0.11])
def test_fire_sale_loop_is_the_former_below_large(kind, requirement):
    m = _model(60, 4, capital_requirement=requirement)
    _edit(m, kind)
    if requirement > 0.1:
        m.ledger.equity[10:40] *= np.linspace(-0.2, 0.8, 30)
    snap = m.snapshot()
    sold = np.array([5.0])
    got = fire_sale_loop(m.ledger, m.market, m.config, sold, m.t)
    got_state = (m.ledger.snapshot(), m.market.snapshot())
    m.restore(snap)
    want = _former_fire_sale_loop(m.ledger, m.market, m.config, sold, m.t)
    want_state = (m.ledger.snapshot(), m.market.snapshot())
    assert got[0].tobytes() == want[0].tobytes() and got[1] == want[1]
    for a, b in zip(got_state, want_state, strict=True):
        for k in a:
            if isinstance(a[k], np.ndarray):
                assert a[k].tobytes() == b[k].tobytes(), k
    assert requirement < 0.1 or got[1] > 0


def _observe_edit(m, kind):
    """Divisors of the observation's quotients made zero, negative or NaN."""
    L, lb = m.ledger, m.ledger.loans
    if kind == "no_need":  # bank 2: no deposits, no withdrawals, nothing due, no cash
        L.deposits[2] = L.cash[2] = 0.0  # (0 / 0: NaN, where the mask leaves 5)
        m.flows.withdrawals[2] = 0.0
        lb.maturity[lb.borrower == 2] = m.t + 50
    elif kind == "no_lending":  # bank 3 lends nothing: interbank assets 0
        lb.principal[lb.lender == 3] = 0.0
        lb.accrued[lb.lender == 3] = 0.0
    elif kind == "no_assets":  # bank 4: total assets <= 0, bank 5's NaN
        L.cash[4] = -1e9
        L.cash[5] = np.nan
    elif kind == "initial_equity":
        L.equity0[6] = 0.0
    elif kind == "nan_owed":  # a loan not due soon owes NaN: no product over the book
        lb.accrued[np.flatnonzero(lb.maturity > m.t + 1)[0]] = np.nan
    m.refresh()


@pytest.mark.parametrize("kind", ["none", "no_need", "no_lending", "no_assets",
                                  "initial_equity", "nan_owed"])
@pytest.mark.parametrize("n", [30, 100])
def test_observation_quotients_are_the_masked_ones(kind, n):
    m = _model(n, 5)
    m.ledger.equity[::3] *= 0.7  # some distress: counterparty stress is divided
    m.t += 1  # (as step() counts it before observing: some loans are due now)
    _observe_edit(m, kind)
    L, s, lb = m.ledger, m.sheets, m.ledger.loans
    o = observation.observe(m)
    c = {name: o[:, i] for name, i in observation.OBS.items() if i < o.shape[1]}
    ta = s.total_assets
    safe = np.where(ta > ZERO, ta, ONE)
    assert c["cash_ratio"].tobytes() == np.minimum(np.maximum(L.cash / safe, 0.0), 1.0).tobytes()
    due = lb.maturity <= m.t + 1
    need = (np.bincount(lb.borrower[due], weights=lb.owed[due], minlength=L.n)
            + m.flows.withdrawals + 0.1 * L.deposits)
    now = lb.maturity <= m.t
    due_next = np.bincount(lb.borrower[now], weights=lb.owed[now], minlength=L.n)
    assert c["due_next"].tobytes() == np.minimum(np.maximum(due_next / safe, 0.0), 1.0).tobytes()
    assert np.isfinite(need).all() and np.count_nonzero(due_next) > 0
    cov = np.full(L.n, 5.0)
    np.divide(L.cash, need, out=cov, where=need > ZERO)
    assert c["liquidity_coverage"].tobytes() == (
        np.minimum(np.maximum(cov, 0.0), 5.0) / 5.0).tobytes()
    h = _former_distress(L.equity, L.equity0, L.defaulted)
    assert c["own_distress"].tobytes() == h.tobytes()
    ib = s.interbank_assets
    at_risk = np.bincount(lb.lender, weights=lb.owed * h[lb.borrower], minlength=L.n)
    cps = np.zeros(L.n)
    np.divide(at_risk, ib, out=cps, where=ib > ZERO)
    if kind != "nan_owed":  # (the NaN lender's own column is NaN either way)
        assert c["counterparty_stress"].tobytes() == cps.tobytes()
    seen = {"no_need": not need[2] > 0, "no_lending": not ib[3] > 0,
            "no_assets": not ta[4] > 0, "initial_equity": not L.equity0[6] > 0}
    assert seen.get(kind, True)


def test_rewards_profit_is_divided_where_initial_equity_is_positive():
    m = _model(30)
    for zero in (False, True):
        if zero:
            m.ledger.equity0[7] = 0.0
        prev = m.reward.equity_prev.copy()
        m.step()
        L = m.ledger
        want = np.subtract(L.equity, prev)
        np.divide(want, L.equity0, out=want, where=L.equity0 > ZERO)
        want[L.defaulted & (L.default_step < m.t)] = 0.0  # out since an earlier step
        assert m.reward.components["profit"].tobytes() == want.tobytes()
        assert zero == (not initial_equity.figures(L.equity0).all_positive)


def test_figures_of_models_in_turns_are_kept_and_bounded():
    rng = np.random.default_rng(11)
    e0s = [rng.lognormal(1.0, 0.5, 30) for _ in range(3)]
    first = [initial_equity.figures(e) for e in e0s]
    for _ in range(2):  # stepped in turns: each finds its own
        assert [initial_equity.figures(e) for e in e0s] == first
        assert all(initial_equity.figures(e) is f for e, f in zip(e0s, first, strict=True))
    for _ in range(2 * initial_equity._KEEP):
        initial_equity.figures(rng.random(30))
    assert len(initial_equity._KEPT) <= initial_equity._KEEP
    again = initial_equity.figures(e0s[0])  # forgotten or not: the same values
    assert again.weights.tobytes() == first[0].weights.tobytes() and again.weight == first[0].weight
