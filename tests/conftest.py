"""Shared test helpers."""

from __future__ import annotations

from typing import Any

import pytest

STAGES = ("shock", "observe", "decide", "act", "settle", "clear", "price", "record")


def watch_stages(model: Any, monkeypatch: Any) -> dict[str, Any]:
    """Record the stage calls of ``model``: returns ``{"stage": name or None,
    "calls": [names in call order]}``, updated as the model steps."""
    now: dict[str, Any] = {"stage": None, "calls": []}

    def wrap(name: str) -> Any:
        original = getattr(model, name)

        def wrapped(*a: Any, **k: Any) -> Any:
            now["stage"] = name
            now["calls"].append(name)
            try:
                return original(*a, **k)
            finally:
                now["stage"] = None
        return wrapped

    for name in STAGES:
        monkeypatch.setattr(model, name, wrap(name))
    return now


@pytest.fixture
def stage_watch(monkeypatch: Any) -> Any:
    """``stage_watch(model)`` starts recording ``model``'s stages (see watch_stages)."""
    return lambda model: watch_stages(model, monkeypatch)
