"""Asset classes: what banks hold besides cash and loans, and how it is sold.

A model holds ``k`` classes of marketable securities: ``holdings[n, k]`` units at
``prices[k]``. Each class has a name, an initial price, its own price impact
and market depth, a weight in the banks' portfolios and a liquidity rank (the
order of sale under ``sale_order = "liquidity"``). Overlapping portfolios —
banks holding the same classes — carry fire-sale contagion from one bank to
another through prices (Cont & Schaanning 2017).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AssetClass", "class_names", "depths", "impacts", "weights"]


class AssetClass(BaseModel):
    """One class of marketable securities.

    Attributes:
        name: identifier (letters, digits, underscores), e.g. ``government_bonds``.
        price: initial price per unit (money).
        impact: price impact of this class: ``p ← p·exp(−impact·q/Q)`` for ``q``
            units sold of ``Q``; None: the model's ``price_impact``.
        depth: market depth ``Q`` (units); None: the units all banks hold at the start.
        weight: share of each bank's securities held in this class (normalised
            over the classes; the generated balance sheets use it).
        liquidity_rank: order of sale when ``sale_order = "liquidity"`` (0 first).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=40)
    price: float = Field(1.0, gt=0)
    impact: float | None = Field(None, ge=0)
    depth: float | None = Field(None, gt=0)
    weight: float = Field(1.0, ge=0)
    liquidity_rank: int = Field(0, ge=0)


def class_names(classes: list[AssetClass] | None, k: int) -> list[str]:
    """Names of the ``k`` classes (``asset_0``, ... when none are given)."""
    return [c.name for c in classes] if classes else [f"asset_{i}" for i in range(k)]


def impacts(classes: list[AssetClass] | None, k: int, default: float) -> np.ndarray:
    """shape (k,): each class's price impact."""
    if not classes:
        return np.full(k, default)
    return np.array([default if c.impact is None else c.impact for c in classes])


def depths(classes: list[AssetClass] | None, held: np.ndarray) -> np.ndarray:
    """shape (k,): each class's market depth in units (given, or the units held)."""
    held = np.maximum(np.asarray(held, dtype=float), 1e-12)
    if not classes:
        return held
    return np.array([h if c.depth is None else c.depth for c, h in zip(classes, held,
                                                                         strict=True)])


def weights(classes: list[AssetClass] | None, k: int) -> np.ndarray | None:
    """shape (k,): portfolio weights summing to 1, or None for equal weights."""
    if not classes:
        return None
    w = np.array([c.weight for c in classes], dtype=float)
    if np.all(w == w[0]):
        return None
    return w / w.sum()
