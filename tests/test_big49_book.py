"""helper-49: the loan book's merge skips the maturity comparison when the
block has one maturity, and the act stage gathers its candidate links' ids
once; both against plain references: a pair-by-pair loop for the merge, and
the former form of ``new_loans`` (``held_on`` of the edge subset, ids looked
up again at the end)."""

import numpy as np
import pytest

from finsim_mesa import FinancialModel, lending
from finsim_mesa.loans import LoanBook


def _merged_by_loop(cols: dict[str, list], start: int) -> dict[str, list] | None:
    """The rows from ``start`` merged per (lender, borrower, ccp) in that key's
    order, or None when a group mixes rates or maturities (block left as is)."""
    groups: dict[tuple, list[int]] = {}
    for j in range(start, len(cols["lender"])):
        groups.setdefault((cols["lender"][j], cols["borrower"][j], cols["ccp"][j]), []).append(j)
    for rows in groups.values():
        if len({cols["rate"][j] for j in rows}) > 1 or len({cols["maturity"][j] for j in rows}) > 1:
            return None
    out = {name: col[:start] for name, col in cols.items()}
    for key in sorted(groups):
        rows = groups[key]
        first = rows[0]
        for name in ("lender", "borrower", "ccp", "rate", "maturity", "link"):
            out[name].append(cols[name][first])
        for name in ("principal", "accrued"):
            total = 0.0
            for j in rows:  # book order, as np.bincount sums
                total += cols[name][j]
            out[name].append(total)
    return out


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("mixed", ["none", "maturity", "rate"])
def test_consolidate_is_the_pairwise_merge(seed, mixed):
    rng = np.random.default_rng(seed)
    lb = LoanBook()
    m0, k = 40, 120
    lb.append(rng.integers(0, 6, m0), rng.integers(6, 10, m0), rng.random(m0),
              np.full(m0, 0.01), 3)
    lender, borrower = rng.integers(0, 6, k), rng.integers(6, 10, k)
    rate = 0.01 + 0.001 * borrower  # one rate per borrower: pairs alike
    maturity = np.full(k, 7)
    ccp = np.where(rng.random(k) < 0.3, rng.integers(0, 2, k), -1)
    j = int(rng.integers(1, k))  # row j repeats row 0's pair, with other terms if mixed
    lender[j], borrower[j], ccp[j] = lender[0], borrower[0], ccp[0]
    rate[j] = rate[0]
    if mixed == "maturity":
        maturity[j] = 8
    elif mixed == "rate":
        rate[j] = 0.5
    lb.append(lender, borrower, rng.random(k) * 10, rate, maturity, ccp)
    lb.accrued[m0:] = rng.random(k) * 0.1
    if seed % 2:
        lb.link_ids()  # linked rows: the mark path; unlinked: the sort path
    cols = {name: getattr(lb, name).tolist() for name in LoanBook._ROWS}
    merged = _merged_by_loop(cols, m0)
    assert (merged is None) == (mixed != "none")
    want = merged or cols
    lb.consolidate(m0)
    got = {name: getattr(lb, name).tolist() for name in LoanBook._ROWS}
    if not seed % 2:
        got["link"], want["link"] = None, None  # ids assigned only where linked
    assert got == want
    if mixed == "none":
        assert len(lb) < m0 + k  # merged (the pairs repeat)
    else:
        assert len(lb) == m0 + k  # a group with other terms: nothing merged


def _former_new_loans(L, network, lend, hoard, borrow, cfg):
    """new_loans as it was before helper-49 (held_on of the edge subset, the
    ids gathered again from the edges at the end)."""
    owed = L.loans.owed
    ta = L.total_assets(owed)
    reserve = ta * (cfg.reserve_ratio + hoard * max(cfg.liquidity_share - cfg.reserve_ratio, 0.0))
    offer = lend * np.maximum(L.cash - reserve, 0.0) * cfg.max_lend_fraction
    request = borrow * cfg.max_borrow_fraction * ta
    src, dst = network.src, network.dst
    e = np.flatnonzero((offer != 0)[src] & (request != 0)[dst])
    s, d = src[e], dst[e]
    held = L.loans.held_on(src, dst, e, owed=owed)
    room = np.maximum(cfg.large_exposure_limit * np.maximum(L.equity[s], 0.0) - held, 0.0)
    x = lending.match_lending(offer, request, s, d, room)
    k = np.flatnonzero(x > lending.MIN_LOAN)
    return s[k], d[k], x[k], L.loans.links.edge_ids(src, dst)[e[k]]


@pytest.mark.parametrize("seed", [1, 2])
def test_new_loans_is_the_former_form(seed):
    model = FinancialModel(n_banks=60, brain="rule_based", agent_collect_every=0, rng=seed)
    model.run_for(3)
    L, cfg, n = model.ledger, model.config, model.ledger.n
    rng = np.random.default_rng(seed)
    lend, hoard, borrow = rng.random(n), rng.random(n) * 0.5, rng.random(n)
    lend[rng.random(n) < 0.3] = 0.0
    got = lending.new_loans(L, model.network, lend, hoard, borrow, cfg)
    want = _former_new_loans(L, model.network, lend, hoard, borrow, cfg)
    assert got[0].size > 0
    for a, b in zip(got, want, strict=True):
        assert a.tolist() == b.tolist()
    assert got[3].tolist() == [L.loans.links.ids(np.array([i]), np.array([j]))[0]
                               for i, j in zip(got[0], got[1], strict=True)]
