"""Forked runs without a pool (this process runs the first share) and
``workers="auto"`` for the lookahead (issue 15)."""

import itertools
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from finsim_mesa import FinancialModel, forked
from finsim_mesa.errors import ConfigError
from finsim_mesa.forked import AUTO, auto_workers, can_fork, run_all

ROOT = os.path.dirname(os.path.dirname(__file__))


@pytest.fixture
def fork_here():
    """Skip where this process may not fork (another test's thread runs here, e.g.
    an API test client's portal: then the last test runs these in a fresh one)."""
    if not can_fork() or forked.usable_cpus() < 2:
        pytest.skip("no fork in this process, or one CPU")


needs_fork = pytest.mark.usefixtures("fork_here")


def sleeper(seconds, value):
    def job():
        time.sleep(seconds)
        return value, os.getpid()
    return job


@pytest.fixture
def forks(monkeypatch):
    """Counts the real forks (os.fork still forks)."""
    count = []
    real = os.fork

    def counting():
        count.append(1)
        return real()
    monkeypatch.setattr(os, "fork", counting)
    return count


@needs_fork
@pytest.mark.parametrize("workers", [2, 3, 5])
def test_shares_are_contiguous_and_in_order(workers):
    jobs = [sleeper(0.0, i) for i in range(7)]
    out = run_all(jobs, workers)
    assert [v for v, _ in out] == list(range(7))
    pids = [p for _, p in out]
    cuts = [round(i * 7 / workers) for i in range(workers + 1)]
    shares = [pids[a:b] for a, b in itertools.pairwise(cuts)]
    assert shares[0] == [os.getpid()] * len(shares[0])  # this process: the first share
    owners = [s[0] for s in shares]
    assert all(len(set(s)) == 1 for s in shares) and len(set(owners)) == workers


@needs_fork
def test_auto_forks_only_when_the_rest_is_long_enough(forks):
    slow = [sleeper(0.04, i) for i in range(8)]  # 0.28 s after the first: forks
    out = run_all(slow, AUTO)
    assert [v for v, _ in out] == list(range(8)) and forks
    # this process ran the first, then the first share of the other 7
    assert out[0][1] == os.getpid() and len({p for _, p in out}) == min(
        forked.usable_cpus(), 7)
    forks.clear()
    quick = [sleeper(0.0, i) for i in range(8)]
    assert run_all(quick, AUTO) == [(i, os.getpid()) for i in range(8)] and not forks
    assert run_all([], AUTO) == []


def test_auto_workers_limits(monkeypatch):
    monkeypatch.setattr(forked, "usable_cpus", lambda: 8)
    monkeypatch.setattr(forked, "can_fork", lambda: True)
    monkeypatch.setattr(forked, "available_memory", lambda: 16e9)
    assert auto_workers(0.01, 5) == 1  # 0.05 s left: not worth a fork
    assert auto_workers(0.1, 5) == 5  # no more processes than runs
    assert auto_workers(0.1, 50) == 8  # nor than CPUs
    assert auto_workers(0.1, 50, memory=3e9) == 2  # half of 16 GB holds 2 copies of 3 GB
    assert auto_workers(0.1, 50, memory=20e9) == 1
    monkeypatch.setattr(forked, "available_memory", lambda: None)
    assert auto_workers(0.1, 50, memory=20e9) == 8  # unknown memory: not limited
    cuda = types.SimpleNamespace(cuda=types.SimpleNamespace(is_initialized=lambda: True))
    monkeypatch.setitem(sys.modules, "torch", cuda)
    assert auto_workers(0.1, 50) == 1  # a forked child cannot use CUDA
    monkeypatch.setattr(forked, "can_fork", lambda: False)
    monkeypatch.delitem(sys.modules, "torch")
    assert auto_workers(0.1, 50) == 1


@pytest.mark.parametrize("bad", ["Auto", "2", None, 0])
def test_auto_is_the_only_word(bad):
    assert forked.check_workers(AUTO, auto=True) == AUTO
    with pytest.raises(ConfigError, match="auto"):
        forked.check_workers(bad, auto=True)
    with pytest.raises(ConfigError, match="workers"):
        forked.check_workers(AUTO)  # only where the caller allows it


@needs_fork
def test_a_failure_here_kills_the_children_and_raises_at_once(tmp_path):
    def boom():
        time.sleep(0.5)  # the child has started its job
        raise KeyError("here")

    def slow():
        (tmp_path / "pid").write_text(str(os.getpid()))
        time.sleep(30)
    t0 = time.perf_counter()
    with pytest.raises(KeyError, match="here"):
        run_all([boom, slow], 2)
    assert time.perf_counter() - t0 < 10  # not the child's 30 s
    child = int((tmp_path / "pid").read_text())
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)  # killed and reaped: no zombie left


@needs_fork
def test_an_error_in_a_child_comes_back_with_its_traceback():
    def bad():
        return {"x": 1}["y"]
    with pytest.raises(KeyError) as info:
        run_all([os.getpid, bad], 2)
    assert "raised in a forked worker" in info.value.__notes__[0]
    assert "bad" in info.value.__notes__[0]


_BUFFERED = """
from finsim_mesa.forked import run_all
import itertools
import os
print("before", end="")  # still in this process's buffer at the fork
out = run_all([os.getpid] * 4, 2)
print("", len(set(out)))
"""


@needs_fork
def test_buffered_output_is_not_printed_twice():
    out = subprocess.run([sys.executable, "-c", _BUFFERED], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.stdout == "before 2\n", out.stdout + out.stderr[-2000:]


def live(**kw):
    m = FinancialModel(**(dict(n_banks=60, scenario="liquidity_crisis", rng=4) | kw))
    m.run_for(10)
    return m


@needs_fork
@pytest.mark.parametrize("kw", [{}, {"n_exchanges": 1, "n_ccps": 1}])
def test_lookahead_default_uses_the_cores_with_the_same_results(forks, kw, monkeypatch):
    monkeypatch.setattr(forked, "AUTO_SECONDS", 0.0)  # however fast the runs are here
    m = live(**kw)
    shock = {"kind": "price_crash", "magnitude": 0.2}
    one = m.recommend(2, steps=8, seeds=8, shock=shock, workers=1)
    assert not forks
    auto = m.recommend(2, steps=8, seeds=8, shock=shock)
    assert forks
    pd.testing.assert_frame_equal(one.table, auto.table)
    assert one.reason == auto.reason
    forks.clear()
    w1 = m.what_if(steps=8, seeds=6, shock=shock, bank=2, workers=1)
    wa = m.what_if(steps=8, seeds=6, shock=shock, bank=2)
    assert forks
    pd.testing.assert_frame_equal(w1.runs, wa.runs)


class Counter:
    """A user's brain that keeps state between calls (what auto must not split)."""

    name = "counter"

    def __init__(self):
        self.calls = 0

    def act(self, observations):
        self.calls += 1
        return np.full((len(observations), 4), min(self.calls / 100, 1.0))


@needs_fork
def test_auto_stays_in_one_process_with_a_users_brain(forks, monkeypatch):
    monkeypatch.setattr(forked, "AUTO_SECONDS", 0.0)
    m = live(brain=Counter())
    m.recommend(2, steps=8, seeds=8)
    m.what_if(steps=8, seeds=6, brains={3: Counter()})
    assert not forks  # the answer must not depend on how the runs were split
    live().what_if(steps=8, seeds=6, brains={3: "random"})
    assert forks  # a built-in brain by name is made fresh: splitting is safe


def test_a_recommendation_skips_only_the_final_debtrank(monkeypatch):
    from finsim_mesa import decision

    m = live()
    scratch = decision._Scratch(m, None)
    state, act = m.snapshot(), {2: np.array([0.0, 1.0, 1.0, 0.0])}
    full = scratch.run(state, 3, 5, None, act, 2)
    lean = scratch.run(state, 3, 5, None, act, 2, debtrank=False)
    assert "debtrank" in full and {k: v for k, v in full.items() if k != "debtrank"} == lean
    calls = []
    real = FinancialModel.measure

    def spy(self, full=True):
        calls.append(full)
        return real(self, full)
    monkeypatch.setattr(FinancialModel, "measure", spy)
    m.recommend(2, steps=3, seeds=2, workers=1)
    assert calls.count(True) == 1  # the scratch model's construction only, no run's
    calls.clear()
    m.what_if(steps=3, seeds=2, workers=1)
    assert calls.count(True) == 1 + 4  # a what-if reports DebtRank: every run measures


def test_the_fork_tests_run_in_a_fresh_process_where_this_one_cannot_fork():
    """This file's fork tests, test_rev42_forked.py's and test_dask53_forked.py's,
    where the full suite's process cannot fork (an API test's portal thread,
    Dask's offload thread)."""
    if can_fork() or forked.usable_cpus() < 2:
        pytest.skip("this process forks (the tests above ran here), or one CPU")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          __file__, str(Path(__file__).with_name("test_rev42_forked.py")),
                          str(Path(__file__).with_name("test_dask53_forked.py")),
                          str(Path(__file__).with_name("test_rev56_dask_forked.py"))
                          + "::test_a_run_failing_in_a_forked_worker_raises_its_own_error_and_"
                          "leaves_no_worker",
                          "-k", "not fresh_process"], capture_output=True,
                         text=True, timeout=600, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0 and "skipped" not in out.stdout, out.stdout[-3000:]


_TQDM_SWEEP = """
import tqdm
tqdm.tqdm.monitor_interval = 0.05  # tqdm's monitor wakes every 50 ms (10 s by default)
from finsim_mesa.sweeps import run_sweep
if __name__ == "__main__":
    df = run_sweep({"n_banks": [20, 21]}, seeds=3, steps=40, processes=2, progress=False)
    print("rows", len(df))
"""

_TQDM_RUN_ALL = """
import os, time
import tqdm
tqdm.tqdm.monitor_interval = 0.05
from finsim_mesa.forked import run_all
def job():  # a disabled bar, as mesa.batch_run makes, alive past the monitor's wake-up
    with tqdm.tqdm(total=1, disable=True):
        time.sleep(0.3)
    return os.getpid()
print("processes", len(set(run_all([job] * 4, 2))))
"""


def _run_or_kill(code, timeout=90):
    """Run ``code`` in a fresh session; on a timeout kill it and its children
    (a deadlocked pool's workers too)."""
    import signal

    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("deadlocked (killed after the timeout)")
    return out, err


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="no fork on this platform")
@pytest.mark.parametrize(("code", "expect"), [(_TQDM_SWEEP, "rows 240"),
                                              (_TQDM_RUN_ALL, "processes 2")])
def test_forked_children_do_not_deadlock_on_tqdms_lock(code, expect):
    """The fork is made inside tqdm's lock: a child inherited it held, and a
    monitor thread started in the child (after 10 s, here 50 ms) hung every
    process on it (a forked sweep of more than ~10 s never ended)."""
    out, err = _run_or_kill(code)
    assert expect in out, out + err[-2000:]
