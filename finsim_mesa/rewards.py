"""Each bank's reward for a step (the record stage).

``R_i = w·profit_i + μ·liquidity_i − α·default_i − λ·system_risk`` with

* profit: change of equity since the last step / initial equity;
* liquidity: cash / total assets;
* default: 1 in the step the bank defaults, else 0;
* system_risk: the systemic-risk index (the same for every bank: the price of
  instability each bank shares);

weights ``reward_profit_weight`` (w), ``reward_liquidity_weight`` (μ),
``reward_default_penalty`` (α), ``reward_system_risk_weight`` (λ). A bank that
defaulted in an earlier step gets 0 and is left out of the means.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from finsim_mesa.fastmath import mean

if TYPE_CHECKING:
    from finsim_mesa.config import ModelConfig
    from finsim_mesa.ledger import Ledger
    from finsim_mesa.state import RewardBreakdown

__all__ = ["COMPONENTS", "update_rewards"]

COMPONENTS = ("profit", "liquidity", "default", "system_risk")


def update_rewards(r: RewardBreakdown, L: Ledger, total_assets: np.ndarray,
                   systemic_risk_index: float, cfg: ModelConfig, t: int) -> None:
    """Fill ``r`` with step ``t``'s rewards and move its profit reference on.

    Args:
        r: the reward state (``r.equity_prev`` is the last step's equity).
        L: the ledger after the step.
        total_assets: shape (n,), total assets now.
        systemic_risk_index: the system's index now, in [0, 1].
        cfg: the weights.
        t: this step.
    """
    was_out = L.defaulted & (L.default_step < t)
    profit = (L.equity - r.equity_prev) / np.where(L.equity0 > 0, L.equity0, 1.0)
    liquidity = np.divide(L.cash, total_assets, out=np.zeros(L.n), where=total_assets > 0)
    default = (L.default_step == t).astype(float)
    sri = np.full(L.n, systemic_risk_index)
    comps = {"profit": profit, "liquidity": liquidity, "default": default, "system_risk": sri}
    out = np.count_nonzero(was_out)
    if out:  # (nobody out, the usual case: nothing to zero and every bank in the means)
        for v in comps.values():
            v[was_out] = 0.0
    r.components = comps
    r.per_bank = (cfg.reward_profit_weight * profit
                  + cfg.reward_liquidity_weight * liquidity
                  - cfg.reward_default_penalty * default
                  - cfg.reward_system_risk_weight * sri)
    r.equity_prev = L.equity.copy()
    live = ~was_out if out else slice(None)  # all: the same elements, in the same order
    any_live = out < L.n
    r.mean = mean(r.per_bank[live]) if any_live else 0.0
    for name, v in comps.items():
        setattr(r, name, mean(v[live]) if any_live else 0.0)
