"""Does a brain read the state? Partial dependence of its actions on observation
columns.

Observation rows are gathered from the brain's own runs (the mixture of
conditions, test seeds); for a column j, every row's column j is set to the
column's 5th percentile and then to its 95th, the other columns kept, and the
mean action of each is compared (Friedman 2001, *Greedy function
approximation*, §8.2). A brain that ignores column j moves by exactly 0; a
constant stance moves by 0 on every column. The action's spread over the
gathered rows (its standard deviation) says whether it varies at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from finsim_mesa.observation import ACTION_NAMES, observation_names

__all__ = ["gather_observations", "partial_dependence"]


def gather_observations(brain: Any, seeds: Sequence[int], scenario: str = "mixture",
                        **model_params: Any) -> tuple[np.ndarray, list[str]]:
    """Observation rows of the active banks at every step of ``brain``'s runs,
    shape (rows, d), and the column names."""
    from finsim_mesa.evaluation import run_params
    from finsim_mesa.model import FinancialModel

    rows, names = [], None
    for seed in seeds:
        m = FinancialModel(brain=brain, rng=seed, agent_collect_every=0,
                           **run_params(scenario, seed, **model_params))
        names = observation_names(m.config, m.market.names)
        while m.running:
            rows.append(m.observe()[m.ledger.active])
            m.step()
    return np.concatenate(rows), list(names or [])


def partial_dependence(brain: Any, observations: np.ndarray, names: Sequence[str],
                       fields: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean action change when each of ``fields`` (default: all) moves from its
    5th to its 95th percentile over ``observations`` (shape (rows, d)), one row
    per field: ``field``, ``low``, ``high`` and one column per action
    (``lend``, ``hoard``, ``sell``, ``borrow``)."""
    X = np.asarray(observations, dtype=float)
    out = []
    for field in fields or names:
        j = list(names).index(field)
        lo, hi = np.percentile(X[:, j], [5, 95])
        a, b = X.copy(), X.copy()
        a[:, j], b[:, j] = lo, hi
        d = np.asarray(brain.act(b)).mean(axis=0) - np.asarray(brain.act(a)).mean(axis=0)
        out.append({"field": field, "low": lo, "high": hi,
                    **{name: float(v) for name, v in zip(ACTION_NAMES, d, strict=True)}})
    return pd.DataFrame(out)
