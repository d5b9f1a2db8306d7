"""The step transaction's copy of the model's state dataclasses (``state._step_state``,
one loop since helper-51) against the former form, kept here as the reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa import state as st


def former_step_state(model: Any) -> dict[str, Any]:
    """``_step_state`` as it was (95c95ff)."""
    return {name: (st._fields if name in st.REPLACED_STATE else st._copied_fields)(
        getattr(model, name)) for name in st.MODEL_STATE}


def same_holding(new: Any, old: Any, name: str) -> None:
    """``new`` holds what ``old`` holds: the same kind of container, the same keys,
    replaced states' values the very objects, copied states' arrays equal copies."""
    assert type(new) is type(old), name
    a = new if type(new) is dict else vars(new)
    b = old if type(old) is dict else vars(old)
    assert list(a) == list(b), name
    for key, x in a.items():
        y = b[key]
        assert type(x) is type(y), (name, key)
        if name in st.REPLACED_STATE:
            assert x is y, (name, key)  # the field value itself, not a copy
        elif isinstance(x, np.ndarray):
            assert x.tobytes() == y.tobytes() and x.dtype == y.dtype, (name, key)
            assert x is not y, (name, key)
        elif isinstance(x, float | int | bool | str | type(None)):
            assert x == y or (x != x and y != y), (name, key)


@pytest.mark.parametrize("kw", [dict(n_banks=12, scenario="systemic", rng=3),
                                dict(n_banks=20, rng=5, n_exchanges=1, n_ccps=1)])
def test_step_state_matches_the_former_form(kw: dict) -> None:
    m = FinancialModel(**kw)
    for _ in range(4):
        new, old = st._step_state(m), former_step_state(m)
        assert list(new) == list(old) == list(st.MODEL_STATE)
        for name in st.MODEL_STATE:
            same_holding(new[name], old[name], name)
        # the copied state (flows) shares no array with the live model
        for value in new["flows"].values():
            if isinstance(value, np.ndarray):
                assert not any(value is v for v in vars(m.flows).values())
        m.run_for(3)


def test_step_state_of_a_property_and_of_a_non_plain_state() -> None:
    """A state attribute that is not in the model's ``__dict__`` (a subclass's
    property) is read with ``getattr``; a non-plain object (slots) gets
    ``_shallow``'s copy, as before."""

    class Slotted:
        __slots__ = ("x", "y")

    class Sub(FinancialModel):
        @property
        def measures(self) -> Any:  # (state kept elsewhere)
            return self._kept_measures

        @measures.setter
        def measures(self, value: Any) -> None:
            self._kept_measures = value

    m = Sub(n_banks=10, rng=2)
    m.run_for(2)
    assert "measures" not in vars(m)
    odd = Slotted()
    odd.x, odd.y = np.arange(3.0), 1.5
    m.__dict__["reference"] = odd
    new, old = st._step_state(m), former_step_state(m)
    assert type(new["reference"]) is Slotted and new["reference"] is not odd
    assert new["reference"].x is odd.x and new["reference"].y == 1.5
    assert new["measures"] == vars(m.measures) and new["measures"] is not vars(m.measures)
    for name in st.MODEL_STATE:
        if name != "reference":
            same_holding(new[name], old[name], name)


def test_a_failed_step_puts_the_state_back() -> None:
    """Through the transaction: a step that fails at its end leaves every state
    dataclass's fields as they were (bytes of arrays, values of scalars)."""
    m = FinancialModel(n_banks=15, scenario="systemic", rng=6)
    m.run_for(5)
    before = {name: st.copy_state(getattr(m, name)) for name in st.MODEL_STATE}

    def boom(*_: Any) -> None:
        raise RuntimeError("late failure")

    m.datacollector.collect = boom
    with pytest.raises(RuntimeError):
        m.step()
    for name in st.MODEL_STATE:
        now, then = vars(getattr(m, name)), vars(before[name])
        for key, value in then.items():
            if isinstance(value, np.ndarray):
                assert now[key].tobytes() == value.tobytes(), (name, key)
            elif isinstance(value, float | int | bool):
                assert now[key] == value or (value != value and now[key] != now[key])
