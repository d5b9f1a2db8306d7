"""Training jobs and trained models behind the API.

One training job at a time runs in a background thread
(:func:`finsim_mesa.learning.run.train_policy`, so it writes the same
``registry``, ``best``, ``final`` and ``logs`` as ``finsim train``) under
``models_dir/jobs/<job_id>``. ``POST /train/stop`` asks it to end after the
current update; the policy reached so far is still evaluated and saved.

Without torch (the ``learn`` extra) every training and model request is
answered 503 with the install command.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from finsim_mesa.errors import FinsimError

__all__ = ["LEARN_MISSING", "LearnMissing", "TrainingManager", "check_name", "learn_available",
           "weights_digest"]

LEARN_MISSING = ("training and trained models need the 'learn' extra (torch, pettingzoo, "
                 "safetensors), which this server does not have: pip install "
                 "'finsim-mesa[learn]' and restart the server")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # the whole name (fullmatch)


class LearnMissing(FinsimError):
    """The server was installed without the ``learn`` extra."""


def learn_available() -> bool:
    """Whether torch and the other learning dependencies can be imported."""
    return all(importlib.util.find_spec(m) is not None
               for m in ("torch", "pettingzoo", "safetensors"))


def check_name(name: str, what: str) -> str:
    """``name`` if it is a plain name (a trailing newline is refused too).

    Raises:
        FinsimError: naming ``what`` and the characters allowed.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise FinsimError(f"{what} {name!r}: use letters, digits, '_', '-' or '.' (at most 64 "
                          "characters, not starting with '.')")
    return name


class TrainingManager:
    """Runs one training job at a time and tracks the saved models.

    Args:
        models_dir: where jobs write their output and ``POST /models/save``
            writes the registry (``models_dir/registry``).
        available: tells whether the learn extra is installed (tests replace it).
    """

    def __init__(self, models_dir: str | Path, available: Any = learn_available) -> None:
        self.models_dir = Path(models_dir)
        self.available = available
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.job: dict[str, Any] | None = None
        self._weights: dict[str, Any] | None = None  # latest policy of the current/last job
        self._meta: dict[str, Any] | None = None
        self._count = 0

    def require(self) -> None:
        if not self.available():
            raise LearnMissing(LEARN_MISSING)

    # ------------------------------------------------------------ training
    def start(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start a job (``episodes``, ``scenarios``, ``n_banks``, ``steps``,
        ``seed``, ``eval_every``). Raises RuntimeError if one is running."""
        self.require()
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise RuntimeError(f"training job {self.job['job_id']} is still running; "
                                   "POST /train/stop first or wait for it to finish")
            self._count += 1
            job_id = f"job-{self._count}-{time.strftime('%Y%m%d-%H%M%S')}"
            self._stop.clear()
            self.job = {"job_id": job_id, "state": "running", "request": request,
                        "episode": 0, "episodes": request["episodes"], "updates": 0,
                        "reward": None, "eval_reward": None, "default_rate": None,
                        "scenario": request["scenarios"][0], "started": time.time(),
                        "finished": None, "error": None, "summary": None,
                        "out_dir": str(self.models_dir / "jobs" / job_id), "history": []}
            self._thread = threading.Thread(target=self._run, args=(self.job,),
                                            name=f"finsim-{job_id}", daemon=True)
            self._thread.start()
            return self.status()

    def _run(self, job: dict[str, Any]) -> None:
        from finsim_mesa.learning.run import train_policy

        req = job["request"]

        def on_record(record: dict[str, Any], trainer: Any) -> None:
            weights = {k: v.detach().clone() for k, v in trainer.agent.state_dict().items()}
            meta = {"obs_dim": trainer.env.obs_dim, "mappo": trainer.agent.config.to_dict(),
                    "trainer": trainer.config.to_dict(), "env": trainer.env_params,
                    "episode": trainer.episode, "job_id": job["job_id"]}
            with self._lock:
                self._weights, self._meta = weights, meta
                job.update(episode=trainer.episode, updates=job["updates"] + 1,
                           reward=record.get("reward"), scenario=record.get("scenario"),
                           default_rate=record.get("default_rate"))
                if record.get("eval_reward") is not None:
                    job["eval_reward"] = record["eval_reward"]
                job["history"] = (job["history"] + [
                    {k: record.get(k) for k in ("episode", "reward", "default_rate",
                                                "eval_reward", "entropy")}])[-200:]

        try:
            summary = train_policy(
                episodes=req["episodes"], seed=req["seed"], scenarios=req["scenarios"],
                out_dir=job["out_dir"], eval_every=req["eval_every"],
                eval_seeds=tuple(range(1001, 1001 + req["eval_seeds"])), progress=False,
                should_stop=self._stop.is_set, on_record=on_record,
                n_banks=req["n_banks"], steps=req["steps"])
            with self._lock:
                job.update(state="stopped" if summary["stopped"] else "finished",
                           summary=summary, finished=time.time())
        except Exception as err:  # reported through /train/status, never lost
            with self._lock:
                job.update(state="failed", error=f"{type(err).__name__}: {err}",
                           traceback=traceback.format_exc(limit=5), finished=time.time())

    def stop(self) -> dict[str, Any]:
        self.require()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                raise RuntimeError("no training job is running (GET /train/status)")
            self._stop.set()
            self.job["state"] = "stopping"
        return self.status()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the current job's thread; True if it has ended."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return t is None or not t.is_alive()

    def status(self) -> dict[str, Any]:
        self.require()
        with self._lock:
            if self.job is None:
                return {"state": "idle", "job_id": None}
            out = {k: v for k, v in self.job.items() if k != "traceback"}
            out["history"] = list(out["history"])
            out["elapsed_seconds"] = round((self.job["finished"] or time.time())
                                           - self.job["started"], 3)
            return out

    # ------------------------------------------------------------ models
    def save(self, name: str, metric: float | None) -> dict[str, Any]:
        """Save the current job's latest policy as a new version of ``name``."""
        self.require()
        check_name(name, "model name")
        with self._lock:
            weights, meta = self._weights, self._meta
        if weights is None:
            raise RuntimeError("there is no trained policy to save yet: POST /train/start and "
                               "wait for at least one update (GET /train/status)")
        from finsim_mesa.learning.checkpoint import ModelCheckpointer

        reg = ModelCheckpointer(self.models_dir / "registry")
        version = reg.save_checkpoint(name, weights, dict(meta), metric)
        return {"model": name, "version": version,
                "path": str(self.models_dir / "registry" / name / version)}

    def list(self) -> list[dict[str, Any]]:
        """Registry versions and plain model folders (``best``, ``final``, jobs);
        hidden folders (``.name``: temporary folders of a save) are not models.

        A checkpoint that cannot be read (a damaged or incomplete ``meta.json``
        or index) is listed with ``error`` saying why, never failing the list."""
        self.require()
        out: list[dict[str, Any]] = []
        reg = self.models_dir / "registry"
        if reg.is_dir():
            for folder in sorted(p for p in reg.iterdir() if p.is_dir()
                                 and not p.name.startswith(".")):
                out.extend(self._registry_entries(folder))
        if self.models_dir.is_dir():
            for meta in sorted(self.models_dir.glob("**/meta.json")):
                rel = meta.parent.relative_to(self.models_dir).as_posix()
                if rel == "." or rel.startswith("registry/") or "/registry/" in rel:
                    continue
                if any(part.startswith(".") for part in rel.split("/")):
                    continue  # a temporary folder (a save in progress, or one a kill left)
                out.append(_entry(rel, "folder", *_read_meta(meta)))
        return out

    def _registry_entries(self, folder: Path) -> list[dict[str, Any]]:
        from finsim_mesa.learning.checkpoint import ModelCheckpointer

        try:
            found = ModelCheckpointer(folder.parent).list_checkpoints(folder.name)
        except Exception as err:  # a damaged index: listed, not fatal
            return [_entry(folder.name, "registry", {"model_id": folder.name},
                           f"cannot be read: {err}")]
        out = []
        for m in found:
            m = m if isinstance(m, dict) else {}
            version = m.get("version")
            name = f"{folder.name}/{version}" if isinstance(version, str) else folder.name
            out.append(_entry(name, "registry", m | {"model_id": folder.name},
                              m.get("error")))
        return out

    def resolve(self, name: str, version: str) -> Any:
        """Load a policy brain by registry name (``id`` or ``id/vK``) or folder
        name under ``models_dir`` (``final``, ``jobs/<job>/best``)."""
        self.require()
        from finsim_mesa.learning.policy_brain import PolicyBrain

        parts = name.split("/")
        if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise FinsimError(f"model {name!r}: give a name from GET /models (a registry id "
                              "such as 'api' or 'api/v2', or a folder such as 'final')")
        for p in parts:
            check_name(p, "model name part")
        reg = self.models_dir / "registry"
        if (reg / parts[0] / "index.json").exists() and len(parts) <= 2:
            return _load(PolicyBrain, name, reg / parts[0], self.models_dir,
                         version=parts[1] if len(parts) == 2 else version)
        folder = self.models_dir / name
        if (folder / "meta.json").exists():
            return _load(PolicyBrain, name, folder, self.models_dir)
        raise FileNotFoundError(f"model {name!r} not found under {self.models_dir}; "
                                "GET /models lists what can be loaded")

    def source(self, brain: Any, name: str, version: str, deterministic: bool
               ) -> dict[str, Any]:
        """How to load ``brain`` (resolved from ``name`` and ``version``) again:
        the version it resolved to (``best`` moves when a better one is
        saved), the mode and a digest of its weights (the journal keeps it)."""
        found = brain.meta.get("version") if isinstance(brain.meta, dict) else None
        if "/" not in name and isinstance(found, str) and re.fullmatch(r"v[0-9]{1,6}", found) \
                and (self.models_dir / "registry" / name / "index.json").exists():
            version = found
        return {"model": name, "version": version, "deterministic": bool(deterministic),
                "weights": weights_digest(brain)}

    def brain_for(self, source: dict[str, Any]) -> Any:
        """The policy brain a :meth:`source` describes, checked against its digest.

        Raises:
            CheckpointError: the model's weights are no longer those loaded then.
        """
        from finsim_mesa.learning.checkpoint import CheckpointError

        brain = self.resolve(source["model"], source["version"])
        brain.deterministic = bool(source["deterministic"])
        if weights_digest(brain) != source["weights"]:
            raise CheckpointError(f"model {source['model']!r} ({source['version']}) has other "
                                  "weights than when it was loaded into this simulation (it "
                                  "was replaced or retrained)")
        return brain


def _load(policy_brain: Any, name: str, path: Path, root: Path, **kw: Any) -> Any:
    """``PolicyBrain.load`` confined to ``root`` (the models folder: nothing read
    may resolve outside it, symlinks included), with any failure to read the
    checkpoint as a CheckpointError naming the model (a 422, never a server
    error)."""
    from finsim_mesa.learning.checkpoint import CheckpointError

    try:
        return policy_brain.load(path, root=root, **kw)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError,
            OSError) as err:
        what = f"field {err}" if isinstance(err, KeyError) else f"{type(err).__name__}: {err}"
        raise CheckpointError(f"model {name!r} cannot be loaded: its checkpoint is damaged "
                              f"or incomplete ({what})") from None


def weights_digest(brain: Any) -> str:
    """SHA-256 (hex) of a policy brain's actor weights (names, dtypes, shapes, bits)."""
    import hashlib

    h = hashlib.sha256()
    for key, tensor in sorted(brain.actor.state_dict().items()):
        array = tensor.detach().cpu().contiguous().numpy()
        h.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def _read_meta(path: Path) -> tuple[dict[str, Any], str | None]:
    """A folder's meta.json as a dict, or ({}, why it cannot be read)."""
    try:
        meta = json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        return {}, f"{path.name} cannot be read: {err}"
    if not isinstance(meta, dict):
        return {}, f"{path.name} must be a JSON object, not a {type(meta).__name__}"
    return meta, None


def _entry(name: str, kind: str, meta: dict[str, Any], error: str | None) -> dict[str, Any]:
    """A row of GET /models, every field of the type the schema says (a
    hand-edited meta.json may hold anything)."""
    def text(v: Any) -> str | None:
        return v if isinstance(v, str) else None

    metric = meta.get("metric")
    metric = float(metric) if isinstance(metric, int | float) and not isinstance(
        metric, bool) and math.isfinite(metric) else None
    episode = meta.get("episode")
    return {"name": name, "kind": kind, "model_id": text(meta.get("model_id")),
            "version": text(meta.get("version")), "metric": metric,
            "created": text(meta.get("created")),
            "episode": episode if isinstance(episode, int) and not isinstance(episode, bool)
            else None, "error": text(error)}
