"""Versioned checkpoints of trained policies, without pickled code.

A checkpoint is a folder ``<checkpoint_dir>/<model_id>/v<k>/`` holding
``weights.safetensors`` (tensors only) and ``meta.json`` (format version,
dimensions, hyper-parameters, environment parameters, metrics, package
versions, date). ``best``, ``latest`` and the next version number are recorded
in ``<model_id>/index.json``. A missing, truncated, corrupted, non-finite or
incompatible checkpoint is a :class:`CheckpointError` that says which and why.

Crash safety (a process killed at any instruction leaves a store that loads and
accepts new saves, and loses nothing that was saved before):

* a version is written into a hidden temporary folder (``.vK.tmp-XXXX``),
  every file and the folder are fsynced, and the folder is renamed into place;
  ``index.json`` is then replaced atomically (write aside, fsync, rename, fsync
  the folder). A complete version folder whose index entry was lost is adopted
  on reading; an incomplete one, a stray temporary folder or a version the
  index no longer lists is ignored (and temporary leftovers are removed by the
  next writer);
* version numbers never collide: the next one is above every number the index
  has recorded (deleted ones included) and every ``vK`` folder on disk;
* a plain checkpoint folder such as ``best`` or ``final`` is replaced with
  :func:`install_folder`: the new content is written and fsynced beside it,
  then swapped in with one atomic ``renameat2(RENAME_EXCHANGE)`` (Linux), so a
  reader always finds a complete folder. Where the exchange is not available
  the old folder is renamed aside first; a reader that finds the name missing
  in that instant reads the new, complete folder beside it, and the next
  writer finishes the swap;
* writers of one model folder (or of one output folder) take an exclusive
  ``flock`` on it, so two processes never interleave their steps.

Paths are confined: model ids and version names are plain names, and every
folder and file read through a store must resolve (symlinks followed) inside
the store's root.

``FINSIM_CRASH_AT=<point>[:<n>]`` makes the process SIGKILL itself the n-th
time it reaches ``<point>`` (the crash tests use it; see :func:`crash_point`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from finsim_mesa.errors import CheckpointError, NoCheckpoint
from finsim_mesa.files import (
    CRASH_ENV,
    crash_point,
    fsync_dir,
    locked,
    remove_strays,
    token,
    write_bytes_atomic,
    write_text_atomic,
)
from finsim_mesa.learning.folders import (
    EXCHANGE_ENV,
    FORMAT_VERSION,
    INDEX,
    META,
    WEIGHTS,
    check_finite,
    confine,
    install_folder,
    load_folder,
    looks_complete,
    meta_bytes,
    repair_folder,
    weight_bytes,
    write_folder,
)

__all__ = ["CRASH_ENV", "EXCHANGE_ENV", "FORMAT_VERSION", "CheckpointError", "ModelCheckpointer",
           "NoCheckpoint", "check_finite", "check_model_id", "confine", "crash_point",
           "install_folder", "load_folder", "locked", "repair_folder", "write_bytes_atomic",
           "write_text_atomic"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_VERSION = re.compile(r"v([1-9][0-9]{0,8})")

log = logging.getLogger("finsim_mesa.learning")


# ---------------------------------------------------------------- checks
def check_model_id(model_id: Any) -> str:
    """A model id must be a plain name: letters, digits, ``_ - .``, at most 64
    characters, not starting with ``.``, no ``..`` (checked with fullmatch:
    a trailing newline is refused too)."""
    if not isinstance(model_id, str) or not _NAME.fullmatch(model_id) or ".." in model_id:
        raise CheckpointError(f"model id {model_id!r}: use a plain name of letters, digits, "
                              "'_', '-' or '.' (at most 64 characters, not starting with '.', "
                              "no '..')")
    return model_id


def _version_number(name: Any) -> int | None:
    m = _VERSION.fullmatch(name) if isinstance(name, str) else None
    return int(m.group(1)) if m else None


def _finite_metric(metric: Any) -> float | None:
    if metric is None:
        return None
    if isinstance(metric, bool) or not isinstance(metric, int | float) or not math.isfinite(
            metric):
        raise CheckpointError(f"metric {metric!r}: give a finite number or None")
    return float(metric)


# ---------------------------------------------------------------- the store
def _is_model_dir(path: str) -> bool:
    """A folder with an index.json or a version folder."""
    if os.path.exists(os.path.join(path, INDEX)):
        return True
    try:
        return any(_version_number(n) is not None for n in os.listdir(path))
    except OSError:
        return False


def _empty_index() -> dict[str, Any]:
    return {"versions": [], "best": None, "latest": None, "best_metric": None, "next": 1}


class ModelCheckpointer:
    """Saves and loads versioned checkpoints under ``checkpoint_dir``."""

    def __init__(self, checkpoint_dir: str | Path) -> None:
        self.root = Path(checkpoint_dir)

    # ------------------------------------------------------------ paths
    def _model_dir(self, model_id: str) -> Path:
        check_model_id(model_id)
        folder = self.root / model_id
        if folder.exists() or folder.is_symlink():
            confine(folder, self.root)
        return folder

    def _version_dir(self, model_id: str, version: str) -> Path:
        if _version_number(version) is None:
            raise CheckpointError(f"model {model_id!r}: version {version!r} is not a version "
                                  "name (v1, v2, ...)")
        folder = self._model_dir(model_id) / version
        if folder.exists() or folder.is_symlink():
            confine(folder, self.root)
        return folder

    # ------------------------------------------------------------ the index
    def _read_index_file(self, model_id: str) -> dict[str, Any]:
        path = self._model_dir(model_id) / INDEX
        if not path.exists():
            return _empty_index()
        if path.is_symlink():
            confine(path, self.root)
        try:
            index = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{path} is corrupted: {err}") from None
        except OSError as err:
            raise CheckpointError(f"{path} cannot be read: {err}") from None
        return self._validated(index, path)

    @staticmethod
    def _validated(index: Any, path: Path) -> dict[str, Any]:
        def bad(what: str) -> CheckpointError:
            return CheckpointError(f"{path} is damaged: {what} (the version folders beside it "
                                   "are kept; restore or delete the index)")

        if not isinstance(index, dict):
            raise bad(f"it must be a JSON object, got a {type(index).__name__}")
        for key in ("versions", "best", "latest"):
            if key not in index:
                raise bad(f"the key {key!r} is missing")
        versions = index["versions"]
        if not isinstance(versions, list):
            raise bad(f"'versions' must be a list, got {versions!r}")
        for v in versions:
            if _version_number(v) is None:
                raise bad(f"'versions' lists {v!r}, which is not a version name (v1, v2, ...)")
        if len(set(versions)) != len(versions):
            raise bad("'versions' lists a version twice")
        for key in ("best", "latest"):
            if index[key] is not None and index[key] not in versions:
                raise bad(f"{key!r} is {index[key]!r}, which is not one of the versions")
        metric = index.get("best_metric")
        if metric is not None and (isinstance(metric, bool)
                                   or not isinstance(metric, int | float)):
            raise bad(f"'best_metric' must be a number or null, got {metric!r}")
        nxt = index.get("next")
        if nxt is not None and (isinstance(nxt, bool) or not isinstance(nxt, int) or nxt < 1):
            raise bad(f"'next' must be a positive integer, got {nxt!r}")
        highest = max((_version_number(v) or 0 for v in versions), default=0)
        return {"versions": list(versions), "best": index["best"], "latest": index["latest"],
                "best_metric": metric, "next": max(nxt or 1, highest + 1)}

    def _index(self, model_id: str) -> dict[str, Any]:
        """The index with complete version folders its last update missed
        (a save killed between the rename and the index write) adopted."""
        index = self._read_index_file(model_id)
        folder = self.root / model_id
        if not folder.is_dir():
            return index
        orphans = sorted((n, e) for e in os.scandir(folder)
                         if (n := _version_number(e.name)) is not None
                         and n >= index["next"] and e.name not in index["versions"])
        for n, e in orphans:
            path = Path(e.path)
            if e.is_symlink() or not looks_complete(path):
                continue  # incomplete (or not ours): ignored, its number skipped
            try:
                metric = json.loads((path / META).read_text()).get("metric")
                metric = _finite_metric(metric)
            except (OSError, ValueError, CheckpointError):
                metric = None
            self._record(index, e.name, metric)
            index["next"] = n + 1
            log.warning("adopted %s: a complete version its index did not list", path)
        return index

    @staticmethod
    def _record(index: dict[str, Any], version: str, metric: float | None) -> None:
        index["versions"].append(version)
        index["latest"] = version
        if metric is not None and (index["best_metric"] is None or metric > index["best_metric"]):
            index["best"], index["best_metric"] = version, metric
        if index["best"] is None:
            index["best"] = version

    def _write_index(self, model_id: str, index: dict[str, Any]) -> None:
        write_text_atomic(self._model_dir(model_id) / INDEX, json.dumps(index, indent=2),
                          point="index")

    @contextlib.contextmanager
    def writing(self, model_id: str) -> Iterator[Path]:
        """Hold the model folder's writer lock (and clear leftovers of killed writers)."""
        folder = self._model_dir(model_id)
        with locked(folder):
            remove_strays(folder)
            yield folder

    def _next_number(self, folder: Path, index: dict[str, Any]) -> int:
        on_disk = [n for e in os.scandir(folder) if (n := _version_number(e.name)) is not None]
        return max([index["next"] - 1, *on_disk]) + 1

    # ------------------------------------------------------------ API
    def save_checkpoint(self, model_id: str, weights: dict[str, torch.Tensor],
                        meta: dict[str, Any], metric: float | None = None) -> str:
        """Write a new version; it becomes ``latest`` and, if ``metric`` is the
        highest so far, ``best``. Returns the version name (``v1``, ``v2``, ...)."""
        check_model_id(model_id)
        metric = _finite_metric(metric)
        import numpy

        import finsim_mesa

        full_meta = {"format_version": FORMAT_VERSION, "model_id": model_id,
                     "version": None, "metric": metric,
                     "created": dt.datetime.now(dt.UTC).isoformat(),
                     "packages": {"finsim_mesa": finsim_mesa.__version__,
                                  "torch": torch.__version__, "numpy": numpy.__version__},
                     **meta}
        wbytes = weight_bytes(weights)  # bad weights or metadata: refused before
        meta_bytes(full_meta)           # anything is written
        with self.writing(model_id) as folder:
            index = self._index(model_id)
            if not (folder / INDEX).exists():  # the folder is known as a model from now on
                self._write_index(model_id, index)
            number = self._next_number(folder, index)
            version = full_meta["version"] = f"v{number}"
            mbytes = meta_bytes(full_meta)
            tmp = folder / f".{version}.tmp-{token()}"
            try:
                write_folder(tmp, {WEIGHTS: wbytes, META: mbytes}, "save")
                crash_point("save.folder_written")
                os.rename(tmp, folder / version)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            fsync_dir(folder)
            crash_point("save.renamed")
            self._record(index, version, metric)
            index["next"] = number + 1
            self._write_index(model_id, index)
        return version

    def list_checkpoints(self, model_id: str | None = None) -> list[dict[str, Any]]:
        """Every saved version (of one model or all) with its metadata.

        A version whose metadata cannot be read is listed as ``{"model_id",
        "version", "error"}`` (and, listing all models, a model whose index is
        damaged as ``{"model_id", "version": None, "error"}``) instead of
        failing the whole listing."""
        return [e for e, _ in self._scan(model_id)]

    def _scan(self, model_id: str | None) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        if model_id is not None:
            ids = [model_id]
        elif self.root.is_dir():
            ids = sorted(e.name for e in os.scandir(self.root)
                         if not e.name.startswith(".") and _is_model_dir(e.path))
        else:
            ids = []
        out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        for mid in ids:
            try:
                index = self._index(mid)
            except CheckpointError as err:
                if model_id is not None:
                    raise
                log.warning("%s", err)
                out.append(({"model_id": mid, "version": None, "error": str(err)}, None))
                continue
            for v in index["versions"]:
                try:
                    meta_path = self._version_dir(mid, v) / META
                    meta = json.loads(meta_path.read_bytes())
                    if not isinstance(meta, dict):
                        raise ValueError(f"it must be a JSON object, got a "
                                         f"{type(meta).__name__}")
                except (OSError, ValueError, UnicodeDecodeError, CheckpointError) as err:
                    msg = str(err) if isinstance(err, CheckpointError) else (
                        f"{self.root / mid / v / META} cannot be read: {err}")
                    log.warning("%s", msg)
                    out.append(({"model_id": mid, "version": v, "error": msg}, index))
                    continue
                out.append((meta | {"model_id": mid, "version": v}, index))
        return out

    def load_checkpoint(self, model_id: str, version: str = "best"
                        ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(weights, metadata) of ``version`` (``best``, ``latest`` or ``vK``)."""
        index = self._index(model_id)
        if not index["versions"]:
            raise CheckpointError(f"no checkpoints for model {model_id!r} in {self.root}")
        name = index.get(version) if version in ("best", "latest") else version
        if name not in index["versions"]:
            raise CheckpointError(f"model {model_id!r} has no version {version!r}; saved: "
                                  f"{', '.join(index['versions'])}")
        return load_folder(self._version_dir(model_id, name), root=self.root)
