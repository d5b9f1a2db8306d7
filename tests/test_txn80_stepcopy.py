"""helper-80 (issue 15): a step's transaction copies the ledger's arrays, the loan
book's rows, the market's arrays and both generators' raw states as one ``bytes``
object (``stepcopy.StepNumbers``) instead of nine copies and five dicts.

The references are independent of that copy: the parts one by one as before
(``Ledger.snapshot(quick=True)``, the former ``Market.snapshot`` kept below,
``pyrandom.save_bits`` / ``save``), NumPy's own ``state`` property and
``random.getstate()``, the whole-state fingerprint, and twin models that never
failed.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from finsim_mesa import FinancialModel, packing, pyrandom, stepcopy
from finsim_mesa.api.fingerprint import fingerprint
from finsim_mesa.ledger import Ledger
from finsim_mesa.loans import LoanBook
from finsim_mesa.market import Market
from finsim_mesa.packing import Packed
from finsim_mesa.state import _copied_fields, restore_model, snapshot_model
from finsim_mesa.stepcopy import StepNumbers

STAGES = ["shock", "observe", "decide", "act", "settle", "clear", "price", "record"]
CONFIGS = [{"n_banks": 30}, {"n_banks": 25, "scenario": "systemic"},
           {"n_banks": 20, "n_exchanges": 2, "n_ccps": 1, "scenario": "liquidity_crisis"}]


def former_market_snapshot(market: Market) -> dict:
    """``Market.snapshot`` as it was (029761d)."""
    return {"prices": market.prices.copy(), "fundamentals": market.fundamentals.copy(),
            "units_outstanding": market.units_outstanding.copy(),
            "initial_prices": market.initial_prices.copy(),
            "last_return": market.last_return, "rate": market.rate}


def _same_array(got: np.ndarray, want: np.ndarray) -> None:
    assert type(got) is np.ndarray and got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


def _model(kw: dict, steps: int = 7) -> FinancialModel:
    m = FinancialModel(rng=4, **kw)
    m.run_for(steps)
    return m


@pytest.mark.parametrize("kw", CONFIGS)
def test_the_parts_are_the_former_parts_taken_at_the_same_moment(kw):
    m = _model(kw)
    m.random.random()  # (a Mersenne index inside the block)
    m.rng.integers(0, 9, size=1, dtype=np.int32)  # a 32-bit draw: half a word buffered
    m.random.gauss(0.0, 1.0)  # (gauss_next set)
    numbers = StepNumbers.of(m)
    assert type(numbers) is StepNumbers
    ledger, market = m.ledger.snapshot(quick=True), former_market_snapshot(m.market)
    bits, rand = m.rng.bit_generator.state, m.random.getstate()
    # the live model changes afterwards, in place and by replacement
    m.run_for(3)
    for name in Ledger._ARRAYS:
        a = getattr(m.ledger, name)
        if a.size:
            a[...] = 5
    for name in Market._ARRAYS:
        getattr(m.market, name)[...] = -2.0
    m.random.random()
    m.rng.random(4)
    parts = numbers.parts()
    assert set(parts) == {"ledger", "market", "rng", "random"}
    got = parts["ledger"]
    assert set(got) == {*ledger, *Ledger._ARRAYS}  # (a PackedDict lists the others only)
    for name in Ledger._ARRAYS:
        _same_array(got[name], ledger[name])
    rows, links = got["loans"]
    for row, want in zip(rows, ledger["loans"][0], strict=True):
        _same_array(row, want)
    assert links.__dict__ == ledger["loans"][1].__dict__
    for key in ("external_in", "external_out", "initial_scale", "initial_cash_total"):
        assert got[key] == ledger[key]
    assert list(parts["market"]) == list(market)
    for key, want in market.items():
        if isinstance(want, np.ndarray):
            _same_array(parts["market"][key], want)
        else:
            assert parts["market"][key] == want
    assert parts["rng"].as_dict() == bits
    assert parts["random"].as_tuple() == rand
    assert parts["random"].gauss_next is not None


def test_the_market_snapshot_is_the_former_one():
    m = _model({"n_banks": 30})
    now, former = m.market.snapshot(), former_market_snapshot(m.market)
    assert list(now) == list(former)
    for key, want in former.items():
        got = now[key]
        if isinstance(want, np.ndarray):
            _same_array(got, want)
            assert got is not getattr(m.market, key)
        else:
            assert got == want


def test_the_numbers_copied_are_numbers():
    """Bytes of objects would be pointers: every array StepNumbers joins holds numbers."""
    for kw in CONFIGS:
        m = _model(kw)
        book = m.ledger.loans
        for a in [*(getattr(m.ledger, k) for k in Ledger._ARRAYS),
                  *(getattr(book, k) for k in LoanBook._ROWS),
                  *(getattr(m.market, k) for k in Market._ARRAYS)]:
            assert a.dtype.kind in "biuf", a.dtype


def test_the_quick_snapshot_uses_it_and_the_full_one_does_not():
    m = _model({"n_banks": 30})
    quick, full = snapshot_model(m, shallow_logs=True), snapshot_model(m)
    numbers = quick["ledger"]
    assert type(numbers) is StepNumbers
    assert quick["market"] is quick["rng"] is quick["random"] is numbers
    assert type(full["ledger"]) is dict and type(full["rng"]) is dict


@pytest.mark.parametrize("kw", CONFIGS)
def test_restore_of_the_quick_snapshot_is_the_full_ones(kw):
    m = _model(kw)
    quick, full = snapshot_model(m, shallow_logs=True), snapshot_model(m)
    assert type(quick["ledger"]) is StepNumbers
    want = fingerprint(m)
    twin = _model(kw, 7 + 4)
    m.run_for(4)
    restore_model(m, quick)
    assert fingerprint(m) == want
    m.run_for(4)
    assert fingerprint(m) == fingerprint(twin)
    restore_model(m, quick)  # the snapshot stays valid for reuse, and equals the full one
    a = fingerprint(m)
    restore_model(m, full)
    assert a == fingerprint(m) == want


def _fails_after(m: FinancialModel, stage: str) -> None:
    """Wrap a stage: after it ran, draw from both generators, write in place into
    the ledger, the book and the market, replace arrays, then raise."""
    run = getattr(m, stage)

    def wrapped(*args, **kwargs):
        run(*args, **kwargs)
        m.random.random()
        m.random.gauss(0.0, 1.0)
        m.rng.random(7)
        m.rng.integers(0, 5, size=1, dtype=np.int32)
        L, book = m.ledger, m.ledger.loans
        for name in L._ARRAYS:
            a = getattr(L, name)
            if a.size:
                a[...] = 7 if a.dtype.kind in "biu" else -1.5
        for name in book._ROWS:
            getattr(book, name)[...] = 3
        for name in Market._ARRAYS:
            getattr(m.market, name)[...] = 0.25
        m.market.last_return, m.market.rate = 9.0, 9.0
        L.external_in["x"] = 1.0
        L.cash = np.ones(L.cash.size + 2)
        m.market.prices = np.ones(5)
        raise RuntimeError("boom")

    setattr(m, stage, wrapped)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("kw", CONFIGS[::2])
def test_a_failed_step_is_undone_bit_for_bit(stage, kw):
    m, twin = _model(kw), _model(kw)
    assert type(snapshot_model(m, shallow_logs=True)["ledger"]) is StepNumbers
    before = fingerprint(m)
    _fails_after(m, stage)
    with pytest.raises(RuntimeError, match="boom"):
        m.step()
    assert fingerprint(m) == before
    del m.__dict__[stage]
    m.run_for(5)
    twin.run_for(5)
    assert fingerprint(m) == fingerprint(twin)


class Overriding(FinancialModel):
    """A user's subclass overriding a stage (it draws, writes and may fail)."""

    fail = False

    def settle(self) -> None:
        super().settle()
        self.random.random()
        self.ledger.cash[...] += 1.0
        if self.fail:
            raise ValueError("user's stage")


def test_a_subclass_overriding_a_stage_is_undone_and_runs_on():
    m, twin = Overriding(n_banks=30, rng=2), Overriding(n_banks=30, rng=2)
    m.run_for(6)
    twin.run_for(6)
    before = fingerprint(m)
    m.fail = True
    with pytest.raises(ValueError, match="user's stage"):
        m.step()
    assert fingerprint(m) == before
    m.fail = False
    m.run_for(4)
    twin.run_for(4)
    assert fingerprint(m) == fingerprint(twin)


class OwnLedger(Ledger):
    pass


class OwnRandom(random.Random):
    pass


def _other_ledger(m):
    m.ledger.__class__ = OwnLedger


def _other_book(m):
    m.ledger.loans.__class__ = type("OwnBook", (LoanBook,), {})


def _other_market(m):
    m.market.__class__ = type("OwnMarket", (Market,), {})


def _other_random(m):
    r = OwnRandom()
    r.setstate(m.random.getstate())
    m.random = r


def _other_bits(m):
    m.rng = np.random.Generator(np.random.Philox(5))


def _large(monkeypatch):
    def apply(m):
        monkeypatch.setattr(packing, "PACK_MAX_BYTES", 64)
    return apply


@pytest.mark.parametrize("how", ["ledger", "book", "market", "random", "bits", "large"])
def test_where_it_does_not_apply_each_part_is_taken_and_restored_as_before(how, monkeypatch):
    change = {"ledger": _other_ledger, "book": _other_book, "market": _other_market,
              "random": _other_random, "bits": _other_bits, "large": _large(monkeypatch)}[how]
    m, twin = _model({"n_banks": 30}), _model({"n_banks": 30})
    for model in (m, twin):
        change(model)
    assert StepNumbers.of(m) is None
    assert type(snapshot_model(m, shallow_logs=True)["ledger"]) is not StepNumbers
    before = fingerprint(m)
    _fails_after(m, "clear")
    with pytest.raises(RuntimeError, match="boom"):
        m.step()
    assert fingerprint(m) == before
    del m.__dict__["clear"]
    m.run_for(3)
    twin.run_for(3)
    assert fingerprint(m) == fingerprint(twin)


def test_a_packed_memoryview_reads_back_as_the_bytes_it_was():
    live = bytearray(b"abcdefgh")
    view = memoryview(live)
    a = np.arange(3.0)
    packed = Packed((a, view, np.zeros(0), memoryview(b"xy")))
    live[:] = b"zzzzzzzz"
    a[...] = 9.0
    got = list(packed)
    _same_array(got[0], np.arange(3.0))
    assert got[1] == b"abcdefgh" and type(got[1]) is bytes
    assert got[2].size == 0 and got[3] == b"xy"


def test_live_bytes_are_what_save_and_save_bits_copy():
    r, g = random.Random(11), np.random.default_rng(3)
    r.random()
    g.integers(0, 3, size=1, dtype=np.int32)
    state, pcg, extra = pyrandom.live_bytes(r, g.bit_generator)
    assert bytes(state) == pyrandom.save(r).raw
    saved = pyrandom.save_bits(g.bit_generator)
    assert bytes(pcg) == saved.pcg and bytes(extra) == saved.extra
    assert pyrandom.live_bytes(OwnRandom(1), g.bit_generator) is None
    assert pyrandom.live_bytes(r, np.random.Philox(1)) is None


def test_save_without_copy_gives_the_rows_themselves():
    m = _model({"n_banks": 30})
    book = m.ledger.loans
    rows, links = book.save(copy=False)
    assert all(row is getattr(book, name) for row, name in zip(rows, LoanBook._ROWS,
                                                                strict=True))
    assert links is not book.links and links.__dict__ == book.links.__dict__
    packed, _ = book.save()
    assert type(packed) is Packed
    for got, want in zip(packed, rows, strict=True):
        _same_array(got, want)


def former_copied_fields(obj):
    """``state._copied_fields`` of a plain dataclass as of 029761d."""
    out = obj.__dict__.copy()
    for k, v in out.items():
        if type(v) is np.ndarray:
            out[k] = v.copy()
        elif type(v) not in (float, int, bool, str, type(None)):
            out[k] = {kk: vv.copy() for kk, vv in v.items()} if isinstance(v, dict) else v
    return out


def test_copied_fields_are_the_former_copies():
    m = _model({"n_banks": 30})
    flows = m.flows
    flows.extra = {"a": np.ones(2)}  # (a container beside the arrays and scalars)
    new, old = _copied_fields(flows), former_copied_fields(flows)
    assert list(new) == list(old)
    for k, v in old.items():
        if isinstance(v, np.ndarray):
            _same_array(new[k], v)
            assert new[k] is not getattr(flows, k)
        elif isinstance(v, dict):
            assert new[k].keys() == v.keys() and new[k] is not flows.extra
            assert new[k]["a"] is not flows.extra["a"]
        else:
            assert new[k] == v and type(new[k]) is type(v)


def test_the_module_is_used_here():
    # (CPython with NumPy's PCG64: if this fails the generators' layout check refused
    # the raw copies, which is safe but slower)
    m = _model({"n_banks": 30})
    assert stepcopy.StepNumbers.of(m) is not None
