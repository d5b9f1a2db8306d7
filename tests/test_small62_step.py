"""helper-62 (issue 15): fewer NumPy calls in a small model's step. Each faster
form is checked bit for bit against the former code (kept here) or the former
expression:

- ``update_rewards``: nobody defaulted (status all 0) stands for the mask of
  banks out, its comparison and its count; profit divided ``where`` the initial
  equity is positive (elsewhere by 1.0, which changes no value); the default
  penalty skipped while nobody defaults now (α·0.0 = +0.0, x − (+0.0) = x); the
  system-risk term as one product while nobody is out;
- the collector's usual step (model data alone) returns after the model rows;
- the act stage skips the voluntary sale when no bank sells;
- the price stage's fire-sale value with one asset class as matmul's one-term
  sum (``0.0 + x·p``) in Python floats, without adding the forced sales when
  there are none;
- ``BrainSet.decide`` with every bank active keeps a group of all banks' indices.
"""

import copy

import numpy as np
import pytest
from support import former_rule_act, ledger_bits, masked_rewards

from finsim_mesa import FinancialModel
from finsim_mesa import model as model_module
from finsim_mesa.agents.brains import Brain
from finsim_mesa.agents.brainset import BrainSet
from finsim_mesa.fastmath import ONE, ZERO, count_nonzero
from finsim_mesa.market import sell_to_market
from finsim_mesa.rewards import update_rewards


def _bits(x):
    return np.asarray(x, dtype=float).tobytes()


def _former_update_rewards(r, L, total_assets, systemic_risk_index, cfg, t):
    """``rewards.update_rewards`` as of 7c9fe3b."""
    was_out = L.defaulted & (L.default_step < t)
    out = count_nonzero(was_out)
    block = np.empty((5, L.n))
    per_bank, profit, liquidity, default, sri = block
    eq0 = L.equity0
    np.subtract(L.equity, r.equity_prev, out=profit)
    np.divide(profit, np.where(eq0 > ZERO, eq0, ONE), out=profit)
    liquidity.fill(0.0)
    np.divide(L.cash, total_assets, out=liquidity, where=total_assets > ZERO)
    np.equal(L.default_step, t, out=default)
    sri.fill(systemic_risk_index)
    if out:
        np.copyto(block[1:], ZERO, where=was_out)
    r.components = {"profit": profit, "liquidity": liquidity, "default": default,
                    "system_risk": sri}
    np.multiply(cfg.reward_profit_weight, profit, out=per_bank)
    per_bank += cfg.reward_liquidity_weight * liquidity
    per_bank -= cfg.reward_default_penalty * default
    per_bank -= cfg.reward_system_risk_weight * sri
    r.per_bank = per_bank
    r.equity_prev = L.equity.copy()
    if out == L.n:
        r.mean = r.profit = r.liquidity = r.default = r.system_risk = 0.0
        return
    live = block.compress(~was_out, axis=1) if out else block
    means = (np.add.reduce(live, axis=1) / live.shape[1]).tolist()
    r.mean, r.profit, r.liquidity, r.default, r.system_risk = means


def _case(n, who, seed):
    m = FinancialModel(n_banks=n, scenario="systemic", rng=seed, steps=30)
    m.run_for(2)
    rng = np.random.default_rng(seed)
    L, t = m.ledger, m.t + 1
    L.equity[:] = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)
    L.equity[rng.random(n) < 0.1] = -0.0
    L.equity0[rng.random(n) < 0.1] = 0.0
    L.equity0[rng.random(n) < 0.05] = -1.5
    L.equity0[rng.random(n) < 0.05] = np.nan
    L.cash[:] = rng.random(n) * 50.0
    m.reward.equity_prev = rng.standard_normal(n) * 5.0
    same = rng.random(n) < 0.1  # no change: a zero profit
    m.reward.equity_prev[same] = L.equity[same]
    L.status[:], L.default_step[:] = 0, -1
    ta = np.abs(m.sheets.total_assets) + 1.0  # (positive: every quotient unmasked)
    gone = rng.random(n) < 0.3
    now = ~gone & (rng.random(n) < 0.2)
    if who in ("out", "both"):
        L.status[gone], L.default_step[gone] = 1, t - 1 - rng.integers(0, 3, gone.sum())
    if who in ("now", "both"):
        L.status[now], L.default_step[now] = 1, t
    if who == "all_out":
        L.status[:], L.default_step[:] = 1, t - 2
    if who == "stale":  # (a state the model never makes: a default step, status active)
        L.default_step[now] = t
    if who != "nobody":
        ta[rng.random(n) < 0.1] = 0.0
        ta[rng.random(n) < 0.05] = -1.0
        ta[rng.random(n) < 0.05] = np.nan
        ta[rng.integers(n)] = 0.0  # (at least one)
    return m, L, ta, t


WEIGHTS = [dict(), dict(reward_default_penalty=0.0),
           dict(reward_profit_weight=1.3, reward_liquidity_weight=-0.7,
                reward_default_penalty=2.0, reward_system_risk_weight=0.45),
           dict(reward_default_penalty=-1.25, reward_system_risk_weight=-2.0),  # unvalidated
           dict(reward_default_penalty=np.inf), dict(reward_default_penalty=np.nan)]


@pytest.mark.parametrize("n", [5, 30, 257])
@pytest.mark.parametrize("who", ["nobody", "now", "out", "both", "all_out", "stale"])
@pytest.mark.parametrize("w", range(len(WEIGHTS)))
def test_rewards_are_the_former_bits(n, who, w):
    m, L, ta, t = _case(n, who, seed=n + w)
    assert (ta > 0).all() == (who == "nobody")  # (the unmasked and the masked quotients)
    cfg = m.config.model_copy(update=WEIGHTS[w])  # (model_copy: no validation)
    for sri in (0.37, 0.0, -0.0, 1.0 / 3.0, 1.0):
        ref, r = copy.deepcopy(m.reward), copy.deepcopy(m.reward)
        with np.errstate(invalid="ignore"):  # (an infinite or NaN penalty times 0.0)
            _former_update_rewards(ref, L, ta, sri, cfg, t)
            update_rewards(r, L, ta, sri, cfg, t)
        assert r.per_bank.tobytes() == ref.per_bank.tobytes()
        assert list(r.components) == list(ref.components)
        for name, v in ref.components.items():
            assert r.components[name].tobytes() == v.tobytes(), name
        for name in ("mean", "profit", "liquidity", "default", "system_risk"):
            assert _bits(getattr(r, name)) == _bits(getattr(ref, name)), name
            assert type(getattr(r, name)) is float
        assert r.equity_prev.tobytes() == L.equity.tobytes()
        # and the masked reference (separate arrays, one mean each) agrees too
        with np.errstate(invalid="ignore"):
            _, per_bank, mean, _ = masked_rewards(copy.deepcopy(m.reward), L, ta, sri, cfg, t)
        assert r.per_bank.tobytes() == per_bank.tobytes()
        assert _bits(r.mean) == _bits(mean)


def test_rewards_in_runs_are_the_former_bits():
    for n, scenario in ((30, "systemic"), (40, "normal")):
        m = FinancialModel(n_banks=n, scenario=scenario, rng=7, steps=200)
        seen = set()
        while m.running:
            ref = copy.deepcopy(m.reward)
            m.step()
            _former_update_rewards(ref, m.ledger, m.sheets.total_assets,
                                   m.measures.systemic_risk_index, m.config, m.t)
            assert m.reward.per_bank.tobytes() == ref.per_bank.tobytes()
            assert _bits(m.reward.mean) == _bits(ref.mean)
            seen.add((bool(count_nonzero(m.ledger.status)),
                      bool(count_nonzero(m.ledger.default_step == m.t))))
        assert (False, False) in seen


def test_collector_rows_are_the_attribute_values():
    m = FinancialModel(n_banks=20, scenario="systemic", rng=3, agent_collect_every=0, steps=30)
    m.run_for(12)
    df = m.datacollector.get_model_vars_dataframe()
    assert len(df) == 13
    assert df["mean_reward"].iloc[-1] == m.reward.mean
    assert df["n_defaults"].iloc[-1] == m.measures.n_defaults
    assert df["fire_sale_volume"].iloc[-1] == m.flows.fire_sale_volume


def test_collector_with_a_plain_function_reporter_runs_mesas_loop():
    """A reporter that is not a lambda: ``_model_rows`` declines, Mesa's loop runs."""
    m = FinancialModel(n_banks=10, rng=3, agent_collect_every=0, steps=30)

    def steps_so_far(model):  # (a def: a function, yet not every value path-read)
        return model.t

    dc = m.datacollector
    dc.model_reporters["t"] = steps_so_far
    dc.model_vars["t"] = []
    m.run_for(3)
    assert dc.model_vars["t"] == [1, 2, 3]
    assert len(dc.model_vars["price"]) == 4


def _act_former(m, actions):
    """``FinancialModel.act``'s voluntary sale as of 7c9fe3b: always offered."""
    L, cfg = m.ledger, m.config
    sell = np.multiply(actions.T, L.active, order="C")[2]
    sell_to_market(L, m.flows, L.holdings * (sell * cfg.max_sell_fraction)[:, None],
                   L.prices * (1 - cfg.sale_discount), "voluntary_sales")


@pytest.mark.parametrize("sells", [False, True])
def test_act_without_sales_is_the_former_act(monkeypatch, sells):
    m = FinancialModel(n_banks=30, scenario="systemic", rng=11, steps=50)
    m.run_for(5)
    a = m.decide(m.observe()).copy()
    a[:, 2] = 0.3 if sells else 0.0
    twin = FinancialModel(n_banks=30, scenario="systemic", rng=11, steps=50)
    twin.restore(m.snapshot())
    _act_former(twin, a)  # the sale first, then act with the sale already made
    twin_sold = twin.flows.units_sold.copy()
    b = a.copy()
    b[:, 2] = 0.0
    twin.act(b)
    m.act(a)
    assert ledger_bits(m.ledger) == ledger_bits(twin.ledger)
    assert m.flows.units_sold.tobytes() == twin_sold.tobytes()
    assert bool(count_nonzero(m.flows.units_sold)) is sells


def test_fire_sale_value_is_the_one_term_matmul():
    rng = np.random.default_rng(62)
    special = [0.0, -0.0, 1.0, np.nan, np.inf, -np.inf, 5e-324, 1e308, -2.5]
    for i in range(5000):
        x, p = ((float(v) for v in rng.choice(special, 2)) if i % 3 == 0
                else (float(v) for v in rng.standard_normal(2) * 10.0 ** rng.integers(-8, 8, 2)))
        with np.errstate(all="ignore"):
            want = float(np.array([x]) @ np.array([p]))
            got = np.array([x]).item() * np.array([p]).item() + 0.0
        assert _bits(got) == _bits(want), (x, p)


@pytest.mark.parametrize("kw", [dict(), dict(n_assets=2), dict(deleveraging_rule="threshold")])
def test_fire_sale_value_in_a_run_is_the_former_expression(monkeypatch, kw):
    seen, forced_sales = [], []
    real = model_module.fire_sales

    def spy(L, market, cfg, units_sold, t):
        forced, rest = real(L, market, cfg, units_sold, t)
        seen.append(float((units_sold + np.add.reduce(forced, axis=0)) @ market.prices0_))
        forced_sales.append(bool(count_nonzero(forced)))
        return forced, rest

    def before(L, market, cfg, units_sold, t):
        market.prices0_ = L.prices.copy()
        return spy(L, market, cfg, units_sold, t)

    monkeypatch.setattr(model_module, "fire_sales", before)
    m = FinancialModel(n_banks=30, scenario="systemic", rng=5, steps=40, **kw)
    values = []
    for _ in range(25):
        m.step()
        values.append(m.flows.fire_sale_volume)
    assert len(seen) == 25
    assert _bits(values) == _bits(seen)
    assert any(v > 0 for v in values)
    assert True in forced_sales and False in forced_sales  # (both paths taken)


class _Recorder(Brain):
    """Records the bank rows it is asked about."""

    name = "recorder"
    per_bank = True

    def __init__(self):
        self.asked = []

    def act_banks(self, banks, obs):
        self.asked.append([b.bank_id for b in banks])
        return np.full((len(banks), 4), 0.25)


@pytest.mark.parametrize("out", [(), (0,), (3, 7)])
def test_decide_asks_each_brain_about_its_active_banks(out):
    m = FinancialModel(n_banks=10, rng=1, steps=30)
    obs = m.observe()
    active = np.ones(10, dtype=bool)
    active[list(out)] = False
    one = _Recorder()
    got = BrainSet(one, 10, "rule_based").decide(obs, active, m.banks, {})
    assert one.asked == [[i for i in range(10) if i not in out]]
    assert np.array_equal(got, np.where(active[:, None], np.full((10, 4), 0.25), 0.0))
    two, three = _Recorder(), _Recorder()
    spec = {0: two, 2: two, 3: two, "default": three}
    BrainSet(spec, 10, "rule_based").decide(obs, active, m.banks, {})
    assert two.asked == [[i for i in (0, 2, 3) if i not in out]]
    assert three.asked == [[i for i in range(10) if i not in (0, 2, 3, *out)]]


def _tied_observations(b, seed, dtype):
    """Observation rows whose rule terms often tie at 0 and 1 (signed zeros, the
    clip bounds exactly), with NaN and infinities here and there."""
    from finsim_mesa.observation import OBS, OBS_DIM

    rng = np.random.default_rng(seed)
    o = rng.uniform(-0.3, 1.3, (b, OBS_DIM))
    pick = rng.random((b, OBS_DIM))
    o[pick < 0.25] = rng.choice([0.0, -0.0, 0.2, 0.4, 0.8, 1.0, 0.3, 0.5], (pick < 0.25).sum())
    o[pick > 0.97] = rng.choice([np.nan, np.inf, -np.inf, 5e-324], (pick > 0.97).sum())
    st, own = OBS["market_stress"], OBS["own_distress"]
    tie = rng.random(b) < 0.3  # 0.8 - stress - own = 0.0 exactly
    o[tie, st], o[tie, OBS["counterparty_stress"]], o[tie, own] = 0.5, 0.25, 0.3
    o[rng.random(b) < 0.2, OBS["liquidity_coverage"]] = 0.2  # coverage x 5 = 1.0
    o[rng.random(b) < 0.2, OBS["capital_ratio"]] = 0.12  # headroom 1.5 at 0.08
    return o.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("order", ["C", "F"])
def test_rule_brain_block_is_the_former_columns(dtype, order):
    from finsim_mesa.agents.brains import RuleBasedBrain

    brain = RuleBasedBrain(0.08)
    for b in (0, 1, 3, 7, 30, 33, 100, 257):
        o = np.asarray(_tied_observations(b, b, dtype), order=order)
        with np.errstate(all="ignore"):
            got, want = brain.act(o), former_rule_act(brain, o)
        assert got.shape == want.shape == (b, 4) and got.dtype == want.dtype
        assert np.ascontiguousarray(got).tobytes() == want.tobytes()
        ro = o.view()
        ro.flags.writeable = False  # (what decide hands over: the model's matrix, read-only)
        with np.errstate(all="ignore"):
            assert np.ascontiguousarray(brain.act(ro)).tobytes() == want.tobytes()


def _former_copied_fields(obj):
    """``state._copied_fields`` of a plain dataclass as of 7c9fe3b."""
    from finsim_mesa.state import _SHARED, _copy

    return {k: v if type(v) in _SHARED else _copy(v) for k, v in obj.__dict__.items()}


def test_copied_fields_are_the_former_copies():
    """The transaction's copy of the flows (and of any plain state): the same keys in
    the same order, scalars the same objects, arrays (subclasses too), lists and
    dicts new copies with the same contents; nothing of the live object changed."""
    from finsim_mesa.state import StepFlows, _copied_fields

    class Sub(np.ndarray):
        pass

    f = StepFlows(withdrawals=np.arange(5.0), units_sold=np.array([-0.0, np.nan]))
    f.price_prev, f.contagion_depth = 0.97, 3
    f.extra_list = [np.ones(2), 1.5]  # (fields a subclass or a user might add)
    f.extra_dict = {"a": np.zeros(3)}
    f.extra_sub = np.arange(3.0).view(Sub)
    f.extra_none = None
    before = dict(vars(f))
    new, old = _copied_fields(f), _former_copied_fields(f)
    assert list(new) == list(old) == list(before)
    assert vars(f) == before and all(vars(f)[k] is v for k, v in before.items())
    for k, v in before.items():
        x, y = new[k], old[k]
        assert type(x) is type(y) is type(v), k
        if isinstance(v, np.ndarray):
            assert x is not v and x.tobytes() == v.tobytes() and x.dtype == v.dtype, k
        elif isinstance(v, list | dict):
            assert x is not v and len(x) == len(v), k
        else:
            assert x is v, k
    assert new["extra_list"][0] is not f.extra_list[0]
    assert new["extra_dict"]["a"] is not f.extra_dict["a"]
