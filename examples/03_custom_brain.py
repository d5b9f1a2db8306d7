"""Write your own brain in a few lines and race it against the baselines.

    python examples/03_custom_brain.py
"""

import numpy as np

from finsim_mesa import Brain, FinancialModel
from finsim_mesa.observation import OBS


class Cautious(Brain):
    """Lends while calm and hoards as stress rises; sells when its capital ratio
    falls below 8%."""

    name = "cautious"

    def act(self, obs: np.ndarray) -> np.ndarray:
        stress = obs[:, OBS["market_stress"]]
        a = np.zeros((len(obs), 4))
        a[:, 0] = 1.0 - stress          # lend
        a[:, 1] = stress                # hoard
        a[:, 2] = (obs[:, OBS["capital_ratio"]] < 0.08).astype(float)  # sell
        return a


for brain in (Cautious(), "rule_based", "greedy", "passive"):
    rewards, defaults = [], []
    for seed in range(3):
        m = FinancialModel(n_banks=30, scenario="liquidity_crisis", brain=brain, rng=seed)
        m.run_for(100)
        df = m.datacollector.get_model_vars_dataframe()
        rewards.append(df["mean_reward"].sum())
        defaults.append(m.measures.n_defaults)
    name = brain if isinstance(brain, str) else brain.name
    print(f"{name:>12}: mean episode reward {np.mean(rewards):7.3f}, "
          f"mean defaults {np.mean(defaults):4.1f}")
