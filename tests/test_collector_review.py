"""FinsimDataCollector's model rows against Mesa's DataCollector for reporters
the model does not make itself: lambdas and partials with side effects, values
that are lists and arrays (deep-copied), NumPy scalars, NaN and -0.0.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from mesa.datacollection import DataCollector

from finsim_mesa import FinancialModel
from finsim_mesa.collector import FinsimDataCollector
from finsim_mesa.measures import make_reporters


def _buffer(model: Any) -> list:
    return model.buffer  # a list a later reporter appends to


def _push(model: Any) -> int:
    model.buffer.append(model.t)
    return len(model.buffer)


def _fill(model: Any, k: float) -> np.ndarray:
    model.array[:] = model.t * k  # the same array every time, changed in place
    return model.array


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, np.ndarray):
        return x.dtype == y.dtype and np.array_equal(x, y)
    if isinstance(x, float):
        return (x != x and y != y) or (x == y and np.signbit(x) == np.signbit(y))
    return x == y


def test_reporters_with_side_effects_and_mutable_values_as_mesa_records_them():
    """Mesa deep-copies each value before the next reporter runs; a reporter that
    changes what an earlier one returned must not change the earlier record."""
    models = [FinancialModel(n_banks=12, scenario="systemic", rng=3) for _ in range(2)]
    collectors = []
    for m, cls in zip(models, (FinsimDataCollector, DataCollector), strict=True):
        m.buffer, m.array = [], np.zeros(2)
        reporters = make_reporters(False, m.market.names) | {
            "buffer": _buffer, "push": _push, "array": partial(_fill, k=2.0),
            "numpy": lambda mm: np.float64(mm.t) / 3,
            "nan_or_minus_zero": lambda mm: float("nan") if mm.t % 2 else -0.0,
            "nested": lambda mm: (mm.t, [mm.t])}
        kw = {"agent_every": 0} if cls is FinsimDataCollector else {}  # model rows only
        collectors.append(cls(model_reporters=reporters, **kw))
    for _ in range(6):
        for m, c in zip(models, collectors, strict=True):
            m.step()
            c.collect(m)
    ours, ref = collectors
    assert getattr(ours, "_plain_items", None) is not None  # the fast path ran
    for column, want in ref.model_vars.items():
        got = ours.model_vars[column]
        assert [type(v) for v in got] == [type(v) for v in want], column
        assert all(_same(a, b) for a, b in zip(got, want, strict=True)), (column, got, want)
    a, b = ours.get_model_vars_dataframe(), ref.get_model_vars_dataframe()
    assert a.dtypes.equals(b.dtypes)
