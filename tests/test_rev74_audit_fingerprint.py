"""The API fingerprint (the journal's) of a layer-on model: the same across versions and
whether or not the audit was read (helper-74's review of layer72's 68a815f).

docs/design.md: audit records stay dicts of full columns in snapshots "because the API
fingerprint hashes them and a journal must replay across versions". The references
below are c218bde's fingerprints (recorded with it, the same on Mesa 3.3 and 3.5), and
the fingerprint of a twin model whose audit was never read.
"""

import numpy as np

from finsim_mesa import FinancialModel
from finsim_mesa.api.fingerprint import fingerprint
from finsim_mesa.infrastructure.router import AUDIT_COLUMNS

# c218bde: FinancialModel(n_banks=12, n_exchanges=2, n_ccps=1, rng=5), at t = 0, 1, 2, 3
C218BDE = ["e200531e448591dbfa22c9aaa80e5585d9d009a3e2c81260a1da769103318df4",
           "e191c7cdb731c3442b7b3a9124edbcb6ec6902d68fcfd83676d72c7997ccaab4",
           "a2ef2cd1f016056909775c6c31e7de4439df22cb5671ccc5e83b2a2a22db1975",
           "f71706c8b5d7a65d731e48f8be9d0c96e849402f6d1811eaabf5aca8d33f8562"]


def test_fingerprint_of_a_layer_model_is_c218bdes():
    """A journal written before must replay: the same fingerprint, step by step."""
    m = FinancialModel(n_banks=12, n_exchanges=2, n_ccps=1, rng=5)
    got = [fingerprint(m)]
    for _ in range(3):
        m.step()
        got.append(fingerprint(m))
    assert got == C218BDE


def test_reading_the_audit_changes_no_fingerprint():
    """A read (router.audit()) leaves the fingerprint as it was (fingerprint.py's rule)."""
    a = FinancialModel(n_banks=20, n_exchanges=1, n_ccps=1, rng=3)
    b = FinancialModel(n_banks=20, n_exchanges=1, n_ccps=1, rng=3)
    for _ in range(3):
        a.step()
        b.step()
        assert a.router.transactions() > 0
        b.router.audit()
        assert fingerprint(a) == fingerprint(b)


def test_snapshot_holds_the_audit_as_dicts_of_full_columns():
    """snapshot()'s router part: the routing arrays and the audit, each record a dict of
    AUDIT_COLUMNS (the format the journals' fingerprints were recorded with); restored,
    the audit reads back the same."""
    m = FinancialModel(n_banks=20, n_exchanges=2, n_ccps=1, rng=4)
    for _ in range(2):
        m.step()
    snap = m.snapshot()
    part = snap["router"]
    assert set(part) == {"bank_exchange", "bank_ccp", "exchange_ccp", "audit"}
    assert part["audit"] and all(type(r) is dict and tuple(r) == AUDIT_COLUMNS
                                 and len({c.size for c in r.values()}) == 1
                                 for r in part["audit"])
    want = m.router.audit()
    m.step()
    m.restore(snap)
    got = m.router.audit()
    assert list(got.columns) == list(want.columns) and len(got) == len(want)
    for c in AUDIT_COLUMNS:
        assert np.array_equal(np.asarray(got[c]), np.asarray(want[c]))
