"""Review of issue 15 (helper-27): a step that fails in its act or clear stage,
with the loan book's head off zero, is rolled back to exactly the state before
it, and the run then goes on as if it had never been tried (the reference: the
same model never failing)."""

import hashlib

import numpy as np
import pytest

from finsim_mesa import FinancialModel


def _state(m: FinancialModel) -> str:
    h = hashlib.sha256()
    L = m.ledger
    for k in L._ARRAYS:
        h.update(np.ascontiguousarray(getattr(L, k)).tobytes())
    lb = L.loans
    for k in (*lb._FIELDS, "link"):
        h.update(np.ascontiguousarray(getattr(lb, k)).tobytes())
    h.update(repr(sorted(vars(m.measures).items())).encode())
    h.update(repr((m.t, m.steps, sorted(L.external_in.items()))).encode())
    h.update(m.datacollector.get_model_vars_dataframe().to_csv().encode())
    return h.hexdigest()


class _Boom(RuntimeError):
    pass


def _model(**kw) -> FinancialModel:
    return FinancialModel(n_banks=60, scenario="systemic", brain="rule_based", rng=5, **kw)


def _to_head_offset(m: FinancialModel, ref: FinancialModel) -> None:
    for _ in range(30):
        m.step()
        ref.step()
        if m.ledger.loans._spare.head > 0:
            return
    pytest.skip("no repaid first rows in 30 steps")  # pragma: no cover


@pytest.mark.parametrize("stage", ["act", "consolidate", "clear"])
@pytest.mark.parametrize("infra", [False, True])
def test_a_failed_step_with_a_head_offset_is_undone(stage, infra):
    kw = dict(n_exchanges=2, n_ccps=1) if infra else {}
    m, ref = _model(**kw), _model(**kw)
    _to_head_offset(m, ref)
    before = _state(m)
    assert before == _state(ref)
    if stage == "consolidate":  # fails after the book has taken this step's loans
        book = m.ledger.loans
        merge = book.consolidate

        def boom(start):
            merge(start)
            raise _Boom
        book.consolidate = boom
    else:
        original = getattr(m, stage)

        def boom(*args):
            original(*args)
            raise _Boom
        setattr(m, stage, boom)
    with pytest.raises(_Boom):
        m.step()
    if stage != "consolidate":
        delattr(m, stage)  # the instance's patch: the class's stage again
    assert _state(m) == before
    assert m.ledger.loans.consolidate.__func__ is type(m.ledger.loans).consolidate
    for _ in range(8):
        m.step()
        ref.step()
        assert _state(m) == _state(ref)
