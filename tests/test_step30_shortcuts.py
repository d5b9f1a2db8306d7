"""helper-30's step shortcuts (issue 15) give what the plain formulas give, bit
for bit: each is checked against a reference written out here from its
definition, on inputs where it applies and where it must not."""

import random

import numpy as np
import pytest
from support import per_entry_impact_weights

from finsim_mesa import FinancialModel, measures
from finsim_mesa.ledger import ACTIVE, DEFAULTED, Ledger
from finsim_mesa.loans import LoanBook
from finsim_mesa.state import Sheets


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return (a.dtype == b.dtype and a.shape == b.shape
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())


def _ledger(n: int = 7) -> Ledger:
    return Ledger(np.full(n, 5.0), np.ones((n, 1)), np.full(n, 3.0), np.ones(1))


@pytest.mark.parametrize("down", [[], [0], [2, 5], list(range(7))])
def test_status_masks_are_the_comparisons_with_the_two_statuses(down):
    L = _ledger()
    L.mark_default(np.array(down, dtype=np.int64), 3)
    assert _same_bits(L.active, L.status == ACTIVE)
    assert _same_bits(L.defaulted, L.status == DEFAULTED)
    # a status written from outside (a test, a user) is seen at once
    L.status[1] = DEFAULTED
    assert _same_bits(L.defaulted, L.status == DEFAULTED) and not L.active[1]
    # and the masks are new arrays each time: changing one changes nothing else
    a = L.active
    a[:] = False
    assert _same_bits(L.active, L.status == ACTIVE)


def test_append_with_one_maturity_for_all_is_the_array_of_it():
    one, each = LoanBook(), LoanBook()
    src, dst = np.array([0, 1, 2]), np.array([1, 2, 0])
    amt, rate = np.array([1.0, 2.0, 3.0]), np.array([0.01, 0.02, 0.03])
    one.append(src, dst, amt, rate, 9)
    each.append(src, dst, amt, rate, np.full(3, 9))
    for name in LoanBook._ROWS:
        assert _same_bits(getattr(one, name), getattr(each, name)), name


def test_act_splits_the_actions_as_column_products():
    """The act stage's four action columns (one product of the transposed
    actions with the active mask) are the columns times the mask, each."""
    m = FinancialModel(n_banks=20, brain="random", scenario="systemic", rng=3, steps=50)
    m.run_for(8)
    m.ledger.status[[2, 9]] = DEFAULTED
    actions = np.random.default_rng(0).random((20, 4))
    actions[4, 1] = np.nan  # NaN times an active 1 stays NaN, times 0 too
    m.ledger.status[4] = DEFAULTED
    rows = actions.T * m.ledger.active
    for i in range(4):
        assert _same_bits(rows[i], actions[:, i] * (m.ledger.status == ACTIVE))


# ------------------------------------------------------------ the loan book's buffers
def _plain_consolidate(ref: dict, start: int) -> dict:
    """LoanBook.consolidate from its definition: the rows from ``start`` grouped by
    (lender, borrower, ccp) in that order, amounts summed in book order, if every
    group has one rate and one maturity."""
    head = {f: v[:start] for f, v in ref.items()}
    block = {f: v[start:] for f, v in ref.items()}
    keys = sorted({(a, b, c) for a, b, c in zip(block["lender"], block["borrower"],
                                                 block["ccp"], strict=True)})
    if len(keys) == block["lender"].size:
        return ref
    out = {f: [] for f in ref}
    for key in keys:
        rows = [i for i in range(block["lender"].size)
                if (block["lender"][i], block["borrower"][i], block["ccp"][i]) == key]
        if (len({block["rate"][i] for i in rows}) > 1
                or len({block["maturity"][i] for i in rows}) > 1):
            return ref
        for f in ref:
            if f in ("principal", "accrued"):
                s = 0.0
                for i in rows:
                    s += block[f][i]
                out[f].append(s)
            else:
                out[f].append(block[f][rows[0]])
    return {f: np.concatenate([head[f], np.array(out[f], dtype=ref[f].dtype)]) for f in ref}


@pytest.mark.parametrize("seed", range(6))
def test_book_with_a_moved_head_matches_plain_arrays(seed):
    """Appends, consolidation, repayment of the first rows (the head moves),
    repayment of scattered rows (compaction in place from the head), in-place
    interest and row arrays replaced from outside: the book's rows equal plain
    arrays doing the same, bit for bit (the fast room check sees replaced rows)."""
    rng = np.random.default_rng(seed)
    book = LoanBook()
    cols = ("lender", "borrower", "principal", "accrued", "rate", "maturity", "ccp")
    ref = {f: np.zeros(0, dtype=np.int64 if f in ("lender", "borrower", "maturity", "ccp")
                       else float) for f in cols}
    for t in range(40):
        k = int(rng.integers(1, 12))
        lend, borr = rng.integers(0, 4, k), rng.integers(0, 4, k)
        amt = rng.random(k)
        rate = np.full(k, 0.01 * (1 + t % 2))
        ccp = rng.integers(-1, 1, k)
        start = len(book)
        book.append(lend, borr, amt, rate, t + 3, ccp)
        new = dict(lender=lend, borrower=borr, principal=amt, accrued=np.zeros(k), rate=rate,
                   maturity=np.full(k, t + 3), ccp=ccp)
        ref = {f: np.concatenate([ref[f], new[f].astype(ref[f].dtype)]) for f in cols}
        book.consolidate(start)
        ref = _plain_consolidate(ref, start)
        if t % 3 == 0:
            due = book.maturity <= t  # the first rows: the head moves
        else:
            due = rng.random(len(book)) < 0.2  # scattered: compacted from the head
        book.keep(~due)
        ref = {f: v[~due] for f, v in ref.items()}
        book.accrued += book.principal * book.rate
        ref["accrued"] = ref["accrued"] + ref["principal"] * ref["rate"]
        if t % 7 == 5:  # a row array replaced from outside
            book.principal = book.principal * 1.0 + 0.0
            book.lender = book.lender.copy()
        for f in cols:
            assert _same_bits(getattr(book, f), ref[f]), (t, f)
        assert book.link_ids(False).size == len(book)
    assert book._spare.head > 0 or len(book) == 0


# ------------------------------------------------------------ model.random in a step's rollback
class _DrawsThenFails:
    """A brain that draws from Mesa's model.random (or reseeds, or replaces it)
    and then fails on the step where it is told to."""

    def __init__(self, how: str) -> None:
        self.how, self.model, self.fail = how, None, False

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.fail:
            r = self.model.random
            if self.how == "draw":
                r.shuffle(list(range(30)))
                r.random()
            elif self.how == "seed":
                r.seed(123)
            elif self.how == "setstate":
                r.setstate(random.Random(9).getstate())
            elif self.how == "replace":
                self.model.random = random.Random(77)
            raise RuntimeError("brain failed")
        return np.full((obs.shape[0], 4), 0.3)


@pytest.mark.parametrize("how", ["none", "draw", "seed", "setstate", "replace"])
def test_failed_step_puts_model_random_back(how):
    """A step that changed model.random and failed leaves it (or the generator
    that replaced it) in the state before the step, as the full snapshot's
    getstate did; the model then runs on exactly as one that never failed."""
    brain = _DrawsThenFails(how)
    m = FinancialModel(n_banks=20, brain=brain, rng=4, steps=50)
    twin = FinancialModel(n_banks=20, brain=_DrawsThenFails(how), rng=4, steps=50)
    brain.model = m
    m.run_for(3)
    twin.run_for(3)
    m.random.random()  # drawn between steps too (by a user): not a step's business
    twin.random.random()
    before = m.random.getstate()
    brain.fail = True
    with pytest.raises(RuntimeError):
        m.step()
    brain.fail = False
    assert m.random.getstate() == before
    if how != "replace":
        assert m.agents.random is m.random  # Mesa's agent set still shares it
    m.run_for(2)
    twin.run_for(2)
    assert m.random.getstate() == twin.random.getstate()
    assert m.random.random() == twin.random.random()
    assert np.array_equal(m.ledger.equity, twin.ledger.equity)


@pytest.mark.parametrize("case", ["alike", "rate", "maturity", "nan_rate", "ccp"])
def test_consolidate_merges_exactly_when_np_array_equal_says_the_terms_agree(case):
    """The terms test (count of differing entries, NaN differing from itself)
    decides as np.array_equal of each row's terms with its group's first row's."""
    book = LoanBook()
    src, dst = np.array([0, 1, 0, 2, 1]), np.array([1, 2, 1, 0, 2])
    rate, mat = np.full(5, 0.01), np.full(5, 7)
    ccp = np.full(5, -1)
    if case == "rate":
        rate[2] = 0.02
    elif case == "maturity":
        mat[4] = 8
    elif case == "nan_rate":
        rate[[0, 2]] = np.nan
    elif case == "ccp":
        ccp[2] = 0  # another group: nothing mixed
    book.append(np.array([3]), np.array([4]), np.array([1.0]), np.array([0.5]), 2)
    book.append(src, dst, np.arange(1.0, 6.0), rate, mat, ccp)
    before = {f: getattr(book, f).copy() for f in LoanBook._ROWS}
    key = [(a, b, c) for a, b, c in zip(src, dst, ccp, strict=True)]
    first = {k: key.index(k) for k in key}
    agree = (np.array_equal(rate, rate[[first[k] for k in key]])
             and np.array_equal(mat, mat[[first[k] for k in key]]))
    book.consolidate(1)
    if agree:
        assert len(book) == 1 + len(set(key))
        assert book.principal[1:].tolist() == [1.0 + 3.0, 2.0 + 5.0, 4.0] or case == "ccp"
    else:
        for f in LoanBook._ROWS:
            assert _same_bits(getattr(book, f), before[f]), f
    assert agree == (case in ("alike", "ccp"))


@pytest.mark.parametrize("seed", range(4))
def test_total_assets_without_ccps_is_the_sum_with_their_zero_accounts(seed):
    """Without CCPs nothing is added for their accounts: bit for bit the sum with
    the zeros added (interbank assets are a bincount from +0.0, so the sum is
    never −0.0), signed zeros and NaN in every other term included; with CCPs
    their accounts are added."""
    rng = np.random.default_rng(seed)
    n = 40
    pick = [np.array([-0.0, 0.0, 1.5, -2.0, np.nan])[rng.integers(0, 5, n)] for _ in range(3)]
    L = Ledger(pick[0], pick[1][:, None], np.ones(n), np.array([-0.0 if seed % 2 else 1.0]),
               other_assets=pick[2])
    src, dst = rng.integers(0, n, 15), rng.integers(0, n, 15)
    L.loans.append(src, dst, np.array([-0.0, 0.0, 2.0])[rng.integers(0, 3, 15)],
                   np.full(15, 0.01), 4)
    sheets = Sheets()
    measures.refresh_sheets(sheets, L, 0.2)
    ib = np.bincount(L.loans.lender, weights=L.loans.principal + L.loans.accrued, minlength=n)
    ref = (L.cash + L.holdings[:, 0] * L.prices[0] + L.other_assets + ib
           + (L.margin.sum(axis=1) + L.fund.sum(axis=1)))
    assert _same_bits(L.total_assets(), ref) and _same_bits(sheets.total_assets, ref)
    L.setup_infrastructure(2, 1)
    L.margin[:, 1] = 3.0
    L.fund[5, 0] = 1.0
    measures.refresh_sheets(sheets, L, 0.2)
    ref = (L.cash + L.holdings[:, 0] * L.prices[0] + L.other_assets + ib
           + (L.margin.sum(axis=1) + L.fund.sum(axis=1)))
    assert _same_bits(L.total_assets(), ref) and _same_bits(sheets.total_assets, ref)


def _debtrank_rounds(rows, cols, w, h0):
    """Battiston's dynamics as documented (risk._propagate): distressed banks push
    once and become inactive; h = min(1, h + push), push summed in entry order."""
    n = h0.size
    h, inactive, steps = h0.copy(), np.zeros(n, dtype=bool), 0
    distressed = h > 0
    while distressed.any():
        push = np.zeros(n)
        for r, c, x in zip(rows, cols, w, strict=True):
            if distressed[c]:
                push[r] += x * h[c]
        inactive |= distressed
        h = np.minimum(1.0, h + push)
        distressed = (h > 0) & ~inactive
        steps += 1
    return h, steps


@pytest.mark.parametrize("seed", range(8))
def test_debtrank_entries_rounds_are_the_documented_dynamics(seed):
    """Long cascades (a chain plus random links, small equity so that h reaches 1):
    the in-place rounds give the documented dynamics' distress and round count
    bit for bit, and the CSR algorithm's (risk.debtrank) results."""
    import scipy.sparse as sp

    from finsim_mesa import risk

    rng = np.random.default_rng(seed)
    n = 25
    pairs = {(i + 1, i) for i in range(n - 1)}  # i + 1 lends to i: distress climbs the chain
    pairs |= {tuple(p) for p in rng.integers(0, n, (30, 2)) if p[0] != p[1]}
    rows, cols = np.array(sorted(pairs)).T
    exposures = rng.uniform(0.5, 4.0, rows.size)
    equity = rng.uniform(-1.0, 6.0, n)
    h0 = np.zeros(n)
    h0[rng.integers(0, n, 1 + seed % 3)] = rng.uniform(0.05, 1.0)
    value = rng.random(n)
    got = risk.debtrank_entries(rows, cols, exposures, equity, h0, value=value)
    w = per_entry_impact_weights(exposures, equity[rows], None)
    h, steps = _debtrank_rounds(rows, cols, w, h0)
    assert _same_bits(got.distress, h) and got.steps == steps
    csr = sp.csr_matrix((exposures, (rows, cols)), shape=(n, n))
    want = risk.debtrank(csr, equity, h0, value=value)
    assert _same_bits(got.distress, want.distress) and got.steps == want.steps
    assert (got.debtrank, got.total) == (want.debtrank, want.total)
    assert seed or steps >= 3  # a cascade over several rounds is exercised
