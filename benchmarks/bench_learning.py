"""MAPPO training throughput: agent-steps per second for collection and for the
update, at 30 and 100 banks, with the attention-pooled critic and with plain
concatenation.

    python benchmarks/bench_learning.py [--banks 30 100] [--episodes 8] [--steps 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from finsim_mesa.learning.mappo import GlobalStateConfig, MAPPOConfig
from finsim_mesa.learning.trainer import Trainer, TrainerConfig, gae


def measure(n: int, episodes: int, steps: int, attention: bool) -> tuple[float, float, int]:
    cfg = MAPPOConfig(global_state=GlobalStateConfig(use_attention=attention))
    tr = Trainer({"n_banks": n, "steps": steps}, TrainerConfig(episodes=episodes, seed=0), cfg)
    t0 = time.perf_counter()
    eps = [tr.collect_episode() for _ in range(episodes)]
    collect = time.perf_counter() - t0
    for ep in eps:
        v = tr.agent.values(ep["obs"], ep["alive"])
        ep["advantages"], ep["returns"] = gae(ep["rewards"], v, ep["dones"], np.zeros(n),
                                              0.99, 0.95)
    batch = {k: np.concatenate([e[k] for e in eps]) for k in eps[0]}
    t0 = time.perf_counter()
    tr.agent.update(batch)
    update = time.perf_counter() - t0
    agent_steps = int(batch["alive"].size)
    params = sum(p.numel() for p in tr.agent.critic.parameters())
    return agent_steps / collect, agent_steps / update, params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--banks", type=int, nargs="+", default=[30, 100])
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    print(f"{'banks':>6} {'critic':>10} {'collect agent-steps/s':>22} "
          f"{'update agent-steps/s':>21} {'critic params':>14}")
    for n in args.banks:
        for attention in (True, False):
            c, u, p = measure(n, args.episodes, args.steps, attention)
            print(f"{n:>6} {'attention' if attention else 'concat':>10} {c:>22,.0f} "
                  f"{u:>21,.0f} {p:>14,}")


if __name__ == "__main__":
    main()
