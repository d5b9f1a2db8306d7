"""The configuration as commented YAML (what ``finsim config`` writes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from finsim_mesa.config import ModelConfig

__all__ = ["SECTIONS", "config_to_yaml"]

# Field name -> section shown in the YAML file written by `finsim config`.
SECTIONS: dict[str, list[str]] = {
    "Network": [
        "n_banks", "topology", "edges_per_node", "core_fraction", "core_density", "mean_degree",
        "directed",
    ],
    "Balance sheets": [
        "mean_total_assets", "size_dispersion", "capital_ratio", "capital_requirement",
        "interbank_share", "liquidity_share", "marketable_share", "interbank_risk_weight",
        "loan_maturity", "funding_share", "balance_sheets",
    ],
    "Portfolios (asset classes) and deleveraging": [
        "n_assets", "asset_classes", "portfolio_concentration", "deleveraging_rule",
        "leverage_min", "leverage_buffer", "leverage_target", "sale_order",
        "repay_funding_first",
    ],
    "Market and rates": [
        "asset_return", "deposit_rate", "base_rate", "rate_stress_spread", "price_impact",
        "price_floor", "mean_reversion", "sale_discount", "liquidation_discount",
        "forced_deleveraging", "deleveraging_buffer", "fire_sale_rounds",
    ],
    "Clearing (Rogers-Veraart default costs; 1 = plain Eisenberg-Noe)": [
        "default_cost_alpha", "default_cost_beta",
    ],
    "Actions (what an action of 1 means in money)": [
        "max_sell_fraction", "max_lend_fraction", "max_borrow_fraction", "reserve_ratio",
        "large_exposure_limit",
    ],
    "Scenario and episode": ["scenario", "brain", "steps", "collapse_threshold"],
    "Reward R = w_profit*profit + mu*liquidity - alpha*default - lambda*system_risk": [
        "reward_profit_weight", "reward_liquidity_weight", "reward_default_penalty",
        "reward_system_risk_weight",
    ],
    "Market infrastructure (exchanges and central counterparties; 0 = off)": [
        "n_exchanges", "n_ccps", "venue_rule", "exchange_capacity", "congestion_threshold",
        "exchange_base_fee", "exchange_fee_slope", "max_order_wait", "ccp_clearing_share",
        "initial_margin_rate", "default_fund_rate", "ccp_capital_share",
    ],
    "Data collection": ["agent_collect_every", "ranking_every"],
}

def config_to_yaml(cfg: ModelConfig) -> str:
    """Render ``cfg`` as commented YAML (each key preceded by its description)."""
    out = ["# finsim-mesa model configuration. Rates are per step, money in currency units.",
           "# Use with: finsim simulate --config FILE", ""]
    seen: set[str] = set()
    values = cfg.model_dump()
    for title, names in SECTIONS.items():
        out.append(f"# --- {title}")
        for name in names:
            field = type(cfg).model_fields[name]
            out.append(f"# {field.description}")
            out.append(yaml.safe_dump({name: values[name]}, sort_keys=False).strip())
            seen.add(name)
        out.append("")
    missing = set(values) - seen
    if missing:  # pragma: no cover - guarded by a test
        raise AssertionError(f"config fields without a YAML section: {sorted(missing)}")
    return "\n".join(out)
