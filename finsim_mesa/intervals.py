"""Confidence intervals shared by what-if analysis, evaluation and sweeps."""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["ci95"]


def ci95(x: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, sample standard deviation and the 95% Student-t interval of the mean.

    With one value the interval is NaN-wide (not enough data) and the std 0.
    """
    x = np.asarray(x, dtype=float)
    mean = float(x.mean())
    if x.size < 2:
        return mean, 0.0, float("nan"), float("nan")
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, x.size - 1) * std / np.sqrt(x.size))
    return mean, std, mean - half, mean + half
