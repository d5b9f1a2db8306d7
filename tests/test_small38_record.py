"""helper-38 (issue 15): the record stage and the step's transaction with fewer
NumPy calls. Each faster form is checked bit for bit against the former code,
written out as the reference (support.masked_rewards for the rewards) or a plain
loop of the definition:

- the rewards and their means computed as the rows of one block (one
  reduction; the banks still in taken by ``compress``, whose rows are
  C-ordered: ``block[:, mask]`` has strided rows, summed one by one, not
  pairwise, and gives other bits — tested below);
- ``refresh_sheets``'s capital ratio with one mask (RWA > 0 and active);
- DebtRank's figures read without building a ``DebtRankResult``, and the
  scan rounds chosen by a finite sum of the weights;
- ``copy_state`` and the collector's ``mark``.
"""

import copy
import warnings

import numpy as np
import pytest
from support import masked_rewards

from finsim_mesa import FinancialModel, measures, risk
from finsim_mesa.rewards import update_rewards
from finsim_mesa.state import MODEL_STATE, copy_state


def _bits(x):
    return np.asarray(x, dtype=float).tobytes()


def _reward_case(n, out, seed):
    m = FinancialModel(n_banks=n, scenario="systemic", rng=seed, steps=30)
    m.run_for(3)
    rng = np.random.default_rng(seed)
    L, t = m.ledger, m.t + 1
    L.equity[:] = rng.standard_normal(L.n) * 10.0 ** rng.integers(-3, 4, L.n)
    L.equity[rng.random(L.n) < 0.1] = -0.0
    L.cash[:] = rng.random(L.n) * 50.0
    L.equity0[rng.random(L.n) < 0.1] = 0.0
    m.reward.equity_prev = rng.standard_normal(L.n) * 5.0
    L.status[:] = 0
    L.default_step[:] = -1
    if out == "some":
        gone = rng.random(L.n) < 0.3
        L.status[gone], L.default_step[gone] = 1, t - 1 - rng.integers(0, 3, gone.sum())
        now = ~gone & (rng.random(L.n) < 0.2)  # defaulting now: not out, penalised
        L.status[now], L.default_step[now] = 1, t
    elif out == "all_but_one":
        L.status[1:], L.default_step[1:] = 1, t - 1
    elif out == "all":
        L.status[:], L.default_step[:] = 1, t - 2
    ta = m.sheets.total_assets.copy()
    ta[rng.random(L.n) < 0.1] = 0.0
    ta[rng.random(L.n) < 0.05] = -1.0
    return m, L, ta, t


@pytest.mark.parametrize("n", [5, 9, 30, 257, 1500])
@pytest.mark.parametrize("out", ["nobody", "some", "all_but_one", "all"])
def test_rewards_block_gives_the_former_bits(n, out):
    m, L, ta, t = _reward_case(n, out, seed=n)
    cfg = m.config.model_copy(update=dict(reward_profit_weight=1.3, reward_liquidity_weight=-0.7,
                                          reward_default_penalty=2.0,
                                          reward_system_risk_weight=0.45))
    for sri in (0.37, 0.0, 1.0 / 3.0):
        ref_r, r = copy.deepcopy(m.reward), copy.deepcopy(m.reward)
        comps, per_bank, mean_all, means = masked_rewards(ref_r, L, ta, sri, cfg, t)
        update_rewards(r, L, ta, sri, cfg, t)
        assert r.per_bank.tobytes() == per_bank.tobytes()
        assert list(r.components) == list(comps)
        for name, v in comps.items():
            assert r.components[name].tobytes() == v.tobytes(), name
            assert _bits(getattr(r, name)) == _bits(means[name]), name
            assert type(getattr(r, name)) is float
        assert _bits(r.mean) == _bits(mean_all) and type(r.mean) is float
        assert r.equity_prev.tobytes() == L.equity.tobytes()
        assert r.equity_prev is not L.equity


def test_strided_rows_would_give_other_bits():
    """Why ``compress``: a row of ``block[:, mask]`` is strided, and NumPy sums a
    strided reduction axis one term after another, not pairwise."""
    rng = np.random.default_rng(38)
    block = rng.standard_normal((5, 1000)) * 1e3
    keep = rng.random(1000) < 0.8
    rows = [np.add.reduce(block[i][keep]) for i in range(5)]  # each row's own sum
    assert _bits(np.add.reduce(block.compress(keep, axis=1), axis=1)) == _bits(rows)
    assert _bits(np.add.reduce(block[:, keep], axis=1)) != _bits(rows)


def test_rewards_in_a_run_match_the_former_form():
    m = FinancialModel(n_banks=60, scenario="systemic", rng=5, steps=40)
    for _ in range(25):
        ref_r = copy.deepcopy(m.reward)
        m.step()
        _, per_bank, mean_all, _ = masked_rewards(
            ref_r, m.ledger, m.sheets.total_assets, m.measures.systemic_risk_index, m.config, m.t)
        assert m.reward.per_bank.tobytes() == per_bank.tobytes()
        assert _bits(m.reward.mean) == _bits(mean_all)


def _former_sheets(L, w):
    av = L.holdings[:, 0] * L.prices[0]  # one asset class
    owed = L.loans.principal + L.loans.accrued
    ia = np.bincount(L.loans.lender, weights=owed, minlength=L.n)
    il = np.bincount(L.loans.borrower, weights=owed, minlength=L.n)
    ta = L.cash + av + L.other_assets + ia
    rwa = av + L.other_assets + w * ia
    cr = np.divide(L.equity, rwa, out=np.zeros(L.n), where=rwa > 0)
    cr[L.status != 0] = 0.0
    return av, ia, il, ta, rwa, cr


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_refresh_sheets_gives_the_former_bits(seed):
    m = FinancialModel(n_banks=80, scenario="systemic", rng=seed, steps=30)
    m.run_for(4)
    L, rng = m.ledger, np.random.default_rng(seed)
    L.status[rng.random(L.n) < 0.2] = 1
    L.holdings[rng.random(L.n) < 0.1] = 0.0
    L.other_assets[rng.random(L.n) < 0.1] = -0.0
    L.other_assets[:3] = [-1e9, 0.0, np.nan]  # RWA < 0, = 0 (with no holdings?), NaN
    L.equity[rng.random(L.n) < 0.1] = -0.0
    L.equity[5] = np.nan
    for w in (1.0, 0.2, 0.0):
        measures.refresh_sheets(m.sheets, L, w)
        s = m.sheets
        ref = _former_sheets(L, w)
        for got, want in zip((s.asset_values, s.interbank_assets, s.interbank_liabilities,
                              s.total_assets, s.rwa, s.capital_ratio), ref, strict=True):
            assert got.tobytes() == want.tobytes()
        assert not s.capital_ratio[L.status != 0].any()


def test_record_debtrank_is_debtrank_entries():
    """The record stage reads DebtRank's figures without a DebtRankResult: the
    same numbers as debtrank_entries (and as SciPy's product, risk.debtrank)."""
    m = FinancialModel(n_banks=120, scenario="systemic", rng=11, steps=30)
    seen = 0
    for _ in range(12):
        m.step()
        L = m.ledger
        rows, cols, E, present = L.loans.exposure_entries(
            False, present=np.count_nonzero(L.equity0 > 0) < L.n)
        h = risk.distress(L.equity, L.equity0, L.defaulted)
        dr = risk.debtrank_entries(rows, cols, E, L.equity0, h, m.reference.assets0,
                                   present=present, by_column=L.loans.links.by_column(L.n))
        assert _bits([m.measures.debtrank, m.measures.debtrank_total]) == _bits(
            [dr.debtrank, dr.total])
        seen += dr.debtrank > 0
    assert seen


def _loop(rows, cols, exposures, equity, h0, value):
    """Battiston et al.'s rounds written out, each row's terms in entry order."""
    n = len(h0)
    with np.errstate(over="ignore"):  # NumPy's minimum: a NaN weight stays NaN
        w = [1.0 if not equity[i] > 0 else float(np.minimum(1.0, e / equity[i]))
             for i, e in zip(rows, exposures, strict=True)]
    h = [min(max(float(x), 0.0), 1.0) for x in h0]
    start = list(h)
    distressed, inactive, steps = [x > 0 for x in h], [False] * n, 0
    while any(distressed) and steps <= n:
        push = [0.0] * n
        for k, (i, j) in enumerate(zip(rows, cols, strict=True)):
            if distressed[j]:
                push[i] = push[i] + w[k] * h[j]
        inactive = [a or d for a, d in zip(inactive, distressed, strict=True)]
        h = list(np.minimum(1.0, np.array(h) + np.array(push)))
        distressed = [bool(x > 0) and not a for x, a in zip(h, inactive, strict=True)]
        steps += 1
    v = np.asarray(value, dtype=float) / np.add.reduce(np.asarray(value, dtype=float))
    return np.array(h), float(v @ np.array(h)) - float(v @ np.array(start)), steps


@pytest.mark.parametrize("kind", ["finite", "overflowing_sum", "nan"])
def test_debtrank_rounds_match_the_loop(kind):
    """Scan rounds (finite weights, even ones whose sum overflows) and gathering
    rounds (a NaN weight) give the loop's bits, without a warning."""
    rng = np.random.default_rng(7)
    n = 12
    a = rng.random((n, n)) < 0.4
    np.fill_diagonal(a, False)
    rows, cols = np.nonzero(a)
    exposures = rng.random(rows.size) - 0.3
    equity = rng.random(n) + 0.5
    if kind == "overflowing_sum":  # finite weights of -1e308 each: their sum is -inf
        exposures[:4] = -1e308
        equity[rows[:4]] = 1.0
    elif kind == "nan":
        exposures[rows.size // 2] = np.nan
    h0 = np.where(rng.random(n) < 0.7, rng.random(n), 0.0)  # > a third: a scan round
    value = rng.random(n) + 0.1
    data = risk._entry_weights(exposures, equity, rows, None)
    assert np.isfinite(data).all() == (kind != "nan")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = risk.debtrank_entries(rows, cols, exposures, equity, h0, value)
    h, dr, steps = _loop(rows, cols, exposures, equity, h0, value)
    assert got.distress.tobytes() == h.tobytes()
    assert _bits(got.debtrank) == _bits(dr)
    assert got.steps == steps


def test_debtrank_entries_keeps_the_callers_distress():
    rows, cols = np.array([0, 1]), np.array([1, 0])
    h0 = np.array([0.0, 0.0])
    got = risk.debtrank_entries(rows, cols, np.array([1.0, 1.0]), np.ones(2), h0, np.ones(2))
    assert got.distress is not h0 and got.steps == 0
    got.distress[0] = 0.5
    assert h0[0] == 0.0


def test_copy_state_is_a_deep_copy_of_every_field():
    m = FinancialModel(n_banks=20, scenario="systemic", rng=3, n_exchanges=1, n_ccps=1)
    m.run_for(3)
    class Sub(np.ndarray):
        pass

    m.flows.units_sold = np.ones(1).view(Sub)  # an ndarray subclass: copied, kept its class
    for name in MODEL_STATE:
        obj = getattr(m, name)
        ours, ref = copy_state(obj), copy.deepcopy(obj)
        assert type(ours) is type(obj)
        for field, value in vars(ref).items():
            got = getattr(ours, field)
            assert type(got) is type(value), (name, field)
            if isinstance(value, np.ndarray):
                assert got is not getattr(obj, field) and got.tobytes() == value.tobytes()
            elif isinstance(value, dict | list):
                assert got is not getattr(obj, field)
            else:
                assert got is getattr(obj, field)  # immutable scalars shared
    assert copy_state(3.5) == 3.5 and copy_state([np.ones(2)])[0] is not None


def test_collector_mark_counts_every_column():
    m = FinancialModel(n_banks=10, rng=1)
    m.run_for(3)
    dc = m.datacollector
    names, sizes, *_ = dc.mark()
    lengths = dict(zip(names, sizes, strict=True))
    assert lengths == {k: len(v) for k, v in dc.model_vars.items()}
    mark = dc.mark()
    m.step()
    dc.rollback(mark)
    assert {k: len(v) for k, v in dc.model_vars.items()} == lengths


@pytest.mark.parametrize("value", ["atomic", "array", "numpy_scalar"])
def test_model_rows_as_mesa_records_them(value):
    """The collector appends the reporters' values to their columns in C when every
    value is an immutable Python scalar; otherwise each is deep-copied as in
    Mesa's loop. Mesa's own DataCollector is the reference."""
    from mesa.datacollection import DataCollector

    from finsim_mesa.measures import FinsimDataCollector, make_reporters

    m = FinancialModel(n_banks=12, scenario="systemic", rng=2)
    reporters = make_reporters(False, m.market.names)
    ours = FinsimDataCollector(agent_every=0, model_reporters=dict(reporters))
    ref = DataCollector(model_reporters=dict(reporters))
    for _ in range(6):
        m.step()
        if value == "array":
            m.measures.total_equity = np.array([m.ledger.equity.sum()])
        elif value == "numpy_scalar":
            m.measures.total_equity = np.float64(m.ledger.equity.sum())
        ours.collect(m)
        ref.collect(m)
    assert list(ours.model_vars) == list(ref.model_vars)
    for column, want in ref.model_vars.items():
        got = ours.model_vars[column]
        assert [type(v) for v in got] == [type(v) for v in want], column
        assert [np.asarray(v).tobytes() for v in got] == [np.asarray(v).tobytes() for v in want]
    if value == "array":  # deep copies, not the model's array
        assert ours.model_vars["total_equity"][-1] is not m.measures.total_equity


def test_transaction_holds_the_replaced_states_field_values():
    """A step's transaction holds each REPLACED_STATE dataclass's field values (a
    dict, not a new instance); restore_state puts either form back the same way,
    and a failed step leaves every field as it was (the same objects' values)."""
    from finsim_mesa.state import REPLACED_STATE, _fields, restore_state, snapshot_model

    m = FinancialModel(n_banks=15, scenario="systemic", rng=6)
    m.run_for(3)
    snap = snapshot_model(m, shallow_logs=True)
    for name in REPLACED_STATE:
        obj = getattr(m, name)
        held = snap["state"][name]
        assert type(held) is dict and held == vars(obj) and held is not vars(obj)
        a, b = copy_state(obj), copy_state(obj)
        restore_state(a, held)
        restore_state(b, copy.copy(obj))
        for field in vars(obj):
            x, y = getattr(a, field), getattr(b, field)
            assert type(x) is type(y)
            if isinstance(x, np.ndarray):
                assert x.tobytes() == y.tobytes() and x is not getattr(obj, field)
    before = {name: copy.deepcopy(vars(getattr(m, name))) for name in REPLACED_STATE}

    def boom(*_):
        raise RuntimeError("late failure")

    m.datacollector.collect = boom  # fails after every stage ran
    with pytest.raises(RuntimeError):
        m.step()
    for name in REPLACED_STATE:
        now = vars(getattr(m, name))
        assert now.keys() == before[name].keys()
        for field, value in before[name].items():
            if isinstance(value, np.ndarray):
                assert now[field].tobytes() == value.tobytes(), (name, field)
            elif isinstance(value, dict):
                assert {k: np.asarray(v).tobytes() for k, v in now[field].items()} == {
                    k: np.asarray(v).tobytes() for k, v in value.items()}
            elif hasattr(value, "toarray"):  # the initial exposures (sparse)
                assert (now[field] != value).nnz == 0
            else:
                assert now[field] == value, (name, field)

    class Slotted:
        __slots__ = ("x",)

    one = Slotted()
    one.x = 1
    assert type(_fields(one)) is Slotted and _fields(one).x == 1
