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
import json
import logging
from pathlib import Path
from typing import Any

__all__ = ["EnvironmentLogger", "SystemMonitor", "TrainingLogger"]

log = logging.getLogger("finsim_mesa.learning")


class TrainingLogger:
    """Appends records to ``<log_dir>/training.csv`` and ``training.jsonl``."""

    def __init__(self, log_dir: str | Path, tensorboard: bool = True) -> None:
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.records: list[dict[str, Any]] = []
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
        with open(self.dir / "training.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        # records may gain keys (e.g. eval_reward every k updates): the CSV is
        # rewritten with the union of all keys so every row fits its header
        fields = list(dict.fromkeys(k for r in self.records for k in r))
        with open(self.dir / "training.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(self.records)
        if self._writer is not None:
            step = int(record.get("episode", len(self.records)))
            for k, v in record.items():
                if isinstance(v, int | float):
                    self._writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class EnvironmentLogger:
    """Step-level traces: ``record(model, episode)`` after each step writes the
    model reporters of that step to ``<log_dir>/env_trace.csv``."""

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
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)


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
