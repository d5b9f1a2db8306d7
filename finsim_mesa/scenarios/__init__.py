"""Named stress scenarios (data) and the engine that turns them into shocks.

A scenario is a small YAML document (see ``data/*.yaml``) validated by
:class:`Scenario`. Built-in: ``normal``, ``liquidity_crisis``,
``asset_crash``, ``systemic``. Users add their own with
:func:`register_scenario` or by passing a YAML path as ``scenario=``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from finsim_mesa.config import read_yaml
from finsim_mesa.errors import ConfigError

__all__ = [
    "Scenario",
    "get_scenario",
    "list_scenarios",
    "load_scenario_file",
    "register_scenario",
]

Target = Literal["random", "largest", "smallest"]


class Scenario(BaseModel):
    """Shock parameters of a scenario. Probabilities are per step; steps count from 1."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    name: str = Field(min_length=1, description="unique name")
    description: str = Field("", description="what the scenario represents")
    price_volatility: float = Field(
        0.01, ge=0, le=1,
        description="standard deviation of the log price change per step (0.01 = about 1%)")
    shock_probability: float = Field(
        0.0, ge=0, le=1, description="probability per step of a loss event (0-1)")
    shock_fraction: float = Field(
        0.0, ge=0, le=1, description="share of the active banks a loss event hits (0-1)")
    shock_magnitude: float = Field(
        0.0, ge=0, le=10,
        description="loss of a hit bank, as a multiple of its equity (1 = all of it)")
    shock_target: Target = Field(
        "random", description="which banks losses hit: random, largest or smallest")
    funding_stress: float = Field(
        0.0, ge=0, le=1, description="share of a bank's deposits withdrawn in a run (0-1)")
    funding_stress_probability: float = Field(
        0.0, ge=0, le=1, description="probability per step and bank of a run (0-1)")
    funding_start: int = Field(
        1, ge=1, description="first step of the funding stress (steps count from 1)")
    funding_end: int | None = Field(
        None, ge=1, description="last step of the funding stress (None: to the end)")
    crash_step: int | None = Field(
        None, ge=1, description="step of the price crash (None: no crash)")
    crash_magnitude: float = Field(
        0.0, ge=0, lt=1,
        description="share the price and its fundamental lose at the crash (0-1)")
    crash_asset: str | None = Field(
        None, min_length=1, description="the asset class the crash hits (None: all)")
    default_step: int | None = Field(
        None, ge=1, description="step at which banks are forced into default (None: none)")
    default_count: int = Field(
        0, ge=0, description="number of banks forced into default (banks)")
    default_target: Target = Field(
        "largest", description="which banks are forced to default: random, largest or smallest")
    stress_level: float = Field(
        0.0, ge=0, le=1,
        description="market stress banks perceive (0-1; raises the interbank rate)")

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if self.funding_end is not None and self.funding_end < self.funding_start:
            raise ValueError(f"funding_end ({self.funding_end}) is before funding_start "
                             f"({self.funding_start})")
        if self.crash_step is not None and self.crash_magnitude == 0:
            raise ValueError("crash_step is set but crash_magnitude is 0")
        if self.default_count and self.default_step is None:
            raise ValueError("default_count > 0 needs a default_step")
        return self

    def funding_active(self, step: int) -> bool:
        """Whether the funding stress applies at ``step``."""
        return (self.funding_stress > 0 and step >= self.funding_start
                and (self.funding_end is None or step <= self.funding_end))


_REGISTRY: dict[str, Scenario] = {}


def _validate(data: object, source: str) -> Scenario:
    if not isinstance(data, dict):
        raise ConfigError(f"scenario {source} must be a mapping of field: value")
    try:
        return Scenario(**data)
    except ValidationError as err:
        msgs = []
        for e in err.errors():
            loc = ".".join(map(str, e["loc"])) or "scenario"
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = f"unknown field; accepted: {', '.join(Scenario.model_fields)}"
            msgs.append(f"{loc} = {e.get('input')!r}: {msg}")
        raise ConfigError(f"invalid scenario {source}:\n  " + "\n  ".join(msgs)) from None


def _load_builtin() -> None:
    for res in sorted(resources.files(__package__).joinpath("data").iterdir(),
                      key=lambda r: r.name):
        if res.name.endswith(".yaml"):
            sc = _validate(yaml.safe_load(res.read_text()), res.name)
            _REGISTRY[sc.name] = sc


def register_scenario(scenario: Scenario | dict, overwrite: bool = False) -> Scenario:
    """Add a scenario to the registry so it can be used by name."""
    sc = scenario if isinstance(scenario, Scenario) else _validate(scenario, "definition")
    if sc.name in _REGISTRY and not overwrite:
        raise ConfigError(f"scenario '{sc.name}' already exists; pass overwrite=True to replace")
    _REGISTRY[sc.name] = sc
    return sc


def load_scenario_file(path: str | Path) -> Scenario:
    """Read and validate one scenario YAML file (not registered)."""
    return _validate(read_yaml(path, "scenario file"), str(path))


def list_scenarios() -> dict[str, Scenario]:
    """All registered scenarios by name (built-in first)."""
    return dict(_REGISTRY)


def get_scenario(name_or_path: str | Scenario) -> Scenario:
    """A scenario by name, by YAML path, or passed through.

    Raises:
        ConfigError: unknown name (listing the known ones) or bad file.
    """
    if isinstance(name_or_path, Scenario):
        return name_or_path
    if name_or_path in _REGISTRY:
        return _REGISTRY[name_or_path]
    if name_or_path.endswith((".yaml", ".yml")):
        return load_scenario_file(name_or_path)
    raise ConfigError(f"scenario = {name_or_path!r}: unknown scenario; choose one of "
                      f"{', '.join(_REGISTRY)} or give the path of a scenario YAML file")


_load_builtin()
