"""First run: a banking system under an asset crash, step by step.

    python examples/01_first_run.py
"""

from finsim_mesa import FinancialModel

model = FinancialModel(n_banks=30, scenario="asset_crash", brain="rule_based", rng=1)
model.run_for(60)

df = model.datacollector.get_model_vars_dataframe()
print(df[["price", "n_defaults", "mean_capital_ratio", "systemic_risk_index"]].iloc[::10])

survivors = [b for b in model.banks if not b.defaulted]
bank = max(survivors, key=lambda b: b.total_assets)
print(f"\nlargest surviving bank {bank.bank_id}:",
      {k: round(v, 2) for k, v in bank.balance_sheet().items()})
print("most systemic banks:", [b["bank"] for b in model.systemic_ranking(top=3)])
