"""Training jobs (start, status, stop) and saved policies (list, save, load
into a simulation). Without the ``learn`` extra these answer 503."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from finsim_mesa.api.deps import Limits, SimId, Store, Training
from finsim_mesa.api.payloads import bank_ids
from finsim_mesa.api.schemas import (
    ModelInfo,
    ModelLoadRequest,
    ModelSaveRequest,
    SimulationInfo,
    TrainRequest,
    TrainStatus,
)
from finsim_mesa.api.sessions import ApiLimits, Conflict
from finsim_mesa.errors import FinsimError
from finsim_mesa.scenarios import list_scenarios

__all__ = ["router"]

router = APIRouter()


def _check_job(req: TrainRequest, limits: ApiLimits) -> None:
    if req.episodes > limits.max_train_episodes:
        raise FinsimError(f"episodes = {req.episodes}: at most "
                          f"{limits.max_train_episodes} per job")
    if req.num_banks > limits.max_train_banks:
        raise FinsimError(f"num_banks = {req.num_banks}: at most "
                          f"{limits.max_train_banks} for training")
    bad = [s for s in req.scenarios if s not in list_scenarios()]
    if bad:
        raise FinsimError(f"scenarios {bad} are unknown for training; choose from "
                          f"{', '.join(list_scenarios())}")


# ------------------------------------------------------------ training
@router.post("/train/start", response_model=TrainStatus, tags=["training"])
def train_start(req: TrainRequest, training: Training, limits: Limits) -> Any:
    """Start a MAPPO training job in the background (one at a time)."""
    training.require()
    _check_job(req, limits)
    try:
        return training.start(req.model_dump())
    except RuntimeError as err:
        raise Conflict(str(err)) from None


@router.get("/train/status", response_model=TrainStatus, tags=["training"])
def train_status(training: Training) -> Any:
    """State, progress, latest rewards and evaluation of the current job."""
    return training.status()


@router.post("/train/stop", response_model=TrainStatus, tags=["training"])
def train_stop(training: Training) -> Any:
    """Ask the job to stop after the current update (its policy is saved)."""
    try:
        return training.stop()
    except RuntimeError as err:
        raise Conflict(str(err)) from None


# ------------------------------------------------------------ models
@router.get("/models", response_model=list[ModelInfo], tags=["models"])
def models(training: Training) -> Any:
    """Saved policies: registry versions and model folders."""
    return training.list()


@router.post("/models/save", response_model=ModelInfo, tags=["models"])
def models_save(req: ModelSaveRequest, training: Training) -> Any:
    """Save the training job's latest policy as a new registry version."""
    try:
        metric = req.metric
        if metric is None and training.job is not None:
            metric = training.job.get("eval_reward")
        saved = training.save(req.name, metric)
    except RuntimeError as err:
        raise Conflict(str(err)) from None
    return ModelInfo(name=f"{saved['model']}/{saved['version']}", kind="registry",
                     model_id=saved["model"], version=saved["version"], metric=metric,
                     created=None, episode=None)


@router.post("/models/load", response_model=SimulationInfo, tags=["models"])
def models_load(req: ModelLoadRequest, store: Store, training: Training,
                sim_id: SimId = None) -> SimulationInfo:
    """Let a saved policy decide for the simulation's banks from the next step."""
    training.require()
    session = store.get(sim_id)
    brain = training.resolve(req.model, req.version)
    brain.deterministic = req.deterministic
    with session.op_lock, session.state_lock:
        m = session.model
        if req.banks is None:
            spec: Any = brain
        else:
            ids = bank_ids({str(b): brain for b in req.banks}, m.n_banks, "banks")
            current = dict(enumerate(m.brains.per_bank))
            spec = [ids.get(i, current[i]) for i in range(m.n_banks)]
        m.set_brains(spec)
        session.brain_spec, session.policy = spec, req.model
    return SimulationInfo(**session.info())
