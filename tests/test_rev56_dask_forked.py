"""Review of helper-53's forked Dask workers (rev56): a run that fails in a
forked worker raises what the same run raises in one process, and no worker
is left behind; torch's thread pool started in this process before the fork
neither hangs nor crashes the workers, whose rows are this process's."""

import multiprocessing
import os
import subprocess
import sys
import textwrap
import time

import pytest

from finsim_mesa import dask_sweep

pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
psutil = pytest.importorskip("psutil")


@pytest.fixture
def fork_here():
    """Skip where the sweep may not fork its workers *when the test runs* (a
    thread another test left here); then test_sweep41_forked.py's last test
    runs the first test below in a fresh process."""
    if not dask_sweep._can_fork_workers():
        pytest.skip("this process cannot fork (threads or no fork)")


needs_fork = pytest.mark.usefixtures("fork_here")


def _here(combo, seed):  # 20 ms a run here: the late runs go to the workers
    time.sleep(0.02)
    return [{"run": seed, "pid": os.getpid()}]


def _chunk(runs, fail_at):
    rows = []
    for _combo, seed in runs:
        if seed == fail_at:
            raise ValueError(f"run {seed} failed: bad balance sheet")
        rows.append({"run": seed, "pid": os.getpid()})
    return rows


def _workers_left():
    """This process's children but multiprocessing's resource tracker."""
    return [p for p in psutil.Process().children(recursive=True)
            if "resource_tracker" not in " ".join(p.cmdline())]


@needs_fork
@pytest.mark.slow
def test_a_run_failing_in_a_forked_worker_raises_its_own_error_and_leaves_no_worker():
    tasks = [({}, i) for i in range(60)]
    with pytest.raises(ValueError) as here:  # the reference: the chunk in this process
        _chunk(tasks, 57)
    assert _workers_left() == []
    with pytest.raises(ValueError) as there:
        dask_sweep.run(tasks, _here, _chunk, (57,), None, 2, False)
    assert type(there.value) is type(here.value)
    assert str(there.value) == str(here.value) == "run 57 failed: bad balance sheet"
    deadline = time.monotonic() + 5  # reaped before run returned: none left
    while _workers_left() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _workers_left() == []
    # and the next sweep in this process forks again and gives every row
    rows = dask_sweep.run(tasks, _here, _chunk, (-1,), None, 2, False)
    assert [r["run"] for r in rows] == list(range(60))
    assert {r["pid"] for r in rows} - {os.getpid()}  # some made by a worker
    assert _workers_left() == []


TORCH_SCRIPT = textwrap.dedent("""
    import os, sys, time
    import torch
    torch.set_num_threads(2)
    a = torch.rand(600, 600, dtype=torch.float64)
    for _ in range(3):
        a = (a @ a).clamp(0, 1)  # the intra-op pool runs before the fork
    from finsim_mesa import dask_sweep

    def chunk(runs):
        out = []
        for _c, seed in runs:
            g = torch.Generator().manual_seed(seed)
            w = torch.rand(64, 64, generator=g, dtype=torch.float64)
            out.append({"run": seed, "v": float(torch.sigmoid(w).sum()), "pid": os.getpid(),
                        "threads": torch.get_num_threads()})
        return out

    def here(combo, seed):
        time.sleep(0.02)
        return chunk([(combo, seed)])

    tasks = [({}, i) for i in range(80)]
    assert dask_sweep._can_fork_workers()
    rows = dask_sweep.run(tasks, here, chunk, (), None, 2, False)
    ref = chunk(tasks)
    assert [(r["run"], r["v"]) for r in rows] == [(r["run"], r["v"]) for r in ref]
    remote = [r for r in rows if r["pid"] != os.getpid()]
    assert remote and {r["threads"] for r in remote} == {1}, rows
    b = torch.rand(600, 600) @ torch.rand(600, 600)  # this process's pool still works
    assert torch.get_num_threads() == 2
    print("OK", len(remote))
""")


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="no fork on this platform")
@pytest.mark.slow
def test_torch_used_here_before_the_fork_neither_hangs_nor_crashes_the_workers():
    pytest.importorskip("torch")
    done = subprocess.run([sys.executable, "-c", TORCH_SCRIPT], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("OK")
