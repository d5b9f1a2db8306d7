"""Evaluating a policy: 50 episodes at 30 banks with the shipped policy
(numpy inference, ``brain="mappo"``), against the same actor run through torch
with torch's default thread pool (how ``PolicyBrain`` acted before) and with
one torch thread. Also the cost of one ``act`` on 30 × 16.

    python benchmarks/bench_policy_eval.py [--episodes 50] [--steps 50]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _util import median_time

from finsim_mesa import FinancialModel
from finsim_mesa.agents.actor import MappoBrain


class TorchActorBrain:
    """The shipped actor evaluated by torch (the old PolicyBrain path)."""

    name = "torch-actor"

    def __init__(self, threads: int | None) -> None:
        import torch

        from finsim_mesa.learning.mappo import Actor

        shipped = MappoBrain()
        self.torch = torch
        if threads is not None:
            torch.set_num_threads(threads)
        w = shipped.weights
        hidden, d = w["body.0.weight"].shape
        self.actor = Actor(d, hidden, normalize_obs="obs_mean" in w).eval()
        state = {k: torch.as_tensor(v) for k, v in w.items()}
        if "obs_mean" in w:
            state["obs_count"] = torch.tensor(1.0, dtype=torch.float64)
        self.actor.load_state_dict(state)

    def act(self, obs: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            x = self.torch.as_tensor(np.clip(obs, -10, 10), dtype=self.torch.float32)
            return self.actor.distribution(x).mean.numpy().astype(float)


def episodes(brain_factory, n: int, steps: int, count: int) -> float:
    t0 = time.perf_counter()
    for seed in range(count):
        m = FinancialModel(n_banks=n, steps=steps, brain=brain_factory(), rng=10_000 + seed,
                           agent_collect_every=0)
        m.run_for(steps)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--banks", type=int, default=30)
    a = p.parse_args()
    load = os.getloadavg()[0]
    obs = FinancialModel(n_banks=a.banks, rng=0).observe()
    rows = [("numpy (brain='mappo')", MappoBrain)]
    try:
        import torch

        default_threads = torch.get_num_threads()
        rows += [(f"torch, {default_threads} threads (default)",
                  lambda: TorchActorBrain(default_threads)),
                 ("torch, 1 thread", lambda: TorchActorBrain(1))]
    except ImportError:
        pass
    print(f"load average {load:.2f}; {a.episodes} episodes x {a.steps} steps at {a.banks} "
          "banks")
    print(f"{'inference':<32} {'act (ms, median)':>17} {'episodes (s)':>13} {'ratio':>6}")
    base = None
    for name, factory in rows:
        brain = factory()
        act_ms = 1e3 * median_time(lambda b=brain: b.act(obs), repeats=200)
        secs = episodes(factory, a.banks, a.steps, a.episodes)
        base = base or secs
        print(f"{name:<32} {act_ms:>17.3f} {secs:>13.1f} {secs / base:>6.2f}")


if __name__ == "__main__":
    main()
