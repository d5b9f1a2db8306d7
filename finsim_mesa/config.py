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
from finsim_mesa.portfolios import AssetClass

TOPOLOGIES = ("barabasi_albert", "core_periphery", "erdos_renyi")
# "user": the network came with the model (graph= or exposures=), not from a generator
Topology = Literal["barabasi_albert", "core_periphery", "erdos_renyi", "user"]

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
    mean_degree: float = _f(4.0, "Erdos-Renyi: mean number of links per bank (undirected: each "
                            "link is one loan, so a bank has about mean_degree / 2 debtors; "
                            "directed: the mean out-degree, i.e. debtors per bank)", gt=0)
    directed: bool = _f(False, "Erdos-Renyi: draw directed links lender -> borrower with "
                        "probability mean_degree / (n - 1) each (the literature's mean "
                        "out-degree, e.g. Gai & Kapadia 2010)")
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
    funding_share: float = _f(0.0, "share of external liabilities that is a repayable "
                              "funding loan (the rest are deposits)", ge=0, le=1)
    balance_sheets: str | None = _f(None, "real balance sheets instead of generated ones: "
                                    "'eba2018' (the EBA 2018 stress-test sample, 48 banks) or "
                                    "the path of a CSV table in its format", min_length=1)
    # --- Portfolios and deleveraging
    n_assets: int = _f(1, "number of asset classes (set by asset_classes when given)", ge=1,
                       le=1000)
    asset_classes: list[AssetClass] | None = _f(
        None, "asset classes: [{name, price, impact, depth, weight, liquidity_rank}, ...] "
        "(None: n_assets alike classes)", min_length=1, max_length=1000)
    portfolio_concentration: float | None = _f(
        None, "heterogeneous portfolios: each bank's class weights are drawn from a Dirichlet "
        "with this concentration times the classes' weights (small: banks specialise; None: "
        "every bank holds the classes' weights)", gt=0, le=1e6)
    deleveraging_rule: Literal["capital", "threshold", "leverage_targeting"] = _f(
        "capital", "capital: below capital_requirement (risk-weighted) sell back to it "
        "x (1 + deleveraging_buffer); threshold: below leverage_buffer sell to "
        "leverage_target; leverage_targeting: always sell to leverage_target (default "
        "threshold when balance_sheets is given)")
    leverage_min: float = _f(0.03, "leverage (equity / total assets) below which a bank "
                             "defaults (leverage rules)", ge=0, lt=1)
    leverage_buffer: float = _f(0.04, "leverage below which a bank deleverages (threshold "
                                "rule)", ge=0, lt=1)
    leverage_target: float = _f(0.05, "leverage a deleveraging bank sells back to (leverage "
                                "rules)", gt=0, lt=1)
    sale_order: Literal["pro_rata", "liquidity"] = _f(
        "pro_rata", "forced sales across classes: pro rata by market value, or the most "
        "liquid (lowest liquidity_rank) first")
    repay_funding_first: bool = _f(True, "a deleveraging bank repays its funding loan with "
                                   "cash before it sells (leverage rules)")
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

    @model_validator(mode="before")
    @classmethod
    def _count_classes(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("asset_classes") and "n_assets" not in data:
            data = dict(data, n_assets=len(data["asset_classes"]))
        if (isinstance(data, dict) and data.get("balance_sheets")
                and "deleveraging_rule" not in data):
            # real balance sheets come with the leverage rule of the stress tests they
            # are from: under the risk-weighted capital rule (whose requirement is set
            # for generated sheets) most EBA banks would start in breach and fire-sell
            data = dict(data, deleveraging_rule="threshold")
        return data

    @model_validator(mode="after")
    def _check_consistency(self) -> ModelConfig:
        if self.asset_classes is not None:
            names = [c.name for c in self.asset_classes]
            if len(names) != self.n_assets or len(set(names)) != len(names):
                raise ValueError(f"asset_classes has {len(names)} classes (names {names}) for "
                                 f"n_assets = {self.n_assets}: give one per class, names unique")
        if not self.leverage_min < min(self.leverage_buffer, self.leverage_target):
            raise ValueError(f"leverage_min ({self.leverage_min}) must be below leverage_buffer "
                             f"({self.leverage_buffer}) and leverage_target "
                             f"({self.leverage_target})")
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
        if (self.topology == "barabasi_albert" and self.balance_sheets is None
                and self.edges_per_node >= self.n_banks):
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
        from finsim_mesa.config_yaml import config_to_yaml

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



def explicit_params(named: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The config fields given as keyword arguments: ``named`` (None = not given;
    a scenario or brain object stands for its name, or for the default brain)
    and ``params`` (every other field)."""
    explicit = {k: v for k, v in named.items() if v is not None and k not in ("scenario",
                                                                             "brain")}
    scenario, brain = named.get("scenario"), named.get("brain")
    if scenario is not None:
        explicit["scenario"] = scenario if isinstance(scenario, str) else scenario.name
    if isinstance(brain, str):
        explicit["brain"] = brain
    return explicit | dict(params)
