"""The shock engine: turns a :class:`Scenario` into this step's shocks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from finsim_mesa.scenarios import Scenario

__all__ = ["SHOCK_KINDS", "Shock", "ShockEngine"]

SHOCK_KINDS = {
    "price_crash": "asset prices (and fundamentals) fall by `magnitude` in [0, 1)",
    "funding_withdrawal": "depositors withdraw `magnitude` in [0, 1] of the banks' deposits; "
                          "due at the next clearing",
    "loss": "banks lose `magnitude` x their equity on illiquid assets",
    "default": "banks are put in default and resolved at the next clearing",
}


@dataclass
class Shock:
    """One shock: ``kind`` in :data:`SHOCK_KINDS`; ``banks`` indices (None = all)."""

    kind: str
    magnitude: float = 0.0
    banks: np.ndarray | None = None
    source: str = field(default="scenario")


def _pick(target: str, count: int, candidates: np.ndarray, size: np.ndarray,
          rng: np.random.Generator) -> np.ndarray:
    count = min(count, candidates.size)
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    if target == "random":
        return np.sort(rng.choice(candidates, size=count, replace=False))
    order = np.argsort(size[candidates], kind="stable")
    if target == "largest":
        order = order[::-1]
    return np.sort(candidates[order[:count]])


class ShockEngine:
    """Draws each step's shocks for a scenario from the model's generator."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario

    def draw(self, step: int, active: np.ndarray, size: np.ndarray,
             rng: np.random.Generator) -> list[Shock]:
        """Shocks at ``step`` (1-based) for the ``active`` (bool, (n,)) banks."""
        sc = self.scenario
        shocks: list[Shock] = []
        alive = np.flatnonzero(active)
        if sc.default_step == step and sc.default_count:
            shocks.append(Shock("default", 1.0,
                                _pick(sc.default_target, sc.default_count, alive, size, rng)))
        if sc.crash_step == step:
            shocks.append(Shock("price_crash", sc.crash_magnitude))
        if sc.funding_active(step) and alive.size:
            hit = alive[rng.random(alive.size) < sc.funding_stress_probability]
            if hit.size:
                shocks.append(Shock("funding_withdrawal", sc.funding_stress, hit))
        if sc.shock_probability > 0 and rng.random() < sc.shock_probability and alive.size:
            count = max(1, round(sc.shock_fraction * alive.size))
            shocks.append(Shock("loss", sc.shock_magnitude,
                                _pick(sc.shock_target, count, alive, size, rng)))
        return shocks
