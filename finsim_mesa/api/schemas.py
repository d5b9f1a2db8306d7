"""Request and response models of the REST API (validated by FastAPI, shown in
the OpenAPI document at ``/docs``).

Requests are strict (see :mod:`finsim_mesa.api.strict`). Bounds that depend on
the server's limits (banks, steps, lookahead work, training size) are written
into the schema when the application is built (:mod:`finsim_mesa.api.openapi`);
the bounds here are the fixed ones.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from finsim_mesa.api.strict import (
    TOPOLOGIES,
    BankId,
    BankKey,
    BrainName,
    Name,
    OneBankCount,
    SimulationConfig,
    Strict,
    drop_defaults,
)
from finsim_mesa.measures import MODEL_REPORTERS
from finsim_mesa.scenarios import Scenario
from finsim_mesa.scenarios.engine import SHOCK_KINDS


# ---------------------------------------------------------------- simulation
class InitRequest(OneBankCount):
    """A new simulation. Any other ModelConfig field goes in ``config``."""

    model_config = ConfigDict(json_schema_extra=drop_defaults("n_banks", "num_banks"))

    n_banks: int = Field(None, ge=2, description="number of banks (default 30, or the "
                                                 "server's limit if lower; the limit is the "
                                                 "maximum)")
    num_banks: int = Field(None, ge=2, deprecated=True,
                           description="old name of n_banks, still accepted; giving both "
                                       "with different values is refused")
    scenario: str = Field("normal", min_length=1, max_length=64,
                          description="a name from GET /scenarios")
    seed: int | None = Field(None, ge=0, le=2**53 - 1,
                             description="seed of the model's generator; omitted: drawn and "
                                         "returned")
    steps: int | None = Field(None, ge=1, description="episode length in steps (default: "
                                                      "the config's; the server bounds it)")
    brain: BrainName = Field("rule_based", description="baseline brain of every bank")
    topology: Literal[TOPOLOGIES] | None = Field(  # type: ignore[valid-type]
        None, description="interbank network generator (default barabasi_albert)")
    n_exchanges: int = Field(0, ge=0, le=64, description="exchanges (infrastructure layer; "
                                                         "at most n_banks)")
    n_ccps: int = Field(0, ge=0, le=64, description="central counterparties (need an "
                                                    "exchange)")
    config: SimulationConfig = Field(  # type: ignore[valid-type]
        default_factory=SimulationConfig, description="other ModelConfig fields")


class ResetRequest(Strict):
    seed: int | None = Field(None, ge=0, le=2**53 - 1,
                             description="new seed (omitted: the simulation's own seed)")


class AssetClassInfo(BaseModel):
    """One asset class of a simulation (GET /simulation)."""

    name: str = Field(description="the class's name: the key of 'prices' in the metrics and "
                                  "of 'holdings' of a bank")
    initial_price: float = Field(description="money per unit at step 0")
    price: float | None = Field(description="money per unit now")
    relative_price: float | None = Field(description="price / initial_price")
    price_impact: float = Field(description="impact of sales: p <- p exp(-impact q / Q)")
    market_depth: float = Field(description="Q: units the market absorbs at that impact")
    units_held: float = Field(description="units all banks hold now")
    liquidity_rank: int | None = Field(description="order of sale under sale_order = "
                                                   "'liquidity' (0 first); null without "
                                                   "asset_classes")


class SimulationInfo(BaseModel):
    sim_id: str
    seed: int
    n_banks: int
    num_banks: int = Field(description="the same as n_banks (its old name)")
    scenario: str
    brain: str
    policy: str | None = Field(None, description="trained policy loaded with /models/load")
    step: int
    episode_steps: int
    running: bool
    n_exchanges: int
    n_ccps: int
    links: int = Field(description="interbank links of the network")
    memory_mb_estimate: float = Field(description="memory the simulation may need, as "
                                                  "estimated when it was made")
    asset_classes: list[AssetClassInfo] = Field(
        description="the marketable securities banks hold, one entry per class (config "
                    "n_assets or asset_classes; two for balance_sheets 'eba2018')")
    balance_sheets: str | None = Field(description="shipped table of real balance sheets "
                                                   "(null: generated ones)")
    deleveraging_rule: str
    sale_order: str
    created: float = Field(description="Unix time")
    idle_seconds: float


_metric_fields: dict[str, Any] = {
    "sim_id": (str, ...), "step": (int, ...), "running": (bool, ...),
    "collapsed": (bool, ...), "scenario": (str, ...),
    "infrastructure": (dict[str, float | int | None] | None, None),
    "prices": (dict[str, float | None], Field(
        None, description="price / initial price of each asset class, by name (the "
                          "DataCollector's price_<class> columns; price is their mean)")),
}
for _name in MODEL_REPORTERS:
    _metric_fields[_name] = (float | int | None, None)
Metrics = create_model("Metrics", __doc__="Model-level figures after the last step "
                                          "(money in model units, rates in [0, 1]).",
                       **_metric_fields)


class StepResponse(BaseModel):
    sim_id: str
    steps_requested: int
    steps_run: int = Field(description="fewer than requested when the episode ended or the "
                                       "client went away")
    step: int
    running: bool
    metrics: Metrics  # type: ignore[valid-type]


class RiskResponse(BaseModel):
    sim_id: str
    step: int
    debtrank: float | None = Field(description="DebtRank of the current distress (impact, "
                                               "[0, 1])")
    debtrank_total: float | None = Field(description="total distress, [0, 1]")
    systemic_risk_index: float | None
    liquidity_index: float | None
    stress_index: float | None
    contagion_depth: int
    n_defaults: int
    default_rate: float | None
    most_systemic: list[dict[str, float | int | None]] = Field(
        description="top banks by DebtRank if each defaulted alone")


class BankResponse(BaseModel):
    sim_id: str
    step: int
    bank_id: int
    brain: str
    defaulted: bool
    default_step: int | None
    balance_sheet: dict[str, float | None] = Field(description="money; capital_ratio a ratio")
    equity_initial: float | None
    debtrank: float | None = Field(description="DebtRank if this bank defaulted alone now")
    last_action: dict[str, float | None] = Field(description="lend, hoard, sell, borrow in "
                                                             "[0, 1]")
    last_reward: float | None
    observation: dict[str, float | None]
    holdings: dict[str, dict[str, float | None]] = Field(
        description="securities by asset class name: units and value (money, at today's "
                    "price; they add up to balance_sheet.securities)")


# ---------------------------------------------------------------- scenarios
class ScenarioInfo(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any]


class ScenarioDefinition(Scenario):
    """A scenario defined by a client (the fields of GET /scenarios). Also
    refused: ``funding_end`` before ``funding_start``."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True,
                              json_schema_extra={"allOf": [
                                  {"if": {"required": ["crash_step"],
                                          "properties": {"crash_step": {"type": "integer"}}},
                                   "then": {"required": ["crash_magnitude"],
                                            "properties": {"crash_magnitude": {
                                                "exclusiveMinimum": 0}}}},
                                  {"if": {"required": ["default_count"],
                                          "properties": {"default_count": {
                                              "exclusiveMinimum": 0}}},
                                   "then": {"required": ["default_step"],
                                            "properties": {"default_step": {
                                                "type": "integer"}}}}]})

    name: Name = Field(description="unique name (letters, digits, '_', '-', '.')")
    description: str = Field("", max_length=1000, description="what it represents")

    def as_scenario(self) -> Scenario:
        return Scenario(**self.model_dump())


def _one_of_scenario(schema: dict[str, Any]) -> None:
    drop_defaults("scenario", "definition")(schema)
    schema["oneOf"] = [{"required": ["scenario"]}, {"required": ["definition"]}]


class ScenarioSetRequest(Strict):
    """Exactly one of ``scenario`` and ``definition``."""

    model_config = ConfigDict(json_schema_extra=lambda s: _one_of_scenario(s))

    scenario: str = Field(None, min_length=1, max_length=64,
                          description="a name from GET /scenarios")
    definition: ScenarioDefinition = Field(
        None, description="a new scenario, registered under its name (the server keeps a "
                          "bounded number)")
    restart: bool = Field(False, description="start the simulation again under it (same seed) "
                                             "instead of switching from the next step on")

    @model_validator(mode="after")
    def _exactly_one(self) -> ScenarioSetRequest:
        if (self.scenario is None) == (self.definition is None):
            raise ValueError("give exactly one of 'scenario' (a name from GET /scenarios) or "
                             "'definition' (a new scenario)")
        return self


Banks = Annotated[list[BankId], Field(min_length=1, max_length=100_000)]


class _Shock(Strict):
    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "magnitude": self.magnitude, "banks": self.banks}


class PriceCrash(_Shock):
    kind: Literal["price_crash"] = Field(description=SHOCK_KINDS["price_crash"])
    magnitude: float = Field(0.0, ge=0, lt=1)
    banks: Banks | None = Field(None, description="bank ids hit (null or omitted: all)")


class FundingWithdrawal(_Shock):
    kind: Literal["funding_withdrawal"] = Field(description=SHOCK_KINDS["funding_withdrawal"])
    magnitude: float = Field(0.0, ge=0, le=1)
    banks: Banks | None = Field(None, description="bank ids hit (null or omitted: all)")


class Loss(_Shock):
    kind: Literal["loss"] = Field(description=SHOCK_KINDS["loss"])
    magnitude: float = Field(0.0, ge=0, le=10)
    banks: Banks = Field(description="bank ids hit")


class Default(_Shock):
    kind: Literal["default"] = Field(description=SHOCK_KINDS["default"])
    magnitude: float = Field(0.0, description="not used")
    banks: Banks = Field(description="bank ids put in default")


ShockRequest = Annotated[PriceCrash | FundingWithdrawal | Loss | Default,
                         Field(discriminator="kind")]


class ShockResponse(BaseModel):
    sim_id: str
    step: int
    applied: dict[str, Any]
    metrics: Metrics  # type: ignore[valid-type]


# ---------------------------------------------------------------- decisions
Action = Annotated[list[Annotated[float, Field(ge=0, le=1)]],
                   Field(min_length=4, max_length=4)]


class WhatIfRequest(Strict):
    model_config = ConfigDict(json_schema_extra=drop_defaults("steps", "seeds"))

    steps: int = Field(None, ge=1, description="horizon in steps (bounds and default from the "
                                               "server's work limit)")
    seeds: int = Field(None, ge=1, description="Monte-Carlo runs per variant (bounded alike)")
    shock: ShockRequest | None = None
    brains: Annotated[dict[BankKey, BrainName], Field(
        max_length=100_000, json_schema_extra={"additionalProperties": False})] | None = Field(
        None, description="{bank_id: brain name}")
    actions: Annotated[dict[BankKey, Action], Field(
        max_length=100_000, json_schema_extra={"additionalProperties": False})] | None = Field(
        None, description="{bank_id: [lend, hoard, sell, borrow]} held fixed")
    bank: BankId | None = Field(None, description="bank whose own outcome is reported")


class WhatIfResponse(BaseModel):
    sim_id: str
    step: int
    horizon: int
    seeds: list[int]
    summary: list[dict[str, Any]] = Field(description="per variant and outcome: mean, std, "
                                                      "95% CI (null with one seed)")
    difference: list[dict[str, Any]] = Field(description="hypothetical - baseline, paired")


class RecommendationResponse(BaseModel):
    sim_id: str
    step: int
    bank_id: int
    action: str
    vector: list[float] | None
    expected_equity: float | None
    ci95: list[float | None]
    default_probability: float | None
    reason: str
    table: list[dict[str, Any]]


class RecommendationsResponse(BaseModel):
    sim_id: str
    step: int
    recommendations: list[RecommendationResponse]
    skipped: list[int] = Field(description="banks in default (nothing to recommend)")
    next_start: int | None = Field(
        description="the banks from this id on did not fit in one request's work limit: ask "
                    "again with start=next_start (null: every bank is answered)")


class TopologyResponse(BaseModel):
    sim_id: str
    step: int
    nodes: list[dict[str, Any]] = Field(description="banks (with balance sheet), exchanges, "
                                                    "CCPs")
    edges: list[dict[str, Any]] = Field(description="loans lender -> borrower with exposure "
                                                    "(money); exchange and CCP links")


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    simulations: int
    streams: int = Field(description="WebSocket streams open now")
    learn_available: bool
    training: str
