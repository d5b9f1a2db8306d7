"""Overlapping-portfolio fire sales on the EBA 2018 sample (Cont & Schaanning 2017;
Farmer, Kleinnijenhuis, Nahai-Williamson & Wetzer 2020).

    python replications/eba2018_fire_sales.py [--figure docs/figures/eba2018.png]

Set-up of the reference (the public code ox-inet-resilience/firesale_stresstest):
48 banks of the EBA 2018 EU-wide stress test, each with cash (5% of assets),
corporate and government bonds, other assets; liabilities half a repayable
loan, half other. Government bonds lose a share ``s`` of their price at once;
then 6 rounds: banks below 3% leverage default and are liquidated; banks below
the 4% buffer (threshold model) — or below the 5% target (leverage targeting,
the reference's 100% buffer) — repay their loan with cash and sell bonds pro
rata to get back to 5%; the market clears each round's sales with a price
impact of 1% per 5% of a class's market sold, executing at the mid price.
Systemic risk is the share of banks in default, counted as 0 below 5%
(Gai & Kapadia 2010).

The same experiments run here on ``FinancialModel(balance_sheets="eba2018",
deleveraging_rule=...)``: one model step holds the 6 rounds
(``fire_sale_rounds=6``), passive brains, no interbank network, zero interest
and yields, no price floor to speak of (``price_floor=1e-9``), the reference's
impact convention converted (``price_impact = −ln(0.99) / 0.05``). Differences
from the paper's set-up: none in the mechanics above; the model's other stages
(interest, clearing, scenario noise) are switched off by these parameters.

Printed: defaults and the share of tradable assets sold at each shock for both
rules beside the reference's numbers (replications/reference/), and whether
they are equal.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from finsim_mesa import FinancialModel
from finsim_mesa.deleveraging import impact_per_5pct
from finsim_mesa.scenarios import Scenario

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "reference" / "eba2018_firesale_stresstest.json"
SHOCKS = np.linspace(0, 0.3, 21)
IMPACTS = np.linspace(0, 0.1, 21)
RULES = {"threshold": "threshold", "leverage targeting": "leverage_targeting"}


def run(shock: float, rule: str, impact: float = 0.01, rounds: int = 6) -> tuple[int, float]:
    """(banks in default, share of tradable assets sold) after a government-bond
    shock ``shock`` under ``rule``."""
    scenario = (Scenario(name="eba_government_bond_shock", price_volatility=0.0,
                         crash_step=1, crash_magnitude=float(shock),
                         crash_asset="government_bonds")
                if shock > 0 else Scenario(name="eba_no_shock", price_volatility=0.0))
    m = FinancialModel(
        balance_sheets="eba2018", brain="passive", scenario=scenario, deleveraging_rule=rule,
        leverage_min=0.03, leverage_buffer=0.04, leverage_target=0.05,
        price_impact=impact_per_5pct(impact), fire_sale_rounds=rounds, price_floor=1e-9,
        deposit_rate=0.0, asset_return=0.0, base_rate=0.0, rate_stress_spread=0.0,
        steps=1, collapse_threshold=1.0, agent_collect_every=0, rng=0)
    held = m.ledger.holdings.sum()
    m.step()
    return int(m.measures.n_defaults), float((held - m.ledger.holdings.sum()) / held)


def systemic_risk(defaults: int, n: int = 48) -> float:
    """Share of banks in default, 0 below 5% (the extent of a systemic event)."""
    share = defaults / n
    return share if share >= 0.05 else 0.0


def experiments() -> dict[str, list[tuple[float, int, float]]]:
    """Both rules over the shocks, and the threshold model over price impacts."""
    out = {key: [(float(s), *run(s, rule)) for s in SHOCKS] for key, rule in
           (("threshold", "threshold"), ("leverage_targeting", "leverage_targeting"))}
    out["price_impact_threshold"] = [(float(i), *run(0.2, "threshold", impact=i))
                                     for i in IMPACTS]
    return out


def figure(results: dict[str, list[tuple[float, int, float]]], path: str) -> None:
    from finsim_mesa.viz.plots import new_figure

    fig, axes = new_figure((10, 4), ncols=2)
    for key, label in (("threshold", "threshold model"),
                       ("leverage_targeting", "leverage targeting")):
        rows = results[key]
        x = [100 * s for s, _, _ in rows]
        axes[0].plot(x, [systemic_risk(d) for _, d, _ in rows], marker="o", ms=3, label=label)
        axes[1].plot(x, [100 * sold for _, _, sold in rows], marker="o", ms=3, label=label)
    axes[0].set_xlabel("initial shock to government bonds (%)")
    axes[0].set_ylabel("systemic risk (share of banks in default; 0 below 5%)")
    axes[1].set_xlabel("initial shock to government bonds (%)")
    axes[1].set_ylabel("tradable assets sold (%)")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("EBA 2018 sample, 48 banks: fire sales through overlapping portfolios "
                 "(price impact 1% per 5% sold)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figure", help="write the figure to this PNG file")
    args = ap.parse_args()
    t0 = time.perf_counter()
    results = experiments()
    wall = time.perf_counter() - t0
    ref = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else None
    same = True
    for key, rows in results.items():
        print(f"\n{key}: param, defaults, systemic risk, sold %"
              + ("   | reference defaults, sold %" if ref else ""))
        for i, (param, defaults, sold) in enumerate(rows):
            line = f"  {param:6.3f} {defaults:4d} {systemic_risk(defaults):6.3f} {100 * sold:7.2f}"
            if ref:
                r = ref[key][i]
                ok = r["total_defaults"] == defaults and abs(r["sold"] - sold) < 1e-9
                same &= ok
                line += f"   | {r['total_defaults']:4d} {100 * r['sold']:7.2f} {'' if ok else '<-'}"
            print(line)
    print(f"\n{sum(len(r) for r in results.values())} runs in {wall:.2f} s"
          + (f"; equal to the reference at every point: {same}" if ref else ""))
    if args.figure:
        figure(results, args.figure)
        print(f"figure written to {args.figure}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
