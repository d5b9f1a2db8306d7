"""Reference tables of the documentation, generated from the code so that they
cannot drift: parameters (``ModelConfig``), scenarios and their timelines,
brains, observations and actions, shock kinds, reporters, the systemic-risk
weights, the command line (``argparse``) and the REST API (OpenAPI).

Each ``table_*`` function returns Markdown; ``docs/hooks/finsim_docs.py`` puts it
where a page says ``<!-- finsim: NAME -->``. A parameter without a unit, a
reporter without a meaning or a scenario field the timeline does not know is a
:class:`DocsError`, so the build fails instead of publishing a gap.
"""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from typing import Any

from interface_tables import openapi_schema, table_cli, table_rest_api
from md_tables import DocsError
from md_tables import num as _num
from md_tables import table as _table

__all__ = ["TABLES", "DocsError", "openapi_schema", "table_rest_api", "timeline", "unit_of"]

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------- parameters
# Units of the parameters whose name and description do not say it by the rules
# of :func:`unit_of`. A new parameter that no rule covers stops the build.
UNITS: dict[str, str] = {
    "n_banks": "banks",
    "edges_per_node": "links",
    "mean_degree": "links per bank",
    "core_fraction": "share of banks",
    "core_density": "probability",
    "mean_total_assets": "money",
    "size_dispersion": "σ of log size",
    "n_assets": "classes",
    "portfolio_concentration": "Dirichlet concentration",
    "price_impact": "per share of the market sold",
    "price_floor": "× initial price",
    "mean_reversion": "share of the log gap per step",
    "deleveraging_buffer": "× requirement",
    "fire_sale_rounds": "rounds per step",
    "interbank_risk_weight": "risk weight",
    "default_cost_alpha": "share (0–1)",
    "default_cost_beta": "share (0–1)",
    "rate_stress_spread": "per step",
    "exchange_base_fee": "share of the trade's value",
    "large_exposure_limit": "× lender's equity",
    "collapse_threshold": "share of banks",
    "n_exchanges": "exchanges",
    "n_ccps": "CCPs",
    "exchange_capacity": "share of members' initial assets per step",
    "congestion_threshold": "demand / capacity",
    "exchange_fee_slope": "per unit of utilisation",
    "ccp_capital_share": "× default fund",
    "loan_maturity": "steps",
    "steps": "steps",
    "max_order_wait": "steps",
    "agent_collect_every": "steps",
    "ranking_every": "steps",
}


def unit_of(name: str, field: Any) -> str:
    """The unit of a ``ModelConfig`` field, from :data:`UNITS` or by rule."""
    if name in UNITS:
        return UNITS[name]
    ann = field.annotation
    desc = (field.description or "").lower()
    if ann is bool:
        return "on / off"
    if typing.get_origin(ann) is typing.Literal or name in ("topology", "scenario", "brain",
                                                           "balance_sheets", "asset_classes"):
        return "—"
    if name.startswith("reward_"):
        return "weight"
    if "per step" in desc and ("rate" in name or "return" in name or "yield" in desc):
        return "per step"
    if name.startswith("leverage_"):
        return "equity / total assets"
    if "share" in desc or "fraction" in desc or "/ " in desc or "rate" in name \
            or "discount" in name or "requirement" in name or "ratio" in name:
        return "share (0–1)"
    raise DocsError(f"ModelConfig.{name} has no unit: add it to UNITS in {__file__}")


def _range(field: Any) -> str:
    lo = hi = None
    lo_open = hi_open = False
    for m in field.metadata:
        for attr, is_lo, is_open in (("ge", True, False), ("gt", True, True),
                                     ("le", False, False), ("lt", False, True)):
            v = getattr(m, attr, None)
            if v is not None:
                if is_lo:
                    lo, lo_open = v, is_open
                else:
                    hi, hi_open = v, is_open
    ann = field.annotation
    if typing.get_origin(ann) is typing.Literal:
        return ", ".join(f"`{a}`" for a in typing.get_args(ann))
    if lo is None and hi is None:
        return "—"
    left = "—" if lo is None else f"{'(' if lo_open else '['}{_num(lo)}"
    right = "∞)" if hi is None else f"{_num(hi)}{')' if hi_open else ']'}"
    return f"{left}, {right}" if lo is not None else f"≤ {_num(hi)}" if not hi_open \
        else f"< {_num(hi)}"


def config_groups() -> list[tuple[str, list[str]]]:
    """The parameter groups of ``config.py`` (its ``# --- Name`` comments), in order."""
    from finsim_mesa.config import ModelConfig

    groups: list[tuple[str, list[str]]] = []
    source = (ROOT / "finsim_mesa" / "config.py").read_text(encoding="utf-8")
    for line in source.splitlines():
        head = re.match(r"\s+# --- (.+)", line)
        if head:
            groups.append((head.group(1).strip(), []))
            continue
        f = re.match(r"    (\w+): ", line)
        if f and f.group(1) in ModelConfig.model_fields and groups:
            groups[-1][1].append(f.group(1))
    listed = {n for _, names in groups for n in names}
    missing = set(ModelConfig.model_fields) - listed
    if missing:
        raise DocsError(f"parameters outside a '# --- group' of config.py: {sorted(missing)}")
    return groups


def table_parameters() -> str:
    """Every ``ModelConfig`` field by group: default, unit, range, meaning."""
    from finsim_mesa.config import ModelConfig

    out = []
    for group, names in config_groups():
        rows = []
        for name in names:
            f = ModelConfig.model_fields[name]
            default = f.default
            rows.append([f"`{name}`", f"`{_num(default)}`", unit_of(name, f), _range(f),
                         f.description])
        out.append(f"### {group}\n\n" + _table(["parameter", "default", "unit", "range",
                                                "meaning"], rows))
    return "\n\n".join(out)


# ------------------------------------------------------------------ scenarios
_TIMELINE_FIELDS = {
    "name", "description", "price_volatility", "shock_probability", "shock_fraction",
    "shock_magnitude", "shock_target", "funding_stress", "funding_stress_probability",
    "funding_start", "funding_end", "crash_step", "crash_magnitude", "crash_asset",
    "default_step", "default_count", "default_target", "stress_level"}


def timeline(sc: Any) -> list[tuple[str, str]]:
    """(when, what) events of a scenario, in order: what the shock engine
    (``scenarios/engine.py``, ``ShockEngine.draw``) does with its fields."""
    unknown = set(type(sc).model_fields) - _TIMELINE_FIELDS
    if unknown:
        raise DocsError(f"Scenario fields the timeline does not describe: {sorted(unknown)}")
    ev: list[tuple[float, str, str]] = []
    ev.append((0, "every step", f"prices move: log-price noise σ = {_num(sc.price_volatility)}"
                                " around the fundamental value"))
    if sc.stress_level:
        ev.append((0, "every step", f"perceived market stress at least {_num(sc.stress_level)}"
                                    " (raises the interbank rate)"))
    if sc.shock_probability > 0:
        ev.append((0, "every step", f"with probability {_num(sc.shock_probability)}: a loss "
                   f"event — {_num(sc.shock_fraction)} of the active banks ({sc.shock_target}, "
                   f"at least one) lose {_num(sc.shock_magnitude)} × their equity"))
    if sc.funding_stress > 0:
        end = f"step {sc.funding_end}" if sc.funding_end is not None else "the end"
        ev.append((sc.funding_start, f"steps {sc.funding_start}–"
                   f"{sc.funding_end if sc.funding_end is not None else 'end'}",
                   f"funding run until {end}: each step each bank, with probability "
                   f"{_num(sc.funding_stress_probability)}, loses {_num(sc.funding_stress)} of "
                   "its deposits (paid at the next clearing)"))
    if sc.crash_step is not None:
        what = "all asset classes" if sc.crash_asset is None else f"class `{sc.crash_asset}`"
        ev.append((sc.crash_step, f"step {sc.crash_step}", f"price crash: {what} and its "
                   f"fundamental value fall by {_num(sc.crash_magnitude)}"))
    if sc.default_step is not None and sc.default_count:
        ev.append((sc.default_step, f"step {sc.default_step}", f"the {sc.default_count} "
                   f"{sc.default_target} active bank{'s' if sc.default_count > 1 else ''} "
                   "forced into default (resolved at the clearing)"))
    ev.sort(key=lambda e: e[0])
    return [(when, what) for _, when, what in ev]


def table_scenarios() -> str:
    """Every registered scenario: description, timeline, parameters."""
    from finsim_mesa.scenarios import list_scenarios

    out = []
    for name, sc in list_scenarios().items():
        fields = type(sc).model_fields
        params = [[f"`{k}`", f"`{_num(v)}`", fields[k].description]
                  for k, v in sc.model_dump(exclude={"name", "description"}).items()]
        out.append(f"## `{name}`\n\n{sc.description}\n\n**Timeline**\n\n"
                   + _table(["when", "what happens"], timeline(sc))
                   + "\n\n??? note \"All parameters of `" + name + "`\"\n\n"
                   + "\n".join("    " + line for line in _table(
                       ["field", "value", "meaning"], params).splitlines()))
    return "\n\n".join(out)


def table_scenario_fields() -> str:
    """The fields of a scenario definition (``Scenario``) with defaults and ranges."""
    from finsim_mesa.scenarios import Scenario

    rows = [[f"`{k}`", "required" if f.is_required() else f"`{_num(f.default)}`", _range(f),
             f.description] for k, f in Scenario.model_fields.items()]
    return _table(["field", "default", "range", "meaning"], rows)


def table_shock_kinds() -> str:
    """The shock kinds of ``apply_shock`` and the range of their magnitude."""
    from finsim_mesa.scenarios.engine import SHOCK_KINDS, SHOCK_LIMITS

    rows = []
    for kind, meaning in SHOCK_KINDS.items():
        lo, hi, closed = SHOCK_LIMITS[kind]
        end = "]" if closed else ")"
        rng = "ignored" if lo == float("-inf") else f"[{_num(lo)}, {_num(hi)}{end}"
        rows.append([f"`{kind}`", rng, meaning])
    return _table(["kind", "magnitude", "meaning"], rows)


# ------------------------------------------------------------- brains, obs
def table_brains() -> str:
    """The built-in brains with their docstrings."""
    from finsim_mesa.agents.brains import BRAINS

    rows = []
    for name, cls in BRAINS.items():
        doc = inspect.getdoc(cls) or ""
        rows.append([f"`{name}`", f"`{cls.__name__}`", doc.replace("\n*", "<br>•")
                     .replace("\n", " ")])
    return _table(["name", "class", "behaviour"], rows)


def table_observations() -> str:
    """The observation columns (bank, then infrastructure)."""
    from finsim_mesa.observation import INFRA_OBS_FIELDS, OBS, OBS_FIELDS

    rows = [[OBS[n], f"`{n}`", m] for n, m in OBS_FIELDS]
    rows += [[OBS[n], f"`{n}`", m + " *(infrastructure layer on)*"] for n, m in INFRA_OBS_FIELDS]
    return _table(["#", "column", "meaning and scale"], rows) + (
        "\n\nWith several asset classes one column `price_<class>` per class follows "
        "(price / initial price, clipped to [0, 2]).")


def table_actions() -> str:
    """The four actions and their meaning in money."""
    from finsim_mesa.observation import ACTIONS

    return _table(["#", "action", "meaning in money"],
                  [[i, f"`{a}`", m] for i, (a, m) in enumerate(ACTIONS)])


def table_sri_weights() -> str:
    """The weights of the systemic-risk index."""
    from finsim_mesa.risk import SRI_WEIGHTS

    meaning = {"debtrank": "DebtRank total distress $\\sum_i v_i h_i(T)$",
               "default_rate": "share of banks in default",
               "stress": "stress index (equity-weighted distress)",
               "price_drop": "price fall $1 - \\text{price index}$",
               "illiquidity": "loss of liquidity $1 - \\min(1, \\text{LI}/\\text{LI}_0)$"}
    missing = set(SRI_WEIGHTS) - set(meaning)
    if missing:
        raise DocsError(f"systemic-risk index parts without a meaning: {sorted(missing)}")
    rows = [[f"`{k}`", f"{w:g}", meaning[k]] for k, w in SRI_WEIGHTS.items()]
    return _table(["component", "weight", "what it measures (each clipped to [0, 1])"], rows)


# Meanings of the DataCollector columns (measures.MODEL_REPORTERS and
# INFRA_REPORTERS say where each is read; the meaning is written here, and a new
# column without one stops the build).
REPORTERS: dict[str, str] = {
    "price": "mean asset price relative to the initial price (1 = unchanged)",
    "total_equity": "equity of the active banks (money)",
    "n_defaults": "banks in default (count, cumulative)",
    "default_rate": "share of banks in default",
    "debtrank": "DebtRank $R$ of the current distress: loss caused by propagation, share of "
                "total value",
    "debtrank_total": "DebtRank total distress $\\sum v h(T)$, initial distress included",
    "liquidity_index": "cash / short-term liabilities of the active banks (capped at 100)",
    "stress_index": "initial-equity-weighted mean distress, [0, 1]",
    "contagion_depth": "default rounds of this step's clearings",
    "systemic_risk_index": "composite index in [0, 1] (weights below)",
    "mean_capital_ratio": "mean equity / risk-weighted assets of the active banks",
    "min_capital_ratio": "lowest capital ratio of the active banks",
    "interbank_exposure": "interbank loans outstanding incl. accrued interest (money)",
    "interbank_volume": "new interbank lending this step (money)",
    "rollover_volume": "maturing loans rolled over this step (money)",
    "fire_sale_volume": "value of all sales this step at pre-step prices (money)",
    "interbank_rate": "interbank rate per step",
    "mean_reward": "mean reward of the banks still in the game",
    "reward_profit": "mean profit component of the reward",
    "reward_liquidity": "mean liquidity component",
    "reward_default": "mean default component (share defaulting this step)",
    "reward_system_risk": "systemic-risk component (the index)",
    "exchange_fees": "fees paid to exchanges this step (money)",
    "exchange_utilisation": "mean demand / capacity of the exchanges",
    "congested_exchanges": "exchanges above the congestion threshold",
    "order_backlog": "money waiting in exchange queues",
    "orders_expired": "money of orders that expired this step",
    "margin_posted": "margin posted at all CCPs (money)",
    "margin_called": "margin called (+) or returned (−) this step (money)",
    "netting_efficiency": "mean share of gross cleared exposure removed by netting",
    "default_fund_used": "default fund consumed so far (money)",
    "uncovered_loss": "loss beyond the CCPs' waterfalls (money)",
    "routed_transactions": "transactions routed through the infrastructure this step",
}


def table_reporters() -> str:
    """The DataCollector's model columns: where each is kept and what it means."""
    from finsim_mesa.measures import INFRA_REPORTERS, MODEL_REPORTERS

    missing = (set(MODEL_REPORTERS) | set(INFRA_REPORTERS)) - set(REPORTERS)
    if missing:
        raise DocsError(f"reporter columns without a meaning: {sorted(missing)}; add them to "
                        f"REPORTERS in {__file__}")
    rows = [[f"`{c}`", f"`model.{p}`", REPORTERS[c]] for c, p in MODEL_REPORTERS.items()]
    rows += [[f"`{c}`", f"`model.{p}`", REPORTERS[c] + " *(layer on)*"]
             for c, p in INFRA_REPORTERS.items()]
    return _table(["column", "read from", "meaning"], rows)


def table_bank_reporters() -> str:
    """The banks' agent reporters."""
    from finsim_mesa.agents.bank import Bank

    return _table(["column", "attribute"], [[f"`{c}`", f"`bank.{a}`"]
                                           for c, a in Bank.REPORTERS.items()])


TABLES = {
    "parameters": table_parameters,
    "scenarios": table_scenarios,
    "scenario-fields": table_scenario_fields,
    "shock-kinds": table_shock_kinds,
    "brains": table_brains,
    "observations": table_observations,
    "actions": table_actions,
    "sri-weights": table_sri_weights,
    "reporters": table_reporters,
    "bank-reporters": table_bank_reporters,
    "cli": table_cli,
    "rest-api": table_rest_api,
}
