"""Export a trained checkpoint as the package's shipped policy (``brain="mappo"``).

    python -m finsim_mesa.learning.ship models/best --command "finsim train ..."

(or an actor folder as ``finsim train --init-search`` writes, ``OUT/evolved``)
writes ``finsim_mesa/policies/mappo/weights.safetensors`` (the actor's tensors
only: what acting needs, a few tens of kB) and ``meta.json`` (the training
command and settings, the observation fields the actor reads, and the
fixed-horizon scores of a few check seeds, which CI re-computes with the numpy
brain and compares). Check seeds start at 30000: not training (>= 1,000,000),
selection (1001..., 20000...) or test seeds (10000-10099).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from finsim_mesa.agents.actor import SHIPPED, ActorBrain
from finsim_mesa.files import write_bytes_atomic, write_text_atomic

__all__ = ["CHECK_SEEDS", "check_scores", "export_policy"]

CHECK_SEEDS = (30_000, 30_001, 30_002, 30_003)


def check_scores(brain: Any, env: dict[str, Any], seeds: tuple[int, ...] = CHECK_SEEDS
                 ) -> list[float]:
    """Fixed-horizon scores of ``brain`` on the mixture condition of each seed."""
    from finsim_mesa.evaluation import evaluate_run

    params = {k: v for k, v in env.items() if k != "scenario"}
    return [evaluate_run(brain, "mixture", s, **params)["episode_reward"] for s in seeds]


def export_policy(checkpoint: str | Path, dest: str | Path = SHIPPED, command: str = ""
                  ) -> dict[str, Any]:
    """Write the actor of ``checkpoint`` (a folder with weights.safetensors and
    meta.json, as ``finsim train`` writes: a training checkpoint, or an actor
    folder such as ``OUT/evolved``) to ``dest``; returns the new metadata."""
    from safetensors.numpy import save

    from finsim_mesa.agents.actor import load_actor_folder

    checkpoint = Path(checkpoint)
    try:
        is_actor = "format_version" not in json.loads((checkpoint / "meta.json").read_text())
    except (OSError, ValueError):
        is_actor = False  # load_folder says what is wrong
    if is_actor:  # numpy actor tensors already
        found = load_actor_folder(checkpoint)
        actor, meta = {f"actor.{k}": v for k, v in found.weights.items()}, found.meta
    else:
        from finsim_mesa.learning.folders import load_folder

        weights, meta = load_folder(checkpoint)
        actor = {k: v.detach().cpu().numpy() for k, v in weights.items()
                 if k.startswith("actor.") and k != "actor.obs_count"}
    if not meta.get("mappo", {}).get("normalize_obs"):
        actor.pop("actor.obs_mean", None)
        actor.pop("actor.obs_var", None)
    brain = ActorBrain({k[6:]: v for k, v in actor.items()}, meta.get("obs_fields"), True, meta)
    env = dict(meta.get("env", {}))
    out = {"obs_dim": brain.obs_dim, "obs_fields": meta.get("obs_fields"),
           "mappo": meta.get("mappo"), "trainer": meta.get("trainer"), "env": env,
           "episode": meta.get("episode"), "command": command,
           **({"evolve": meta["evolve"]} if "evolve" in meta else {}),
           "check": {"condition": "mixture", "seeds": list(CHECK_SEEDS),
                     "scores": check_scores(brain, env)}}
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(dest / "weights.safetensors", save(actor))
    write_text_atomic(dest / "meta.json", json.dumps(out, indent=1) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="checkpoint folder (e.g. models/best)")
    p.add_argument("--command", required=True, help="the command that trained it")
    p.add_argument("--dest", default=str(SHIPPED))
    args = p.parse_args(argv)
    meta = export_policy(args.checkpoint, args.dest, args.command)
    print(json.dumps(meta["check"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
