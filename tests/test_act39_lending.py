"""helper-39's act- and settle-stage shortcuts (issue 15), each against its
former form (written out here) bit for bit and a plain loop of its definition:
``match_lending`` skips the scaling when no borrower is offered more than it
asks; ``Ledger.rollover`` forms ``1 − share`` once; ``receive_asset_income``
zeroes the defaulted banks' income through the ``defaulted`` mask."""

import copy

import numpy as np
import pytest
from support import loop_match

from finsim_mesa.ledger import DEFAULTED, Ledger
from finsim_mesa.lending import match_lending


def _bits(a) -> bytes:
    a = np.asarray(a)
    return str(a.dtype).encode() + np.ascontiguousarray(a).tobytes()


def _former_match(offer, request, src, dst, room):
    n = offer.size
    want = np.minimum(request[dst], room)
    asked = np.bincount(src, weights=want, minlength=n)
    per = asked[src]
    x = np.minimum(np.divide(offer[src] * want, per, out=np.zeros(src.size), where=per > 0),
                   want)
    got = np.bincount(dst, weights=x, minlength=n)
    scale = np.divide(request, got, out=np.ones(n), where=got > request)
    x *= np.minimum(scale, 1.0)[dst]
    return x


@pytest.mark.parametrize("plenty", [True, False])
def test_match_lending_is_its_former_form_and_its_loop(plenty):
    rng = np.random.default_rng(7 + plenty)
    scaled = 0
    for trial in range(200):
        n, e = int(rng.integers(2, 30)), int(rng.integers(1, 120))
        src, dst = rng.integers(0, n, e), rng.integers(0, n, e)
        offer = np.where(rng.random(n) < 0.7, rng.random(n) * 10, 0.0)
        # plenty: requests so large that nobody is offered more than it asks
        request = np.where(rng.random(n) < 0.7, rng.random(n) * (1e6 if plenty else 3), 0.0)
        room = np.where(rng.random(e) < 0.9, rng.random(e) * 5, 0.0)
        if trial % 4 == 3:  # signed zeros and a NaN request
            request[rng.integers(0, n)] = -0.0
            offer[rng.integers(0, n)] = -0.0
            request[rng.integers(0, n)] = np.nan
        got = match_lending(offer, request, src, dst, room)
        assert _bits(got) == _bits(_former_match(offer, request, src, dst, room))
        if trial % 4 != 3:
            assert got.tolist() == loop_match(offer, request, src, dst, room)
        want = np.minimum(request[dst], room)
        per = np.bincount(src, weights=want, minlength=n)[src]
        x = np.minimum(np.divide(offer[src] * want, per, out=np.zeros(e), where=per > 0), want)
        scaled += bool(np.count_nonzero(np.bincount(dst, weights=x, minlength=n) > request))
    if plenty:
        assert scaled == 0  # the shortcut's case
    else:
        assert scaled > 50  # the scaling's case


def _ledger(rng, n=12):
    L = Ledger(rng.random(n) * 5, rng.random((n, 2)), rng.random(n) * 3, np.array([1.0, 0.7]),
               other_assets=rng.random(n))
    L.finish_setup()
    return L


def test_asset_income_skips_the_defaulted_banks():
    rng = np.random.default_rng(3)
    for trial in range(60):
        L = _ledger(rng)
        L.status[rng.random(L.n) < rng.choice([0.0, 0.3, 1.0])] = DEFAULTED
        if trial % 3 == 0:
            L.other_assets[rng.integers(0, L.n)] = np.nan
            L.cash[rng.integers(0, L.n)] = -0.0
        ref = copy.deepcopy(L)
        got = L.receive_asset_income(0.002)
        want = 0.002 * (ref.holdings @ ref.prices + ref.other_assets)  # (2 classes: @)
        want[ref.status == DEFAULTED] = 0.0
        assert _bits(got) == _bits(want)
        assert _bits(L.cash) == _bits(ref.cash + want)
        assert _bits(L.equity) == _bits(ref.equity + want)


@pytest.mark.parametrize("first", [True, False])
def test_rollover_keeps_one_minus_share_of_each_rolled_loan(first):
    rng = np.random.default_rng(5)
    for _ in range(40):
        L = _ledger(rng)
        m = int(rng.integers(1, 30))
        lender, borrower = rng.integers(0, L.n, m), rng.integers(0, L.n, m)
        maturity = np.sort(rng.integers(1, 6, m)) if first else rng.integers(1, 6, m)
        L.loans.append(lender, borrower, rng.random(m), np.full(m, 0.01), maturity)
        L.loans.accrued[:] = rng.random(m) * 0.1
        mask = L.loans.maturity <= 2
        share = rng.random(int(mask.sum()))
        share[rng.random(share.size) < 0.2] = 0.0  # kept whole: nothing rolled
        p0, a0 = L.loans.principal.copy(), L.loans.accrued.copy()
        L.rollover(mask, share, 0.02, 9)
        rows = np.flatnonzero(mask)
        if np.any((p0[rows] + a0[rows]) * share > 0):  # something rolled: every row scaled
            for j, r in enumerate(rows):
                assert L.loans.principal[r] == p0[r] * (1.0 - share[j])
                assert L.loans.accrued[r] == a0[r] * (1.0 - share[j])
        else:
            rows = rows[:0]
        untouched = np.setdiff1d(np.arange(m), rows)
        assert _bits(L.loans.principal[untouched]) == _bits(p0[untouched])


def test_the_act_stage_volumes_are_the_sums_of_the_loans(monkeypatch):
    """``np.add.reduce`` (no ``ndarray.sum`` wrapper): the same pairwise sums."""
    from finsim_mesa import FinancialModel

    m = FinancialModel(n_banks=40, brain="greedy", rng=2, steps=50)
    seen = {}
    real_lend, real_roll = Ledger.lend, Ledger.rollover

    def lend(self, lender, borrower, amount, *a, **k):
        seen["lent"] = amount.copy()
        return real_lend(self, lender, borrower, amount, *a, **k)

    def rollover(self, *a, **k):
        seen["rolled"] = out = real_roll(self, *a, **k)
        return out

    monkeypatch.setattr(Ledger, "lend", lend)
    monkeypatch.setattr(Ledger, "rollover", rollover)
    for _ in range(12):
        m.step()
        assert float(m.flows.interbank_volume).hex() == float(seen["lent"].sum()).hex()
        assert float(m.flows.rollover_volume).hex() == float(seen["rolled"]["amount"].sum()).hex()
    assert m.flows.interbank_volume > 0 and m.flows.rollover_volume > 0
