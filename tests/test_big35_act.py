"""helper-35: the act stage splits the actions into four C-contiguous rows
(``np.multiply(actions.T, active, order="C")``); whatever the memory order of a
brain's actions, the run is the same, bit for bit, as with the plain product
``actions.T * active`` (the reference: the former split, patched in)."""

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.agents.brains import RuleBasedBrain


class _Ordered(RuleBasedBrain):
    """The rules, returned as a C- or F-ordered matrix (the same values)."""

    name = "ordered"

    def __init__(self, order: str) -> None:
        super().__init__()
        self.order = order

    def act(self, observations):
        return np.array(super().act(observations), order=self.order)


def _fingerprint(m: FinancialModel, steps: int) -> list[bytes]:
    out = []
    for _ in range(steps):
        m.step()
        L = m.ledger
        out.append(b"".join(a.tobytes() for a in (L.cash, L.equity, L.holdings, L.loans.principal,
                                                  L.loans.accrued, L.loans.lender,
                                                  m.decisions.actions)))
    return out


class _PlainNumPy:
    """NumPy as the model module sees it, with ``multiply`` as the act stage used
    it before: the product in the inputs' order (``actions.T * active``)."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def multiply(a, b, order="K", **kw):
        return a * b


@pytest.mark.parametrize("order", ["C", "F"])
def test_the_contiguous_split_gives_the_plain_products_run(monkeypatch, order):
    kw = dict(n_banks=60, scenario="liquidity_crisis", rng=5, steps=12)
    got = _fingerprint(FinancialModel(brain=_Ordered(order), **kw), 10)
    import finsim_mesa.model as model_module

    monkeypatch.setattr(model_module, "np", _PlainNumPy())
    want = _fingerprint(FinancialModel(brain=_Ordered(order), **kw), 10)
    assert got == want


def test_the_rows_are_c_contiguous_and_the_products():
    rng = np.random.default_rng(0)
    actions = rng.random((500, 4))
    active = rng.random(500) < 0.8
    for a in (actions, np.asfortranarray(actions)):
        rows = np.multiply(a.T, active, order="C")
        assert rows.flags.c_contiguous and all(r.flags.c_contiguous for r in rows)
        assert rows.tobytes() == np.ascontiguousarray(a.T * active).tobytes()
        for j in range(4):
            assert rows[j].tolist() == [x * float(s) for x, s in zip(a[:, j], active, strict=True)]
