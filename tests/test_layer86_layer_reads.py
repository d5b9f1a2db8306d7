"""helper-86 (issue 15): the layer's margin call, clearing and reads with fewer NumPy calls.

* ``layer.call_margin``: when auditing, the called cells are found once and their
  count is the emptiness test (``count_nonzero(need)`` before); ``_cells`` of one
  column reads that column's non-zero rows; ``minimum`` / ``maximum`` with ZERO;
* ``resolution.settle_in_full``: every due loan cleared read off the least CCP id
  (no mask), the one CCP's funds as capital + the fund column's own sum in Python
  floats (no (C,) arrays), cash read as it is (not ``cash + 0.0``);
* ``observation.infrastructure_observations``: the exchanges' table clipped and
  scaled in Python floats (``_clip01`` with a bound), the net exposure clipped by
  ``clip``'s own loop;
* ``ccp.netting_efficiency``: CCP 0 clearing every loan found by one count first,
  the sums through ``fastmath.total``.

Each is checked bit for bit against the former form (8bf5939, kept here, or the
earlier forms other tests keep, imported from them) on awkward values (-0.0,
NaN, infinities, subnormals, sums whose order shows) and along whole runs.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from finsim_mesa import FinancialModel, resolution
from finsim_mesa.accounting import values
from finsim_mesa.clearing import pays_in_full
from finsim_mesa.fastmath import ZERO, count_nonzero, flatnonzero, leading, total
from finsim_mesa.infrastructure import ccp as ccp_module
from finsim_mesa.infrastructure import layer
from finsim_mesa.infrastructure.ccp import netting_efficiency
from finsim_mesa.infrastructure.layer import _cells
from finsim_mesa.loans import LoanBook, row_indices
from finsim_mesa.market import capped_share
from finsim_mesa.observation import (
    INFRA_OBS_DIM,
    OBS_DIM,
    _clip01,
    infrastructure_observations,
)
from finsim_mesa.resolution import _ccps_pay, _holds_unsellable, _plus_zeros, _surely_pays
from tests.support import model_state
from tests.test_layer55_infra_reads import former_observations
from tests.test_layer81_margin import _margin_state, _twins, former_call_margin

# ------------------------------------------------------------ former forms (8bf5939)


def former_settle_in_full(L, cfg, due, ext_due, router=None, t=0, sell=None):  # 8bf5939
    lb, n, C = L.loans, L.n, L.ccp_cash.size
    rows = due if isinstance(due, slice) else leading(row_indices(due))
    owed = lb.owed_at(rows)
    lender, borrower = lb.lender[rows], lb.borrower[rows]
    paid = np.bincount(borrower, weights=owed, minlength=n)
    received = np.bincount(lender, weights=owed, minlength=n)
    cash, pbar, inflow = L.cash, paid, received
    n_cleared = 0
    if C:
        ccp = lb.ccp[rows]
        cleared = ccp >= 0
        n_cleared = count_nonzero(cleared)
        funds = L.ccp_capital + L.fund.sum(axis=0)
        every = n_cleared == owed.size
        if n_cleared:
            cash = L.cash + 0.0
            if not every:
                order = np.concatenate([flatnonzero(~cleared), flatnonzero(cleared)])
                pbar = np.bincount(borrower[order], weights=owed[order], minlength=n)
                inflow = np.bincount(lender[order], weights=owed[order], minlength=n)
        all_owed = C == 1 and every and n_cleared and _surely_pays(owed, float(funds[0]))
        if not all_owed:
            if n_cleared:
                on, on_owed = (ccp, owed) if every else (ccp[cleared], owed[cleared])
                ccp_owed = np.bincount(on, weights=on_owed, minlength=C)
                terms = np.bincount(on, minlength=C)
            else:
                ccp_owed, terms = np.zeros(C), np.zeros(C, dtype=np.int64)
            if not _ccps_pay(ccp_owed, terms, funds):
                return False
            all_owed = count_nonzero(terms) == C
    dues = not _plus_zeros(ext_due, n)
    pbar = pbar + ext_due if dues else pbar
    fire_price = L.prices * (1 - cfg.liquidation_discount)
    liquid = values(L.holdings, fire_price)
    if not (pbar[pbar.argmin()] > -np.inf
            and pays_in_full(pbar, inflow, np.bincount(lender, minlength=n),
                             np.maximum(cash + liquid, ZERO))):
        return False
    short = np.maximum(pbar - cash - received, ZERO)
    selling = bool(count_nonzero(short)) or _holds_unsellable(L.holdings, liquid)
    if selling and sell is None:
        return False
    if n_cleared:
        L.cash += ZERO
    if selling and sell is not None:
        sell(L.holdings * capped_share(short, liquid)[:, None], fire_price, "emergency_sales")
    if router is not None and router.auditing:
        router.record_owned("repayment", borrower, lender, owed, owed,
                            router.bank_exchange[lender], ccp if C else lb.ccp[rows], 0.0,
                            0, "paid", t)
    L.cash -= paid
    L.cash += received
    L.equity += ZERO
    if n_cleared:
        if all_owed:
            L.ccp_cash += ZERO
        else:
            L.ccp_cash[terms > 0] += 0.0
    lb.remove(rows)
    if dues:
        L.cash -= ext_due
    from_deposits = np.minimum(ext_due, L.deposits)
    L.deposits -= from_deposits
    L.funding -= ext_due - from_deposits
    L.external_out["external_creditors"] += total(ext_due) if dues else 0.0
    return True


def former_netting_efficiency(loans, ccp_id, n, sheets=None):  # 8bf5939
    col = loans.ccp
    m = (slice(None) if col.size and int(np.min(col)) == ccp_id
         and int(np.max(col)) == ccp_id else flatnonzero(col == ccp_id))
    owed = loans.owed_at(m)
    gross = float(owed.sum())
    if gross <= 0:
        return 0.0
    if sheets is not None and isinstance(m, slice):
        short = sheets.interbank_liabilities - sheets.interbank_assets
        np.maximum(short, 0.0, out=short)
    else:
        net = (np.bincount(loans.lender[m], weights=owed, minlength=n)
               - np.bincount(loans.borrower[m], weights=owed, minlength=n))
        short = np.maximum(-net, 0.0)
    return 1.0 - float(short.sum()) / gross


def _bits(x) -> bytes:
    return np.asarray(x).tobytes()


# ------------------------------------------------------------ call_margin and _cells


@pytest.mark.parametrize("kw", [{}, {"n_ccps": 2, "venue_rule": "random",
                                     "ccp_clearing_share": 0.7}])
@pytest.mark.parametrize("case", ["unaudited_short", "unaudited_nothing", "audited_nothing",
                                  "nan_margin", "inf_margin", "negzero", "all_returned"])
def test_call_margin_as_former_form(kw, case):
    a, b = _twins(kw, 3)
    out = []
    for m, f in ((a, layer.call_margin), (b, former_call_margin)):
        L = m.ledger
        rate = m.margin_rate
        req = layer.requirements(m.ccps, rate)
        if case.startswith("unaudited"):
            m.collect_data = False
        if case == "unaudited_short":
            L.cash *= 0.05
            L.holdings *= 0.01
            rate *= 5.0
        if case.endswith("nothing"):  # each margin exactly what is required: no call, no return
            L.margin[:] = req
        if case == "nan_margin":  # a NaN cell is both returned and called
            L.margin[4, 0] = np.nan
        if case == "inf_margin":
            L.margin[5, 0] = np.inf
            L.margin[6, -1] = -np.inf
        if case == "negzero":  # zeros of either sign: no cell
            L.margin[:] = req
            L.margin[:3] = -0.0
            L.cash[:3] = -0.0
        if case == "all_returned":
            L.margin[:] = req + 1.0
        with np.errstate(invalid="ignore"):
            out.append(_bits(np.float64(f(L, m.ccps, m.router, rate, m.config, m._sell, m.t))))
    assert out[0] == out[1]
    assert _margin_state(a) == _margin_state(b)


def _cell_arrays():
    rng = np.random.default_rng(86)
    for cols in (1, 2, 3):
        for n in (0, 1, 7, 64, 1000):
            a = rng.standard_normal((n, cols))
            a[rng.random((n, cols)) < 0.4] = 0.0
            if n > 4:
                a.flat[[0, 3]] = np.nan
                a.flat[1] = -0.0
                a.flat[2] = 5e-324
                a.flat[4] = -np.inf
            yield a


@pytest.mark.parametrize("a", list(_cell_arrays()), ids=lambda a: str(a.shape))
def test_cells_are_numpys_nonzero(a):
    i, c, f = _cells(a)
    rows, cols = np.nonzero(a)
    assert np.array_equal(i, rows) and np.array_equal(f, np.flatnonzero(a))
    assert np.array_equal(np.broadcast_to(c, rows.shape), cols)
    if a.shape[1] == 1:
        assert c == 0 and type(c) is int and f.dtype == np.intp


# ------------------------------------------------------------ settle_in_full


def _clearing_twins(kw):
    base = dict(n_banks=60, n_exchanges=2, n_ccps=1, scenario="systemic", brain="greedy",
                agent_collect_every=0, steps=10**6, rng=11)
    a, b = (FinancialModel(**{**base, **kw}) for _ in range(2))
    for m in (a, b):
        m.run_for(4)
    return a, b


_SETTLE_CASES = ["plain", "negzero_cash", "negzero_holdings", "nan_cash", "partial",
                 "bilateral", "fund_order", "fund_nan", "fund_big", "withdrawals", "short",
                 "capital_negzero"]


@pytest.mark.parametrize("kw", [{}, {"n_ccps": 2, "venue_rule": "random"},
                                {"ccp_clearing_share": 0.5}])
@pytest.mark.parametrize("case", _SETTLE_CASES)
def test_settle_in_full_as_former_form(kw, case, monkeypatch):
    a, b = _clearing_twins(kw)
    seen: list[list[bytes]] = [[], []]
    real = resolution._surely_pays
    for k, (m, f) in enumerate(((a, resolution.settle_in_full), (b, former_settle_in_full))):
        def spy(owed, funds, _k=k):
            seen[_k].append(_bits(np.float64(funds)) + _bits(type(funds) is float))
            return real(owed, funds)
        monkeypatch.setattr(resolution, "_surely_pays", spy)
        monkeypatch.setitem(globals(), "_surely_pays", spy)  # (the former form's own name)
        L, lb = m.ledger, m.ledger.loans
        t = m.t + 1
        due = lb.maturity <= t
        ext_due = np.zeros(L.n)
        d = np.flatnonzero(due)
        if case == "negzero_cash":
            L.cash[::3] = -0.0
        if case == "negzero_holdings":
            L.holdings[::2] = -0.0
        if case == "nan_cash":
            L.cash[lb.borrower[d[0]]] = np.nan
        if case == "partial":
            lb.ccp[d[::2]] = -1
        if case == "bilateral":
            lb.ccp[d] = -1
        if case == "fund_order":  # capital + a column sum whose order shows
            L.fund[:, 0] = np.resize([1e16, 1.0, -1e16, 1.0, 3.0], L.n)
        if case == "fund_nan":
            L.fund[7, 0] = np.nan
        if case == "fund_big":  # near the bound _surely_pays declines at
            L.fund[:, 0] = 2e298
        if case == "withdrawals":
            ext_due[::4] = 0.25 * L.deposits[::4]
        if case == "short":  # borrowers short of cash: emergency sales
            L.cash[lb.borrower[d]] = 0.0
        if case == "capital_negzero":
            L.ccp_capital[:] = -0.0
            L.fund[:] = 0.0
        with np.errstate(invalid="ignore", over="ignore"):
            got = f(L, m.config, due, ext_due, m.router, t, m._sell)
        seen[k].append(_bits(bool(got)))
    assert seen[0] == seen[1]
    assert model_state(a) == model_state(b)


def test_fund_order_shows_in_a_serial_sum():
    """The fund column of the 'fund_order' case: its pairwise sum (what both forms
    take) is not the serial one, so a serial sum in the new form would fail."""
    fund = np.resize([1e16, 1.0, -1e16, 1.0, 3.0], 60)
    pairwise = total(fund)
    assert _bits(pairwise) == _bits(fund.reshape(-1, 1).sum(axis=0)[0])
    assert pairwise != float(np.cumsum(fund)[-1])


@pytest.mark.parametrize("kw", [
    dict(n_banks=120, scenario="liquidity_crisis", brain="rule_based", rng=3),
    dict(n_banks=80, scenario="asset_crash", brain="greedy", ccp_clearing_share=0.6, rng=4),
    dict(n_banks=60, scenario="systemic", brain="greedy", n_ccps=2, venue_rule="random",
         rng=6),
    dict(n_banks=60, scenario="systemic", brain="greedy", n_exchanges=0, n_ccps=0, rng=6),
])
def test_whole_runs_as_former_forms(kw, monkeypatch):
    base = dict(n_exchanges=2, n_ccps=1, agent_collect_every=1, steps=10**6)
    a = FinancialModel(**{**base, **kw})
    a.run_for(30)
    monkeypatch.setattr(resolution, "settle_in_full", former_settle_in_full)
    monkeypatch.setattr(layer, "call_margin", former_call_margin)
    monkeypatch.setattr(ccp_module, "netting_efficiency", former_netting_efficiency)
    import finsim_mesa.measures as measures
    monkeypatch.setattr(measures, "netting_efficiency", former_netting_efficiency)
    b = FinancialModel(**{**base, **kw})
    b.run_for(30)
    assert model_state(a) == model_state(b)
    assert a.measures.netting_efficiency == b.measures.netting_efficiency


# ------------------------------------------------------------ netting_efficiency


def _netting_book(kind: str) -> LoanBook:
    rng = np.random.default_rng(3)
    lb = LoanBook()
    k = 0 if kind == "empty" else 200
    lender, borrower = rng.integers(0, 20, k), rng.integers(0, 20, k)
    owed = rng.random(k) * 10.0 ** rng.integers(-3, 12, k)
    ccp = {"zeros": np.zeros(k, dtype=np.int64), "ones": np.ones(k, dtype=np.int64),
           "mixed": rng.integers(-1, 2, k), "empty": np.zeros(0, dtype=np.int64),
           "one_bilateral": np.r_[np.zeros(max(k - 1, 0), dtype=np.int64), -1][:k]}.get(kind)
    lb.append(lender, borrower, owed, np.full(k, 0.01), 5, ccp)
    if kind == "half_float":  # a float column (not what the model writes): 0.5 everywhere
        lb.ccp = np.full(k, 0.5)
    if kind == "negzero_float":
        lb.ccp = np.full(k, -0.0)
    if kind == "nan_owed":
        lb.accrued[3] = np.nan
    return lb


@pytest.mark.parametrize("kind", ["zeros", "ones", "mixed", "empty", "one_bilateral",
                                  "half_float", "negzero_float", "nan_owed"])
@pytest.mark.parametrize("ccp_id", [0, 1, np.int64(0), np.int64(1)])
def test_netting_efficiency_as_former_form(kind, ccp_id):
    lb = _netting_book(kind)
    n = 20
    owed = lb.owed
    sheets = SimpleNamespace(
        interbank_assets=np.bincount(lb.lender, weights=owed, minlength=n),
        interbank_liabilities=np.bincount(lb.borrower, weights=owed, minlength=n))
    for sh in (None, sheets):
        got = netting_efficiency(lb, ccp_id, n, sh)
        want = former_netting_efficiency(lb, ccp_id, n, sh)
        assert type(got) is type(want) is float
        assert _bits(got) == _bits(want)


# ------------------------------------------------------------ infrastructure_observations


def _clip_hi_reference(x: float, hi: float) -> float:
    return float(np.minimum(np.maximum(np.array([x, x, x, x, x, x, x, x, x]), 0.0), hi)[0])


@pytest.mark.parametrize("hi", [1.0, 2.0, 3.0])
def test_clip01_with_a_bound_is_numpys(hi):
    for x in [-0.0, 0.0, math.nan, -math.nan, math.inf, -math.inf, 0.5, 1.0, 2.0, 3.0,
              math.nextafter(hi, math.inf), math.nextafter(hi, 0.0), 5e-324, -5e-324, -1e308,
              1e308]:
        assert _bits(_clip01(x, hi)) == _bits(_clip_hi_reference(x, hi)), x


def _fake_exchange(u, fee, backlog, delay, cap=2.0):
    return SimpleNamespace(utilisation=u, fee_rate=fee, backlog=backlog, mean_delay=delay,
                           queue=SimpleNamespace(max_throughput=cap))


_ODD = [-0.0, 0.0, math.nan, math.inf, -math.inf, 2.0, math.nextafter(2.0, 3.0), 5e-324,
        -1.0, 1e308, np.float32(0.3), np.float64(1.7), 5, 0]


def _odd_exchanges(k: int) -> list:
    rng = np.random.default_rng(k)
    return [_fake_exchange(*(_ODD[int(j)] for j in rng.integers(0, len(_ODD), 4)),
                           cap=float(rng.choice([2.0, 0.5, 1e-300])))
            for _ in range(k)]


@pytest.mark.parametrize("k", [1, 2, 3, 5, 9])
@pytest.mark.parametrize("edit", ["none", "margin", "exposure", "bilateral", "all_bilateral"])
def test_infrastructure_observations_as_former_form(k, edit):
    m = FinancialModel(n_banks=40, n_exchanges=2, n_ccps=1, scenario="systemic",
                       brain="greedy", agent_collect_every=0, steps=10**6, rng=2)
    m.run_for(3)
    L = m.ledger
    rng = np.random.default_rng(k)
    exchanges = _odd_exchanges(k)
    router = SimpleNamespace(bank_exchange=rng.integers(0, k, L.n), bank_ccp=np.zeros(L.n, int))
    if edit == "margin":
        L.margin[:6, 0] = [-0.0, np.nan, np.inf, -np.inf, 5e-324, -5e-324]
    if edit == "bilateral":  # one loan (the last) not cleared: the masked sums
        L.loans.ccp[-1] = -1
    if edit == "all_bilateral":
        L.loans.ccp[:] = -1
    if edit == "exposure":
        m.sheets.interbank_assets[:6] = [-0.0, np.nan, np.inf, -np.inf, 5e-324, 1e308]
        m.sheets.interbank_liabilities[6:9] = [-0.0, 1e308, np.nan]
    ta = m.sheets.total_assets
    args = (L, np.where(ta > 0, ta, 1.0), exchanges, m.ccps, router, m.margin_rate, m.config)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        want = former_observations(*args, sheets=m.sheets)
        got = infrastructure_observations(*args, sheets=m.sheets)
        big = np.full((L.n, OBS_DIM + INFRA_OBS_DIM + 3), 7.0, order="F")
        infrastructure_observations(*args, out=big[:, OBS_DIM:OBS_DIM + INFRA_OBS_DIM],
                                    sheets=m.sheets)
        row_major = np.full((L.n, INFRA_OBS_DIM), 7.0)
        infrastructure_observations(*args, out=row_major, sheets=m.sheets)
    assert got.tobytes() == want.tobytes()
    assert big[:, OBS_DIM:OBS_DIM + INFRA_OBS_DIM].tobytes() == want.tobytes()
    assert row_major.tobytes() == np.ascontiguousarray(want).tobytes()
    assert (big[:, :OBS_DIM] == 7.0).all() and (big[:, -3:] == 7.0).all()
