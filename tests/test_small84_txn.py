"""helper-84 (issue 15): the step's transaction and the act stage with less work a step.

- ``state._step_state``: the five replaced dataclasses' ``__dict__`` copied written out
  (one attrgetter, no loop over MODEL_STATE); the reference is the former form kept in
  tests/test_small51_state.py.
- ``pyrandom.live_bytes``: the pair's three views in one look-up (``_LIVE``) instead of
  two ``_kept`` calls; the reference is those calls (the former form, below) and the
  generators' own ``getstate()`` / ``state``.
- ``stepcopy.StepNumbers.of``: the dtype test is one pass over a set of number dtypes in
  native byte order instead of a set of every dtype searched for ``object``; other dtypes
  take the parts one by one (8bf5939's path for objects), which undo a failed step too.
- ``FinancialModel.act``: the four action rows by index instead of unpacking the array
  (which iterates it); other lengths raise unpacking's own error, as before.
"""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest

from finsim_mesa import FinancialModel, pyrandom
from finsim_mesa import state as st
from finsim_mesa.api.fingerprint import fingerprint
from finsim_mesa.ledger import Ledger
from finsim_mesa.stepcopy import StepNumbers
from tests.test_small51_state import former_step_state, same_holding


def _fail_after(m: FinancialModel, stage: str) -> None:
    """One step of ``m`` whose ``stage`` runs and then raises: the step fails."""
    orig = getattr(m, stage)

    def failing():
        orig()
        raise RuntimeError("boom")
    setattr(m, stage, failing)
    with pytest.raises(RuntimeError, match="boom"):
        m.step()
    delattr(m, stage)


# ---------------------------------------------------------------- _step_state
@pytest.mark.parametrize("kw", [dict(n_banks=12, scenario="systemic", rng=3),
                                dict(n_banks=20, rng=5, n_exchanges=1, n_ccps=1)])
def test_step_state_first_call_and_later_calls_match_the_former_form(kw, monkeypatch):
    monkeypatch.setattr(st, "_PLAIN", {})  # (no class looked up yet: the general branch)
    m = FinancialModel(**kw)
    for _ in range(4):
        new, old = st._step_state(m), former_step_state(m)
        assert list(new) == list(old) == list(st.MODEL_STATE)
        for name in st.MODEL_STATE:
            same_holding(new[name], old[name], name)
        live = [id(v) for v in vars(m.flows).values()]  # (flows: copies, never the arrays)
        assert not any(id(v) in live for v in new["flows"].values() if type(v) is np.ndarray)
        m.run_for(2)
    assert all(st._PLAIN[type(getattr(m, name))] for name in st.MODEL_STATE)


def test_step_state_with_one_replaced_state_not_plain():
    class Slotted:
        __slots__ = ("x", "y")

    m = FinancialModel(n_banks=10, rng=2)
    m.run_for(2)
    st._step_state(m)  # (every class looked up: the written-out branch next, if all plain)
    for name in st.REPLACED_STATE:
        odd = Slotted()
        odd.x, odd.y = np.arange(3.0), 1.5
        kept = m.__dict__[name]
        m.__dict__[name] = odd
        new, old = st._step_state(m), former_step_state(m)
        assert list(new) == list(old)
        assert type(new[name]) is Slotted and new[name] is not odd
        assert new[name].x is odd.x and new[name].y == 1.5
        for other in st.MODEL_STATE:
            if other != name:
                same_holding(new[other], old[other], other)
        m.__dict__[name] = kept


def test_a_failed_step_is_undone_with_each_replaced_state_changed():
    # each replaced dataclass gets new field values in the step; a failure puts them back
    m, twin = FinancialModel(n_banks=15, rng=8), FinancialModel(n_banks=15, rng=8)
    m.run_for(3)
    twin.run_for(3)
    before = fingerprint(m)
    saved = {name: dict(vars(getattr(m, name))) for name in st.REPLACED_STATE}
    _fail_after(m, "record")
    assert fingerprint(m) == before
    for name in st.REPLACED_STATE:
        now = vars(getattr(m, name))
        assert list(now) == list(saved[name])
        for key, value in saved[name].items():
            if isinstance(value, np.ndarray):
                assert now[key].tobytes() == value.tobytes() and now[key] is not value
            elif isinstance(value, float | int | bool | str | type(None)):
                assert now[key] == value or (now[key] != now[key] and value != value)
            elif not isinstance(value, dict):
                assert now[key] is value  # (another object: shared, as _copy shares it)
    m.run_for(4)
    twin.run_for(4)
    assert fingerprint(m) == fingerprint(twin)


# ---------------------------------------------------------------- live_bytes
def former_live_bytes(r, bg):
    """``pyrandom.live_bytes`` as it was (8bf5939)."""
    if (pyrandom.AT is None or type(r) is not random.Random or not pyrandom.BITS_OK
            or type(bg) is not np.random.PCG64):
        return None
    return (pyrandom._kept(pyrandom._VIEWS, r, pyrandom._state_view)[1],
            *pyrandom._bit_views(bg)[1:])


def _bytes(views):
    return None if views is None else tuple(bytes(v) for v in views)


def test_live_bytes_are_the_former_views_as_the_generators_move():
    r, g = random.Random(5), np.random.default_rng(9)
    for _ in range(4):
        got = pyrandom.live_bytes(r, g.bit_generator)
        assert _bytes(got) == _bytes(former_live_bytes(r, g.bit_generator))
        assert bytes(got[0]) == pyrandom.save(r).raw
        raw = pyrandom.RawBits(bytes(got[1]), bytes(got[2]))
        assert raw.as_dict() == g.bit_generator.state
        r.random()
        g.integers(0, 5, size=3, dtype=np.int32)  # (a buffered 32-bit draw)
    assert pyrandom.live_bytes(r, g.bit_generator) is got  # (kept: the same views)


def test_live_bytes_of_the_same_random_with_another_bit_generator():
    r, g1, g2 = random.Random(1), np.random.default_rng(1), np.random.default_rng(2)
    one = pyrandom.live_bytes(r, g1.bit_generator)
    two = pyrandom.live_bytes(r, g2.bit_generator)
    assert _bytes(two) == _bytes(former_live_bytes(r, g2.bit_generator))
    assert bytes(two[1]) != bytes(one[1])
    assert _bytes(pyrandom.live_bytes(r, g1.bit_generator)) == _bytes(one)


def test_live_bytes_never_read_through_an_entry_of_another_object():
    # an entry kept under r's id for another generator object (as if r's id had been
    # another object's): not used
    r, g = random.Random(3), np.random.default_rng(3)
    other = random.Random(4)
    pyrandom._LIVE[id(r)] = (other, g.bit_generator, former_live_bytes(other, g.bit_generator))
    got = pyrandom.live_bytes(r, g.bit_generator)
    assert bytes(got[0]) == pyrandom.save(r).raw != pyrandom.save(other).raw


def test_live_bytes_keeps_at_most_64_pairs():
    gens = [(random.Random(i), np.random.default_rng(i)) for i in range(70)]
    for r, g in gens:
        assert _bytes(pyrandom.live_bytes(r, g.bit_generator)) == _bytes(
            former_live_bytes(r, g.bit_generator))
        assert len(pyrandom._LIVE) <= 64


def test_live_bytes_where_it_does_not_apply():
    class Own(random.Random):
        pass

    g = np.random.default_rng(1)
    assert pyrandom.live_bytes(Own(1), g.bit_generator) is None
    assert pyrandom.live_bytes(random.Random(1), np.random.Philox(1)) is None


# ---------------------------------------------------------------- StepNumbers' dtypes
NUMBER_CODES = "?bhilqpBHILQPefdgFDG"
SWAPPED = ">f8" if sys.byteorder == "little" else "<f8"
OTHER_DTYPES = [SWAPPED, "M8[s]", "m8[s]", "U3", "S3", [("a", "f8")], "V8", object]


def former_numbers_apply(arrays) -> bool:
    """StepNumbers' test of the arrays as it was (8bf5939)."""
    return ({np.ndarray}.issuperset(map(type, arrays))
            and np.dtype(object) not in {a.dtype for a in arrays})


def _with(m: FinancialModel, dtype) -> FinancialModel:
    a = m.ledger.ccp_capital
    m.ledger.ccp_capital = np.zeros(a.shape, dtype=dtype)
    return m


@pytest.mark.parametrize("code", NUMBER_CODES)
def test_number_dtypes_take_the_bytes_copy(code):
    m = _with(FinancialModel(n_banks=6, rng=1), code)
    assert type(StepNumbers.of(m)) is StepNumbers
    assert former_numbers_apply([m.ledger.ccp_capital])


@pytest.mark.parametrize("dtype", OTHER_DTYPES, ids=str)
def test_other_dtypes_take_the_parts(dtype):
    m = _with(FinancialModel(n_banks=6, rng=1), dtype)
    assert StepNumbers.of(m) is None
    assert type(st.snapshot_model(m, shallow_logs=True)["ledger"]) is not StepNumbers


def test_every_array_of_the_models_takes_the_bytes_copy():
    for kw in ({"n_banks": 30}, {"n_banks": 20, "n_exchanges": 2, "n_ccps": 1}):
        m = FinancialModel(rng=2, **kw)
        m.run_for(3)
        assert type(StepNumbers.of(m)) is StepNumbers


@pytest.mark.parametrize("name", ["exchange_cash", "cash"])
def test_a_failed_step_with_a_swapped_byte_order_array_is_undone(name):
    # the parts one by one (a dtype StepNumbers does not take): as before, exactly
    m = FinancialModel(n_banks=10, n_exchanges=1, n_ccps=1, rng=4)
    m.run_for(2)
    setattr(m.ledger, name, getattr(m.ledger, name).astype(SWAPPED))
    assert StepNumbers.of(m) is None
    before = fingerprint(m), getattr(m.ledger, name).tobytes(), getattr(m.ledger, name).dtype
    _fail_after(m, "clear")
    now = getattr(m.ledger, name)
    assert (fingerprint(m), now.tobytes(), now.dtype) == before


# ---------------------------------------------------------------- act's rows
def former_rows(actions: np.ndarray, active: np.ndarray) -> tuple:
    """act's four rows as they were (8bf5939): the array unpacked."""
    lend, hoard, sell, borrow = np.multiply(actions.T, active, order="C")
    return lend, hoard, sell, borrow


@pytest.mark.parametrize("shape", [(10, 5), (10, 3), (10,), (10, 1), (10, 0)])
def test_act_with_other_than_four_rows_raises_as_before(shape):
    m = FinancialModel(n_banks=10, rng=1)
    m.run_for(1)
    actions = np.full(shape, 0.5)
    with pytest.raises(Exception) as former:
        former_rows(actions, m.ledger.active)
    before = fingerprint(m)
    with pytest.raises(type(former.value)) as now:
        m.act(actions)
    assert str(now.value) == str(former.value)
    assert fingerprint(m) == before


def test_act_with_four_banks_and_one_dimensional_actions_as_before():
    # (n,) actions with n == 4: the product has four entries, unpacked or indexed alike
    # (NumPy scalars)
    m = FinancialModel(n_banks=4, rng=1)
    actions = np.array([0.3, 0.0, 0.0, 0.9])
    want = former_rows(actions, m.ledger.active)
    rows = np.multiply(actions.T, m.ledger.active, order="C")
    got = (rows[0], rows[1], rows[2], rows[3])
    assert [type(x) for x in got] == [type(x) for x in want] and got == want


@pytest.mark.parametrize("order", ["C", "F"])
def test_act_rows_are_the_former_rows(order):
    m = FinancialModel(n_banks=12, rng=6)
    m.run_for(3)
    actions = np.asarray(np.random.default_rng(0).random((12, 4)), order=order)
    m.ledger.status[3] = 1  # (a bank out: its row times 0)
    rows = np.multiply(actions.T, m.ledger.active, order="C")
    got = (rows[0], rows[1], rows[2], rows[3])
    for x, y in zip(got, former_rows(actions, m.ledger.active), strict=True):
        assert x.tobytes() == y.tobytes() and x.flags.c_contiguous and y.flags.c_contiguous


def test_ledger_arrays_used_here_are_ledger_arrays():
    assert {"ccp_capital", "exchange_cash", "cash"} <= set(Ledger._ARRAYS)
