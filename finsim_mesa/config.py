"""Typed, validated configuration of a :class:`~finsim_mesa.model.FinancialModel`.

One flat :class:`ModelConfig` holds every parameter, so that the same names
work as ``FinancialModel`` keyword arguments, ``mesa.batch_run`` parameters,
YAML keys and CLI flags. Validation is done by pydantic; every error is turned
into a :class:`~finsim_mesa.errors.ConfigError` that names the parameter, the
value given and the accepted range.

Units: money is in abstract currency units (the default mean bank has total
assets of 100); rates and returns are *per step* (the defaults are calibrated
for a step of about a week: a net interest margin near 1.5% a year); fractions
are in [0, 1].
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from finsim_mesa.errors import ConfigError

TOPOLOGIES = ("barabasi_albert", "core_periphery", "erdos_renyi")
# "user": the network came with the model (graph= or exposures=), not from a generator
Topology = Literal["barabasi_albert", "core_periphery", "erdos_renyi", "user"]

# Field name -> section shown in the YAML file written by `finsim config`.
_SECTIONS: dict[str, list[str]] = {
    "Network": [
        "n_banks", "topology", "edges_per_node", "core_fraction", "core_density", "mean_degree",
    ],
    "Balance sheets": [
        "mean_total_assets", "size_dispersion", "capital_ratio", "capital_requirement",
        "interbank_share", "liquidity_share", "marketable_share", "interbank_risk_weight",
        "loan_maturity", "n_assets",
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
VENUE_RULES = ("size", "round_robin", "random")


def _f(default: Any, description: str, **kw: Any) -> Any:
    return Field(default, description=description, **kw)


class ModelConfig(BaseModel):
    """Every parameter of a FinancialModel, validated.

    Build one with keyword arguments, from a dict (:meth:`from_dict`) or from a
    YAML file (:func:`load_config`); unknown keys and out-of-range values raise
    :class:`ConfigError`.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    # --- Network
    n_banks: int = _f(30, "number of banks (>= 2)", ge=2, le=10_000_000)
    topology: Topology = _f("barabasi_albert", "interbank network: " + ", ".join(TOPOLOGIES)
                            + " (user: given as graph= or exposures=)")
    edges_per_node: int = _f(2, "Barabasi-Albert links per new bank; core-periphery links "
                             "from each periphery bank to the core", ge=1)
    core_fraction: float = _f(0.2, "core-periphery: share of banks in the core", gt=0, le=1)
    core_density: float = _f(1.0, "core-periphery: link probability inside the core", gt=0,
                             le=1)
    mean_degree: float = _f(4.0, "Erdos-Renyi: mean number of links per bank", gt=0)
    # --- Balance sheets
    mean_total_assets: float = _f(100.0, "mean total assets of a bank (money units)", gt=0,
                                  le=1e12)
    size_dispersion: float = _f(1.0, "sigma of the log-normal bank size distribution "
                                "(0 = equal sizes)", ge=0, le=5)
    capital_ratio: float = _f(0.12, "initial equity / risk-weighted assets", gt=0, lt=1)
    capital_requirement: float = _f(0.06, "minimum equity / risk-weighted assets; below it "
                                    "a bank is forced to deleverage", ge=0, lt=1)
    interbank_share: float = _f(0.1, "interbank loans as a share of total assets", ge=0, lt=1)
    liquidity_share: float = _f(0.1, "cash as a share of total assets", ge=0, lt=1)
    marketable_share: float = _f(0.3, "share of illiquid assets held as marketable "
                                 "securities (marked to market, sellable); the rest are loans "
                                 "at book value", ge=0, le=1)
    interbank_risk_weight: float = _f(0.2, "risk weight of interbank loans (cash 0, "
                                      "illiquid assets 1)", ge=0, le=1)
    loan_maturity: int = _f(4, "maturity of interbank loans in steps", ge=1, le=10_000)
    n_assets: int = _f(1, "number of illiquid asset classes", ge=1, le=1000)
    # --- Market and rates
    asset_return: float = _f(0.0008, "cash yield of illiquid assets per step", ge=0, lt=1)
    deposit_rate: float = _f(0.0005, "interest paid on external liabilities per step", ge=0,
                             lt=1)
    base_rate: float = _f(0.0006, "interbank interest rate per step in calm markets", ge=0, lt=1)
    rate_stress_spread: float = _f(0.004, "added to the interbank rate at full market stress",
                                   ge=0, lt=1)
    price_impact: float = _f(0.2, "fire-sale impact: price *= exp(-impact * units sold / "
                             "units outstanding)", ge=0)
    price_floor: float = _f(0.2, "lowest price, as a fraction of the initial price", gt=0, le=1)
    mean_reversion: float = _f(0.05, "per-step pull of the log price back to its "
                               "fundamental", ge=0, le=1)
    sale_discount: float = _f(0.01, "discount to the market price on voluntary sales",
                              ge=0, lt=1)
    liquidation_discount: float = _f(0.1, "discount on emergency sales and on liquidations "
                                     "of defaulted banks",
                                     ge=0, lt=1)
    forced_deleveraging: bool = _f(True, "sell assets when below the capital requirement")
    deleveraging_buffer: float = _f(0.2, "forced sales restore capital_requirement * "
                                    "(1 + buffer)", ge=0)
    fire_sale_rounds: int = _f(10, "max rounds of the fire-sale price/deleveraging loop",
                               ge=1, le=1000)
    # --- Clearing
    default_cost_alpha: float = _f(1.0, "share of external assets a defaulter realises",
                                   ge=0, le=1)
    default_cost_beta: float = _f(1.0, "share of interbank claims a defaulter realises",
                                  ge=0, le=1)
    # --- Actions
    max_sell_fraction: float = _f(0.2, "sell=1 sells this share of holdings in one step",
                                  ge=0, le=1)
    max_lend_fraction: float = _f(0.5, "lend=1 offers this share of lendable cash", ge=0, le=1)
    max_borrow_fraction: float = _f(0.05, "borrow=1 asks for this share of total assets",
                                    ge=0, le=1)
    reserve_ratio: float = _f(0.02, "cash never lent, as a share of total assets", ge=0, le=1)
    large_exposure_limit: float = _f(0.5, "no new lending to a counterparty once exposure to "
                                     "it reaches this multiple of the lender's equity", ge=0)
    # --- Scenario and episode
    scenario: str = _f("normal", "built-in scenario name or path to a scenario YAML file",
                       min_length=1)
    brain: str = _f("rule_based", "brain of every bank (random, rule_based, myopic, greedy, "
                    "conservative, passive)", min_length=1)
    steps: int = _f(100, "episode length in steps (model.running goes False after it)", ge=1)
    collapse_threshold: float = _f(0.5, "default rate at which the system counts as "
                                   "collapsed and the run stops", gt=0, le=1)
    # --- Reward
    reward_profit_weight: float = _f(1.0, "weight of profit (equity change / initial "
                                     "equity)", ge=0)
    reward_liquidity_weight: float = _f(0.1, "mu: weight of liquidity (cash / total assets)",
                                        ge=0)
    reward_default_penalty: float = _f(1.0, "alpha: penalty when the bank defaults", ge=0)
    reward_system_risk_weight: float = _f(0.5, "lambda: weight of the systemic-risk index",
                                          ge=0)
    # --- Market infrastructure
    n_exchanges: int = _f(0, "number of exchanges (0 = interbank trades settle bilaterally)",
                          ge=0)
    n_ccps: int = _f(0, "number of central counterparties (need at least one exchange)", ge=0)
    venue_rule: Literal["size", "round_robin", "random"] = _f(
        "size", "how banks are assigned to exchanges and CCPs: size (balance the members' "
        "total assets), round_robin (bank i to venue i mod k) or random")
    exchange_capacity: float = _f(0.002, "money an exchange processes per step, as a share "
                                  "of its members' initial total assets", gt=0)
    congestion_threshold: float = _f(0.8, "utilisation (demand / capacity) above which an "
                                     "exchange is congested", gt=0, le=1)
    exchange_base_fee: float = _f(0.0005, "exchange fee rate on processed trades in calm "
                                  "conditions", ge=0, lt=1)
    exchange_fee_slope: float = _f(4.0, "fee multiplier growth per unit of utilisation "
                                   "above the congestion threshold", ge=0)
    max_order_wait: int = _f(3, "steps an order may wait at a congested exchange before "
                             "it expires", ge=0, le=1000)
    ccp_clearing_share: float = _f(1.0, "share of exchange trades novated to a CCP (the "
                                   "rest settle bilaterally through the exchange)", ge=0, le=1)
    initial_margin_rate: float = _f(0.05, "initial margin as a share of a member's cleared "
                                    "borrowing; variation margin keeps it in step with the "
                                    "collateral price", ge=0, le=1)
    default_fund_rate: float = _f(0.005, "default-fund contribution of each member, as a "
                                  "share of its total assets", ge=0, le=1)
    ccp_capital_share: float = _f(0.25, "CCP's own capital (skin in the game) as a share of "
                                  "its default fund", ge=0, le=10)
    # --- Data collection
    agent_collect_every: int = _f(1, "collect agent data every k steps (0 = never)", ge=0)
    ranking_every: int = _f(0, "compute the per-bank DebtRank ranking every k steps "
                            "(0 = only on demand)", ge=0)

    @model_validator(mode="after")
    def _check_consistency(self) -> ModelConfig:
        if self.capital_requirement >= self.capital_ratio:
            raise ValueError(
                f"capital_requirement ({self.capital_requirement}) must be below "
                f"capital_ratio ({self.capital_ratio}), or every bank starts in breach"
            )
        if self.interbank_share + self.liquidity_share >= 1:
            raise ValueError(
                f"interbank_share + liquidity_share = "
                f"{self.interbank_share + self.liquidity_share:g} must be below 1 "
                "(the rest are illiquid assets)"
            )
        if self.n_ccps > self.n_banks or self.n_exchanges > self.n_banks:
            raise ValueError(
                f"n_exchanges ({self.n_exchanges}) and n_ccps ({self.n_ccps}) cannot exceed "
                f"n_banks ({self.n_banks}): every venue needs a member")
        if self.n_ccps > 0 and self.n_exchanges == 0:
            raise ValueError(f"n_ccps = {self.n_ccps} needs n_exchanges >= 1: trades reach a "
                             "CCP through an exchange")
        if self.topology == "barabasi_albert" and self.edges_per_node >= self.n_banks:
            raise ValueError(
                f"edges_per_node ({self.edges_per_node}) must be below n_banks "
                f"({self.n_banks}) for a Barabasi-Albert network"
            )
        return self

    @property
    def infrastructure(self) -> bool:
        """Whether the exchange / CCP layer is on."""
        return self.n_exchanges > 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Validated config from a mapping; raises ConfigError naming bad keys."""
        return make_config(data)

    def to_yaml(self) -> str:
        """YAML text with every parameter, grouped and documented with comments."""
        return config_to_yaml(self)


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    fields = list(ModelConfig.model_fields)
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "config"
        if e["type"] == "extra_forbidden":
            near = difflib.get_close_matches(loc, fields, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else "; see `finsim config` for all"
            lines.append(f"unknown parameter '{loc}'{hint}")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        desc = ModelConfig.model_fields[loc].description if loc in ModelConfig.model_fields else ""
        where = f"{loc} = {got!r}" if loc != "config" else "config"
        extra = f" [{desc}]" if desc else ""
        lines.append(f"{where}: {msg}{extra}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def make_config(data: dict[str, Any] | None = None, **overrides: Any) -> ModelConfig:
    """Build a validated :class:`ModelConfig` from a mapping plus keyword overrides.

    Raises:
        ConfigError: naming every invalid or unknown parameter.
    """
    merged = dict(data or {})
    merged.update(overrides)
    for key, value in merged.items():
        # pydantic already rejects NaN for floats; catch NaN passed to int fields too.
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"invalid configuration:\n  {key} = {value!r}: must be finite")
    try:
        return ModelConfig(**merged)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err)) from None


def config_to_yaml(cfg: ModelConfig) -> str:
    """Render ``cfg`` as commented YAML (each key preceded by its description)."""
    out = ["# finsim-mesa model configuration. Rates are per step, money in currency units.",
           "# Use with: finsim simulate --config FILE", ""]
    seen: set[str] = set()
    values = cfg.model_dump()
    for title, names in _SECTIONS.items():
        out.append(f"# --- {title}")
        for name in names:
            field = ModelConfig.model_fields[name]
            out.append(f"# {field.description}")
            out.append(yaml.safe_dump({name: values[name]}, sort_keys=False).strip())
            seen.add(name)
        out.append("")
    missing = set(values) - seen
    if missing:  # pragma: no cover - guarded by a test
        raise AssertionError(f"config fields without a YAML section: {sorted(missing)}")
    return "\n".join(out)


def read_yaml(path: str | Path, what: str) -> Any:
    """Parsed content of the YAML file at ``path``.

    Raises:
        ConfigError: the file is missing or not valid YAML (``what`` names it,
            e.g. "config file").
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} {path} is not valid YAML: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what} {path} is not UTF-8 text ({err.reason} at byte "
                          f"{err.start}); save it as UTF-8") from None


def load_config(path: str | Path, **overrides: Any) -> ModelConfig:
    """Read a YAML config file; keyword ``overrides`` win over the file.

    Raises:
        ConfigError: the file is missing, not YAML, not a mapping or invalid.
    """
    path = Path(path)
    data = read_yaml(path, "config file")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of parameter: value, "
            f"not a {type(data).__name__}"
        )
    try:
        return make_config(data, **overrides)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def resolve_config(config: ModelConfig | dict[str, Any] | str | Path | None,
                   explicit: dict[str, Any]) -> ModelConfig:
    """The model's configuration: ``config`` (a ModelConfig, a mapping or a YAML
    path; None = defaults) with the ``explicit`` keyword arguments on top.

    Raises:
        ConfigError: invalid values or a ``config`` of another type.
    """
    if config is None:
        return make_config(None, **explicit)
    if isinstance(config, ModelConfig):
        return make_config(config.model_dump(), **explicit)
    if isinstance(config, Mapping):
        return make_config(dict(config), **explicit)
    if isinstance(config, str | Path):
        return load_config(config, **explicit)
    raise ConfigError(f"config must be a ModelConfig, a mapping or a YAML path, "
                      f"not {type(config).__name__}")

