"""Contagion: the most borrowed-from bank fails; with half the banks' illiquid
assets marketable and a deep price impact, compare the system with and without
forced deleveraging (passive banks: pure mechanics). Fire sales turn a couple
of defaults into a systemic crisis.

    python examples/02_contagion_cascade.py
"""

import numpy as np

from finsim_mesa import FinancialModel

for fire_sales in (False, True):
    model = FinancialModel(n_banks=50, brain="passive", scenario="normal",
                           forced_deleveraging=fire_sales, price_impact=1.0,
                           marketable_share=0.5, rng=3)
    owed_to_others = np.asarray(model.ledger.exposure_matrix().sum(axis=0)).ravel()
    victim = int(owed_to_others.argmax())
    model.apply_shock("loss", 2.0, banks=[victim])      # it loses twice its equity
    model.apply_shock("price_crash", 0.03)              # and markets wobble
    model.run_for(10)
    print(f"fire sales {'on ' if fire_sales else 'off'}: bank {victim} failed -> "
          f"{model.measures.n_defaults} defaults, price {model.measures.asset_price:.3f}, "
          f"stress index {model.measures.stress_index:.3f}")
