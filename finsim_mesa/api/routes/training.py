"""Training jobs (start, status, stop) and saved policies (list, save, load
into a simulation). Without the ``learn`` extra these answer 503."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from finsim_mesa.api.deps import Limits, SimId, Store, Training
from finsim_mesa.api.errors import Conflict, responses
from finsim_mesa.api.limits import ApiLimits
from finsim_mesa.api.openapi import default_train
from finsim_mesa.api.payloads import bank_ids, clean
from finsim_mesa.api.routing import FinsimRoute
from finsim_mesa.api.schemas import SimulationInfo
from finsim_mesa.api.training_schemas import (
    ModelInfo,
    ModelLoadRequest,
    ModelSaveRequest,
    TrainRequest,
    TrainStatus,
)
from finsim_mesa.errors import FinsimError
from finsim_mesa.observation import observation_names
from finsim_mesa.scenarios import list_scenarios

__all__ = ["router"]

router = APIRouter(route_class=FinsimRoute, responses=responses(503))


def _job(req: TrainRequest, limits: ApiLimits) -> dict[str, Any]:
    """The job a request asks for (defaults filled in), checked against the limits."""
    episodes, n_banks = default_train(limits)
    job = req.model_dump(exclude={"num_banks"}) | {
        "episodes": episodes if req.episodes is None else req.episodes,
        "n_banks": n_banks if req.n_banks is None else req.n_banks}
    if job["episodes"] > limits.max_train_episodes:
        raise FinsimError(f"episodes = {job['episodes']}: at most "
                          f"{limits.max_train_episodes} per job")
    if job["n_banks"] > limits.max_train_banks:
        raise FinsimError(f"n_banks = {job['n_banks']}: at most "
                          f"{limits.max_train_banks} for training")
    bad = [s for s in req.scenarios if s not in list_scenarios()]
    if bad:
        raise FinsimError(f"scenarios {bad} are unknown for training; choose from "
                          f"{', '.join(list_scenarios())}")
    return job


# ------------------------------------------------------------ training
@router.post("/train/start", response_model=TrainStatus, tags=["training"],
             responses=responses(409, 413, 422))
def train_start(req: TrainRequest, training: Training, limits: Limits) -> Any:
    """Start a MAPPO training job in the background (one at a time)."""
    training.require()
    job = _job(req, limits)
    try:
        return clean(training.start(job))
    except RuntimeError as err:
        raise Conflict(str(err)) from None


@router.get("/train/status", response_model=TrainStatus, tags=["training"])
def train_status(training: Training) -> Any:
    """State, progress, latest rewards and evaluation of the current job."""
    return clean(training.status())


@router.post("/train/stop", response_model=TrainStatus, tags=["training"],
             responses=responses(409))
def train_stop(training: Training) -> Any:
    """Ask the job to stop after the current update (its policy is saved)."""
    try:
        return clean(training.stop())
    except RuntimeError as err:
        raise Conflict(str(err)) from None


# ------------------------------------------------------------ models
@router.get("/models", response_model=list[ModelInfo], tags=["models"])
def models(training: Training) -> Any:
    """Saved policies: registry versions and model folders (a damaged one is
    listed with ``error``)."""
    return training.list()


@router.post("/models/save", response_model=ModelInfo, tags=["models"],
             responses=responses(409, 413, 422))
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
                     model_id=saved["model"], version=saved["version"], metric=clean(metric),
                     created=None, episode=None)


@router.post("/models/load", response_model=SimulationInfo, tags=["models"],
             responses=responses(404, 413, 422))
def models_load(req: ModelLoadRequest, store: Store, training: Training,
                sim_id: SimId = None) -> SimulationInfo:
    """Let a saved policy decide for the simulation's banks from the next step."""
    training.require()
    session = store.get(sim_id)
    if req.banks is not None:
        bank_ids({str(b): b for b in req.banks}, session.model.n_banks, "banks")
    brain = training.resolve(req.model, req.version)
    m = session.model
    width = len(observation_names(m.config, m.market.names))
    if brain.obs_dim != width:  # PolicyBrain.setup does not count per-class price columns
        raise FinsimError(f"policy {req.model!r} was trained on {brain.obs_dim} observation "
                          f"columns; this simulation's banks observe {width} (infrastructure "
                          f"layer {'on' if m.config.infrastructure else 'off'}, "
                          f"{m.config.n_assets} asset class(es)); use a simulation like the "
                          "one it was trained on")
    brain.deterministic = req.deterministic
    source = training.source(brain, req.model, req.version, req.deterministic)
    session.set_brains(brain, req.banks, req.model, source)
    return SimulationInfo(**session.info())
