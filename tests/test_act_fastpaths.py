"""The decide and act stages' shortcuts at scale (issue 15) give exactly what
the plain computations give: matching only the links that can carry a loan,
merging a step's loans by link rank instead of a sort, the due loans of banks
out of business found among the due loans only, read-only brains acting on the
model's matrix without a copy, and the checked actions."""

import numpy as np
import pytest

from finsim_mesa import FinancialModel, lending
from finsim_mesa.agents.brains import Brain, check_actions, make_brain
from finsim_mesa.errors import BrainError
from finsim_mesa.ledger import DEFAULTED
from finsim_mesa.loans import LoanBook


def _stepped(seed: int, n: int, scenario: str, steps: int) -> FinancialModel:
    m = FinancialModel(n_banks=n, scenario=scenario, brain="random", rng=seed)
    m.run_for(steps)
    return m


def _held_by_hand(book: LoanBook, src, dst) -> np.ndarray:
    """What each edge's lender is owed by its borrower: a loop over the loans in
    book order (the order the documented sum takes)."""
    per_pair: dict[tuple[int, int], float] = {}
    owed = book.principal + book.accrued
    for i, j, v in zip(book.lender.tolist(), book.borrower.tolist(), owed.tolist(),
                       strict=True):
        per_pair[i, j] = per_pair.get((i, j), 0.0) + v
    return np.array([per_pair.get((i, j), 0.0) for i, j in zip(src.tolist(), dst.tolist(),
                                                                strict=True)])


@pytest.mark.parametrize(("seed", "scenario"), [(1, "normal"), (2, "systemic"),
                                                (3, "liquidity_crisis")])
def test_new_loans_equal_matching_every_link(seed, scenario):
    """The reference matches every network link, with each pair's exposure summed
    by hand, and keeps the amounts above ``MIN_LOAN``."""
    m = _stepped(seed, 120, scenario, 6)
    L, cfg, rng = m.ledger, m.config, np.random.default_rng(seed)
    n = m.n_banks
    for trial in range(4):
        lend, hoard, borrow = (rng.random(n) for _ in range(3))
        if trial == 1:  # most banks neither lend nor borrow
            lend[rng.random(n) < 0.8] = 0.0
            borrow[rng.random(n) < 0.8] = 0.0
        if trial == 3:  # banks with negative total assets ask for negative amounts,
            # which enter their lenders' sums (helper-27's review)
            L.cash[:5] = -10.0 * np.abs(L.total_assets()[:5]) - 1.0
        got = lending.new_loans(L, m.network, lend, hoard, borrow, cfg)
        # the reference, from the definitions
        ta = L.total_assets()
        reserve = ta * (cfg.reserve_ratio + hoard * max(cfg.liquidity_share
                                                        - cfg.reserve_ratio, 0.0))
        offer = lend * np.maximum(L.cash - reserve, 0.0) * cfg.max_lend_fraction
        request = borrow * cfg.max_borrow_fraction * ta
        src, dst = m.network.src, m.network.dst
        held = _held_by_hand(L.loans, src, dst)
        room = np.maximum(cfg.large_exposure_limit * np.maximum(L.equity[src], 0.0) - held,
                          0.0)
        x = lending.match_lending(offer, request, src, dst, room)
        k = np.flatnonzero(x > lending.MIN_LOAN)
        assert k.size > 0
        if trial == 3:
            assert (request < 0).any()
        for a, b in zip(got[:3], (src[k], dst[k], x[k]), strict=True):
            assert a.dtype == b.dtype
            assert np.array_equal(a, b)  # the same bits
        assert np.array_equal(got[3], L.loans.links.ids(src[k], dst[k]))


def test_new_loans_with_nobody_able_to_borrow_is_empty():
    m = _stepped(4, 40, "normal", 2)
    n = m.n_banks
    out = lending.new_loans(m.ledger, m.network, np.ones(n), np.zeros(n), np.zeros(n),
                            m.config)
    assert [a.size for a in out] == [0, 0, 0, 0]


def _random_block(rng, book: LoanBook, k: int, n: int, ccps: int) -> None:
    lender = rng.integers(0, n, k)
    borrower = (lender + rng.integers(1, n, k)) % n
    pair_rate = rng.choice([0.01, 0.02], size=(n, n))
    ccp = rng.integers(-1, ccps, k) if ccps else None
    book.append(lender, borrower, rng.random(k), pair_rate[lender, borrower],
                np.full(k, 9), ccp)
    book.accrued[-k:] = rng.random(k)


def _reference_merge(book: LoanBook, start: int) -> dict[str, np.ndarray]:
    """np.unique on a (lender, borrower, ccp) key; sums in row order."""
    t = slice(start, None)
    key = np.stack([book.lender[t], book.borrower[t], book.ccp[t]], axis=1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    out = {name: np.concatenate([getattr(book, name)[:start], getattr(book, name)[t][first]])
           for name in ("lender", "borrower", "rate", "maturity", "ccp")}
    for name in ("principal", "accrued"):
        sums = np.zeros(first.size)
        for row, g in enumerate(inverse):  # one by one, in row order
            sums[g] += getattr(book, name)[t][row]
        out[name] = np.concatenate([getattr(book, name)[:start], sums])
    return out


@pytest.mark.parametrize("ccps", [0, 2])
@pytest.mark.parametrize("seed", range(4))
def test_consolidate_by_link_rank_equals_the_sorted_merge(seed, ccps):
    """With every link id known (the act stage) the merge takes the rank path,
    without them the sort path; both give what np.unique gives."""
    rng = np.random.default_rng(seed)
    n = 12
    base = LoanBook()
    _random_block(rng, base, 30, n, ccps)
    base.link_ids()  # older loans' links known; pairs seeded in an arbitrary order
    start = len(base)
    _random_block(rng, base, 200, n, ccps)  # many repeated pairs
    ref = _reference_merge(base, start)
    ranked, sorted_ = base.copy(), base.copy()
    ranked.link_ids()  # every link id known: the rank path
    assert int(ranked.link_ids(False)[start:].min()) >= 0
    assert int(sorted_.link_ids(False)[start:].min()) < 0  # the sort path
    ranked.consolidate(start)
    sorted_.consolidate(start)
    assert len(ranked) < len(base)
    for name, want in ref.items():
        assert np.array_equal(getattr(ranked, name), want), name
        assert np.array_equal(getattr(sorted_, name), want), name
    # the merged rows keep their pairs' link ids
    assert np.array_equal(ranked.link_ids(False),
                          ranked.links.ids(ranked.lender, ranked.borrower))


def test_consolidate_by_rank_leaves_mixed_terms_alone():
    book = LoanBook()
    book.append(np.array([0, 0, 1]), np.array([1, 1, 0]), np.ones(3),
                np.array([0.01, 0.02, 0.01]), np.full(3, 5))
    book.link_ids()
    before = {k: getattr(book, k).copy() for k in LoanBook._FIELDS}
    book.consolidate(0)
    for k, v in before.items():
        assert np.array_equal(getattr(book, k), v)


def test_link_ranks_order_the_pairs():
    book = LoanBook()
    book.append(np.array([5, 0, 2]), np.array([1, 3, 2]), np.ones(3), np.zeros(3),
                np.zeros(3, dtype=np.int64))
    book.link_ids()
    book.append(np.array([1, 0]), np.array([0, 0]), np.ones(2), np.zeros(2),
                np.zeros(2, dtype=np.int64))
    ids = book.link_ids()
    rank = book.links.ranks()[ids]
    pairs = list(zip(book.lender.tolist(), book.borrower.tolist(), strict=True))
    assert [pairs[i] for i in np.argsort(rank)] == sorted(pairs)


def test_roll_over_skips_the_due_loans_of_defaulted_banks():
    m = _stepped(5, 60, "normal", 8)
    L = m.ledger
    lb = L.loans
    t = int(lb.maturity.min())
    # banks in default whose loans are still on the book (as between the price
    # stage that finds them insolvent and their resolution)
    due = np.flatnonzero(lb.maturity <= t)
    L.status[[lb.borrower[due[0]], lb.lender[due[-1]]]] = DEFAULTED
    want = (lb.maturity <= t) & L.active[lb.lender] & L.active[lb.borrower]
    assert 0 < np.count_nonzero(want) < np.count_nonzero(lb.maturity <= t)
    twin = L.loans.copy()
    hoard = np.full(m.n_banks, 0.25)
    spread = np.zeros(m.n_banks)
    out = lending.roll_over(L, hoard, 0.01, spread, t, t + 5)
    ref = twin.owed_at(np.flatnonzero(want)) * 0.75
    assert np.array_equal(out["amount"], ref[ref > 0])
    assert np.array_equal(out["lender"], twin.lender[want][ref > 0])


def test_held_on_a_subset_is_the_subset_of_held_on():
    m = _stepped(6, 50, "normal", 5)
    src, dst = m.network.src, m.network.dst
    subset = np.flatnonzero(np.random.default_rng(0).random(src.size) < 0.3)
    whole = m.ledger.loans.held_on(src, dst)
    assert np.array_equal(m.ledger.loans.held_on(src, dst, subset), whole[subset])
    assert np.array_equal(whole, _held_by_hand(m.ledger.loans, src, dst))


# ------------------------------------------------------------ decide
class _Spy(Brain):
    """Records what it was given; writes into it when allowed."""

    reads_columns = True

    def __init__(self, write: bool) -> None:
        self.write, self.seen = write, []

    def act(self, observations):
        self.seen.append(observations)
        if self.write:
            observations[:] = 7.0
        return np.full((len(observations), 4), 0.5)


class _ReadOnlySpy(_Spy):
    reads_only = True


def test_a_read_only_brain_gets_the_models_matrix_without_a_copy():
    spy = _ReadOnlySpy(write=False)
    m = FinancialModel(n_banks=30, brain=spy, rng=1)
    m.step()
    got = spy.seen[-1]
    assert not got.flags.writeable
    assert np.shares_memory(got, m.decisions.observations)
    with pytest.raises(ValueError, match="read-only"):
        got[0, 0] = 1.0


def test_a_brain_that_writes_gets_a_copy_and_the_model_keeps_its_matrix():
    spy = _Spy(write=True)
    m = FinancialModel(n_banks=30, brain=spy, rng=1)
    twin = FinancialModel(n_banks=30, brain=_Spy(write=False), rng=1)
    m.step()
    twin.step()
    assert not np.shares_memory(spy.seen[-1], m.decisions.observations)
    assert np.array_equal(m.decisions.observations, twin.decisions.observations)
    assert np.array_equal(m.datacollector.get_model_vars_dataframe().to_numpy(),
                          twin.datacollector.get_model_vars_dataframe().to_numpy())


def test_a_subclass_of_a_built_in_brain_gets_its_own_copy():
    """``reads_only`` is not inherited: a user's subclass that writes into its
    observations works, and the model keeps its matrix."""
    from finsim_mesa.agents.brains import RuleBasedBrain

    class Scribbler(RuleBasedBrain):
        def act(self, observations):
            observations[:, 0] = 0.0  # allowed: its own copy
            return super().act(observations)

    m = FinancialModel(n_banks=30, brain=Scribbler(), rng=1)
    m.step()
    assert not np.all(m.decisions.observations[:, 0] == 0.0)
    assert not Scribbler.__dict__.get("reads_only", False)


def test_the_built_in_brains_are_read_only_and_never_write():
    for name in ("rule_based", "conservative", "myopic", "greedy", "passive", "random"):
        brain = make_brain(name)
        assert vars(type(brain)).get("reads_only") and brain.reads_columns, name
    m = FinancialModel(n_banks=40, scenario="systemic", brain="rule_based", rng=2)
    m.run_for(5)  # a write into the read-only matrix would have raised


@pytest.mark.parametrize("order", ["C", "F"])
def test_check_actions_is_a_fresh_clipped_c_ordered_copy(order):
    out = np.array(np.random.default_rng(0).random((50, 4)), order=order)
    out[0, 0], out[1, 1], out[2, 2] = 1 + 5e-7, -5e-7, -0.0
    got = check_actions(object(), out, 50)
    assert got.flags.c_contiguous and not np.shares_memory(got, out)
    assert np.array_equal(got, np.clip(out, 0.0, 1.0))
    assert got[0, 0] == 1.0 and got[1, 1] == 0.0
    for bad, msg in ((np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"),
                     (-np.inf, "NaN or infinite"), (1.1, "outside")):
        wrong = out.copy()
        wrong[3, 1] = bad
        with pytest.raises(BrainError, match=msg):
            check_actions(object(), wrong, 50)
    wrong = out.copy()
    wrong[3, 1] = np.nan
    with pytest.raises(BrainError, match="row 3"):
        check_actions(object(), wrong, 50)
