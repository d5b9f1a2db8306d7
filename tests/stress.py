"""Random stress runs with independent invariants checked after every step.

    python tests/stress.py --runs 10000 --processes 2     # the full run (local)
    (tests/test_stress.py runs a reduced number in CI)

Each run draws a configuration from its seed — stress scenarios and random
custom ones, the infrastructure layer on or off, extreme parameters, several
asset classes, mixed brains, user shocks between steps — runs it to the end and
after every step checks the ledger's own check *and* these invariants,
computed here from the raw arrays (not with the model's helpers):

1. every array of state is finite;
2. assets − liabilities (deposits, funding, interbank) = equity per bank;
3. money is conserved (cash of banks, CCPs, exchanges vs recorded flows);
4. no negative holdings, other assets, loans, margin or fund (beyond round-off);
5. prices positive and at or above the floor; 6. a default is final;
7. resolved banks hold nothing; 8. every loan left is between two different
banks and due after now; 9. each CCP's cash = members' margin + fund + capital;
10. measures agree with the ledger and lie in their documented ranges;
11. observations are finite and within their documented ranges;
12. actions lie in [0, 1], zero for defaulted banks;
and, for every 25th run, 13. the same seed gives the same final state.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from finsim_mesa import FinancialModel
from finsim_mesa.observation import INFRA_OBS_FIELDS, OBS_FIELDS, observation_names
from finsim_mesa.scenarios import Scenario

# documented range of each observation column (observation.OBS_FIELDS)
OBS_RANGE = {"capital_ratio": (-1, 1), "leverage": (-1, 1), "cash_ratio": (0, 1),
             "liquidity_coverage": (0, 1), "interbank_assets": (0, 1),
             "interbank_liabilities": (0, 1), "deposit_funding": (0, 1), "due_next": (0, 1),
             "counterparty_stress": (0, 1), "neighbour_defaults": (0, 1), "price": (0, 2),
             "price_trend": (-1, 1), "interbank_rate": (0, 1), "market_stress": (0, 1),
             "own_distress": (0, 1), "size": (-1, 1), "exchange_congestion": (0, 1),
             "exchange_fee_level": (0, 1), "queue_backlog": (0, 1), "expected_delay": (0, 1),
             "ccp_margin_rate": (0, 1), "posted_margin": (0, 1), "net_ccp_exposure": (-1, 1),
             "default_fund_health": (0, 1)}
assert set(OBS_RANGE) == {n for n, _ in OBS_FIELDS + INFRA_OBS_FIELDS}


def random_config(seed: int) -> tuple[dict[str, Any], dict[int, list[tuple]]]:
    """Model keyword arguments and user shocks {step: [(kind, magnitude, banks)]}."""
    r = np.random.default_rng(seed)
    n = int(np.exp(r.uniform(np.log(2), np.log(60))))
    topology = str(r.choice(["barabasi_albert", "erdos_renyi", "core_periphery"]))
    cap = float(r.uniform(0.02, 0.4))
    kw: dict[str, Any] = dict(
        n_banks=n, topology=topology, edges_per_node=int(r.integers(1, max(2, min(4, n)))),
        mean_degree=float(r.uniform(0.5, 10)), core_fraction=float(r.uniform(0.05, 1)),
        capital_ratio=cap, capital_requirement=float(r.uniform(0, cap * 0.95)),
        interbank_share=float(r.uniform(0, 0.6)), liquidity_share=float(r.uniform(0, 0.3)),
        marketable_share=float(r.uniform(0, 1)), size_dispersion=float(r.uniform(0, 2.5)),
        n_assets=int(r.integers(1, 4)), price_impact=float(r.exponential(1.0)),
        price_floor=float(r.uniform(0.01, 1)), mean_reversion=float(r.uniform(0, 1)),
        sale_discount=float(r.uniform(0, 0.5)), liquidation_discount=float(r.uniform(0, 0.9)),
        forced_deleveraging=bool(r.random() < 0.8),
        deleveraging_buffer=float(r.uniform(0, 2)), fire_sale_rounds=int(r.integers(1, 20)),
        default_cost_alpha=float(r.uniform(0, 1)), default_cost_beta=float(r.uniform(0, 1)),
        max_sell_fraction=float(r.uniform(0, 1)), max_lend_fraction=float(r.uniform(0, 1)),
        max_borrow_fraction=float(r.uniform(0, 0.5)), reserve_ratio=float(r.uniform(0, 0.3)),
        large_exposure_limit=float(r.exponential(1.0)), loan_maturity=int(r.integers(1, 8)),
        deposit_rate=float(r.uniform(0, 0.01)), base_rate=float(r.uniform(0, 0.01)),
        steps=int(r.integers(5, 50)), collapse_threshold=float(r.uniform(0.3, 1)),
        agent_collect_every=int(r.integers(0, 3)), rng=seed)
    if topology == "barabasi_albert" and kw["edges_per_node"] >= n:
        kw["topology"] = "erdos_renyi"
    kw["directed"] = bool(r.random() < 0.3)
    kw["funding_share"] = float(r.uniform(0, 1)) if r.random() < 0.3 else 0.0
    if r.random() < 0.4:  # portfolios: several classes, their own impacts, specialised banks
        k = kw["n_assets"]
        kw["asset_classes"] = [
            {"name": f"c{j}", "price": float(r.uniform(0.5, 2)),
             "impact": float(r.exponential(1.0)) if r.random() < 0.5 else None,
             "weight": float(r.uniform(0.1, 1)), "liquidity_rank": int(r.integers(0, 3))}
            for j in range(k)]
        kw["portfolio_concentration"] = float(r.uniform(0.2, 5)) if r.random() < 0.5 else None
        kw["sale_order"] = str(r.choice(["pro_rata", "liquidity"]))
    if r.random() < 0.4:
        lo = float(r.uniform(0, 0.05))
        kw |= dict(deleveraging_rule=str(r.choice(["threshold", "leverage_targeting"])),
                   leverage_min=lo, leverage_buffer=lo + float(r.uniform(0.001, 0.05)),
                   leverage_target=lo + float(r.uniform(0.001, 0.08)),
                   repay_funding_first=bool(r.random() < 0.7))
    if r.random() < 0.05:  # the EBA sample: its own balance sheets, no network
        for key in ("asset_classes", "portfolio_concentration", "n_assets", "topology",
                    "n_exchanges", "n_ccps"):
            kw.pop(key, None)
        kw["balance_sheets"] = "eba2018"
        kw.pop("n_banks")
        n = 48  # the sample's banks: brains, shocks and default counts refer to them
    if r.random() < 0.5 and "balance_sheets" not in kw:
        x = int(r.integers(1, min(3, n) + 1))
        kw |= dict(n_exchanges=x, n_ccps=int(r.integers(0, min(2, n) + 1)),
                   venue_rule=str(r.choice(["size", "round_robin", "random"])),
                   exchange_capacity=float(np.exp(r.uniform(np.log(1e-5), np.log(1)))),
                   max_order_wait=int(r.integers(0, 5)),
                   ccp_clearing_share=float(r.uniform(0, 1)),
                   initial_margin_rate=float(r.uniform(0, 1)),
                   default_fund_rate=float(r.uniform(0, 0.1)),
                   ccp_capital_share=float(r.uniform(0, 2)))
    if r.random() < 0.3:
        kw["scenario"] = Scenario(
            name=f"random_{seed}", price_volatility=float(r.uniform(0, 0.2)),
            shock_probability=float(r.uniform(0, 1)), shock_fraction=float(r.uniform(0, 1)),
            shock_magnitude=float(r.uniform(0, 3)), funding_stress=float(r.uniform(0, 1)),
            funding_stress_probability=float(r.uniform(0, 1)),
            crash_step=int(r.integers(1, 20)), crash_magnitude=float(r.uniform(0.01, 0.9)),
            default_step=int(r.integers(1, 20)), default_count=int(r.integers(0, n + 1)),
            stress_level=float(r.uniform(0, 1)))
    else:
        kw["scenario"] = str(r.choice(["normal", "liquidity_crisis", "asset_crash",
                                       "systemic"]))
    brains = ["random", "rule_based", "myopic", "greedy", "conservative", "passive"]
    kw["brain"] = (str(r.choice(brains)) if r.random() < 0.7 else
                   {i: str(r.choice(brains)) for i in range(n)} | {"default": "passive"})
    shocks: dict[int, list[tuple]] = {}
    for _ in range(int(r.integers(0, 4))):
        step = int(r.integers(0, kw["steps"]))
        kind = str(r.choice(["price_crash", "funding_withdrawal", "loss", "default"]))
        mag = {"price_crash": r.uniform(0, 0.95), "funding_withdrawal": r.uniform(0, 1),
               "loss": r.uniform(0, 5), "default": 0.0}[kind]
        banks = (None if kind in ("price_crash", "funding_withdrawal") and r.random() < 0.5
                 else sorted({int(b) for b in r.integers(0, n, size=int(r.integers(1, 4)))}))
        shocks.setdefault(step, []).append((kind, float(mag), banks))
    return kw, shocks


def check_invariants(m: FinancialModel, was_defaulted: np.ndarray) -> None:
    """Raise AssertionError naming the first invariant that does not hold."""
    L, t = m.ledger, m.t
    m.check()
    arrays = dict(cash=L.cash, holdings=L.holdings, deposits=L.deposits, funding=L.funding,
                  equity=L.equity,
                  other=L.other_assets, prices=L.prices, margin=L.margin, fund=L.fund,
                  ccp_cash=L.ccp_cash, ccp_capital=L.ccp_capital, xcash=L.exchange_cash,
                  principal=L.loans.principal, accrued=L.loans.accrued)
    for name, a in arrays.items():
        assert np.all(np.isfinite(a)), f"1: {name} not finite"
    lb = L.loans
    scale = max(1.0, L.initial_scale)
    tol = 1e-8 * scale
    ib_a = np.bincount(lb.lender, weights=lb.principal + lb.accrued, minlength=L.n)
    ib_l = np.bincount(lb.borrower, weights=lb.principal + lb.accrued, minlength=L.n)
    assets = (L.cash + (L.holdings * L.prices).sum(axis=1) + L.other_assets + ib_a
              + L.margin.sum(axis=1) + L.fund.sum(axis=1))
    gap = np.abs(assets - L.deposits - L.funding - ib_l - L.equity)
    assert gap.max(initial=0) <= tol, f"2: identity gap {gap.max():.3e} at bank {gap.argmax()}"
    flows = sum(L.external_in.values()) - sum(L.external_out.values())
    cash = L.cash.sum() + L.ccp_cash.sum() + L.exchange_cash.sum()
    assert abs(cash - L.initial_cash_total - flows) <= 1e-7 * max(1, L.initial_cash_total), \
        "3: money not conserved"
    for name in ("holdings", "other", "principal", "accrued", "margin", "fund", "funding"):
        assert arrays[name].min(initial=0) >= -tol, f"4: negative {name}"
    assert L.deposits.min(initial=0) >= -tol and L.cash.min(initial=0) >= -tol, "4: negative"
    floor = m.config.price_floor * m.market.initial_prices
    assert np.all(L.prices > 0) and np.all(L.prices >= floor * (1 - 1e-12)), "5: price"
    assert np.all(L.defaulted[was_defaulted]), "6: a defaulted bank came back"
    assert np.all(L.default_step[L.defaulted] <= t), "6: default in the future"
    res = L.resolved
    assert np.all(L.cash[res] <= tol) and np.all(L.holdings[res] <= tol), "7: resolved holds"
    assert not np.isin(lb.lender, np.flatnonzero(res)).any(), "7: resolved bank lends"
    assert np.all(lb.lender != lb.borrower), "8: a loan to oneself"
    assert np.all(lb.maturity > t), "8: a loan left past its maturity"
    if L.ccp_cash.size:
        ccp_gap = L.ccp_cash - L.margin.sum(axis=0) - L.fund.sum(axis=0) - L.ccp_capital
        assert np.abs(ccp_gap).max() <= tol, "9: CCP cash"
    ms = m.measures
    assert ms.n_defaults == int(L.defaulted.sum()), "10: n_defaults"
    for name in ("default_rate", "systemic_risk_index", "stress_index", "market_stress"):
        v = getattr(ms, name)
        assert 0 <= v <= 1, f"10: {name} = {v}"
    assert -1e-12 <= ms.debtrank_total <= 1 + 1e-9, f"10: debtrank_total {ms.debtrank_total}"
    assert 0 <= ms.liquidity_index <= 100, "10: liquidity index"
    obs = m.decisions.observations
    assert np.all(np.isfinite(obs)), "11: observation not finite"
    names = observation_names(m.config, m.market.names)
    assert len(names) == obs.shape[1], "11: observation width"
    for j, name in enumerate(names):
        lo, hi = OBS_RANGE.get(name, (0, 2) if name.startswith("price_") else (None, None))
        col = obs[L.active, j] if L.active.any() else obs[:0, j]
        assert col.min(initial=lo) >= lo - 1e-9 and col.max(initial=hi) <= hi + 1e-9, \
            f"11: {name} outside [{lo}, {hi}]"
    a = m.decisions.actions
    assert np.all((a >= 0) & (a <= 1)), "12: action outside [0, 1]"


def final_state(m: FinancialModel) -> tuple:
    L = m.ledger
    return (m.t, L.cash.tobytes(), L.equity.tobytes(), L.status.tobytes(), L.prices.tobytes())


def run_one(seed: int) -> tuple[int, str | None, int]:
    """(seed, failure or None, steps run)."""
    kw, shocks = random_config(seed)
    try:
        m = FinancialModel(**kw)
        while m.running:
            for kind, mag, banks in shocks.get(m.t, []):
                m.apply_shock(kind, mag, banks=[b for b in banks if b < m.n_banks]
                              if banks else None)
            was = m.ledger.defaulted.copy()
            m.step()
            check_invariants(m, was)
        if seed % 25 == 0:
            again = FinancialModel(**random_config(seed)[0])
            while again.running:
                for kind, mag, banks in shocks.get(again.t, []):
                    again.apply_shock(kind, mag, banks=[b for b in banks if b < again.n_banks]
                                      if banks else None)
                again.step()
            assert final_state(again) == final_state(m), "13: not deterministic"
        return seed, None, m.t
    except Exception as err:  # reported with the seed that reproduces it
        return seed, f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}", -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--first", type=int, default=0, help="first seed")
    ap.add_argument("--processes", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    seeds = range(args.first, args.first + args.runs)
    with ProcessPoolExecutor(args.processes) as pool:
        results = list(pool.map(run_one, seeds, chunksize=20))
    failures = [(s, e) for s, e, _ in results if e]
    steps = sum(k for _, _, k in results if k > 0)
    print(f"{len(results)} random configurations, {steps} steps, invariants checked after "
          f"every step: {len(failures)} failures ({time.perf_counter() - t0:.0f} s)")
    for s, e in failures[:20]:
        print(f"--- seed {s}: {e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
