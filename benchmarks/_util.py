"""Small helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median_time(fn: Callable[[], object], repeats: int = 5, min_time: float = 0.0) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs (seconds)."""
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def median_step_time(model: Any, steps: int, warmup: int = 3) -> float:
    """Median wall time of one ``model.step()`` (seconds) over ``steps`` steps,
    after ``warmup`` steps that are not timed (``model.run_for(warmup)``)."""
    model.run_for(warmup)
    return median_time(model.step, repeats=steps)
