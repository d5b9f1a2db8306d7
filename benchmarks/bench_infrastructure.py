"""Cost of the market-infrastructure layer: ``step()`` with and without
exchanges and CCPs, same banks, brains and seed.

    python benchmarks/bench_infrastructure.py [--banks 1000] [--steps 40]

Target: the layer costs at most 2x the step time of the same model without it.
"""

from __future__ import annotations

import argparse

from _util import median_step_time

from finsim_mesa import FinancialModel


def per_step(steps: int, **kw: object) -> tuple[float, FinancialModel]:
    m = FinancialModel(agent_collect_every=0, steps=10**9, rng=1, **kw)
    return median_step_time(m, steps), m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--banks", type=int, nargs="+", default=[1000])
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    print(f"{'banks':>6} {'scenario':>17} {'off ms':>8} {'2 ex + 1 CCP ms':>16} {'ratio':>6} "
          f"{'4 ex + 2 CCP ms':>16} {'ratio':>6} {'audit rows/step':>15}")
    for n in args.banks:
        for scenario in ("normal", "liquidity_crisis"):
            off, _ = per_step(args.steps, n_banks=n, scenario=scenario)
            on, m = per_step(args.steps, n_banks=n, scenario=scenario, n_exchanges=2, n_ccps=1)
            on2, _ = per_step(args.steps, n_banks=n, scenario=scenario, n_exchanges=4, n_ccps=2)
            rows = m.router.transactions() / max(m.t, 1)
            print(f"{n:>6} {scenario:>17} {off * 1e3:>8.2f} {on * 1e3:>16.2f} {on / off:>5.2f}x "
                  f"{on2 * 1e3:>16.2f} {on2 / off:>5.2f}x {rows:>15.0f}")


if __name__ == "__main__":
    main()
