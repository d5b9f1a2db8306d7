"""helper-72: the router's audit records of arrays given away
(``record_owned``): kept as their arguments (integer arrays copied to their
audit dtypes at once, numbers and float64 arrays as given) and written as
``record``'s column dicts when read. Checked against ``record`` itself (the
former form, which every call site used before): the same records, dtypes
and bytes, the same ``audit()`` frame and ``transactions()``, through
snapshots and restores, and over whole runs."""

import math

import numpy as np
import pandas as pd
import pytest
from support import ledger_bits

from finsim_mesa import FinancialModel
from finsim_mesa.infrastructure.router import AUDIT_COLUMNS, InfrastructureRouter


def _router(seed=2):
    m = FinancialModel(n_banks=10, n_exchanges=2, n_ccps=1, rng=seed)
    m.router._audit = []
    return m.router


def _bits(router):
    """Every record's columns: (name, dtype, shape, bytes), in order."""
    return [[(c, col.dtype.str, col.shape, col.tobytes()) for c, col in rec.items()]
            for rec in router._audit]


def _copy(args):
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


I64 = np.array([3, 1, 4, 1], dtype=np.int64)
AMT = np.array([1.5, -0.0, 2.25, 1e-300])
CASES = [
    # kind, sender, receiver, amount, received, exchange, ccp, fee, delay, outcome, step
    ("loan", I64, I64[::-1].copy(), AMT, "amount", I64 % 2, np.zeros(4, dtype=np.int64),
     AMT * 0.001, np.array([0, 1, 2, 3]), "processed", 5),
    ("rollover", I64, I64 + 1, AMT, "amount", I64 % 2, np.array([0, -1, 0, -1]), 0.0, 0,
     "renewed", 5),
    ("margin_call", I64, 12, AMT, AMT * 0.5, 1, 0, 0.0, 0, np.array([7, 8, 7, 8]), 6),
    ("margin_return", 12, I64, AMT, "amount", np.array([1, 0, 1, 0], dtype=np.int32), 0,
     0.25, 2, "returned", 6),
    ("loan", I64, I64, AMT, -0.0, 1, -1, math.nan, 3, "expired", 7),
    ("repayment", I64, I64, AMT, 0.0, 1, -1, -0.0, 1, "failed", 7),
    ("loan", I64 + 2**31, I64, AMT, math.inf, I64 + 2**15, 1, 1.0, I64 - 2**16, "failed",
     7),  # (arrays cast as astype casts them: wrapped)
    ("loan", I64, 2**31 - 1, AMT, 1.0, -(2**15), 2**15 - 1, 1.0, 0, "failed", 7),  # (ends)
    ("loan", np.array([True, False, True, True]), I64, AMT, "amount", 0, 0, 0.0, 0,
     "processed", 8),
    # record itself (fallbacks): an int amount, a float32 received, a numpy step, a
    # numpy number as a column, an int received, an int outcome code, an empty record
    ("loan", I64, I64, I64.copy(), 0.0, 0, 0, 0.0, 0, "processed", 9),
    ("loan", I64, I64, AMT, AMT.astype(np.float32), 0, 0, 0.0, 0, "processed", 9),
    ("loan", I64, I64, AMT, "amount", 0, 0, 0.0, 0, "processed", np.int64(9)),
    ("loan", I64, I64, AMT, "amount", np.int64(1), 0, np.float64(0.5), 0, "processed", 10),
    ("loan", I64, I64, AMT, 0, 0, 0, 0.0, 0, "processed", 10),
    ("loan", I64, I64, AMT, "amount", 0, 0, 0.0, 0, 4, 10),
    ("loan", I64[:0], I64[:0], AMT[:0], "amount", 0, 0, 0.0, 0, "processed", 10),
]


def _call(method, case):
    args = _copy(case)
    if isinstance(args[4], str):  # received given as the amount itself
        args[4] = args[3]
    method(*args)


def test_record_owned_writes_what_record_writes():
    """Case by case, and all in one audit: the same records, bit for bit, the
    same frame and counts; received given as the amount is the amount column."""
    former, owned = _router(), _router()
    for case in CASES:
        _call(former.record, case)
        _call(owned.record_owned, case)
        assert owned.transactions() == former.transactions()
    assert any(type(r) is list for r in owned._records)  # (kept until read)
    for step in range(4, 12):
        assert owned.transactions(step) == former.transactions(step), step
    assert _bits(owned) == _bits(former)
    assert all(type(r) is dict for r in owned._records)
    pd.testing.assert_frame_equal(owned.audit(), former.audit())
    assert list(owned.audit().columns) == list(AUDIT_COLUMNS)
    assert owned._audit[0]["received"] is owned._audit[0]["amount"]
    assert owned.transactions() == sum(np.size(case[3]) for case in CASES)


def test_wrong_columns_fail_as_in_record():
    """A column of another length goes to record, which refuses it alike."""
    for method in ("record", "record_owned"):
        r = _router()
        with pytest.raises(ValueError):
            getattr(r, method)("loan", I64[:3], I64, AMT, 0.0, 0, 0, 0.0, 0, "processed", 3)
        with pytest.raises(KeyError):
            getattr(r, method)("swap", I64, I64, AMT, 0.0, 0, 0, 0.0, 0, "processed", 3)
        with pytest.raises(KeyError):
            getattr(r, method)("loan", I64, I64, AMT, 0.0, 0, 0, 0.0, 0, "lost", 3)
        for big in ((2**31, 0), (0, 2**15), (0, -(2**15) - 1)):  # (out of int32 / int16)
            with pytest.raises(OverflowError):
                getattr(r, method)("loan", big[0], I64, AMT, 0.0, big[1], 0, 0.0, 0,
                                   "processed", 3)
        assert r.transactions() == 0


def test_integer_arrays_are_copied_float_arrays_held():
    """The caller's integer arrays are copied at once (it may reuse them); its
    float64 arrays are held as given (new, never written after: the contract)."""
    r = _router()
    snd, fee, got = I64.copy(), AMT * 0.001, AMT * 0.5
    r.record_owned("margin_call", snd, 12, AMT, got, snd, 0, fee, 0, "posted", 4)
    snd[:] = 0
    rec = r._audit[0]
    assert rec["sender"].tolist() == I64.tolist() == rec["exchange"].tolist()
    assert rec["fee"] is fee and rec["received"] is got and rec["amount"] is AMT
    assert rec["step"].flags.writeable is False  # (a shared constant, as record's)


@pytest.mark.parametrize("shallow", [True, False])
def test_kept_records_through_snapshot_and_restore(shallow):
    """A snapshot taken with records kept as lists, read (turned into dicts in
    place) and restored: the records before it, as record writes them, and
    records kept after the restore are read too."""
    former, owned = _router(), _router()

    def some(r, method, step):
        for case in CASES[:4]:
            _call(getattr(r, method), (*case[:-1], step))
        r.record("repayment", I64, I64, AMT, AMT, 0, 0, 0.0, 0, "paid", step)  # (eager)

    for step in (1, 2):
        some(former, "record", step)
        some(owned, "record_owned", step)
    want = _bits(former)
    owned._audit  # noqa: B018  (the first records read: dicts from here on)
    some(owned, "record_owned", 3)
    state = owned.snapshot(shallow_logs=shallow)
    some(owned, "record_owned", 4)
    assert owned.transactions(4) == owned.transactions(3) > 0
    assert len(_bits(owned)) == 20  # (all read: turned into dicts, in place)
    owned.restore(state)
    some(former, "record", 3)
    # (none left as lists: a full snapshot holds every record as a dict (the API's
    # fingerprint hashes that form); the shallow one shares the list read since)
    assert not any(type(r) is list for r in owned._records)
    assert owned.transactions() == former.transactions() and owned.transactions(4) == 0
    some(former, "record", 5)
    some(owned, "record_owned", 5)
    assert _bits(owned)[:10] == want and _bits(owned) == _bits(former)
    assert all(type(r) is dict for r in owned._records)


@pytest.mark.parametrize("kw", [
    dict(n_banks=150, scenario="liquidity_crisis", n_exchanges=2, n_ccps=1, rng=12),
    dict(n_banks=60, scenario="systemic", n_exchanges=3, n_ccps=2, ccp_clearing_share=0.5,
         venue_rule="random", exchange_capacity=0.0005, rng=17),
])
def test_a_run_audits_as_with_record_alone(kw, monkeypatch):
    """Whole runs (expired and failed orders, margin shortfalls, two CCPs): the
    audit and every step's count as when every call site used record."""
    def run():
        m = FinancialModel(steps=10**9, agent_collect_every=0, **kw)
        counts = []
        for _ in range(30):
            m.step()
            counts.append(m.router.transactions(m.t - 1))
        return m, counts

    owned, owned_counts = run()
    monkeypatch.setattr(InfrastructureRouter, "record_owned",
                        lambda self, *a: self.record(*a))
    former, former_counts = run()
    assert owned_counts == former_counts
    assert ledger_bits(owned.ledger) == ledger_bits(former.ledger)
    kinds = set(former.router.audit()["outcome"].astype(str))
    assert _bits(owned.router) == _bits(former.router) and len(kinds) >= 4
    pd.testing.assert_frame_equal(owned.router.audit(), former.router.audit())
