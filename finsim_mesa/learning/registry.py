"""A registry of trained policies: every model and version with its metadata,
promotion of a version to ``best``, deletion, and loading as a brain.

It works on the folders :class:`~finsim_mesa.learning.checkpoint.ModelCheckpointer`
writes (``<root>/<model_id>/v<k>/`` and ``index.json``), so ``finsim train``'s
``models/registry`` and the REST API's registry are registries too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from finsim_mesa.learning.checkpoint import CheckpointError, ModelCheckpointer, crash_point
from finsim_mesa.learning.policy_brain import PolicyBrain

__all__ = ["ModelRegistry"]

COLUMNS = ["model_id", "version", "metric", "episode", "created", "best", "latest", "error"]


class ModelRegistry:
    """Versions of trained policies under ``root``.

    Args:
        root: the registry folder (created on the first ``register``).
    """

    def __init__(self, root: str | Path) -> None:
        self.checkpointer = ModelCheckpointer(root)
        self.root = self.checkpointer.root

    def models(self) -> list[str]:
        """Model ids with at least one version (or a damaged index), sorted."""
        ids = dict.fromkeys(e["model_id"] for e in self.checkpointer.list_checkpoints())
        return sorted(ids)

    def _index(self, model_id: str) -> dict[str, Any]:
        index = self.checkpointer._index(model_id)
        if not index["versions"]:
            raise CheckpointError(f"no model {model_id!r} in {self.root}; registered: "
                                  f"{', '.join(self.models()) or 'none'}")
        return index

    def versions(self, model_id: str | None = None) -> pd.DataFrame:
        """One row per version (of one model or all): ``model_id``, ``version``,
        ``metric``, ``episode``, ``created`` (ISO date), ``best``, ``latest``,
        ``error`` (why a damaged version or index cannot be read, else None)."""
        if model_id is not None:
            self._index(model_id)
        rows = []
        for meta, index in self.checkpointer._scan(model_id):
            v = meta["version"]
            rows.append({"model_id": meta["model_id"], "version": v,
                         "metric": meta.get("metric"), "episode": meta.get("episode"),
                         "created": meta.get("created"),
                         "best": index is not None and v == index["best"],
                         "latest": index is not None and v == index["latest"],
                         "error": meta.get("error")})
        return pd.DataFrame(rows, columns=COLUMNS)

    def register(self, model_id: str, weights: dict[str, torch.Tensor], meta: dict[str, Any],
                 metric: float | None = None) -> str:
        """Save a new version (see :meth:`ModelCheckpointer.save_checkpoint`)."""
        return self.checkpointer.save_checkpoint(model_id, weights, meta, metric)

    def best(self, model_id: str) -> str:
        """Name of the ``best`` version."""
        return self._index(model_id)["best"]

    def latest(self, model_id: str) -> str:
        """Name of the newest version."""
        return self._index(model_id)["latest"]

    @staticmethod
    def _check_listed(model_id: str, version: str, index: dict[str, Any]) -> None:
        if version not in index["versions"]:
            raise CheckpointError(f"model {model_id!r} has no version {version!r}; saved: "
                                  f"{', '.join(index['versions'])}")

    def promote(self, model_id: str, version: str) -> None:
        """Make ``version`` the ``best`` one (e.g. after a fuller evaluation than
        the metric it was saved with). It must load."""
        self._index(model_id)
        with self.checkpointer.writing(model_id):
            index = self._index(model_id)
            self._check_listed(model_id, version, index)
            index["best"] = version
            index["best_metric"] = self.checkpointer.load_checkpoint(model_id, version)[1].get(
                "metric")
            self.checkpointer._write_index(model_id, index)

    def delete(self, model_id: str, version: str) -> None:
        """Remove a version. ``latest`` moves to the newest remaining one; if the
        deleted version was ``best``, the remaining one with the highest metric
        (else the newest) becomes ``best``. Its number is never given again.
        The index is rewritten before the folder goes (a kill in between leaves
        an unlisted folder, which is ignored)."""
        self._index(model_id)
        with self.checkpointer.writing(model_id) as folder:
            index = self._index(model_id)
            self._check_listed(model_id, version, index)
            index["versions"].remove(version)
            remaining = index["versions"]
            index["latest"] = remaining[-1] if remaining else None
            if index["best"] == version:
                metas = [m for m in self.checkpointer.list_checkpoints(model_id)
                         if m["version"] in remaining and "error" not in m
                         and isinstance(m.get("metric"), int | float)]
                top = max(metas, key=lambda m: m["metric"], default=None)
                index["best"] = top["version"] if top else index["latest"]
                index["best_metric"] = top["metric"] if top else None
            self.checkpointer._write_index(model_id, index)  # the index first: never dangling
            crash_point("delete.indexed")
            trash = folder / f".{version}.deleted-{secrets.token_hex(4)}"
            with contextlib.suppress(FileNotFoundError):
                os.rename(folder / version, trash)
                shutil.rmtree(trash, ignore_errors=True)

    def load_brain(self, model_id: str, version: str = "best", deterministic: bool = True
                   ) -> PolicyBrain:
        """The version (``best``, ``latest`` or ``vK``) as a brain for any model."""
        self._index(model_id)
        return PolicyBrain.load(self.root / model_id, version=version,
                                deterministic=deterministic, root=self.root)
