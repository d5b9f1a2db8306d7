"""Request and response models of the REST API (validated by FastAPI, shown in
the OpenAPI document at ``/docs``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from finsim_mesa.measures import MODEL_REPORTERS
from finsim_mesa.scenarios.engine import SHOCK_KINDS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InitRequest(_Strict):
    """A new simulation. Any other ModelConfig field goes in ``config``."""

    num_banks: int = Field(30, ge=2, description="number of banks (server limit applies)")
    scenario: str = Field("normal", description="a name from GET /scenarios")
    seed: int | None = Field(None, ge=0, le=2**63 - 1,
                             description="seed of the model's generator; omitted: drawn and "
                                         "returned")
    steps: int | None = Field(None, ge=1, le=1_000_000,
                              description="episode length in steps (default: the config's)")
    brain: str = Field("rule_based", description="baseline brain of every bank")
    topology: str | None = Field(None, description="barabasi_albert, core_periphery or "
                                                   "erdos_renyi")
    n_exchanges: int = Field(0, ge=0, le=64, description="exchanges (infrastructure layer)")
    n_ccps: int = Field(0, ge=0, le=64, description="central counterparties")
    config: dict[str, Any] = Field(default_factory=dict,
                                   description="other ModelConfig fields (finsim config lists "
                                               "them)")


class ResetRequest(_Strict):
    seed: int | None = Field(None, ge=0, le=2**63 - 1,
                             description="new seed (omitted: the simulation's own seed)")


class SimulationInfo(BaseModel):
    sim_id: str
    seed: int
    num_banks: int
    scenario: str
    brain: str
    policy: str | None = Field(None, description="trained policy loaded with /models/load")
    step: int
    episode_steps: int
    running: bool
    n_exchanges: int
    n_ccps: int
    created: float = Field(description="Unix time")
    idle_seconds: float


_metric_fields: dict[str, Any] = {
    "sim_id": (str, ...), "step": (int, ...), "running": (bool, ...),
    "collapsed": (bool, ...), "scenario": (str, ...),
    "infrastructure": (dict[str, float | int | None] | None, None),
}
for _name in MODEL_REPORTERS:
    _metric_fields[_name] = (float | int | None, None)
Metrics = create_model("Metrics", __doc__="Model-level figures after the last step "
                                          "(money in model units, rates in [0, 1]).",
                       **_metric_fields)


class StepResponse(BaseModel):
    sim_id: str
    steps_requested: int
    steps_run: int = Field(description="fewer than requested when the episode ended")
    step: int
    running: bool
    metrics: Metrics  # type: ignore[valid-type]


class RiskResponse(BaseModel):
    sim_id: str
    step: int
    debtrank: float = Field(description="DebtRank of the current distress (impact, [0, 1])")
    debtrank_total: float = Field(description="total distress, [0, 1]")
    systemic_risk_index: float
    liquidity_index: float
    stress_index: float
    contagion_depth: int
    n_defaults: int
    default_rate: float
    most_systemic: list[dict[str, float | int]] = Field(
        description="top banks by DebtRank if each defaulted alone")


class BankResponse(BaseModel):
    sim_id: str
    step: int
    bank_id: int
    brain: str
    defaulted: bool
    default_step: int | None
    balance_sheet: dict[str, float] = Field(description="money; capital_ratio a ratio")
    equity_initial: float
    debtrank: float = Field(description="DebtRank if this bank defaulted alone now")
    last_action: dict[str, float] = Field(description="lend, hoard, sell, borrow in [0, 1]")
    last_reward: float
    observation: dict[str, float]


class ScenarioInfo(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any]


class ScenarioSetRequest(_Strict):
    scenario: str | None = Field(None, description="a name from GET /scenarios")
    definition: dict[str, Any] | None = Field(
        None, description="a new scenario (fields as in GET /scenarios); registered by name")
    restart: bool = Field(False, description="start the simulation again under it (same seed) "
                                             "instead of switching from the next step on")


class ShockRequest(_Strict):
    kind: Literal[tuple(SHOCK_KINDS)] = Field(description="; ".join(  # type: ignore[valid-type]
        f"{k}: {v}" for k, v in SHOCK_KINDS.items()))
    magnitude: float = Field(0.0, description="size of the shock (meaning per kind)")
    banks: list[int] | None = Field(None, max_length=100_000,
                                    description="bank ids hit (None: all; required for loss "
                                                "and default)")


class ShockResponse(BaseModel):
    sim_id: str
    step: int
    applied: dict[str, Any]
    metrics: Metrics  # type: ignore[valid-type]


class WhatIfRequest(_Strict):
    steps: int = Field(10, ge=1, le=1000, description="horizon in steps")
    seeds: int = Field(10, ge=1, le=1000, description="Monte-Carlo runs per variant")
    shock: ShockRequest | None = None
    brains: dict[str, str] | None = Field(None, description="{bank_id: brain name}")
    actions: dict[str, list[float]] | None = Field(
        None, description="{bank_id: [lend, hoard, sell, borrow]} held fixed")
    bank: int | None = Field(None, description="bank whose own outcome is reported")


class WhatIfResponse(BaseModel):
    sim_id: str
    step: int
    horizon: int
    seeds: list[int]
    summary: list[dict[str, Any]] = Field(description="per variant and outcome: mean, std, "
                                                      "95% CI")
    difference: list[dict[str, Any]] = Field(description="hypothetical - baseline, paired")


class RecommendationResponse(BaseModel):
    sim_id: str
    step: int
    bank_id: int
    action: str
    vector: list[float] | None
    expected_equity: float
    ci95: list[float]
    default_probability: float
    reason: str
    table: list[dict[str, Any]]


class RecommendationsResponse(BaseModel):
    sim_id: str
    step: int
    recommendations: list[RecommendationResponse]
    skipped: list[int] = Field(description="banks in default (nothing to recommend)")


class TrainRequest(_Strict):
    episodes: int = Field(200, ge=1, description="training episodes (server limit applies)")
    scenarios: list[str] = Field(["normal"], min_length=1, max_length=8,
                                 description="curriculum, in order")
    num_banks: int = Field(30, ge=2)
    steps: int = Field(50, ge=1, le=1000, description="episode length")
    seed: int = Field(42, ge=0, le=2**32 - 1)
    eval_every: int = Field(200, ge=1, description="episodes between evaluations")
    eval_seeds: int = Field(3, ge=1, le=50, description="evaluation episodes each time")


class TrainStatus(BaseModel):
    model_config = ConfigDict(extra="allow")

    state: Literal["idle", "running", "stopping", "stopped", "finished", "failed"]
    job_id: str | None = None


class ModelSaveRequest(_Strict):
    name: str = Field("api", description="registry id; each save adds a version vK")
    metric: float | None = Field(None, description="score used to pick 'best' (default: the "
                                                   "job's last evaluation reward)")


class ModelLoadRequest(_Strict):
    model: str = Field(description="a name from GET /models ('api', 'api/v2', 'final', ...)")
    version: str = Field("best", pattern=r"^(best|latest|v[0-9]{1,6})$")
    banks: list[int] | None = Field(None, max_length=100_000,
                                    description="banks it decides for (None: all)")
    deterministic: bool = Field(True, description="act with the mean action, or sample")


class ModelInfo(BaseModel):
    name: str
    kind: Literal["registry", "folder"]
    model_id: str | None
    version: str | None
    metric: float | None
    created: str | None
    episode: int | None


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
    learn_available: bool
    training: str
