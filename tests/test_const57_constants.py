"""0-d float64 constants instead of Python numbers as ufunc operands in measures,
rewards, ledger, lending and resolution (helper-57), and DebtRank's economic values
kept between steps (``measures._economic_values``): the same bits, checked against
the former forms (the functions as they were, kept here, and whole runs with the
modules' constants set back to the Python numbers and the values recomputed)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from finsim_mesa import (
    FinancialModel,
    deleveraging,
    fastmath,
    lending,
    measures,
    resolution,
    rewards,
    risk,
)
from finsim_mesa.fastmath import ONE, ZERO

AWKWARD = np.array([0.0, -0.0, 1.0, -1.0, 0.5, 1e-12, -1e-12, 5e-324, -5e-324, 1e300, -1e300,
                    np.inf, -np.inf, np.nan, 3.0, 0.1, 1e-9, -1e-9, 2.0 ** -1074, 1 - 2 ** -53])


def awkward(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=size) * 10.0 ** rng.integers(-12, 12, size)
    x[: AWKWARD.size] = AWKWARD
    return rng.permutation(x)


# --- the former functions (95c95ff), with their Python numbers


def former_insolvent(L: Any) -> np.ndarray:
    return L.equity < -1e-9 * np.maximum(1.0, L.equity0)


def former_holds_unsellable(holdings: np.ndarray, liquid: np.ndarray) -> bool:
    if np.count_nonzero(liquid > 0) == liquid.size:
        return False
    return bool(np.count_nonzero(holdings[~(liquid > 0)]))


def former_match_lending(offer: np.ndarray, request: np.ndarray, src: np.ndarray,
                         dst: np.ndarray, room: np.ndarray) -> np.ndarray:
    n = offer.size
    want = np.minimum(request[dst], room)
    asked = np.bincount(src, weights=want, minlength=n)
    per = asked[src]
    x = np.minimum(np.divide(offer[src] * want, per, out=np.zeros(src.size), where=per > 0),
                   want)
    got = np.bincount(dst, weights=x, minlength=n)
    over = got > request
    if np.count_nonzero(over):
        scale = np.divide(request, got, out=np.ones(n), where=over)
        x *= np.minimum(scale, 1.0)[dst]
    return x


@pytest.mark.parametrize("seed", range(6))
def test_insolvent_matches_the_former_form(seed: int) -> None:
    equity, equity0 = awkward(300, seed), awkward(300, seed + 20)
    L = SimpleNamespace(equity=equity, equity0=equity0)
    got, ref = resolution.insolvent(L), former_insolvent(L)
    assert got.dtype == ref.dtype == bool and np.array_equal(got, ref)
    # near the tolerance: equity just above / below -1e-9 * max(1, equity0)
    e0 = np.abs(awkward(300, seed + 40))
    tol = -1e-9 * np.maximum(1.0, e0)
    for eq in (tol, np.nextafter(tol, 0), np.nextafter(tol, -np.inf)):
        L = SimpleNamespace(equity=eq, equity0=e0)
        assert np.array_equal(resolution.insolvent(L), former_insolvent(L))


@pytest.mark.parametrize("seed", range(6))
def test_holds_unsellable_matches_the_former_form(seed: int) -> None:
    rng = np.random.default_rng(seed)
    liquid = np.abs(awkward(50, seed))
    holdings = rng.random((50, 2)) * (rng.random((50, 1)) < 0.5)
    for liq in (liquid, -liquid, np.where(rng.random(50) < 0.9, 1.0, liquid), np.ones(50)):
        for h in (holdings, np.zeros_like(holdings)):
            assert resolution._holds_unsellable(h, liq) is former_holds_unsellable(h, liq)


@pytest.mark.parametrize("seed", range(8))
def test_match_lending_matches_the_former_form(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, e = 40, 300
    src, dst = rng.integers(0, n, e), rng.integers(0, n, e)
    offer, request = rng.random(n) * 10, rng.random(n) * (rng.random(n) < 0.7)
    room = rng.random(e) * 3
    cases = [(offer, request, room), (offer * 100, request, room),  # borrowers scaled down
             (offer, request * 1e-300, room), (np.zeros(n), request, room)]
    with np.errstate(all="ignore"):
        cases.append((awkward(n, seed), awkward(n, seed + 1), awkward(e, seed + 2)))
        for o, r, rm in cases:
            got, ref = (lending.match_lending(o, r, src, dst, rm),
                        former_match_lending(o, r, src, dst, rm))
            assert got.dtype == ref.dtype and got.tobytes() == ref.tobytes()


def test_repay_funding_clips_as_before() -> None:
    """``Ledger.repay_funding`` with ``np.maximum(amounts, ZERO)``: the cash and funding
    the former ``np.maximum(amounts, 0.0)`` gives, for float64, int and float32 amounts."""
    m = FinancialModel(n_banks=20, rng=3, agent_collect_every=0)
    L = m.ledger
    with np.errstate(invalid="ignore"):
        L.funding[:] = np.abs(awkward(20, 5)[:20]) % 1e6
    L.funding[~np.isfinite(L.funding)] = 2.0
    with np.errstate(all="ignore"):
        for amounts in (awkward(20, 6), np.arange(-10, 10),
                        (awkward(20, 7) % 1e6).astype(np.float32)):
            cash, funding = L.cash.copy(), L.funding.copy()
            paid = np.minimum(np.maximum(amounts, 0.0), funding)  # the former form
            L.repay_funding(amounts)
            assert paid.dtype == np.float64
            assert L.cash.tobytes() == (cash - paid).tobytes()
            assert L.funding.tobytes() == (funding - paid).tobytes()


@pytest.mark.parametrize("seed", range(3))
def test_rollover_clips_the_share_as_before(seed: int) -> None:
    """``Ledger.rollover``'s share clipped with the constants: the renewed amounts and
    what stays due, as the former ``clip(share, 0.0, 1.0)`` and ``1.0 - share`` give."""
    m = FinancialModel(n_banks=30, rng=2, agent_collect_every=0)
    for _ in range(3):
        m.step()
    lb = m.ledger.loans
    k = len(lb)
    mask = np.random.default_rng(seed).random(k) < 0.6
    rows = np.flatnonzero(mask)
    finite = AWKWARD[np.isfinite(AWKWARD)]
    share = np.resize(np.concatenate([finite, [0.3, 0.7, 0.95, 2.0]]), k)
    share = np.random.default_rng(seed).permutation(share)
    s = np.minimum(np.maximum(share[rows], 0.0), 1.0)  # the former form
    principal, accrued, owed = lb.principal.copy(), lb.accrued.copy(), lb.owed.copy()
    roll = owed[rows] * s
    out = m.ledger.rollover(mask, share, 0.001, 50)
    assert out["amount"].tobytes() == roll[roll > 0].tobytes()
    kept = 1.0 - s
    assert lb.principal[rows].tobytes() == (principal[rows] * kept).tobytes()
    assert lb.accrued[rows].tobytes() == (accrued[rows] * kept).tobytes()
    assert lb.principal[k:].tobytes() == roll[roll > 0].tobytes()  # the renewed loans


def test_rewards_match_the_former_form() -> None:
    """Profit and liquidity components with non-positive initial equity and total
    assets (where the former ``eq0 > 0`` / ``1.0`` and ``total_assets > 0`` act)."""
    m = FinancialModel(n_banks=40, rng=9, agent_collect_every=0)
    for _ in range(3):
        m.step()
    L, r = m.ledger, m.reward
    with np.errstate(all="ignore"):
        L.equity0 = awkward(40, 1)
        ta = awkward(40, 2)
        r.equity_prev = prev = L.equity - np.abs(awkward(40, 3))
        rewards.update_rewards(r, L, ta, 0.25, m.config, m.t)
        profit = (L.equity - prev) / np.where(L.equity0 > 0, L.equity0, 1.0)
        liquidity = np.zeros(40)
        np.divide(L.cash, ta, out=liquidity, where=ta > 0)
    assert r.components["profit"].tobytes() == profit.tobytes()
    assert r.components["liquidity"].tobytes() == liquidity.tobytes()
    assert (L.equity0 <= 0).any() and (ta <= 0).any()


def test_economic_values_match_and_follow_changes() -> None:
    rng = np.random.default_rng(4)
    a = rng.random(50) * 100
    first = measures._economic_values(a, 50)
    assert first.tobytes() == risk._values(None, a, 50).tobytes()
    assert measures._economic_values(a, 50) is first  # kept
    assert not first.flags.writeable
    with pytest.raises(ValueError):
        first[0] = 1.0
    a[3] *= 2.0  # changed in place: computed again
    again = measures._economic_values(a, 50)
    assert again is not first and again.tobytes() == risk._values(None, a, 50).tobytes()
    assert first.tobytes() != again.tobytes()
    # another n (a zero sum: 1/n each), another dtype with the same bytes, a list
    z = np.zeros(50)
    assert measures._economic_values(z, 50).tobytes() == np.full(50, 1 / 50).tobytes()
    assert measures._economic_values(z, 60).tobytes() == np.full(60, 1 / 60).tobytes()
    ints = a.view(np.int64)
    assert measures._economic_values(ints, 50).tobytes() == risk._values(None, ints, 50).tobytes()
    assert measures._economic_values(a, 50).tobytes() == risk._values(None, a, 50).tobytes()
    assert measures._economic_values(list(a), 50).tobytes() == risk._values(None, a, 50).tobytes()


def python_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The former form: each module's constants back to the Python numbers, and the
    economic values computed every step."""
    for mod in (measures, rewards, lending, resolution, deleveraging, fastmath):
        for name, v in (("ZERO", 0.0), ("ONE", 1.0)):
            if hasattr(mod, name):
                monkeypatch.setattr(mod, name, v)
    monkeypatch.setattr(resolution, "_MINUS_TOL", -1e-9)
    monkeypatch.setattr(measures, "_RUNOFF", measures.RUNOFF)
    monkeypatch.setattr(measures, "_economic_values", lambda a, n: risk._values(None, a, n))


def run_record(kw: dict[str, Any], steps: int) -> list[bytes]:
    m = FinancialModel(agent_collect_every=0, brain="rule_based", **kw)
    out = []
    for _ in range(steps):
        m.step()
        L = m.ledger
        out.append(b"".join(a.tobytes() for a in (
            m.decisions.actions, L.equity, L.cash, L.deposits, L.funding, L.holdings, L.prices,
            L.status, L.loans.principal, L.loans.accrued, m.reward.per_bank,
            *m.reward.components.values(), m.sheets.capital_ratio, L.ccp_cash,
            np.array([m.measures.debtrank, m.measures.debtrank_total,
                      m.measures.stress_index, m.measures.systemic_risk_index,
                      m.measures.min_capital_ratio, m.measures.mean_capital_ratio,
                      m.measures.liquidity_index, m.measures.total_equity,
                      m.flows.fire_sale_volume, m.flows.rollover_volume,
                      m.flows.interbank_volume]))))
    return out


@pytest.mark.parametrize("kw", [dict(n_banks=30, rng=1),
                                dict(n_banks=100, rng=5),
                                dict(n_banks=25, rng=4, scenario="systemic"),
                                dict(n_banks=20, rng=7, scenario="asset_crash"),
                                dict(n_banks=40, rng=2, scenario="liquidity_crisis"),
                                dict(n_banks=30, rng=3, n_exchanges=2, n_ccps=1),
                                # some banks deleverage (acting), some not, every step
                                dict(n_banks=30, rng=8, deleveraging_rule="leverage_targeting",
                                     leverage_buffer=0.1, leverage_target=0.12),
                                dict(n_banks=30, rng=8, deleveraging_rule="threshold",
                                     leverage_buffer=0.1, leverage_target=0.12,
                                     repay_funding_first=False)])
def test_steps_match_the_former_python_numbers(kw: dict[str, Any],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Actions, balance sheets, the loan book, rewards and the risk measures of
    every step, byte for byte, with the constants and with the Python numbers."""
    new = run_record(kw, 40)
    python_numbers(monkeypatch)
    assert run_record(kw, 40) == new


def test_the_former_forms_are_what_they_replace() -> None:
    """The constants hold the numbers the former forms used."""
    for c, v in ((ZERO, 0.0), (ONE, 1.0), (resolution._MINUS_TOL, -1e-9),
                 (measures._RUNOFF, measures.RUNOFF)):
        assert c.dtype == np.float64 and c.shape == () and c.item() == v
        assert np.signbit(c) == np.signbit(v) and not c.flags.writeable


def test_measures_liquidity_matches_the_former_form() -> None:
    """``measures.liquidity`` with ``_RUNOFF``: the former ``RUNOFF * L.deposits``
    value, on awkward deposits and liabilities, all banks or some."""
    m = FinancialModel(n_banks=60, rng=8, agent_collect_every=0)
    for _ in range(3):
        m.step()
    L, sheets = m.ledger, m.sheets
    L.deposits[:] = np.abs(awkward(60, 4))
    L.deposits[~np.isfinite(L.deposits)] = 3.0
    with np.errstate(invalid="ignore"):
        sheets.interbank_liabilities = np.abs(awkward(60, 5)) % 1e9
    for act in (slice(None), np.random.default_rng(1).random(60) < 0.7):
        with np.errstate(all="ignore"):
            li = risk.liquidity_index(L.cash[act], (sheets.interbank_liabilities
                                                    + measures.RUNOFF * L.deposits)[act])
            ref = min(li, measures.LIQUIDITY_CAP)
            got = measures.liquidity(L, sheets, act)
        assert type(got) is type(ref) and (got == ref or (got != got and ref != ref))
        assert np.float64(got).tobytes() == np.float64(ref).tobytes()


def test_count_nonzero_is_numpys() -> None:
    """The C ``count_nonzero`` now in resolution, ledger and deleveraging: NumPy's
    count (the same type) for bool, float (NaN, -0.0), int and 2-D arrays."""
    for mod in (resolution, deleveraging):
        assert mod.count_nonzero is fastmath.count_nonzero
    with np.errstate(all="ignore"):
        for a in (AWKWARD, AWKWARD > 0, np.arange(-3, 4), awkward(60, 1).reshape(6, 10),
                  np.zeros(0), -np.zeros(5)):
            got, ref = fastmath.count_nonzero(a), np.count_nonzero(a)
            assert type(got) is type(ref) and got == ref


def former_sale_units(holdings: np.ndarray, prices: np.ndarray, value: np.ndarray,
                      rank: np.ndarray | None) -> np.ndarray:
    """``deleveraging.sale_units`` as it was (95c95ff)."""
    worth = holdings * prices
    total = worth.sum(axis=1)
    value = np.minimum(np.maximum(value, 0.0), total)
    if rank is None:
        share = np.divide(value, total, out=np.zeros_like(value), where=total > 0)
        return holdings * share[:, None]
    units = np.zeros_like(holdings)
    left = value.copy()
    for j in np.argsort(rank, kind="stable"):
        take = np.minimum(left, worth[:, j])
        units[:, j] = np.divide(take, prices[j], out=np.zeros_like(take),
                                where=prices[j] > 0)
        left -= take
    return units


@pytest.mark.parametrize("seed", range(4))
def test_sale_units_and_leverage_match_the_former_forms(seed: int) -> None:
    """Float64, float32 and int values to raise, pro rata and by rank; leverage with
    banks without assets (-inf)."""
    rng = np.random.default_rng(seed)
    holdings = np.abs(rng.normal(size=(50, 3))) * (rng.random((50, 3)) < 0.8)
    prices = np.array([1.0, 0.0, 2.5])
    with np.errstate(all="ignore"):
        v = awkward(50, seed)
        for value in (v, (v % 1e6).astype(np.float32), rng.integers(-5, 20, 50)):
            for rank in (None, np.array([2, 0, 1])):
                got = deleveraging.sale_units(holdings, prices, value, rank)
                ref = former_sale_units(holdings, prices, value, rank)
                assert got.dtype == ref.dtype and got.tobytes() == ref.tobytes()
    m = FinancialModel(n_banks=50, rng=seed, agent_collect_every=0)
    L = m.ledger
    L.cash[:5] = -L.total_assets()[:5] + L.cash[:5]  # total assets 0 or less
    assets = L.total_assets()
    ref = np.divide(L.equity, assets, out=np.full(L.n, -np.inf), where=assets > 0)
    assert (assets <= 0).any() and deleveraging.leverage(L).tobytes() == ref.tobytes()
