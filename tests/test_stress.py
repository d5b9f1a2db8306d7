"""A reduced random stress run (the full one: ``python tests/stress.py --runs 10000``)."""

import numpy as np
import pytest
import stress

SEEDS = range(100_000, 100_150)  # never the seeds of the local 10,000-run campaign


@pytest.mark.parametrize("chunk", range(3))
def test_random_configurations_keep_every_invariant(chunk):
    seeds = [s for i, s in enumerate(SEEDS) if i % 3 == chunk]
    results = [stress.run_one(s) for s in seeds]
    failures = [(s, e) for s, e, _ in results if e]
    assert not failures, failures[:3]
    assert sum(k for _, _, k in results) > 100  # the runs really stepped


def test_the_invariants_catch_a_broken_model():
    """Each planted fault is seen by check_invariants (so the run above can fail)."""
    from finsim_mesa import FinancialModel

    def fresh():
        m = FinancialModel(n_banks=8, n_exchanges=1, n_ccps=1, rng=1)
        m.step()
        return m, m.ledger.defaulted.copy()

    faults = {
        "identity": lambda m: m.ledger.equity.__setitem__(0, m.ledger.equity[0] + 1.0),
        "nan": lambda m: m.ledger.prices.__setitem__(0, np.nan),
        "default undone": lambda m: (m.ledger.status.__setitem__(0, 1),
                                     m.ledger.status.__setitem__(0, 0)),
        "counter": lambda m: setattr(m.measures, "n_defaults", 5),
        "observation": lambda m: m.decisions.observations.__setitem__((0, 2), 3.0),
        "action": lambda m: m.decisions.actions.__setitem__((0, 0), -0.5),
        "ccp cash": lambda m: m.ledger.ccp_cash.__setitem__(0, m.ledger.ccp_cash[0] + 1.0),
    }
    for name, fault in faults.items():
        m, was = fresh()
        if name == "default undone":
            was = was.copy()
            was[0] = True
        fault(m)
        with pytest.raises(AssertionError):
            stress.check_invariants(m, was)
