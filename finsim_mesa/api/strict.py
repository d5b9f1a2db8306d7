"""Building blocks of the request models (:mod:`finsim_mesa.api.schemas`):
strict request parsing, JSON's one number type, the names and ids clients
send, and the ModelConfig fields a client may set.

Requests are strict: unknown fields, ``true`` for a number, ``1.5`` for an
integer, ``null`` where no null is documented, NaN and Infinity are refused;
``3.0`` is the integer 3 (JSON has one number type, and JSON Schema agrees).
"""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, model_validator

from finsim_mesa.agents.brains import BRAINS
from finsim_mesa.config import ModelConfig

__all__ = ["BALANCE_SHEET_TABLES", "SERVER_SET", "TOPLEVEL", "TOPOLOGIES", "BankId", "BankKey",
           "BrainName", "Name", "OneBankCount", "SimulationConfig", "Strict", "drop_defaults"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
BankKey = Annotated[str, StringConstraints(pattern=r"^(0|[1-9][0-9]{0,6})$")]
BankId = Annotated[int, Field(ge=0, le=10_000_000)]
BrainName = Literal[tuple(BRAINS)]  # type: ignore[valid-type]
# the generators a client may ask for ('user' networks come from Python, not JSON)
TOPOLOGIES = tuple(t for t in get_args(ModelConfig.model_fields["topology"].annotation)
                   if t != "user")
# top-level fields of /simulation/init (never inside its ``config``); the
# server sets agent_collect_every (0: the API reads agent state live)
TOPLEVEL = ("n_banks", "topology", "scenario", "brain", "steps", "n_exchanges", "n_ccps")
SERVER_SET = ("agent_collect_every",)
# ``balance_sheets`` over HTTP: the names of the tables shipped with the package
# (``finsim_mesa.balance_sheets.read_table`` knows them by name), never a path
# on the server
BALANCE_SHEET_TABLES = ("eba2018",)


def drop_defaults(*names: str):
    """A json_schema_extra that removes ``default: null`` of fields whose null
    is refused (omitting them means something; sending null does not)."""
    def extra(schema: dict[str, Any]) -> None:
        for name in names:
            schema.get("properties", {}).get(name, {}).pop("default", None)
    return extra


def _integral(value: Any) -> Any:
    """JSON has one kind of number: ``3.0`` is the integer 3 (JSON Schema says
    so too), while ``true`` and ``3.5`` are not integers; nested values alike."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _json_numbers(cls, data: Any) -> Any:
        return _integral(data)


class OneBankCount(Strict):
    """A strict request with ``n_banks`` and its old name ``num_banks`` (both
    declared by the subclass): ``num_banks`` is copied to ``n_banks``, and
    giving both with different values is refused."""

    @model_validator(mode="after")
    def _one_bank_count(self) -> OneBankCount:
        if self.num_banks is not None:
            if self.n_banks is not None and self.n_banks != self.num_banks:
                raise ValueError(f"n_banks = {self.n_banks} and num_banks = {self.num_banks} "
                                 "differ; give n_banks only (num_banks is its old name)")
            self.n_banks = self.num_banks
        return self


def _plain(annotation: Any) -> bool:
    """A number, a flag or a choice of names (optionally None) — never free
    text, which in a configuration may be a file path, nor nested objects."""
    args = [a for a in get_args(annotation) if a is not type(None)] \
        if get_origin(annotation) in (Union, UnionType) else [annotation]
    return bool(args) and all(
        a in (int, float, bool) or (get_origin(a) is Literal
                                    and all(isinstance(v, str) for v in get_args(a)))
        for a in args)


def _config_model() -> type[BaseModel]:
    """The ModelConfig fields a client may set: numbers, flags and choices.
    Fields that take text (a file path, say) or nested objects are not
    offered over HTTP (``balance_sheets`` only as a choice of the shipped
    tables); nor are the top-level ones and those the server sets."""
    fields: dict[str, Any] = {"balance_sheets": (
        Literal[BALANCE_SHEET_TABLES] | None,  # type: ignore[valid-type]
        Field(None, description="real balance sheets: a table shipped with finsim ('eba2018': "
                                "the EBA 2018 stress-test sample, 48 banks, 2 asset classes); "
                                "it sets the banks (leave n_banks out) and has no interbank "
                                "network"))}
    for name, info in ModelConfig.model_fields.items():
        if name in TOPLEVEL or name in SERVER_SET or not _plain(info.annotation):
            continue
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata \
            else info.annotation
        fields[name] = (annotation, Field(info.default, description=info.description))

    def no_toplevel(cls: Any, data: Any) -> Any:
        if isinstance(data, dict):
            clash = sorted(set(data) & set(TOPLEVEL))
            if clash:
                raise ValueError(f"config repeats {clash}: give them as top-level fields")
            fixed = sorted(set(data) & set(SERVER_SET))
            if fixed:
                raise ValueError(f"config sets {fixed}, which the server sets (the API reads "
                                 "agent state live)")
        return data

    return create_model(
        "SimulationConfig",
        __config__=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False),
        __doc__="Other ModelConfig fields (`finsim config` lists them with their meaning). "
                "Combinations are checked when the model is built (e.g. "
                "capital_requirement < capital_ratio); a refusal is a 422 naming them.",
        __validators__={"no_toplevel": model_validator(mode="before")(no_toplevel)},
        **fields)


SimulationConfig = _config_model()
