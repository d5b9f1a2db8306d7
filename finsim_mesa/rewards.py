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

from math import copysign
from typing import TYPE_CHECKING

import numpy as np

from finsim_mesa import initial_equity
from finsim_mesa.fastmath import ZERO, count_nonzero

if TYPE_CHECKING:
    from finsim_mesa.config import ModelConfig
    from finsim_mesa.ledger import Ledger
    from finsim_mesa.state import RewardBreakdown

__all__ = ["COMPONENTS", "update_rewards"]

COMPONENTS = ("profit", "liquidity", "default", "system_risk")
_INF = float("inf")


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
    # banks out since an earlier step (none while nobody has defaulted: status is
    # 0 or 1, so one count of it stands for the mask, its comparison and its count)
    out = count_nonzero(L.status)
    if out:
        was_out = L.defaulted & (L.default_step < t)
        out = count_nonzero(was_out)
    # the reward and its four components as the rows of one block: written in place
    # by the same operations, in the same order, and averaged by one reduction
    # (each row's pairwise sum, as its own would be: tests/test_small38_record.py)
    block = np.empty((5, L.n))  # (its rows by index: unpacking the array itself iterates it,
    # ~1 us more in a step at 30 banks)
    per_bank, profit, liquidity, default, sri = block[0], block[1], block[2], block[3], block[4]
    eq0 = L.equity0
    np.subtract(L.equity, r.equity_prev, out=profit)
    # / initial equity where positive (elsewhere / 1.0, which leaves each value as it is;
    # every E0 > 0, the usual case: the plain quotient, the masked one's values)
    f = initial_equity.figures(eq0)
    if f is not None and f.all_positive:
        np.divide(profit, eq0, out=profit)
    else:
        np.divide(profit, eq0, out=profit, where=eq0 > ZERO if f is None else f.positive)
    positive = total_assets > ZERO
    if count_nonzero(positive) == L.n:  # (the usual case: every quotient, no mask)
        np.divide(L.cash, total_assets, out=liquidity)
    else:
        liquidity.fill(0.0)
        np.divide(L.cash, total_assets, out=liquidity, where=positive)
    default[...] = L.default_step == t  # (bool to 1.0 / +0.0, as astype(float); 0.4 us
    # less than np.equal's out= of another dtype at 30 banks)
    sri.fill(systemic_risk_index)
    if out:  # (nobody out, the usual case: nothing to zero and every bank in the means)
        np.copyto(block[1:], ZERO, where=was_out)  # = block[1:, was_out] = 0.0, in one call
    r.components = {"profit": profit, "liquidity": liquidity, "default": default,
                    "system_risk": sri}
    # w·profit + μ·liquidity − α·default − λ·system_risk, left to right
    np.multiply(cfg.reward_profit_weight, profit, out=per_bank)
    per_bank += cfg.reward_liquidity_weight * liquidity
    alpha = cfg.reward_default_penalty
    # nobody defaulting now (the row all +0.0): α·0.0 is +0.0 for a finite α >= 0
    # of sign + (−0.0·0.0 is −0.0, and x − (−0.0) turns a −0.0 into +0.0), x − (+0.0) is x
    if not (0.0 <= alpha < _INF and copysign(1.0, alpha) > 0.0) or count_nonzero(default):
        per_bank -= alpha * default
    # λ·s is one product for every bank while nobody is out (the row is s throughout)
    per_bank -= cfg.reward_system_risk_weight * (sri if out else systemic_risk_index)
    r.per_bank = per_bank
    r.equity_prev = L.equity.copy()
    if out == L.n:  # nobody left in the game
        r.mean = r.profit = r.liquidity = r.default = r.system_risk = 0.0
        return
    # the banks still in (all: the same elements, in the same order), as C-ordered
    # rows (``compress``, not ``block[:, mask]``, whose rows are strided and summed
    # one by one, not pairwise): each row's sum is the one its own mean() takes
    live = block.compress(~was_out, axis=1) if out else block
    k = live.shape[1]  # (each sum / k in Python floats: the quotients NumPy's / k gives)
    a, b, c, d, e = np.add.reduce(live, axis=1).tolist()
    r.mean, r.profit, r.liquidity, r.default, r.system_risk = a / k, b / k, c / k, d / k, e / k
