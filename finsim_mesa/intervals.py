"""Confidence intervals shared by what-if analysis, evaluation and sweeps.

``scipy.stats`` (a third of a second to import, with ``scipy.optimize``) is
imported at the first interval, not with this module: a sweep's Dask worker
imports the package to run models and never forms an interval (issue 15)."""

from __future__ import annotations

import numpy as np

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
    from scipy import stats

    half = float(stats.t.ppf(0.975, x.size - 1) * std / np.sqrt(x.size))
    return mean, std, mean - half, mean + half
