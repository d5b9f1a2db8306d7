"""``finsim train`` and ``finsim evaluate`` as functions.

Training writes, under ``out_dir``: a versioned registry
(``registry/mappo/vK``, metric = evaluation reward), plain checkpoint folders
``best`` and ``final`` (load with ``PolicyBrain.load("models/final")``), and
logs (``logs/training.csv``, ``training.jsonl``, TensorBoard when installed,
``alerts.json``).

Every write is crash-safe (see :mod:`finsim_mesa.learning.checkpoint`): a run
killed at any point leaves ``best``/``final`` complete (the previous ones or
the new ones), a registry that loads, and logs that parse, and a new run into
the same folder works. One run at a time writes to an output folder (a second
one is refused while the first runs).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from finsim_mesa.errors import ConfigError
from finsim_mesa.evaluation import EvaluationResult, evaluate_run, run_evaluation
from finsim_mesa.learning.checkpoint import (
    CheckpointError,
    ModelCheckpointer,
    NoCheckpoint,
    crash_point,
    install_folder,
    load_folder,
    locked,
    repair_folder,
    write_text_atomic,
)
from finsim_mesa.learning.logging import SystemMonitor, TrainingLogger
from finsim_mesa.learning.mappo import MAPPOConfig
from finsim_mesa.learning.policy_brain import PolicyBrain, actor_shape
from finsim_mesa.learning.trainer import Trainer, TrainerConfig

__all__ = ["evaluate_policy", "train_policy"]


def _obs_fields(env_params: dict[str, Any]) -> list[str]:
    """The observation column names of a model built with ``env_params``
    (stored in the metadata: a policy reads its columns by name)."""
    from finsim_mesa.model import FinancialModel
    from finsim_mesa.observation import observation_names

    m = FinancialModel(**(dict(env_params) | {"agent_collect_every": 0}))
    return observation_names(m.config, m.market.names)


class _Stopped(Exception):
    """Raised from the update callback when the caller asks training to stop."""


def _policy_reward(trainer: Trainer, scenarios: Sequence[str], seeds: Sequence[int]) -> float:
    brain = PolicyBrain(trainer.agent.actor, trainer.env.obs_dim)
    params = {k: v for k, v in trainer.env_params.items() if k != "scenario"}
    return float(np.mean([evaluate_run(brain, s, seed, **params)["episode_reward"]
                          for s in scenarios for seed in seeds]))


def _prepare_out(out: Path) -> None:
    """Create the output folder and check it can be written, before training."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {out} is a file; give a folder (--out)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ConfigError(f"output folder {out} cannot be written: {err.strerror or err} "
                          "(--out)") from None
    for name in ("logs", "registry", "best", "final"):
        if (out / name).exists() and not (out / name).is_dir():
            raise ConfigError(f"{out / name} is a file where training writes a folder; move "
                              "it away or choose another --out")


def _load_resume(resume: str | Path) -> tuple[dict, dict]:
    path = Path(resume)
    try:
        if (path / "index.json").exists():  # a registry model folder: its best version
            return ModelCheckpointer(path.parent).load_checkpoint(path.name, "best")
        return load_folder(path)
    except CheckpointError as err:
        raise CheckpointError(f"cannot resume (--resume {resume}): {err}") from None


def _resume_into(trainer: Trainer, weights: dict, meta: dict, resume: str | Path) -> None:
    """Load a checkpoint into the trainer, or a CheckpointError listing every
    setting that differs (before any training)."""
    obs_dim, hidden, normalize = actor_shape(meta, resume)
    mine = trainer.agent.config
    diffs = []
    if obs_dim != trainer.env.obs_dim:
        diffs.append(f"observation width {obs_dim} vs {trainer.env.obs_dim} (the "
                     "infrastructure layer must be on or off in both)")
    if hidden != mine.hidden:
        diffs.append(f"hidden units {hidden} vs {mine.hidden} (--hidden {hidden})")
    if normalize != mine.normalize_obs:
        diffs.append(f"normalize_obs {normalize} vs {mine.normalize_obs} (--normalize-obs "
                     f"{'on' if normalize else 'off'})")
    saved_gs = meta["mappo"].get("global_state")
    if isinstance(saved_gs, dict):
        for key, value in mine.to_dict()["global_state"].items():
            if key in saved_gs and saved_gs[key] != value:
                diffs.append(f"global_state.{key} {saved_gs[key]!r} vs {value!r}")
        if not saved_gs.get("use_attention", True):
            env = meta.get("env") if isinstance(meta.get("env"), dict) else {}
            if env.get("n_banks") not in (None, trainer.env.n_banks):
                diffs.append(f"banks {env['n_banks']} vs {trainer.env.n_banks} (a critic "
                             "without attention has one input per bank; --banks "
                             f"{env['n_banks']})")
    if diffs:
        raise CheckpointError(f"cannot resume from {resume}: the checkpoint does not fit this "
                              f"run's settings: {'; '.join(diffs)} (checkpoint vs this run); "
                              "train with the checkpoint's settings or without --resume")
    try:
        trainer.agent.load_state_dict(weights)
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[:3]
        raise CheckpointError(f"cannot resume from {resume}: its weights do not fit this "
                              f"run's networks: {' '.join(first)}") from None


def _start_from_actor(trainer: Trainer, folder: str | Path) -> None:
    """Load an actor folder's weights into the trainer's actor (same shapes)."""
    import torch

    from finsim_mesa.agents.actor import load_actor_folder

    brain = load_actor_folder(folder)
    actor = trainer.agent.actor
    if brain.obs_fields is not None and brain.obs_fields != _obs_fields(trainer.env_params):
        raise CheckpointError(f"initial actor {folder} reads other observation columns "
                              "than this run's model")
    try:
        got = actor.load_state_dict({k: torch.as_tensor(v) for k, v in brain.weights.items()},
                                    strict=False)
        # only the normaliser's statistics may be missing (an actor on raw observations)
        allowed = {"obs_mean", "obs_var", "obs_count"} if actor.normalize_obs else set()
        wrong = [*got.unexpected_keys, *(k for k in got.missing_keys if k not in allowed)]
        if wrong:
            raise RuntimeError(f"tensors missing or unexpected: {', '.join(wrong)}")
    except RuntimeError as err:
        first = str(err).strip().splitlines()[:2]
        raise CheckpointError(f"initial actor {folder} does not fit this run's actor "
                              f"(--hidden, --normalize-obs): {' '.join(first)}") from None


def train_policy(episodes: int = 2000, seed: int = 42, scenarios: Sequence[str] = ("normal",),
                 out_dir: str | Path = "models", eval_every: int = 200,
                 eval_seeds: Sequence[int] = (1001, 1002, 1003), progress: bool = True,
                 resume: str | Path | None = None, trainer_config: dict | None = None,
                 mappo_config: dict | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 on_record: Callable[[dict[str, Any], Trainer], None] | None = None,
                 init_actor: str | Path | None = None,
                 **env_params: Any) -> dict[str, Any]:
    """Train MAPPO; returns a summary (paths, best evaluation reward, throughput).

    ``should_stop`` is asked after every update; when it answers True training
    ends early and the policy reached so far is evaluated and saved as
    ``final`` (summary ``stopped`` = True). ``on_record`` receives each update's
    log record and the trainer (the API's status and live weights use it).
    ``init_actor``: an actor folder (``weights.safetensors`` + ``meta.json``, as
    :mod:`finsim_mesa.learning.evolve` writes) whose weights the actor starts
    from (the critic starts fresh).

    The output folder, the resumed checkpoint and its fit with the settings are
    checked before training (a :class:`FinsimError` saying what is wrong).
    """
    out = Path(out_dir)
    _prepare_out(out)
    resumed = _load_resume(resume) if resume else None
    if init_actor is not None and resume:
        raise ConfigError("give an initial actor or --resume, not both")
    with locked(out, wait=False, what=" (another training run writes there)"):
        for name in ("best", "final"):  # finish or undo what a killed run left
            repair_folder(out / name)
        return _train(out, episodes, seed, scenarios, eval_every, eval_seeds, progress,
                      resume, resumed, trainer_config, mappo_config, should_stop, on_record,
                      env_params, init_actor)


def _train(out: Path, episodes: int, seed: int, scenarios: Sequence[str], eval_every: int,
           eval_seeds: Sequence[int], progress: bool, resume: str | Path | None,
           resumed: tuple[dict, dict] | None, trainer_config: dict | None,
           mappo_config: dict | None, should_stop: Callable[[], bool] | None,
           on_record: Callable[[dict[str, Any], Trainer], None] | None,
           env_params: dict[str, Any], init_actor: str | Path | None = None
           ) -> dict[str, Any]:
    from tqdm import tqdm

    tcfg = TrainerConfig(episodes=episodes, seed=seed, curriculum=list(scenarios),
                         **(trainer_config or {}))
    trainer = Trainer({"n_banks": 30, "steps": 50} | env_params, tcfg,
                      MAPPOConfig(**(mappo_config or {})))
    if resumed is not None:
        _resume_into(trainer, *resumed, resume)
    if init_actor is not None:
        _start_from_actor(trainer, init_actor)
    logger = TrainingLogger(out / "logs")
    monitor = SystemMonitor({"default_rate": 0.5})
    registry = ModelCheckpointer(out / "registry")
    meta = {"obs_dim": trainer.env.obs_dim, "mappo": trainer.agent.config.to_dict(),
            "trainer": tcfg.to_dict(), "env": trainer.env_params,
            "obs_fields": _obs_fields(trainer.env_params)}
    state = {"best": -np.inf, "next_eval": eval_every, "collect": 0.0, "update": 0.0}
    bar = tqdm(total=episodes, desc="training", unit="ep", disable=not progress)
    last = time.perf_counter()

    def save(name: str, metric: float | None) -> Path:
        version = registry.save_checkpoint("mappo", trainer.agent.state_dict(),
                                           meta | {"episode": trainer.episode}, metric)
        crash_point(f"train.saved_{name}")
        # out is locked by this run: no second lock on it
        dest = install_folder(registry.root / "mappo" / version, out / name, lock=False)
        crash_point(f"train.installed_{name}")
        return dest

    def on_update(record: dict[str, Any]) -> None:
        nonlocal last
        recent = trainer.history[-trainer.config.episodes_per_update:]
        record["default_rate"] = float(np.mean([h["default_rate"] for h in recent]))
        if trainer.episode >= state["next_eval"] or trainer.episode >= episodes:
            state["next_eval"] += eval_every
            record["eval_reward"] = _policy_reward(trainer, scenarios, eval_seeds)
            if record["eval_reward"] > state["best"]:
                state["best"] = record["eval_reward"]
                save("best", record["eval_reward"])
        logger.log(record)
        monitor.check(record)
        if on_record is not None:
            on_record(record, trainer)
        bar.update(trainer.episode - bar.n)
        bar.set_postfix(reward=f"{record['reward']:.3f}", scenario=record["scenario"])
        last = time.perf_counter()
        crash_point("train.update")
        if should_stop is not None and should_stop():
            raise _Stopped

    t0 = time.perf_counter()
    stopped = False
    try:
        trainer.train(callback=on_update)
    except _Stopped:
        stopped = True
    wall = time.perf_counter() - t0
    bar.close()
    final_reward = _policy_reward(trainer, scenarios, eval_seeds)
    final = save("final", final_reward)
    if final_reward > state["best"]:
        state["best"] = final_reward
        save("best", final_reward)
    logger.close()
    write_text_atomic(out / "logs" / "alerts.json", json.dumps(monitor.alerts, indent=2),
                      point="alerts")
    steps = sum(h["steps"] for h in trainer.history)
    return {"final": str(final), "best": str(out / "best"), "best_eval_reward": state["best"],
            "final_eval_reward": final_reward, "episodes": trainer.episode,
            "wall_seconds": wall, "agent_steps_per_second": steps * trainer.env.n_banks / wall,
            "alerts": len(monitor.alerts), "stopped": stopped}


TEST_SEEDS = 10_000  # the default test block: 10000, 10001, ...


def check_test_seeds(start: int, episodes: int) -> None:
    """Refuse a test block that is not whole, starts below 0 or reaches the
    training seeds (from 1,000,000)."""
    if (isinstance(start, bool) or not isinstance(start, int | np.integer) or start < 0
            or start + episodes > 1_000_000):
        raise ConfigError(f"test seeds from {start!r} ({episodes} episodes): give a whole "
                          "number >= 0 whose block ends below 1,000,000 (the training "
                          "seeds), e.g. 10000 (the default) or 50000")


def evaluate_policy(model: str | Path, episodes: int = 50, baselines: bool = True,
                    scenarios: Sequence[str] | None = None, out_dir: str | Path | None = None,
                    models_dir: str | Path = "models", progress: bool = True,
                    constants: Sequence[Sequence[float]] = (),
                    best_constant_budget: tuple[int, int, int] | None = None,
                    test_seeds: int = TEST_SEEDS, workers: int = 1) -> EvaluationResult:
    """Compare a trained policy (``final``, ``best``, ``shipped`` or a path) with
    the baselines on its training scenarios (or ``scenarios``; ``"mixture"``
    allowed) over ``episodes`` test seeds from ``test_seeds`` (10000; a block
    must end below the training seeds, 1,000,000).

    ``constants``: fixed action vectors added as ``constant:...`` baselines.
    ``best_constant_budget``: (selection seeds, CEM iterations, population): also
    search the best constant on selection seeds (from 20000, disjoint from the
    test seeds) and add it as ``best_constant``. ``workers``: forked processes
    for the evaluation episodes (the same rows)."""
    check_test_seeds(test_seeds, episodes)
    if str(model) == "shipped":
        from finsim_mesa.policies import shipped_brain

        brain = shipped_brain()
    else:
        path = Path(model)
        if model in ("final", "best"):
            path = Path(models_dir) / str(model)
        try:
            brain = PolicyBrain.load(path)
        except NoCheckpoint as err:
            hint = (f"train one with `finsim train --out {models_dir}` (it writes best/ and "
                    "final/ there), or point --models at the folder a training wrote"
                    if model in ("final", "best") else
                    "give --model final, best, shipped or a checkpoint folder `finsim train` "
                    "wrote")
            raise NoCheckpoint(f"there is no trained model at {path}: {err.reason}; {hint}"
                               ) from None
    env = dict(brain.meta.get("env", {}))
    env.pop("scenario", None)
    trainer = brain.meta.get("trainer", {})
    train_scenarios = (["mixture"] if trainer.get("conditions")
                       else trainer.get("curriculum", ["normal"]))
    brains: dict[str, Any] = {"policy": brain}
    if baselines:
        from finsim_mesa.agents.brains import BRAINS

        # every built-in brain (the shipped "mappo" too, unless it is the policy)
        brains |= {name: name for name in BRAINS if not (name == "mappo"
                                                         and str(model) == "shipped")}
    from finsim_mesa.agents.brains import ConstantBrain

    for c in constants:
        b = ConstantBrain(c)
        brains[b.name] = b
    scen = list(scenarios or train_scenarios)
    if best_constant_budget is not None:
        from finsim_mesa.search import best_constant

        n_sel, iters, pop = best_constant_budget
        found = best_constant(scen, n_sel, iterations=iters, population=pop, **env)
        brains["best_constant"] = ConstantBrain(found.best)
        if progress:
            print(f"best constant on {n_sel} selection seeds: {found.best.tolist()} "
                  f"(score {found.value:.4g}, {found.evaluations} candidates)")
    seeds = list(range(test_seeds, test_seeds + episodes))
    return run_evaluation(brains, scen, seeds, out_dir=out_dir, progress=progress,
                          workers=workers, **env)
