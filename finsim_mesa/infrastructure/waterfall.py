"""A CCP's four-layer default waterfall (a pure function, tested on its own).

Money in currency units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["WATERFALL_LAYERS", "WaterfallResult", "default_waterfall"]

WATERFALL_LAYERS = ("defaulter_margin", "defaulter_fund", "ccp_capital", "mutualised")


@dataclass(frozen=True)
class WaterfallResult:
    """How a default loss was absorbed.

    Attributes:
        loss: the loss given to the waterfall (money, ≥ 0).
        layers: money absorbed by each layer, in order: the defaulter's margin,
            the defaulter's default-fund contribution, the CCP's own capital
            (skin in the game), the survivors' mutualised contributions.
        survivor_charges: shape (m,), what each surviving member's
            contribution absorbed (pro rata to contributions).
        uncovered: loss left after all four layers (money, ≥ 0), never dropped.
    """

    loss: float
    layers: dict[str, float]
    survivor_charges: np.ndarray
    uncovered: float

    @property
    def absorbed(self) -> float:
        """Total absorbed by the four layers."""
        return float(np.sum(list(self.layers.values())))


def default_waterfall(
    loss: float,
    defaulter_margin: float,
    defaulter_fund: float,
    ccp_capital: float,
    survivor_funds: np.ndarray,
) -> WaterfallResult:
    """Allocate a member-default ``loss`` through the four layers, in order.

    Each layer absorbs ``min(what is left, its size)``; the mutualised layer
    charges surviving members pro rata to their default-fund contributions.

    Args:
        loss: loss to cover (money, ≥ 0).
        defaulter_margin: margin posted by the defaulter (money, ≥ 0).
        defaulter_fund: the defaulter's default-fund contribution (money, ≥ 0).
        ccp_capital: the CCP's own capital committed (money, ≥ 0).
        survivor_funds: shape (m,), surviving members' contributions (money, ≥ 0).

    Raises:
        ValueError: negative or non-finite inputs.
    """
    funds = np.asarray(survivor_funds, dtype=float).reshape(-1)
    values = {"loss": loss, "defaulter_margin": defaulter_margin,
              "defaulter_fund": defaulter_fund, "ccp_capital": ccp_capital}
    for name, v in values.items():
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite amount >= 0, got {v!r}")
    if not np.all(np.isfinite(funds)) or (funds < 0).any():
        raise ValueError("survivor_funds must be finite amounts >= 0")
    left = float(loss)
    layers: dict[str, float] = {}
    for name, size in zip(WATERFALL_LAYERS[:3], (defaulter_margin, defaulter_fund, ccp_capital),
                          strict=True):
        take = min(left, float(size))
        layers[name] = take
        left -= take
    pool = float(funds.sum())
    take = min(left, pool)
    charges = funds * (take / pool) if pool > 0 else np.zeros_like(funds)
    layers["mutualised"] = take  # the charges are this amount split pro rata
    left -= take
    return WaterfallResult(float(loss), layers, charges, max(left, 0.0))
