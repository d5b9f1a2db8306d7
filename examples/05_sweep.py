"""A parameter sweep with Mesa's own batch_run: default rate by scenario and
capital ratio, 3 seeds each.

    python examples/05_sweep.py
"""

import inspect

import mesa
import pandas as pd

from finsim_mesa import FinancialModel

params = {"scenario": ["normal", "asset_crash", "systemic"], "capital_ratio": [0.08, 0.12],
          "n_banks": [30], "agent_collect_every": [0]}
seeds = [1, 2, 3]
if "rng" in inspect.signature(mesa.batch_run).parameters:   # Mesa >= 3.4
    extra = {"rng": seeds}
else:                                                         # Mesa 3.3
    params["rng"], extra = seeds, {}
runs = mesa.batch_run(FinancialModel, parameters=params, max_steps=100,
                      number_processes=1, display_progress=False, **extra)
df = pd.DataFrame(runs)
final = df.loc[df.groupby("RunId")["Step"].idxmax()]
print(final.pivot_table(index="scenario", columns="capital_ratio", values="default_rate"))
