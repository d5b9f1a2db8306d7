"""The shock engine: turns a :class:`Scenario` into this step's shocks, checks a
user's shock (:func:`make_shock`) and applies any shock to the ledger and the
market (:func:`apply_shock`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from finsim_mesa.errors import ConfigError, ShockError
from finsim_mesa.fastmath import flatnonzero
from finsim_mesa.market import set_prices
from finsim_mesa.scenarios import Scenario

if TYPE_CHECKING:
    from finsim_mesa.ledger import Ledger
    from finsim_mesa.market import Market

__all__ = ["SHOCK_KINDS", "SHOCK_LIMITS", "Shock", "ShockEngine", "apply_shock", "make_shock"]

SHOCK_KINDS = {
    "price_crash": "asset prices (and fundamentals) fall by `magnitude` in [0, 1)",
    "funding_withdrawal": "depositors withdraw `magnitude` in [0, 1] of the banks' deposits; "
                          "due at the next clearing",
    "loss": "banks lose `magnitude` x their equity on illiquid assets",
    "default": "banks are put in default and resolved at the next clearing",
}
# kind -> (lowest, highest magnitude, highest included)
SHOCK_LIMITS: dict[str, tuple[float, float, bool]] = {
    "price_crash": (0.0, 1.0, False), "funding_withdrawal": (0.0, 1.0, True),
    "loss": (0.0, 10.0, True), "default": (-np.inf, np.inf, True)}


@dataclass
class Shock:
    """One shock: ``kind`` in :data:`SHOCK_KINDS`; ``banks`` indices (None = all)."""

    kind: str
    magnitude: float = 0.0
    banks: np.ndarray | None = None
    source: str = field(default="scenario")
    asset: str | None = None  # a price crash on one asset class (None: all)


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

    def __init__(self, scenario: Scenario, assets: Sequence[str] | None = None) -> None:
        if assets is not None and scenario.crash_asset not in (None, *assets):
            raise ConfigError(f"scenario {scenario.name!r}: crash_asset = "
                              f"{scenario.crash_asset!r} is not an asset class of this model "
                              f"({', '.join(assets)})")
        self.scenario = scenario

    def draw(self, step: int, active: np.ndarray, size: np.ndarray,
             rng: np.random.Generator) -> list[Shock]:
        """Shocks at ``step`` (1-based) for the ``active`` (bool, (n,)) banks."""
        sc = self.scenario
        shocks: list[Shock] = []
        alive = None  # the active banks' ids, found when a shock may need them
        if sc.default_step == step and sc.default_count:
            alive = flatnonzero(active)
            shocks.append(Shock("default", 1.0,
                                _pick(sc.default_target, sc.default_count, alive, size, rng)))
        if sc.crash_step == step:
            shocks.append(Shock("price_crash", sc.crash_magnitude, asset=sc.crash_asset))
        if sc.funding_active(step) and (alive := _ids(alive, active)).size:
            hit = alive[rng.random(alive.size) < sc.funding_stress_probability]
            if hit.size:
                shocks.append(Shock("funding_withdrawal", sc.funding_stress, hit))
        if (sc.shock_probability > 0 and rng.random() < sc.shock_probability
                and (alive := _ids(alive, active)).size):
            count = max(1, round(sc.shock_fraction * alive.size))
            shocks.append(Shock("loss", sc.shock_magnitude,
                                _pick(sc.shock_target, count, alive, size, rng)))
        return shocks


def _ids(alive: np.ndarray | None, active: np.ndarray) -> np.ndarray:
    """``alive`` if already found, else the ids of the ``active`` banks."""
    return flatnonzero(active) if alive is None else alive


def make_shock(kind: str, magnitude: Any = 0.0, banks: Sequence[int] | np.ndarray | None = None,
               n_banks: int = 0, asset: str | None = None,
               assets: Sequence[str] = ()) -> Shock:
    """A user's shock, checked: ``kind`` in :data:`SHOCK_KINDS`, ``magnitude`` in
    its range (:data:`SHOCK_LIMITS`), ``banks`` ids in ``0..n_banks-1`` (None =
    all active banks; required for ``loss`` and ``default``).

    Raises:
        ShockError: naming what is wrong.
    """
    if kind not in SHOCK_KINDS:
        raise ShockError(f"shock kind {kind!r} is unknown; choose one of "
                         f"{', '.join(SHOCK_KINDS)}")
    try:
        m = float(magnitude)
    except (TypeError, ValueError):
        raise ShockError(f"magnitude must be a number, got {magnitude!r}") from None
    lo, hi, closed = SHOCK_LIMITS[kind]
    if not np.isfinite(m) or m < lo or m > hi or (not closed and m >= hi):
        raise ShockError(f"{kind} magnitude {magnitude!r} out of range: {SHOCK_KINDS[kind]}")
    idx = None
    if banks is not None:
        idx = np.unique(np.asarray(banks).reshape(-1))
        if idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ShockError(f"banks must be a non-empty list of bank ids, got {banks!r}")
        if idx.min() < 0 or idx.max() >= n_banks:
            raise ShockError(f"bank ids must lie in 0..{n_banks - 1}, got {idx.tolist()}")
    elif kind in ("loss", "default"):
        raise ShockError(f"a {kind} shock needs banks=[...]")
    if asset is not None and (kind != "price_crash" or asset not in assets):
        raise ShockError(f"asset = {asset!r}: a price_crash can hit one of the asset classes "
                         f"{', '.join(assets)} (or all, with no asset)")
    return Shock(kind, m, idx, source="user", asset=asset)


def apply_shock(shock: Shock, L: Ledger, market: Market, withdrawals: np.ndarray, t: int
                ) -> dict[str, Any]:
    """Apply ``shock`` to the active banks it names; ``withdrawals`` (shape (n,)) is
    where a funding run's withdrawals wait for the next clearing. Returns the
    record for the shock log."""
    banks = flatnonzero(L.active) if shock.banks is None else shock.banks
    banks = banks[L.active[banks]]
    if shock.kind == "price_crash":
        which = None if shock.asset is None else [market.names.index(shock.asset)]
        set_prices(L, market, market.crash_prices(shock.magnitude, which))
    elif shock.kind == "funding_withdrawal":
        withdrawals[banks] = np.minimum(withdrawals[banks] + shock.magnitude * L.deposits[banks],
                                        L.deposits[banks])
    elif shock.kind == "loss":
        L.write_down_assets(banks, shock.magnitude * np.maximum(L.equity[banks], 0.0))
    elif shock.kind == "default":
        L.mark_default(banks, max(t, 0))
    return {"step": t, "kind": shock.kind, "magnitude": shock.magnitude,
            "banks": banks.tolist(), "source": shock.source, "asset": shock.asset}
