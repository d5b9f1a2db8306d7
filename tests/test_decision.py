"""What-if lookahead and recommendations."""

import os
import threading

import numpy as np
import pandas as pd
import pytest

from finsim_mesa import ConfigError, FinancialModel, ShockError
from finsim_mesa.decision import CANDIDATES
from finsim_mesa.forked import can_fork, run_all


def live(**kw):
    base = dict(n_banks=30, scenario="liquidity_crisis", rng=4)
    base.update(kw)
    m = FinancialModel(**base)
    m.run_for(12)
    return m


@pytest.mark.parametrize("infra", [{}, {"n_exchanges": 2, "n_ccps": 1}])
@pytest.mark.parametrize("brain", ["rule_based", "random"])
def test_baseline_lookahead_equals_the_real_continuation(infra, brain):
    """Independent check that the state copy is complete: the baseline run on
    seed s equals continuing a twin of the live model with generator seed s."""
    a = live(brain=brain, **infra)
    b = live(brain=brain, **infra)
    res = a.what_if(steps=6, seeds=[11], bank=2)
    b.rng = np.random.default_rng(11)
    b.brains.setup(b)
    eq0 = np.maximum(b.ledger.equity, 0).sum()
    d0 = b.ledger.defaulted.sum()
    b.run_for(6)
    row = res.runs[res.runs.variant == "baseline"].iloc[0]
    assert row.defaults == b.ledger.defaulted.sum() - d0
    L = b.ledger
    assert row.equity_change == pytest.approx(
        np.maximum(np.where(L.defaulted, 0, L.equity), 0).sum() - eq0, rel=1e-12, abs=1e-9)
    assert row.bank_equity == pytest.approx(0.0 if L.defaulted[2] else L.equity[2])
    assert row.debtrank == pytest.approx(b.measures.debtrank_total)


def test_live_model_is_never_changed():
    m = live(brain="random", n_exchanges=1, n_ccps=1)
    snap = m.ledger.snapshot()
    rng_state = m.rng.bit_generator.state
    rows = len(m.datacollector.get_model_vars_dataframe())
    audit = len(m.router.audit())
    m.what_if(steps=5, seeds=3, shock={"kind": "default", "banks": [0, 1]},
              brains={3: "greedy"}, actions={4: [1, 0, 0, 1]}, bank=5)
    m.recommend(6, steps=3, seeds=2)
    for key, value in snap.items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(value, getattr(m.ledger, key)), key
    assert m.rng.bit_generator.state == rng_state
    assert len(m.datacollector.get_model_vars_dataframe()) == rows
    assert len(m.router.audit()) == audit
    assert not m.ledger.defaulted[[0, 1]].any()
    assert m.brains.per_bank[0].rng is m.rng  # random brains answer to the live model again
    # and the live model goes on exactly as its twin that saw no what-if
    twin = live(brain="random", n_exchanges=1, n_ccps=1)
    m.run_for(5)
    twin.run_for(5)
    pd.testing.assert_frame_equal(m.datacollector.get_model_vars_dataframe(),
                                  twin.datacollector.get_model_vars_dataframe())


def test_same_seeds_same_results_and_paired_differences():
    m = live()
    a = m.what_if(steps=5, seeds=[1, 2, 3], shock={"kind": "price_crash", "magnitude": 0.15})
    b = m.what_if(steps=5, seeds=[1, 2, 3], shock={"kind": "price_crash", "magnitude": 0.15})
    pd.testing.assert_frame_equal(a.runs, b.runs)
    base = a.runs[a.runs.variant == "baseline"].set_index("seed")
    hypo = a.runs[a.runs.variant == "hypothetical"].set_index("seed")
    diff = a.difference[a.difference.outcome == "equity_change"].iloc[0]
    assert diff["mean"] == pytest.approx((hypo.equity_change - base.equity_change).mean())
    assert diff["mean"] < 0  # a crash costs equity: the change is negative
    s = a.summary[(a.summary.variant == "baseline")
                  & (a.summary.outcome == "equity_change")].iloc[0]
    assert s.ci95_low <= s["mean"] <= s.ci95_high


def test_policy_change_and_fixed_actions_matter():
    m = live(scenario="normal")
    res = m.what_if(steps=8, seeds=3, brains={i: "greedy" for i in range(30)})
    d = res.difference.set_index("outcome")
    assert d.loc["equity_change", "std"] >= 0 and not res.runs.empty
    hypo = res.runs[res.runs.variant == "hypothetical"]
    base = res.runs[res.runs.variant == "baseline"]
    assert not np.allclose(hypo.equity_change.to_numpy(), base.equity_change.to_numpy())


def obvious_case():
    """Bank b owes a large withdrawal next step; emergency sales fetch almost
    nothing (90% liquidation discount), but a voluntary sale now fetches 99%."""
    m = FinancialModel(n_banks=20, scenario="normal", brain="passive", rng=6,
                       marketable_share=1.0, liquidation_discount=0.9, max_sell_fraction=1.0)
    m.run_for(2)
    b = int(np.argmax(m.sheets.total_assets))
    m.apply_shock("funding_withdrawal", 0.4, banks=[b])
    return m, b


def test_obvious_recommendation_is_to_raise_cash():
    m, b = obvious_case()
    rec = m.recommend(b, steps=3, seeds=4)
    assert rec.vector is not None and rec.vector[2] >= 0.5  # sells
    assert rec.default_probability == 0.0
    table = rec.table.set_index("action")
    assert table.loc["lend", "default_probability"] == 1.0
    assert table.loc["own_brain", "default_probability"] == 1.0
    assert "sell" in rec.reason and str(b) in rec.reason
    assert rec.ci95[0] <= rec.expected_equity <= rec.ci95[1]


@pytest.mark.parametrize(("call", "needle", "error"), [
    (lambda m: m.what_if(steps=0), "at least 1 step", ConfigError),
    (lambda m: m.what_if(seeds=0), "positive number", ConfigError),
    (lambda m: m.what_if(seeds=[]), "at least one seed", ConfigError),
    (lambda m: m.what_if(seeds=[3, 3, 1]), "more than once", ConfigError),
    (lambda m: m.recommend(1, seeds=[3, 3]), "more than once", ConfigError),
    (lambda m: m.what_if(bank=99), "bank id", ConfigError),
    (lambda m: m.what_if(actions={1: [2, 0, 0, 0]}), "4 numbers", ConfigError),
    (lambda m: m.what_if(actions={1: [0.5]}), "4 numbers", ConfigError),
    (lambda m: m.what_if(shock={"kind": "meteor"}), "unknown", ShockError),
    (lambda m: m.what_if(shock={"magnitude": 0.1}), "'kind'", ShockError),
    (lambda m: m.what_if(shock={"kind": "price_crash", "size": 1}), "unknown keys", ShockError),
    (lambda m: m.recommend(-1), "bank id", ConfigError),
    (lambda m: m.recommend(1, candidates={"x": [1, 1]}), "candidate 'x'", ConfigError),
    (lambda m: m.recommend(1, candidates={}), "at least one", ConfigError),
])
def test_bad_requests(call, needle, error):
    m = live()
    snap = m.ledger.snapshot()
    with pytest.raises(error, match=needle):
        call(m)
    assert np.array_equal(snap["cash"], m.ledger.cash)


@pytest.mark.parametrize("kw", [{"brain": "random"}, {"n_exchanges": 1, "n_ccps": 1}])
def test_forked_workers_give_the_same_results_as_one_process(kw):
    m = live(**kw)
    shock = {"kind": "price_crash", "magnitude": 0.2}
    one = m.what_if(steps=4, seeds=3, shock=shock, bank=2)
    two = m.what_if(steps=4, seeds=3, shock=shock, bank=2, workers=2)
    pd.testing.assert_frame_equal(one.runs, two.runs)  # value for value, in order
    r1 = m.recommend(2, steps=4, seeds=[5, 9, 11], shock=shock)
    r3 = m.recommend(2, steps=4, seeds=[5, 9, 11], shock=shock, workers=3)
    pd.testing.assert_frame_equal(r1.table, r3.table)
    assert r1.reason == r3.reason


class OwnGenerator:
    """A user's brain drawing from a generator of its own (not the model's)."""

    name = "own_generator"

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def act(self, observations):
        return self.rng.random((len(observations), 4))


def test_runs_with_a_brains_own_generator_do_not_depend_on_each_other():
    """Every lookahead run starts from the brains' generators as they were: the
    runs do not depend on their order (so forked workers, each with a share of
    them, give the same results as one process), and the live model and the
    user's brain objects are left as they were."""
    kw = {"steps": 3, "shock": {"kind": "price_crash", "magnitude": 0.2}, "bank": 2}
    hypo = live().what_if(seeds=[0, 1, 2, 3], brains={2: OwnGenerator(5)}, **kw)
    rev = live().what_if(seeds=[3, 2, 1, 0], brains={2: OwnGenerator(5)}, **kw)
    pd.testing.assert_frame_equal(
        hypo.runs.set_index(["variant", "seed"]).sort_index(),
        rev.runs.set_index(["variant", "seed"]).sort_index())
    if can_fork():
        two = live().what_if(seeds=[0, 1, 2, 3], brains={2: OwnGenerator(5)}, workers=2, **kw)
        pd.testing.assert_frame_equal(hypo.runs, two.runs)
    brain = OwnGenerator(5)
    before = brain.rng.bit_generator.state
    live().what_if(seeds=3, brains={2: brain}, **kw)
    assert brain.rng.bit_generator.state == before  # the user's object as it was
    m, twin = live(brain=OwnGenerator(7)), live(brain=OwnGenerator(7))
    m.what_if(seeds=3, **kw)
    m.recommend(2, steps=2, seeds=2)
    m.run_for(4)
    twin.run_for(4)  # the live model goes on as if no lookahead had run
    np.testing.assert_array_equal(m.ledger.equity, twin.ledger.equity)


def test_run_all_forks_only_where_it_is_safe():
    jobs = [os.getpid] * 4
    assert set(run_all(jobs, 1)) == {os.getpid()}
    forks = can_fork()  # False if an earlier test left a thread running in this process
    pids = run_all(jobs, 2)  # this process runs the first share, a forked child the second
    me = os.getpid()
    assert pids[:2] == [me, me] and (pids[2] == pids[3] != me if forks else pids[2:] == [me] * 2)
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:  # another thread runs (a server): forking is not safe, the runs stay here
        assert not can_fork() and set(run_all(jobs, 2)) == {os.getpid()}
    finally:
        release.set()
        other.join()
    with pytest.raises(ZeroDivisionError):  # a failing run fails the call, from a worker too
        run_all([os.getpid, lambda: 1 / 0], 2)
    if forks:  # a run that itself splits runs between workers (a planning brain)
        inner = [os.getpid] * 2
        assert run_all([lambda: len(run_all(inner, 2)), os.getpid] * 2, 2)[::2] == [2, 2]


_DEAD_WORKER = """
import os, sys
from finsim_mesa.forked import can_fork, run_all
class NeedsTwo(Exception):
    def __init__(self, a, b):
        super().__init__(a)
def bad():
    raise NeedsTwo("a", "b")
assert can_fork()
for job in (lambda: os._exit(3), lambda: sys.exit(3), bad):
    try:  # the failing job in the forked child's share (this process runs the first)
        run_all([os.getpid, os.getpid, job], 2)
    except BaseException as err:
        print("raised", type(err).__name__)
"""


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="no fork on this platform")  # (the check runs in a fresh process)
def test_a_worker_that_dies_fails_the_call_instead_of_hanging():
    """A worker killed (the out-of-memory killer, os._exit), exiting, or raising an
    exception that cannot be rebuilt here fails the lookahead; it must not wait
    for ever (multiprocessing.Pool does)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _DEAD_WORKER], capture_output=True, text=True,
                         timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.count("raised") == 3, out.stdout + out.stderr[-2000:]


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2", 10**6])
def test_bad_workers_are_refused(workers):
    with pytest.raises(ConfigError, match="workers"):
        live().what_if(steps=2, seeds=2, workers=workers)


def test_default_grid_is_documented_and_valid():
    assert len(CANDIDATES) + 1 == 10  # nine fixed actions plus the bank's own brain
    for vec in CANDIDATES.values():
        assert len(vec) == 4 and all(0 <= v <= 1 for v in vec)


def test_recommendation_under_a_shock_is_for_the_shocked_state():
    """finsim whatif --shock ... --recommend recommended for the state without the
    shock; now each candidate starts after it: the own-brain row equals the
    what-if of the same shock on the same seeds, and differs from no shock."""
    m = live(n_banks=20, rng=3)
    shock = {"kind": "price_crash", "magnitude": 0.3}
    rec = m.recommend(5, steps=3, seeds=[1, 2, 3], shock=shock)
    wi = m.what_if(steps=3, seeds=[1, 2, 3], shock=shock, bank=5)
    hyp = wi.runs[wi.runs.variant == "hypothetical"]
    own = rec.table[rec.table.action == "own_brain"].iloc[0]
    assert own.expected_equity == pytest.approx(hyp.bank_equity.mean(), rel=1e-12)
    calm = m.recommend(5, steps=3, seeds=[1, 2, 3])
    calm_own = calm.table[calm.table.action == "own_brain"].iloc[0]
    assert calm_own.expected_equity > own.expected_equity + 1e-6
    assert "after the shock" in rec.reason
    with pytest.raises(ShockError):
        m.recommend(5, steps=3, seeds=2, shock={"kind": "meteor"})
