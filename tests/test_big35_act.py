"""helper-35: the act stage splits the actions into four C-contiguous rows
(``np.multiply(actions.T, active, order="C")``); whatever the memory order of a
brain's actions, the run is the same, bit for bit, as with the plain product
``actions.T * active`` (the reference: the former split, patched in)."""

import numpy as np
import pytest
from support import loop_match

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


def test_match_lending_is_its_definition_loop():
    """Each link's share of its lender's offer, scaled to the borrower's request,
    written out link by link (support.loop_match)."""
    from finsim_mesa.lending import match_lending

    rng = np.random.default_rng(4)
    n, e = 40, 300
    src, dst = rng.integers(0, n, e), rng.integers(0, n, e)
    offer = np.where(rng.random(n) < 0.7, rng.random(n) * 10, 0.0)
    request = np.where(rng.random(n) < 0.7, rng.random(n) * 10, 0.0)
    room = np.where(rng.random(e) < 0.9, rng.random(e) * 5, 0.0)
    got = match_lending(offer, request, src, dst, room)
    assert got.tolist() == loop_match(offer, request, src, dst, room)


def test_decide_gives_zeros_to_inactive_banks_and_each_brain_its_rows():
    """One brain for every bank with some banks out, and several brains: the
    actions are each brain's on its active rows, zeros elsewhere."""
    for brain in ("rule_based", ["greedy", "rule_based", "conservative"] * 10):
        m = FinancialModel(n_banks=30, brain=brain, scenario="systemic", rng=6, steps=20)
        m.run_for(3)
        m.ledger.status[::4] = 1
        obs = m.observe()
        got = m.decide(obs)
        active = m.ledger.active
        assert not got[~active].any()
        for b, idx in m.brains.groups:
            rows = idx[active[idx]]
            assert got[rows].tobytes() == np.clip(b.act(obs[rows]), 0, 1).tobytes()
