"""Conditions: the distribution of model settings an episode is drawn from.

Training on one scenario teaches a stance; training on a *mixture* — scenario,
network size, topology and capital ratio drawn per episode — rewards reading
the state, because no single stance is best in calm markets and in a crisis.
Evaluation uses the same draws (from the test seed, so every brain meets the
same conditions) for its ``mixture`` condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from finsim_mesa.errors import ConfigError

__all__ = ["MIXTURE", "Conditions", "condition_params"]

SCENARIOS = ("normal", "liquidity_crisis", "asset_crash", "systemic")


@dataclass(frozen=True)
class Conditions:
    """Per-episode draws: a scenario (uniform), a bank count (uniform integer in
    ``n_banks``, inclusive), a topology (uniform) and a capital ratio (uniform in
    ``capital_ratio``). Fixed model parameters go in ``fixed``."""

    scenarios: Sequence[str] = SCENARIOS
    n_banks: tuple[int, int] = (30, 50)
    topologies: Sequence[str] = ("barabasi_albert", "erdos_renyi", "core_periphery")
    capital_ratio: tuple[float, float] = (0.10, 0.14)
    fixed: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lo, hi = self.n_banks
        if not (isinstance(lo, int) and isinstance(hi, int) and 2 <= lo <= hi):
            raise ConfigError(f"conditions n_banks {self.n_banks!r}: give (low, high) "
                              "integers with 2 <= low <= high")
        clo, chi = self.capital_ratio
        if not 0 < clo <= chi < 1:
            raise ConfigError(f"conditions capital_ratio {self.capital_ratio!r}: give (low, "
                              "high) with 0 < low <= high < 1")
        if not self.scenarios or not self.topologies:
            raise ConfigError("conditions need at least one scenario and one topology")

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        """Model parameters for one episode (``scenario``, ``n_banks``,
        ``topology``, ``capital_ratio`` and the fixed ones)."""
        lo, hi = self.n_banks
        clo, chi = self.capital_ratio
        return dict(self.fixed) | {
            "scenario": str(self.scenarios[int(rng.integers(len(self.scenarios)))]),
            "n_banks": int(rng.integers(lo, hi + 1)),
            "topology": str(self.topologies[int(rng.integers(len(self.topologies)))]),
            "capital_ratio": float(rng.uniform(clo, chi)),
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scenarios"], d["topologies"] = list(self.scenarios), list(self.topologies)
        d["n_banks"], d["capital_ratio"] = list(self.n_banks), list(self.capital_ratio)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Conditions:
        d = dict(d)
        for key in ("n_banks", "capital_ratio"):
            if key in d:
                d[key] = tuple(d[key])
        try:
            return cls(**d)
        except TypeError as err:
            raise ConfigError(f"conditions: {err}; accepted keys: scenarios, n_banks, "
                              "topologies, capital_ratio, fixed") from None


MIXTURE = Conditions()


def condition_params(conditions: Conditions, seed: int) -> dict[str, Any]:
    """The draw for test seed ``seed`` (its own stream, independent of the
    model's): every brain evaluated on ``seed`` meets the same condition."""
    return conditions.draw(np.random.default_rng([int(seed), 0xC0D1]))
