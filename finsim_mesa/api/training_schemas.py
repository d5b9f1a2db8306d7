"""Request and response models of training and the model store
(``/train/*``, ``/models*``); the others are in :mod:`finsim_mesa.api.schemas`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from finsim_mesa.api.schemas import Banks
from finsim_mesa.api.strict import Name, OneBankCount, Strict, drop_defaults

__all__ = ["ModelInfo", "ModelLoadRequest", "ModelSaveRequest", "TrainRequest", "TrainStatus"]


class TrainRequest(OneBankCount):
    model_config = ConfigDict(json_schema_extra=drop_defaults("episodes", "n_banks",
                                                               "num_banks"))

    episodes: int = Field(None, ge=1, description="training episodes (default 200, or the "
                                                  "server's limit if lower)")
    scenarios: list[str] = Field(["normal"], min_length=1, max_length=8,
                                 description="curriculum, in order")
    n_banks: int = Field(None, ge=2, description="banks (default 30, or the server's limit "
                                                 "if lower)")
    num_banks: int = Field(None, ge=2, deprecated=True,
                           description="old name of n_banks, still accepted")
    steps: int = Field(50, ge=1, le=1000, description="episode length")
    seed: int = Field(42, ge=0, le=2**32 - 1)
    eval_every: int = Field(200, ge=1, description="episodes between evaluations")
    eval_seeds: int = Field(3, ge=1, le=50, description="evaluation episodes each time")


class TrainStatus(BaseModel):
    model_config = ConfigDict(extra="allow")

    state: Literal["idle", "running", "stopping", "stopped", "finished", "failed"]
    job_id: str | None = None


class ModelSaveRequest(Strict):
    name: Name = Field("api", description="registry id; each save adds a version vK")
    metric: float | None = Field(None, description="score used to pick 'best' (default: the "
                                                   "job's last evaluation reward)")


class ModelLoadRequest(Strict):
    model: Annotated[str, StringConstraints(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,63}){0,7}$")] \
        = Field(description="a name from GET /models ('api', 'api/v2', 'final', ...)")
    version: str = Field("best", pattern=r"^(best|latest|v[0-9]{1,6})$")
    banks: Banks | None = Field(None, description="banks it decides for (null: all)")
    deterministic: bool = Field(True, description="act with the mean action, or sample")


class ModelInfo(BaseModel):
    name: str
    kind: Literal["registry", "folder"]
    model_id: str | None
    version: str | None
    metric: float | None
    created: str | None
    episode: int | None
    error: str | None = Field(None, description="why this model cannot be loaded (a damaged "
                                                "or incomplete checkpoint); null when fine")
