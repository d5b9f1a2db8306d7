"""helper-35: the loan book's compaction by a boolean mask (rows gathered by the
mask instead of by its indices) and the act stage's one ``owed`` for the
assets and the pairs' exposures, against plain references: a row-by-row loop,
and the same figures computed without the shared ``owed``."""

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.loans import LoanBook


def _book(rng: np.random.Generator, m: int) -> LoanBook:
    lb = LoanBook()
    lb.append(rng.integers(0, 9, m), rng.integers(9, 15, m), rng.random(m) * 10,
              rng.random(m) * 0.05, np.sort(rng.integers(1, 6, m)),
              np.where(rng.random(m) < 0.3, rng.integers(0, 2, m), -1))
    lb.accrued[:] = rng.random(m) * 0.1
    lb.accrued[::7] = -0.0  # signed zeros must move as they are
    lb.link_ids()
    return lb


def _columns(lb: LoanBook) -> dict[str, list]:
    return {name: getattr(lb, name).tolist() for name in LoanBook._ROWS}


@pytest.mark.parametrize("seed", range(6))
def test_keep_is_a_row_by_row_filter(seed):
    rng = np.random.default_rng(seed)
    lb = _book(rng, 200)
    lb.keep(np.arange(200) >= 30)  # a prefix repaid first: the head moves (30)
    before = _columns(lb)
    signs = np.signbit(lb.accrued).tolist()
    mask = rng.random(len(lb)) < 0.6
    mask[-1] = False  # not a prefix drop: the rows are compacted
    if seed % 2:
        mask[:10] = False  # the first rows go too: the head moves past them first
    head = lb._spare.head
    if seed == 0:
        mask = mask.astype(np.int8)  # 0/1 given as integers: still a mask
    lb.keep(mask)
    keep = [j for j in range(len(mask)) if mask[j]]
    want = {name: [col[j] for j in keep] for name, col in before.items()}
    assert _columns(lb) == want
    assert np.signbit(lb.accrued).tolist() == [signs[j] for j in keep]
    assert lb._spare.head == head + keep[0]  # the leading rows dropped without moving
    lb.append(np.array([1]), np.array([10]), np.array([2.0]), np.array([0.01]), 9)
    assert len(lb) == len(keep) + 1 and lb.principal[-1] == 2.0  # still a working book
    assert lb.lender[:-1].tolist() == want["lender"]


def test_keep_with_a_wrong_mask_leaves_the_book_as_it_was():
    lb = _book(np.random.default_rng(9), 50)
    before = _columns(lb)
    for wrong in (np.arange(49) % 2 == 0, np.arange(49) % 2 == 1, np.arange(51) > 3):
        with pytest.raises(IndexError):
            lb.keep(wrong)
        assert _columns(lb) == before


def test_assets_and_exposures_with_a_given_owed_are_the_row_loops():
    rng = np.random.default_rng(3)
    m = FinancialModel(n_banks=60, rng=4, steps=10)
    m.run_for(3)
    L, lb = m.ledger, m.ledger.loans
    owed = lb.owed
    loop = [0.0] * L.n
    for i, p, a in zip(lb.lender.tolist(), lb.principal.tolist(), lb.accrued.tolist(),
                       strict=True):
        loop[i] += p + a
    assert L.interbank_assets(owed).tolist() == loop
    assert L.total_assets(owed).tobytes() == L.total_assets().tobytes()
    src, dst = m.network.src, m.network.dst
    subset = np.flatnonzero(rng.random(src.size) < 0.5)
    pairs: dict[tuple[int, int], float] = {}
    for i, j, p, a in zip(lb.lender.tolist(), lb.borrower.tolist(), lb.principal.tolist(),
                          lb.accrued.tolist(), strict=True):
        pairs[i, j] = pairs.get((i, j), 0.0) + (p + a)
    want = [pairs.get((int(src[e]), int(dst[e])), 0.0) for e in subset]
    assert lb.held_on(src, dst, subset, owed=owed).tolist() == want
    assert lb.held_on(src, dst, subset).tolist() == want


def _merged_by_loop(block: dict[str, list]) -> dict[str, list] | None:
    """Consolidation written from its definition: rows grouped by (lender,
    borrower, CCP) in that order, sums in row order; None if a group mixes terms."""
    groups: dict[tuple[int, int, int], list[int]] = {}
    for r, key in enumerate(zip(block["lender"], block["borrower"], block["ccp"], strict=True)):
        groups.setdefault(key, []).append(r)
    out: dict[str, list] = {name: [] for name in LoanBook._ROWS}
    for key in sorted(groups):
        rows = groups[key]
        if len({block["rate"][r] for r in rows}) > 1 or len({block["maturity"][r]
                                                             for r in rows}) > 1:
            return None
        for name in ("lender", "borrower", "rate", "maturity", "ccp", "link"):
            out[name].append(block[name][rows[0]])
        for name in ("principal", "accrued"):
            s = 0.0
            for r in rows:
                s += block[name][r]
            out[name].append(s)
    return out


@pytest.mark.parametrize("ccps", [0, 2])
@pytest.mark.parametrize("mixed", [False, True])
def test_consolidate_is_the_grouping_loop(ccps, mixed):
    rng = np.random.default_rng(ccps * 10 + mixed)
    lb = LoanBook()
    lb.links.ids(np.repeat(np.arange(12), 12), np.tile(np.arange(12), 12))  # every pair
    m = 300
    lender, borrower = rng.integers(0, 12, m), rng.integers(0, 12, m)
    ccp = rng.integers(-1, ccps, m) if ccps else np.full(m, -1)
    rate = np.full(m, 0.01)
    if mixed:
        rate[rng.integers(0, m)] = 0.02
    lb.append(lender, borrower, rng.random(m) * 5, rate, 7, ccp)
    lb.accrued[:] = rng.random(m) * 0.1
    lb.link_ids()  # known links: the rank merge
    block = _columns(lb)
    want = _merged_by_loop(block)
    lb.consolidate(0)
    if want is None:  # some pair's loans differ in rate: left as they were
        assert _columns(lb) == block
    else:
        assert _columns(lb) == want and len(lb) < m
