"""The fire-sale spiral of Cifuentes, Ferrucci & Shin (2005), with one, two and
three asset classes.

    python replications/fire_sale_spiral.py [--figure docs/figures/fire_sale_spiral.png]

Set-up of the paper: banks hold a marketable asset whose price falls with the
quantity sold (exponential inverse demand); a bank below its capital
requirement sells to get back above it; the sales lower the price, which
pushes more banks below the requirement — a spiral that, past a threshold,
takes the whole system down. Here: 100 banks of log-normal sizes, no
interbank network, 5% cash, half of the other assets marketable, capital 10%
and a requirement of 6% of risk-weighted assets (``deleveraging_rule =
"capital"``); at step 1 the first asset class loses a share ``s`` of its price;
then up to 50 rounds of deleveraging in the step. Sales clear at the mid price
of the round that carries their impact.

With one class every bank holds the same mix, so every bank is hit alike: the
spiral is all or nothing. With two or three classes and portfolios drawn per
bank (``portfolio_concentration=0.5``: banks specialise), the banks heavy in
the shocked class fail, their sales spread to the other classes through
prices, and the cascade can stop part of the way: partial cascades, as real
stress tests see. Differences from the paper: its banks are linked by
interbank claims too (here none, to isolate the price channel); its impact
function is the same exponential.
"""

from __future__ import annotations

import argparse
import time

import networkx as nx
import numpy as np

from finsim_mesa import FinancialModel
from finsim_mesa.scenarios import Scenario

SHOCKS = np.round(np.linspace(0.02, 0.5, 25), 4)
IMPACTS = (0.1, 0.2, 0.5, 1.0)
N = 100


def run(shock: float, impact: float, classes: int, seed: int = 1) -> int:
    """Banks in default after the first class loses ``shock`` of its price."""
    scenario = Scenario(name="spiral", price_volatility=0.0, crash_step=1,
                        crash_magnitude=float(shock), crash_asset="asset_0")
    m = FinancialModel(
        graph=nx.empty_graph(N), interbank_share=0.0, liquidity_share=0.05,
        marketable_share=0.5, capital_ratio=0.1, capital_requirement=0.06, size_dispersion=1.0,
        n_assets=classes, portfolio_concentration=0.5 if classes > 1 else None,
        price_impact=impact, fire_sale_rounds=50, price_floor=0.01, brain="passive",
        scenario=scenario, deposit_rate=0.0, asset_return=0.0, base_rate=0.0,
        rate_stress_spread=0.0, steps=1, collapse_threshold=1.0, agent_collect_every=0,
        rng=seed)
    m.step()
    return m.measures.n_defaults


def grid(classes: int, shocks=SHOCKS, impacts=IMPACTS) -> np.ndarray:
    """Defaults, shape (len(impacts), len(shocks))."""
    return np.array([[run(s, i, classes) for s in shocks] for i in impacts])


def partial_share(defaults: np.ndarray, n: int = N) -> float:
    """Share of outcomes that are neither (almost) none nor (almost) all banks."""
    return float(np.mean((defaults > 0.05 * n) & (defaults < 0.95 * n)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figure", help="write the figure to this PNG file")
    args = ap.parse_args()
    t0 = time.perf_counter()
    results = {k: grid(k) for k in (1, 2, 3)}
    print(f"defaults of {N} banks vs the shock to class 0 ({time.perf_counter() - t0:.1f} s)")
    print("shock: " + " ".join(f"{s:5.2f}" for s in SHOCKS))
    for k, g in results.items():
        for impact, row in zip(IMPACTS, g, strict=True):
            print(f"{k} class{'es' if k > 1 else '  '}, impact {impact:3.1f}: "
                  + " ".join(f"{d:5d}" for d in row))
        print(f"  partial cascades (5%-95% of banks): {partial_share(g):.0%} of the grid")
    if args.figure:
        from finsim_mesa.viz.plots import new_figure

        fig, axes = new_figure((12, 3.6), ncols=3)
        for ax, (k, g) in zip(axes, results.items(), strict=True):
            for impact, row in zip(IMPACTS, g, strict=True):
                ax.plot(100 * SHOCKS, row, marker="o", ms=2.5, label=f"impact {impact}")
            ax.set_title(f"{k} asset class{'es' if k > 1 else ''}"
                         + (" (specialised portfolios)" if k > 1 else ""), fontsize=10)
            ax.set_xlabel("shock to class 0 (% of its price)")
            ax.set_ylim(-3, N + 3)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel(f"banks in default (of {N})")
        axes[0].legend(fontsize=7)
        fig.suptitle("Fire-sale spiral (Cifuentes, Ferrucci & Shin 2005): all or nothing "
                     "with one asset, partial cascades with overlapping portfolios",
                     fontsize=10)
        fig.tight_layout()
        fig.savefig(args.figure, dpi=110)
        print(f"figure written to {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
