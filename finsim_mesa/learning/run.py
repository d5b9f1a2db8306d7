"""``finsim train`` and ``finsim evaluate`` as functions.

Training writes, under ``out_dir``: a versioned registry
(``registry/mappo/vK``, metric = evaluation reward), plain checkpoint folders
``best`` and ``final`` (load with ``PolicyBrain.load("models/final")``), and
logs (``logs/training.csv``, ``training.jsonl``, TensorBoard when installed,
``alerts.json``).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from finsim_mesa.evaluation import EvaluationResult, evaluate_run, run_evaluation
from finsim_mesa.learning.checkpoint import ModelCheckpointer, load_folder
from finsim_mesa.learning.logging import SystemMonitor, TrainingLogger
from finsim_mesa.learning.mappo import MAPPOConfig
from finsim_mesa.learning.policy_brain import PolicyBrain
from finsim_mesa.learning.trainer import Trainer, TrainerConfig

__all__ = ["evaluate_policy", "train_policy"]


class _Stopped(Exception):
    """Raised from the update callback when the caller asks training to stop."""


def _policy_reward(trainer: Trainer, scenarios: Sequence[str], seeds: Sequence[int]) -> float:
    brain = PolicyBrain(trainer.agent.actor, trainer.env.obs_dim)
    params = {k: v for k, v in trainer.env_params.items() if k != "scenario"}
    return float(np.mean([evaluate_run(brain, s, seed, **params)["episode_reward"]
                          for s in scenarios for seed in seeds]))


def train_policy(episodes: int = 2000, seed: int = 42, scenarios: Sequence[str] = ("normal",),
                 out_dir: str | Path = "models", eval_every: int = 200,
                 eval_seeds: Sequence[int] = (1001, 1002, 1003), progress: bool = True,
                 resume: str | Path | None = None, trainer_config: dict | None = None,
                 mappo_config: dict | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 on_record: Callable[[dict[str, Any], Trainer], None] | None = None,
                 **env_params: Any) -> dict[str, Any]:
    """Train MAPPO; returns a summary (paths, best evaluation reward, throughput).

    ``should_stop`` is asked after every update; when it answers True training
    ends early and the policy reached so far is evaluated and saved as
    ``final`` (summary ``stopped`` = True). ``on_record`` receives each update's
    log record and the trainer (the API's status and live weights use it).
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tcfg = TrainerConfig(episodes=episodes, seed=seed, curriculum=list(scenarios),
                         **(trainer_config or {}))
    trainer = Trainer({"n_banks": 30, "steps": 50} | env_params, tcfg,
                      MAPPOConfig(**(mappo_config or {})))
    if resume:
        weights, _ = load_folder(resume)
        trainer.agent.load_state_dict(weights)
    logger = TrainingLogger(out / "logs")
    monitor = SystemMonitor({"default_rate": 0.5})
    registry = ModelCheckpointer(out / "registry")
    meta = {"obs_dim": trainer.env.obs_dim, "mappo": trainer.agent.config.to_dict(),
            "trainer": tcfg.to_dict(), "env": trainer.env_params}
    state = {"best": -np.inf, "next_eval": eval_every, "collect": 0.0, "update": 0.0}
    bar = tqdm(total=episodes, desc="training", unit="ep", disable=not progress)
    last = time.perf_counter()

    def save(name: str, metric: float | None) -> Path:
        version = registry.save_checkpoint("mappo", trainer.agent.state_dict(),
                                           meta | {"episode": trainer.episode}, metric)
        dest = out / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(registry.root / "mappo" / version, dest)
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
    (out / "logs" / "alerts.json").write_text(json.dumps(monitor.alerts, indent=2))
    steps = sum(h["steps"] for h in trainer.history)
    return {"final": str(final), "best": str(out / "best"), "best_eval_reward": state["best"],
            "final_eval_reward": final_reward, "episodes": trainer.episode,
            "wall_seconds": wall, "agent_steps_per_second": steps * trainer.env.n_banks / wall,
            "alerts": len(monitor.alerts), "stopped": stopped}


def evaluate_policy(model: str | Path, episodes: int = 50, baselines: bool = True,
                    scenarios: Sequence[str] | None = None, out_dir: str | Path | None = None,
                    models_dir: str | Path = "models", progress: bool = True
                    ) -> EvaluationResult:
    """Compare a trained policy (``final``, ``best`` or a path) with the baselines
    on its training scenarios (or ``scenarios``) over ``episodes`` seeds."""
    path = Path(model)
    if model in ("final", "best"):
        path = Path(models_dir) / str(model)
    brain = PolicyBrain.load(path)
    env = dict(brain.meta.get("env", {}))
    env.pop("scenario", None)
    train_scenarios = brain.meta.get("trainer", {}).get("curriculum", ["normal"])
    brains: dict[str, Any] = {"policy": brain}
    if baselines:
        from finsim_mesa.agents.brains import BRAINS

        brains |= {name: name for name in BRAINS}
    seeds = list(range(10_000, 10_000 + episodes))
    return run_evaluation(brains, scenarios or train_scenarios, seeds, out_dir=out_dir,
                          progress=progress, **env)
