"""``FinancialModel.step()`` throughput with rule-based brains and model-level
data collection, beside a reference model whose observe and decide stages loop
over the agents in Python (one brain call per bank, as a naive Mesa model would).

    python benchmarks/bench_step.py [--sizes 100 1000 10000] [--steps 40]

Prints the median time per step and steps per second, and the ratio.
"""

from __future__ import annotations

import argparse

import numpy as np
from _util import median_step_time

from finsim_mesa import FinancialModel
from finsim_mesa.agents.brains import check_actions


class LoopModel(FinancialModel):
    """Same model; observe and decide done agent by agent in Python."""

    def observe(self) -> np.ndarray:
        full = super().observe()  # the values are identical; rebuild them row by row
        rows = [np.array([full[a.bank_id, k] for k in range(full.shape[1])])
                for a in self.banks]
        return np.vstack(rows)

    def decide(self, observations: np.ndarray) -> np.ndarray:
        actions = np.zeros((self.n_banks, 4))
        for a in self.banks:
            if not a.defaulted:
                brain = self.brains.per_bank[a.bank_id]
                actions[a.bank_id] = check_actions(brain, brain.act(observations[a.bank_id:
                                                                                 a.bank_id + 1]),
                                                   1)[0]
        self.decisions.actions = actions
        return actions


def per_step(cls: type[FinancialModel], n: int, steps: int, collect: int) -> float:
    m = cls(n_banks=n, brain="rule_based", agent_collect_every=collect, steps=10**9, rng=1)
    return median_step_time(m, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10_000])
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    print(f"{'banks':>7} {'step ms':>8} {'steps/s':>8} {'loop ms':>8} {'loop steps/s':>12} "
          f"{'speed-up':>8} {'+agent data ms':>14}")
    for n in args.sizes:
        steps = max(5, args.steps if n <= 1000 else args.steps // 4)
        t = per_step(FinancialModel, n, steps, collect=0)
        t_loop = per_step(LoopModel, n, max(3, steps // 4), collect=0)
        t_agents = per_step(FinancialModel, n, steps, collect=1)
        print(f"{n:>7} {t * 1e3:>8.2f} {1 / t:>8.1f} {t_loop * 1e3:>8.2f} {1 / t_loop:>12.1f} "
              f"{t_loop / t:>7.1f}x {t_agents * 1e3:>14.2f}")


if __name__ == "__main__":
    main()
