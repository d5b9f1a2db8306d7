"""A step's transaction copies the ledger's arrays and the loan book's rows as one
``bytes`` object each (finsim_mesa.packing, issue 15) instead of one array copy per
array. The references: NumPy's own ``ndarray.copy()`` taken at the same moment,
the public (full) snapshot, the whole-state fingerprint, and a twin model that
never failed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from finsim_mesa import FinancialModel, packing
from finsim_mesa.api.fingerprint import fingerprint
from finsim_mesa.loans import LoanBook
from finsim_mesa.packing import Packed, PackedDict


def _arrays() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.normal(size=7), np.arange(6, dtype=np.int8), np.zeros(0),
            rng.normal(size=(4, 3)), np.array([True, False, True]), np.zeros((5, 0)),
            np.asfortranarray(rng.normal(size=(3, 2))),  # not C-contiguous
            np.arange(20, dtype=np.int64)[::3],  # strided
            np.array(2.5), rng.integers(0, 9, size=(2, 2, 2), dtype=np.int32)]


def test_packed_is_numpys_copy_taken_at_the_same_moment():
    arrays = _arrays()
    want = [a.copy() for a in arrays]
    packed = Packed(tuple(arrays))
    for a in arrays:  # the originals written in place afterwards
        if a.size:
            a[...] = a + 1 if a.dtype != bool else ~a
    assert len(packed) == len(want)
    for got, ref, live in zip(packed, want, arrays, strict=True):
        assert got.dtype == ref.dtype and got.shape == ref.shape
        assert got.tobytes() == ref.tobytes()
        if ref.size:
            assert not np.shares_memory(got, live) and not got.flags.writeable
            assert got.copy().flags.c_contiguous
        else:  # an array without entries: held as it is (nothing to copy)
            assert got is live
    assert [packed.at(i).tobytes() for i in range(len(want))] == [a.tobytes() for a in want]


def test_packed_dict_reads_each_name_back_and_nothing_else():
    arrays = _arrays()

    class Holder:
        pass

    obj, names = Holder(), tuple(f"a{i}" for i in range(len(arrays)))
    for name, a in zip(names, arrays, strict=True):
        setattr(obj, name, a)
    want = {name: a.copy() for name, a in zip(names, arrays, strict=True)}
    snap = PackedDict.of(obj, names)
    snap.update(other=3)
    arrays[0][...] = 0.0
    obj.a3 = np.ones(2)  # replaced: the snapshot keeps the array as it was
    for name in names:
        assert snap[name].tobytes() == want[name].tobytes() and snap[name].shape == want[name].shape
    assert snap["other"] == 3
    with pytest.raises(KeyError):
        snap["missing"]
    one = PackedDict.of(obj, ("a0",))  # a single name: attrgetter gives no tuple then
    assert one["a0"].tobytes() == arrays[0].tobytes()


def test_the_quick_ledger_snapshot_equals_the_full_one():
    m = FinancialModel(n_banks=25, scenario="systemic", rng=3, n_exchanges=2, n_ccps=1)
    m.run_for(12)
    L = m.ledger
    quick, full = L.snapshot(quick=True), L.snapshot()
    assert type(quick) is PackedDict and type(quick["loans"][0]) is Packed
    for name in L._ARRAYS:
        assert quick[name].tobytes() == full[name].tobytes()
        assert quick[name].dtype == full[name].dtype and quick[name].shape == full[name].shape
    # the bytes copy is only for numbers (bytes of objects would be pointers)
    book = L.loans
    for a in [*(getattr(L, k) for k in L._ARRAYS), *(getattr(book, k) for k in book._ROWS)]:
        assert a.dtype.kind in "biuf", a.dtype


def test_the_package_never_sets_an_arrays_layout_in_place():
    """Packed reads an array's dtype and shape from the array it holds: sound only
    while nothing sets them in place (``a.shape = ...``, ``a.dtype = ...``,
    ``a.resize(...)``); a new array (``a = a.reshape(...)``) is fine."""
    package = Path(__file__).resolve().parents[1] / "finsim_mesa"
    layout = re.compile(r"\.(shape|dtype|strides)\s*=[^=]|\.resize\(")
    hits = [f"{p.name}: {line.strip()}" for p in package.rglob("*.py")
            for line in p.read_text().splitlines()
            if layout.search(line) and not line.lstrip().startswith("#")]
    assert hits == []
    assert layout.search("x.shape = (3,)") and layout.search("b.resize(4)")  # the check sees one


def _writes_everything_then_fails(m: FinancialModel, stage: str) -> None:
    """Wrap a stage: after it ran, write in place into every ledger array and every
    row of the loan book, replace one array by one of another shape, then raise."""
    run = getattr(m, stage)

    def wrapped(*args, **kwargs):
        run(*args, **kwargs)
        L, book = m.ledger, m.ledger.loans
        for name in L._ARRAYS:
            a = getattr(L, name)
            a[...] = 7 if a.dtype.kind in "biu" else -1.5
        for name in book._ROWS:
            getattr(book, name)[...] = 3
        L.cash = np.ones(L.cash.size + 2)
        raise RuntimeError("boom")

    setattr(m, stage, wrapped)


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("stage", ["settle", "clear", "record"])
def test_a_failed_step_after_in_place_writes_is_undone(stage, packed, monkeypatch):
    if not packed:  # (the large systems' form: one copy per array, see PACK_MAX_BYTES)
        monkeypatch.setattr(packing, "PACK_MAX_BYTES", 0)
    m = FinancialModel(n_banks=20, scenario="systemic", rng=6, n_exchanges=1, n_ccps=1)
    twin = FinancialModel(n_banks=20, scenario="systemic", rng=6, n_exchanges=1, n_ccps=1)
    m.run_for(8)
    twin.run_for(8)
    assert len(m.ledger.loans) > 0
    before, book = fingerprint(m), m.ledger.loans.copy()
    _writes_everything_then_fails(m, stage)
    with pytest.raises(RuntimeError, match="boom"):
        m.step()
    assert fingerprint(m) == before
    for name in LoanBook._ROWS:
        assert getattr(m.ledger.loans, name).tobytes() == getattr(book, name).tobytes()
    del m.__dict__[stage]  # the stage as it was: the model runs on as its twin
    m.run_for(5)
    twin.run_for(5)
    assert fingerprint(m) == fingerprint(twin)


def test_pack_copies_each_array_above_the_limit(monkeypatch):
    """Above PACK_MAX_BYTES in all, pack and PackedDict.of copy each array (the former
    form; a ~35 MB bytes object a step slowed the step at 100,000 banks): the same
    values as NumPy's copy, independent of the originals; below, one Packed."""
    arrays = tuple(_arrays())
    assert type(packing.pack(arrays)) is Packed
    monkeypatch.setattr(packing, "PACK_MAX_BYTES", sum(a.nbytes for a in arrays) - 1)
    want = [a.copy() for a in arrays]
    got = packing.pack(arrays)
    assert type(got) is tuple
    for a in arrays:
        if a.size:
            a[...] = 0  # written in place after the copy
    for g, w in zip(got, want, strict=True):
        assert g.tobytes() == w.tobytes() and g.dtype == w.dtype and g.shape == w.shape

    class Holder:
        pass

    h = Holder()
    h.x, h.y = np.arange(5.0), np.ones((2, 3))
    monkeypatch.setattr(packing, "PACK_MAX_BYTES", 8)
    d = PackedDict.of(h, ("x", "y"))
    assert type(d) is dict and d["x"].tolist() == [0, 1, 2, 3, 4]
    h.x[0] = 9.0
    assert d["x"][0] == 0.0
    m = FinancialModel(n_banks=20, rng=1)
    m.run_for(2)
    quick = m.ledger.snapshot(quick=True)
    assert type(quick) is dict and type(quick["loans"][0]) is tuple
