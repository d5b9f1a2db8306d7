"""Training logs, step-level environment traces and threshold alerts.

* :class:`TrainingLogger` — one record per update (rewards, losses, entropy,
  default rate...) to CSV and JSONL, and to TensorBoard when it is installed;
* :class:`EnvironmentLogger` — step-level traces of chosen episodes (the model
  reporters) to CSV;
* :class:`SystemMonitor` — raises alerts when a watched value crosses its
  threshold (e.g. ``{"default_rate": 0.3}``), keeps them and logs them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

from finsim_mesa.learning.checkpoint import crash_point, remove_strays, write_text_atomic

__all__ = ["EnvironmentLogger", "SystemMonitor", "TrainingLogger"]

log = logging.getLogger("finsim_mesa.learning")


class TrainingLogger:
    """Appends records to ``<log_dir>/training.csv`` and ``training.jsonl``.

    Crash-safe: each record is appended to ``training.jsonl`` with one write and
    fsynced; ``training.csv`` (whose header is the union of all keys) is
    replaced atomically after each record. A logger opened on a folder that
    already has a ``training.jsonl`` (a second run, or a run after a killed
    one) keeps its records: the CSV shows them all (an unreadable line, e.g.
    cut by a power loss, is skipped with a warning)."""

    def __init__(self, log_dir: str | Path, tensorboard: bool = True) -> None:
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_strays(self.dir, "training.csv.")
        self.records: list[dict[str, Any]] = []
        self._newline = False  # the jsonl's last line was cut: start on a new line
        jsonl = self.dir / "training.jsonl"
        if jsonl.exists():
            data = jsonl.read_bytes()
            self._newline = bool(data) and not data.endswith(b"\n")
            for k, line in enumerate(data.splitlines(), 1):
                try:
                    rec = json.loads(line)
                except ValueError:
                    rec = None
                if isinstance(rec, dict):
                    self.records.append(rec)
                elif line.strip():
                    log.warning("%s line %d is not a JSON record; skipped", jsonl, k)
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.dir / "tensorboard"))
            except ImportError:
                self._writer = None

    def log(self, record: dict[str, Any]) -> None:
        """Write one record (a flat dict of numbers and strings)."""
        self.records.append(record)
        line = ("\n" if self._newline else "") + json.dumps(record) + "\n"
        _append(self.dir / "training.jsonl", line.encode(), sync=True)
        self._newline = False
        crash_point("log.appended")
        # records may gain keys (e.g. eval_reward every k updates): the CSV is
        # rewritten with the union of all keys so every row fits its header
        fields = list(dict.fromkeys(k for r in self.records for k in r))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        w.writerows(self.records)
        write_text_atomic(self.dir / "training.csv", buf.getvalue(), point="log.csv")
        if self._writer is not None:
            step = int(record.get("episode", len(self.records)))
            for k, v in record.items():
                if isinstance(v, int | float):
                    self._writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _append(path: Path, data: bytes, sync: bool) -> None:
    """Append ``data`` with one ``write`` (a kill never leaves part of it)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


class EnvironmentLogger:
    """Step-level traces: ``record(model, episode)`` after each step writes the
    model reporters of that step to ``<log_dir>/env_trace.csv`` (one append per
    row, so a killed run leaves whole rows)."""

    def __init__(self, log_dir: str | Path, every_episodes: int = 50) -> None:
        self.path = Path(log_dir) / "env_trace.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.every = every_episodes

    def wants(self, episode: int) -> bool:
        """Whether ``episode`` is traced."""
        return self.every > 0 and episode % self.every == 0

    def record(self, model: Any, episode: int) -> None:
        from finsim_mesa.measures import MODEL_REPORTERS, report

        row = {"episode": episode, "step": model.t} | {
            k: report(model, k) for k in MODEL_REPORTERS}
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(row))
        if not self.path.exists() or self.path.stat().st_size == 0:
            w.writeheader()
        w.writerow(row)
        _append(self.path, buf.getvalue().encode(), sync=False)


class SystemMonitor:
    """Alerts when a watched value exceeds its threshold.

    Args:
        alert_thresholds: ``{name: threshold}``; a record with ``record[name] >
            threshold`` raises an alert.
    """

    def __init__(self, alert_thresholds: dict[str, float]) -> None:
        self.thresholds = dict(alert_thresholds)
        self.alerts: list[dict[str, Any]] = []

    def check(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """Alerts raised by ``record`` (also kept in :attr:`alerts` and logged)."""
        new = []
        for name, limit in self.thresholds.items():
            value = record.get(name)
            if value is not None and value > limit:
                alert = {"episode": record.get("episode"), "metric": name, "value": value,
                         "threshold": limit}
                new.append(alert)
                log.warning("alert: %s = %.4g above %.4g at episode %s", name, value, limit,
                            record.get("episode"))
        self.alerts.extend(new)
        return new
