"""helper-82 (review of txn80, 5bf6a09): a step's transaction where a ledger or market
array was replaced by something that is not an array of numbers (a list, a tuple, an
``array.array``, an object array, a NumPy scalar).

029761d took these parts one by one (``Ledger.snapshot(quick=True)``: a ``Packed``
that reads every array's ``nbytes`` first; ``Market.snapshot``: ``x.copy()``), so such
a model either refused the step before changing anything (AttributeError) or rolled
a failed step back exactly. 5bf6a09's one ``bytes`` copy (``StepNumbers``) joined any
buffer (``b"".join`` takes object arrays' pointers, ``array.array``, scalars; lists
and tuples fell to ``np.ascontiguousarray``) and failed in ``Packed.at`` when asked
to put them back: the failed step was left half done (``t`` advanced, state changed)
with an AttributeError / ValueError in place of the step's own error. The reference
here is 029761d's behaviour: the same error raised and the state as before the step.
"""

from __future__ import annotations

import array

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.ledger import Ledger
from finsim_mesa.market import Market
from finsim_mesa.stepcopy import StepNumbers


class Boom(Exception):
    pass


def _plain(x):
    # a comparable, exact picture of any of the replacements (floats' repr is exact)
    return type(x).__name__, repr(np.asarray(x, dtype=object).tolist())


def _state(m: FinancialModel) -> tuple:
    L, M = m.ledger, m.market
    return (m.t, m.running, m.rng.bit_generator.state, m.random.getstate(),
            [_plain(getattr(L, k)) for k in Ledger._ARRAYS],
            [_plain(getattr(M, k)) for k in Market._ARRAYS], M.last_return, M.rate,
            [_plain(getattr(L.loans, k)) for k in L.loans._ROWS],
            dict(L.external_in), dict(L.external_out), m.sheets.total_assets.tobytes(),
            m.measures.stress_index)


def _fail_in_record(m: FinancialModel) -> None:
    orig = m.record

    def record(*a, **k):
        del m.__dict__["record"]
        orig(*a, **k)
        raise Boom("record")
    m.record = record


REPLACED = [
    ("market", "units_outstanding", lambda a: a.astype(object)),
    ("market", "units_outstanding", lambda a: a.tolist()),
    ("market", "units_outstanding", lambda a: tuple(a.tolist())),
    ("market", "units_outstanding", lambda a: array.array("d", a.tolist())),
    ("market", "units_outstanding", lambda a: a[0] if a.size == 1 else a),  # a NumPy scalar
    ("ledger", "ccp_capital", lambda a: a.tolist()),
    ("ledger", "exchange_cash", lambda a: tuple(a.tolist())),
]


@pytest.mark.parametrize("where,name,replace", REPLACED)
def test_failed_step_rolled_back_with_replaced_array(where, name, replace):
    m = FinancialModel(n_banks=8, n_exchanges=1, n_ccps=1, n_assets=1, rng=5)
    m.step()
    obj = getattr(m, where)
    setattr(obj, name, replace(getattr(obj, name)))
    before = _state(m)
    _fail_in_record(m)
    with pytest.raises((Boom, AttributeError)) as info:
        m.step()
    # the step's own error, or (as 029761d) the snapshot's refusal before the step: in
    # both cases nothing changed; never an error from putting the state back
    if info.type is AttributeError:
        assert "has no attribute 'nbytes'" in str(info.value) or (
            "has no attribute 'copy'" in str(info.value)), info.value
    assert _state(m) == before
    m.__dict__.pop("record", None)


def test_numbers_only_where_every_part_is_an_array_of_numbers():
    m = FinancialModel(n_banks=8, n_exchanges=1, n_ccps=1, rng=5)
    assert type(StepNumbers.of(m)) is StepNumbers
    m.market.units_outstanding = m.market.units_outstanding.astype(object)
    assert StepNumbers.of(m) is None
    m.market.units_outstanding = m.market.units_outstanding.astype(float)
    m.ledger.ccp_capital = m.ledger.ccp_capital.tolist()
    assert StepNumbers.of(m) is None
