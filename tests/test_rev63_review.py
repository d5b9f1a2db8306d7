"""helper-63's review of layer59, layer60, big61 and small62 against 7c9fe3b:
cases where a shortcut's argument does not hold and the bits change. Each test
compares the merged code with the former form (kept here, as of 7c9fe3b); each
fails on the merge as reviewed (rev63) and passes once the shortcut declines
in that case.

- layer59 6492a0f ``layer._affordable``: ``owes + tol > cap`` is False where a
  lender's cash (so ``cap``) is NaN, so its orders count as affordable; the
  former running sums (``within <= NaN``) refused them.
- small62 8dc3546 ``update_rewards``: the default penalty is skipped for
  ``0 <= alpha < inf``, which admits ``alpha = -0.0`` (the config's ``ge=0``
  does too); ``-0.0 * +0.0`` is ``-0.0`` and ``x - (-0.0)`` turns a ``-0.0``
  reward into ``+0.0``.
- small62 8dc3546 ``act``: the voluntary sale is skipped when no bank sells,
  which assumes finite holdings; an infinite holding gives ``inf * 0 = NaN``
  units, which 7c9fe3b sold.
- small62 2122e58 ``RuleBasedBrain.act``: ``calm`` is now stored in the float64
  block before the product; for long-double observations the former product
  ``float64 * longdouble`` rounded once, the new one twice.
"""

import numpy as np
import pytest
from support import former_rule_act, ledger_bits

from finsim_mesa import FinancialModel
from finsim_mesa.agents.brains import RuleBasedBrain
from finsim_mesa.fastmath import ONE, ZERO, count_nonzero, stable_order
from finsim_mesa.infrastructure import layer
from finsim_mesa.market import sell_to_market
from finsim_mesa.observation import OBS, OBS_DIM
from finsim_mesa.rewards import update_rewards


def _former_affordable(snd, need, cash, n):
    """book_orders' affordability as of 7c9fe3b (None: every order is)."""
    order = stable_order(snd, n)
    by_sender, need_o = snd[order], need[order]
    cs = np.cumsum(need_o)
    first = np.empty(snd.size, dtype=bool)
    first[:1] = True
    np.not_equal(by_sender[1:], by_sender[:-1], out=first[1:])
    within = cs - np.maximum.accumulate(np.where(first, cs - need_o, 0.0))
    affordable = np.empty(snd.size, dtype=bool)
    affordable[order] = within <= cash[by_sender] * (1 + 1e-12)
    return None if count_nonzero(affordable) == affordable.size else affordable


def _as_mask(ok, k):
    return np.ones(k, dtype=bool) if ok is None else ok


@pytest.mark.parametrize("nan_at", [0, 1])
def test_affordable_with_a_nan_cash_is_the_former_running_sums(nan_at):
    snd, need = np.array([0, 1, 1]), np.array([1.0, 2.0, 3.0])
    cash = np.array([10.0, 10.0])
    cash[nan_at] = np.nan
    want = _as_mask(_former_affordable(snd, need, cash, 2), 3)
    assert not want[snd == nan_at].any()  # (within <= NaN is False: refused)
    got = _as_mask(layer._affordable(snd, need, cash, 2), 3)
    assert got.tolist() == want.tolist()


def test_run_with_a_nan_cash_lender_is_the_former_run(monkeypatch):
    kw = dict(n_banks=20, n_exchanges=1, n_ccps=0, brain="greedy", rng=0)
    a, b = FinancialModel(**kw), FinancialModel(**kw)
    for m in (a, b):
        m.step()
        m.ledger.cash[0] = np.nan
    a.step()
    monkeypatch.setattr(layer, "_affordable", _former_affordable)
    b.step()
    failed = b.router.audit()
    assert (failed["outcome"] == "failed").any()  # (the NaN-cash lender's orders)
    assert ledger_bits(a.ledger) == ledger_bits(b.ledger)


def _former_per_bank(r, L, total_assets, sri, cfg, t):
    """update_rewards' per-bank reward as of 7c9fe3b, for nobody out."""
    eq0 = L.equity0
    profit = np.subtract(L.equity, r.equity_prev)
    np.divide(profit, np.where(eq0 > ZERO, eq0, ONE), out=profit)
    liquidity = np.zeros(L.n)
    np.divide(L.cash, total_assets, out=liquidity, where=total_assets > ZERO)
    default = (L.default_step == t).astype(float)
    per_bank = np.multiply(cfg.reward_profit_weight, profit)
    per_bank += cfg.reward_liquidity_weight * liquidity
    per_bank -= cfg.reward_default_penalty * default
    per_bank -= cfg.reward_system_risk_weight * np.full(L.n, sri)
    return per_bank


def test_rewards_with_negative_zero_weights_are_the_former_bits():
    m = FinancialModel(n_banks=10, brain="passive", rng=3, reward_profit_weight=-0.0,
                       reward_liquidity_weight=-0.0, reward_default_penalty=-0.0,
                       reward_system_risk_weight=0.0)
    m.run_for(2)
    assert not count_nonzero(m.ledger.status)
    L, t, sri = m.ledger, m.t, m.measures.systemic_risk_index
    want = _former_per_bank(m.reward, L, m.sheets.total_assets, sri, m.config, t)
    update_rewards(m.reward, L, m.sheets.total_assets, sri, m.config, t)
    assert (want == 0.0).any()  # (zero rewards: their sign is the case)
    assert m.reward.per_bank.tobytes() == want.tobytes()


@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_act_with_a_non_finite_holding_is_the_former_act(value):
    m = FinancialModel(n_banks=10, brain="passive", rng=3)
    m.step()
    twin = FinancialModel(n_banks=10, brain="passive", rng=3)
    twin.restore(m.snapshot())
    for x in (m, twin):
        x.ledger.holdings[2, 0] = value
    actions = np.zeros((10, 4))
    L, cfg = twin.ledger, twin.config  # 7c9fe3b's act: the sale always offered
    sell = np.multiply(actions.T, L.active, order="C")[2]
    sell_to_market(L, twin.flows, L.holdings * (sell * cfg.max_sell_fraction)[:, None],
                   L.prices * (1 - cfg.sale_discount), "voluntary_sales")
    twin.act(actions)  # (no sale left to make: nobody sells)
    m.act(actions)
    assert ledger_bits(m.ledger) == ledger_bits(twin.ledger)
    assert m.flows.units_sold.tobytes() == twin.flows.units_sold.tobytes()


def test_rule_brain_on_long_double_rows_is_the_former_act():
    if np.finfo(np.longdouble).nmant <= np.finfo(np.float64).nmant:
        pytest.skip("long double is float64 here")
    rng = np.random.default_rng(5)
    o = np.zeros((200, OBS_DIM), dtype=np.longdouble)
    o[:, OBS["liquidity_coverage"]] = rng.random(200)
    o[:, OBS["market_stress"]] = rng.random(200) / 3
    o[:, OBS["own_distress"]] = rng.random(200) / 3
    o[:, OBS["market_stress"]] += np.longdouble(1) / 3 * 1e-5  # (bits beyond float64's)
    brain = RuleBasedBrain(0.08)
    want = former_rule_act(brain, o)
    assert np.ascontiguousarray(brain.act(o)).tobytes() == want.tobytes()
