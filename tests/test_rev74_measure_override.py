"""A FinancialModel subclass that overrides the public ``measure(full=True)`` (or ``refresh()``)
keeps stepping, with the measures of the plain model (helper-74's review of small75's 3e453a8,
whose record stage calls ``self.measure(full=..., owed=...)``)."""

import numpy as np

from finsim_mesa import FinancialModel


class Watched(FinancialModel):
    """Counts its measurements: the override a user writes, with the former signature."""

    def measure(self, full=True):
        super().measure(full)
        self.watched = getattr(self, "watched", 0) + 1


class Refreshed(FinancialModel):
    """Overrides refresh() without returning anything (its former signature: None)."""

    def refresh(self):
        super().refresh()
        self.refreshed = getattr(self, "refreshed", 0) + 1


def test_a_subclass_overriding_measure_or_refresh_steps_as_the_plain_model():
    plain = FinancialModel(n_banks=12, scenario="systemic", rng=4)
    watched = Watched(n_banks=12, scenario="systemic", rng=4)
    refreshed = Refreshed(n_banks=12, scenario="systemic", rng=4)
    for _ in range(5):
        for m in (plain, watched, refreshed):
            m.step()
        for m in (watched, refreshed):
            assert m.measures.systemic_risk_index == plain.measures.systemic_risk_index
            assert m.measures.debtrank == plain.measures.debtrank
            assert np.array_equal(m.ledger.equity, plain.ledger.equity)
    assert watched.watched == 6 and refreshed.refreshed >= 6  # (__init__'s, then one a step)
