"""Versioned checkpoints of trained policies, without pickled code.

A checkpoint is a folder ``<checkpoint_dir>/<model_id>/v<k>/`` holding
``weights.safetensors`` (tensors only) and ``meta.json`` (format version,
dimensions, hyper-parameters, environment parameters, metrics, package
versions, date). ``best`` and ``latest`` are recorded in
``<model_id>/index.json``. Files are written to a temporary name and renamed
(atomic on POSIX). A missing, truncated, corrupted or incompatible checkpoint
is a :class:`CheckpointError` that says which and why.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from finsim_mesa.errors import FinsimError

__all__ = ["FORMAT_VERSION", "CheckpointError", "ModelCheckpointer"]

FORMAT_VERSION = 1


class CheckpointError(FinsimError):
    """A checkpoint cannot be written or read (missing, corrupted, incompatible)."""


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ModelCheckpointer:
    """Saves and loads versioned checkpoints under ``checkpoint_dir``."""

    def __init__(self, checkpoint_dir: str | Path) -> None:
        self.root = Path(checkpoint_dir)

    def _index(self, model_id: str) -> dict[str, Any]:
        path = self.root / model_id / "index.json"
        if not path.exists():
            return {"versions": [], "best": None, "latest": None, "best_metric": None}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{path} is corrupted: {err}") from None

    def save_checkpoint(self, model_id: str, weights: dict[str, torch.Tensor],
                        meta: dict[str, Any], metric: float | None = None) -> str:
        """Write a new version; it becomes ``latest`` and, if ``metric`` is the
        highest so far, ``best``. Returns the version name (``v1``, ``v2``, ...)."""
        if not model_id or "/" in model_id or model_id.startswith("."):
            raise CheckpointError(f"model_id {model_id!r}: use a plain name")
        index = self._index(model_id)
        version = f"v{len(index['versions']) + 1}"
        folder = self.root / model_id / version
        folder.mkdir(parents=True, exist_ok=False)
        import numpy

        import finsim_mesa

        full_meta = {"format_version": FORMAT_VERSION, "model_id": model_id,
                     "version": version, "metric": metric,
                     "created": dt.datetime.now(dt.UTC).isoformat(),
                     "packages": {"finsim_mesa": finsim_mesa.__version__,
                                  "torch": torch.__version__, "numpy": numpy.__version__},
                     **meta}
        tensors = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
        _atomic_write(folder / "weights.safetensors", lambda p: save_file(tensors, p))
        _atomic_write(folder / "meta.json",
                      lambda p: Path(p).write_text(json.dumps(full_meta, indent=2)))
        index["versions"].append(version)
        index["latest"] = version
        if metric is not None and (index["best_metric"] is None or metric > index["best_metric"]):
            index["best"], index["best_metric"] = version, metric
        if index["best"] is None:
            index["best"] = version
        self._write_index(model_id, index)
        return version

    def _write_index(self, model_id: str, index: dict[str, Any]) -> None:
        _atomic_write(self.root / model_id / "index.json",
                      lambda p: Path(p).write_text(json.dumps(index, indent=2)))

    def list_checkpoints(self, model_id: str | None = None) -> list[dict[str, Any]]:
        """Every saved version (of one model or all) with its metadata."""
        ids = [model_id] if model_id else sorted(p.name for p in self.root.glob("*")
                                                  if (p / "index.json").exists())
        out = []
        for mid in ids:
            for v in self._index(mid)["versions"]:
                meta_path = self.root / mid / v / "meta.json"
                if meta_path.exists():
                    out.append(json.loads(meta_path.read_text()))
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
        return load_folder(self.root / model_id / name)


def load_folder(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read one checkpoint folder (weights.safetensors + meta.json), checking it."""
    folder = Path(folder)
    meta_path, weights_path = folder / "meta.json", folder / "weights.safetensors"
    for p in (meta_path, weights_path):
        if not p.exists():
            raise CheckpointError(f"checkpoint {folder} is incomplete: {p.name} is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{meta_path} is corrupted: {err}") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{folder}: checkpoint format {meta.get('format_version')!r} "
                              f"is not supported (this version reads {FORMAT_VERSION})")
    try:
        weights = load_file(str(weights_path))
    except Exception as err:  # safetensors raises several types for damaged files
        raise CheckpointError(f"{weights_path} is truncated or corrupted: {err}") from None
    return weights, meta
