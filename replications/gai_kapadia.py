"""The contagion window of Gai & Kapadia (2010), "Contagion in financial networks".

    python replications/gai_kapadia.py [--trials 100] [--figure docs/figures/gai_kapadia.png]

Set-up of the paper: 1,000 banks on a directed Erdős–Rényi network (mean
in- and out-degree z); interbank assets are 20% of each bank's assets, split
evenly over its borrowers; capital is 4% of assets; one bank chosen at random
fails; a failed bank's creditors recover nothing; no liquidity effects, no fire
sales. Reported over many networks: the probability of contagion (more than 5%
of banks fail) and its extent (the share failing when it happens), against z.

Mapped to the model: ``n_banks=1000, topology="erdos_renyi", directed=True,
mean_degree=z``, ``interbank_share=0.2``, equal sizes (``size_dispersion=0``),
``capital_ratio=0.04`` with ``interbank_risk_weight=1`` and no cash (so
capital is 4% of total assets), zero recovery (``default_cost_alpha =
default_cost_beta = 0``: a failed bank pays nothing), a scenario forcing one
random default at step 1; no fire sales (``price_impact=0``, no liquidation
discount, no capital requirement) and all external assets marketable
(``marketable_share=1``) so that a bank whose loan to a failed bank is called
can always pay — the paper has no liquidity channel. Differences: the model's
balance sheets keep at least 10% deposit funding (a heavily borrowing bank gets
more external assets), and a loan comes due at its maturity (rolled over here,
passive brains); neither changes who fails. One step holds the whole cascade
(defaults are resolved round after round within the clearing).

The paper's values (Figure 3(a), probability of contagion at z = 1..8, as read
in the project's issue 13): 0.09, 0.71, 0.77, 0.68, 0.51, 0.18, 0.02, 0.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from finsim_mesa import FinancialModel
from finsim_mesa.scenarios import Scenario

PAPER = {1: 0.09, 2: 0.71, 3: 0.77, 4: 0.68, 5: 0.51, 6: 0.18, 7: 0.02, 8: 0.0}
ONE_FAILURE = Scenario(name="gai_kapadia_one_failure", price_volatility=0.0, default_step=1,
                       default_count=1, default_target="random")


def trial(z: float, seed: int, n: int = 1000) -> int:
    """Banks failed after one random failure on a fresh network (seeded)."""
    m = FinancialModel(
        n_banks=n, topology="erdos_renyi", directed=True, mean_degree=z,
        interbank_share=0.2, capital_ratio=0.04, capital_requirement=0.0,
        forced_deleveraging=False, interbank_risk_weight=1.0, liquidity_share=0.0,
        marketable_share=1.0, price_impact=0.0, liquidation_discount=0.0, sale_discount=0.0,
        size_dispersion=0.0, default_cost_alpha=0.0, default_cost_beta=0.0, brain="passive",
        scenario=ONE_FAILURE, deposit_rate=0.0, asset_return=0.0, base_rate=0.0,
        rate_stress_spread=0.0, steps=1, collapse_threshold=1.0, agent_collect_every=0,
        rng=seed)
    m.step()
    return m.measures.n_defaults


def window(degrees: list[float], trials: int, n: int = 1000, first_seed: int = 0
           ) -> dict[float, tuple[float, float]]:
    """z -> (probability of contagion, mean extent when it happens)."""
    out = {}
    for z in degrees:
        failed = np.array([trial(z, first_seed + 10_000 * int(z * 10) + s, n)
                           for s in range(trials)])
        big = failed > 0.05 * n
        out[z] = (float(big.mean()), float(failed[big].mean() / n) if big.any() else 0.0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--figure", help="write the figure to this PNG file")
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = window(list(range(1, 11)), args.trials)
    print(f"Gai-Kapadia window, 1,000 banks, {args.trials} networks per degree "
          f"({time.perf_counter() - t0:.0f} s)")
    print(" z   P(contagion)  95% (binomial)   paper   extent")
    for z, (p, extent) in res.items():
        half = 1.96 * np.sqrt(p * (1 - p) / args.trials)
        paper = f"{PAPER[z]:.2f}" if z in PAPER else "  - "
        print(f"{z:2d}   {p:10.2f}   [{max(p - half, 0):.2f}, {min(p + half, 1):.2f}]   "
              f"{paper}   {extent:.3f}")
    if args.figure:
        from finsim_mesa.viz.plots import new_figure

        fig, ax = new_figure((6.5, 4))
        zs = list(res)
        ax.plot(zs, [res[z][0] for z in zs], "o-", label="finsim-mesa: P(> 5% fail)")
        ax.plot(zs, [res[z][1] for z in zs], "s--", label="finsim-mesa: extent")
        ax.plot(list(PAPER), list(PAPER.values()), "kx", ms=8,
                label="Gai & Kapadia (2010): P(contagion)")
        ax.set_xlabel("mean degree z (directed: borrowers per bank)")
        ax.set_ylabel("probability / share of banks")
        ax.set_title(f"Contagion window, 1,000 banks, {args.trials} networks per degree",
                     fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.figure, dpi=110)
        print(f"figure written to {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
