"""A local Dask sweep's workers are forks of the sweep's process where it may
fork (no thread but tqdm's monitor, the user left Dask's start method alone):
they come up in a fraction of a second instead of the 1.5-2 s a fresh
interpreter (the fork server's) takes to import the package (issue 15). The rows
are those of one process; the workers are quiet, one-threaded and gone after
the sweep; elsewhere the fork server's nannies run as before."""

import os
import subprocess
import sys
import threading
import time
from multiprocessing import forkserver

import pandas as pd
import pytest

from finsim_mesa import dask_sweep, forked, sweeps
from finsim_mesa.sweeps import run_sweep

pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")


@pytest.fixture
def fork_here():
    """Skip where the sweep may not fork its workers *when the test runs* (a
    thread another test left running here, e.g. an API test client's portal;
    Dask's idle offload thread, which an earlier sweep starts, is allowed);
    then test_sweep41_forked.py's last test runs this file in a fresh process."""
    if not dask_sweep._can_fork_workers():
        pytest.skip("this process cannot fork (threads or no fork)")


needs_fork = pytest.mark.usefixtures("fork_here")


def _where(runs, steps, every):
    """A task that reports where and how it ran, one row per run."""
    import dask

    tqdm = __import__("sys").modules.get("tqdm")
    return [{"run": (combo["n_banks"], seed), "pid": os.getpid(), "ppid": os.getppid(),
             "profile": dask.config.get("distributed.worker.profile.enabled"),
             "tick": dask.config.get("distributed.admin.tick.interval"),
             "blas": os.environ.get("OPENBLAS_NUM_THREADS"),
             "monitor": None if tqdm is None else tqdm.tqdm.monitor_interval}
            for combo, seed in runs]


def _here(combo, seed):  # a run here takes 50 ms: the workers start meanwhile
    time.sleep(0.05)
    return [{"run": (combo["n_banks"], seed), "pid": os.getpid(), "ppid": os.getppid(),
             "here": True}]


def _slow_here(combo, seed):
    time.sleep(0.25)
    return _here(combo, seed)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@needs_fork
@pytest.mark.slow
def test_the_workers_are_forks_of_this_process_quiet_and_gone_after():
    tasks = [({"n_banks": 10 + i % 3}, i) for i in range(40)]
    server_before = forkserver._forkserver._forkserver_pid
    rows = dask_sweep.run(tasks, _here, _where, (1, 1), None, 2, False)
    assert [r["run"] for r in rows] == [(c["n_banks"], s) for c, s in tasks]  # run order
    remote = [r for r in rows if "here" not in r]
    pids = {r["pid"] for r in remote}
    assert len(pids) == 2 and os.getpid() not in pids  # two workers ran the tasks
    for r in remote:
        assert r["ppid"] == os.getpid()  # forked from here, not by the fork server
        assert r["profile"] is False and r["tick"] == "1s"  # QUIET
        assert r["blas"] == "1"  # one BLAS thread (single_threaded, inherited)
        assert r["monitor"] == 0  # tqdm: no monitor thread (after_fork_in_child)
    assert all(r["pid"] == os.getpid() for r in rows if "here" in r)
    assert not any(_alive(p) for p in pids)  # closed and reaped
    assert forkserver._forkserver._forkserver_pid == server_before  # never started


@needs_fork
@pytest.mark.slow
def test_forked_workers_give_the_one_process_rows():
    grid = {"scenario": ["normal", "systemic"], "n_banks": [10, 12]}
    seeds = list(range(6))
    one = run_sweep(grid, seeds=seeds, steps=5, progress=False)
    assert dask_sweep._can_fork_workers()
    pd.testing.assert_frame_equal(run_sweep(grid, seeds=seeds, steps=5, workers=2,
                                            progress=False), one)
    # a second sweep in the same process forks again
    assert dask_sweep._can_fork_workers(), [t.name for t in threading.enumerate()]
    pd.testing.assert_frame_equal(run_sweep(grid, seeds=seeds, steps=5, workers=2,
                                            progress=False), one)


def _offload_here(runs, steps, every):
    import distributed.utils

    fut = distributed.utils._offload_executor.submit(os.getpid)
    return [{"run": (c["n_banks"], s), "ppid": os.getppid(), "offload": fut.result(timeout=10)}
            for c, s in runs]


@needs_fork
@pytest.mark.slow
def test_with_daskss_idle_offload_thread_workers_are_forked_with_an_executor_of_their_own():
    import distributed.utils

    # an earlier Dask sweep leaves Dask's offload thread running for good
    distributed.utils._offload_executor.submit(lambda: None).result()
    assert any(t.name.startswith("Dask-Offload") for t in threading.enumerate())
    assert not forked.can_fork() and dask_sweep._can_fork_workers()
    tasks = [({"n_banks": 10}, i) for i in range(30)]
    rows = dask_sweep.run(tasks, _here, _offload_here, (1, 1), None, 2, False)
    remote = [r for r in rows if "here" not in r]
    assert remote and all(r["ppid"] == os.getpid() for r in remote)  # forked from here
    # offloaded work runs in the worker (the inherited executor had no thread there)
    assert all(r["offload"] not in (os.getpid(), None) for r in remote)
    # another thread than those: no fork
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        assert not dask_sweep._can_fork_workers()
    finally:
        stop.set()
        other.join()


@needs_fork
@pytest.mark.slow
def test_with_another_thread_running_the_fork_server_starts_the_workers():
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="a user's thread", daemon=True)
    other.start()
    try:
        assert not dask_sweep._can_fork_workers()
        # 30 runs of 0.25 s here: the fork server's workers (1.5-2.5 s to start,
        # more on a loaded machine) come up while runs are left for them
        tasks = [({"n_banks": 10}, i) for i in range(30)]
        rows = dask_sweep.run(tasks, _slow_here, _where, (1, 1), None, 2, False)
    finally:
        stop.set()
        other.join()
    remote = [r for r in rows if "here" not in r]
    assert remote and all(r["ppid"] != os.getpid() for r in remote)  # the fork server's


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_a_start_method_the_user_chose_means_no_fork_of_this_process(method):
    import dask

    with dask.config.set({"distributed.worker.multiprocessing-method": method}):
        assert not dask_sweep._can_fork_workers()
    if forked.can_fork():  # Dask's default: the workers are forked
        assert dask_sweep._can_fork_workers()



def test_with_cuda_initialised_here_the_workers_are_not_forked(monkeypatch):
    """A forked child cannot use CUDA once this process initialised it (rev56's
    review): the sweep's workers then start fresh (the fork server), as
    forked.auto_workers already decides for the lookahead."""
    if not dask_sweep._can_fork_workers():
        pytest.skip("this process cannot fork (threads or no fork)")
    monkeypatch.setattr(dask_sweep, "_cuda_in_use", lambda: True)
    assert not dask_sweep._can_fork_workers()
    monkeypatch.setattr(dask_sweep, "_cuda_in_use", lambda: False)
    assert dask_sweep._can_fork_workers()

@needs_fork
@pytest.mark.slow
def test_workers_that_all_die_fail_the_sweep_instead_of_a_wait_for_ever():
    def die(runs, steps, every):
        os._exit(3)

    tasks = [({"n_banks": 10}, i) for i in range(20)]
    t0 = time.perf_counter()
    with pytest.raises(Exception):  # noqa: B017 - Dask's error for no workers left
        dask_sweep.run(tasks, _here, die, (1, 1), None, 2, False)
    assert time.perf_counter() - t0 < 60  # no-workers-timeout (10 s), not for ever
    assert dask_sweep._can_fork_workers()  # no thread left behind but Dask's offload


@needs_fork
def test_unused_forked_workers_end_when_their_pipe_closes():
    children = dask_sweep._fork_workers(2)
    pids = [pid for pid, _ in children]
    assert all(_alive(p) for p in pids)
    t0 = time.perf_counter()
    dask_sweep._reap_workers(children)  # pipes closed unwritten: they read nothing, exit
    assert time.perf_counter() - t0 < 4  # exited by themselves, not killed after 5 s
    assert not any(_alive(p) for p in pids)
    assert all(pid < 0 and fd == -1 for pid, fd in children)


@needs_fork
def test_a_worker_that_exits_early_is_reported_by_the_start():
    children = dask_sweep._fork_workers(1)
    pid, fd = children[0]
    os.close(fd)  # nothing to read: it exits
    children[0] = (pid, -1)
    deadline = time.monotonic() + 10
    with pytest.raises(RuntimeError, match="exited"):
        while time.monotonic() < deadline:
            dask_sweep._check_alive(children)
            time.sleep(0.01)
    assert children[0][0] == -pid  # reaped, not to be signalled again
    dask_sweep._reap_workers(children, kill=True)


def test_forked_path_is_wired_to_the_sweep(monkeypatch):
    # run_sweep(workers=N) reaches dask_sweep.run with the one-run function here
    seen = {}

    def fake_run(tasks, here, chunk, args, scheduler, workers, progress):
        seen.update(n=len(tasks), workers=workers, chunk=chunk)
        return [r for c, s in tasks for r in here(c, s)]
    monkeypatch.setattr(dask_sweep, "run", fake_run)
    one = run_sweep({"n_banks": [10]}, seeds=2, steps=2, progress=False)
    pd.testing.assert_frame_equal(run_sweep({"n_banks": [10]}, seeds=2, steps=2,
                                            workers=2, progress=False), one)
    assert seen == {"n": 2, "workers": 2, "chunk": sweeps._run_chunk}


BAR_IN_A_CHILDS_THREAD = """
import os, threading
from tqdm.auto import tqdm as auto
from tqdm.std import TqdmDefaultWriteLock
from finsim_mesa import forked
assert auto is not __import__("tqdm").tqdm and forked.can_fork()
# mesa's tqdm.auto bar class with a lock object of its own (its first bar came
# before any plain one), over the thread lock all such objects share
auto.set_lock(TqdmDefaultWriteLock())
def bar_in_a_thread():  # as a Dask worker's task makes mesa.batch_run's bar
    made = []
    t = threading.Thread(target=lambda: made.append(auto(total=1, disable=True)),
                         daemon=True)
    t.start()
    t.join(5)
    return os.getpid(), bool(made)
pid, made = forked.run_all([os.getpid, bar_in_a_thread], workers=2)[1]
print(pid != os.getpid(), made)
"""


def test_a_bar_class_with_its_own_lock_does_not_hang_a_forked_childs_thread():
    # in a fresh process, which can fork (this one may have threads by now); the
    # fork is made with tqdm's lock held (forked._fork_children), as for the
    # Dask workers: the child must not inherit the shared thread lock held
    if not hasattr(os, "fork"):
        pytest.skip("no fork here")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", BAR_IN_A_CHILDS_THREAD], capture_output=True,
                         text=True, timeout=120, cwd=root, env=dict(os.environ, PYTHONPATH=root))
    assert out.stdout.split() == ["True", "True"], out.stdout + out.stderr[-2000:]


def test_a_tasks_rows_travel_packed_and_come_back_the_same():
    import pickle
    import zlib

    from distributed.protocol import dumps

    runs = [({"scenario": "systemic", "n_banks": 10}, s) for s in range(4)]
    rows = sweeps._run_chunk(runs, 6, 1)
    data = dask_sweep._packed(sweeps._run_chunk, runs, 6, 1)
    assert isinstance(data, bytes)
    back = pickle.loads(zlib.decompress(data))
    assert [list(r) for r in back] == [list(r) for r in rows]  # keys in order
    pd.testing.assert_frame_equal(pd.DataFrame(back), pd.DataFrame(rows))  # values, NaN too
    # far fewer bytes than Dask's own message for the list of dicts
    assert len(data) < sum(len(f) for f in dumps({"data": rows})) / 2
