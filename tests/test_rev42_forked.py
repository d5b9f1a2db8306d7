"""helper-42's review of forked.run_all: a child that died is reaped when its
death is found (for the exit status in the error); the clean-up that follows
must not send SIGKILL to its pid again — once reaped, that pid is free and may
already be another process's."""

import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool

import pytest

from finsim_mesa import forked
from finsim_mesa.forked import can_fork, run_all


@pytest.fixture
def fork_here():
    """Skip where this process may not fork *when the test runs* (a thread
    another test left, e.g. Dask's offload thread or an API test client's
    portal): run_all would then call the jobs here, and one of them ends its
    process. test_sweep41_forked.py's last test runs these in a fresh process."""
    if not can_fork() or forked.usable_cpus() < 2:
        pytest.skip("no fork in this process, or one CPU")


needs_fork = pytest.mark.usefixtures("fork_here")


@needs_fork
def test_a_dead_childs_reaped_pid_is_not_killed_again(tmp_path, monkeypatch):
    killed = []
    real_kill = os.kill

    def spy(pid, sig):
        killed.append((pid, sig))
        return real_kill(pid, sig)

    parent = os.getpid()

    def die():
        if os.getpid() == parent:  # never end the test process itself
            raise RuntimeError("run_all called a child's job in this process")
        (tmp_path / "dead").write_text(str(os.getpid()))
        os._exit(3)

    def slow():
        (tmp_path / "slow").write_text(str(os.getpid()))
        time.sleep(30)

    def here():
        time.sleep(0.3)  # both children have written their pids
        return 1

    monkeypatch.setattr(os, "kill", spy)
    t0 = time.perf_counter()
    with pytest.raises(BrokenProcessPool, match="exit status 3"):
        run_all([here, die, slow], 3)
    assert time.perf_counter() - t0 < 10  # the slow child was not waited for
    dead, alive = (int((tmp_path / f).read_text()) for f in ("dead", "slow"))
    assert (alive, signal.SIGKILL) in killed  # the live one is killed ...
    assert all(pid != dead for pid, _ in killed)  # ... the reaped one never signalled
    for pid in (dead, alive):
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # both reaped: no zombie left


@needs_fork
def test_a_child_killed_while_writing_its_results_is_a_broken_pool(tmp_path):
    """A child whose results fill the pipe waits in its write until this process
    reads; killed there (e.g. by the OOM killer), it leaves a truncated pickle:
    that is a dead worker (BrokenProcessPool), not an unpickling error."""

    def big():
        (tmp_path / "pid").write_text(str(os.getpid()))
        return b"x" * (4 << 20)  # far more than a pipe holds

    def here():
        deadline = time.time() + 10
        while not (tmp_path / "pid").exists() and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # the child is blocked in its write by now
        os.kill(int((tmp_path / "pid").read_text()), signal.SIGKILL)
        return 1

    with pytest.raises(BrokenProcessPool, match="died"):
        run_all([here, big], 2)
    with pytest.raises(ChildProcessError):
        os.waitpid(int((tmp_path / "pid").read_text()), os.WNOHANG)  # reaped


def test_a_failed_fork_closes_its_pipe_and_raises(monkeypatch):
    """os.fork failing (e.g. EAGAIN: no more processes) leaves no open pipe
    behind and the error reaches the caller. No real fork is made here, so it
    runs in any process."""
    def no_fork():
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(forked, "can_fork", lambda: True)
    monkeypatch.setattr(os, "fork", no_fork)
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError, match="Resource temporarily unavailable"):
        run_all([lambda: 1, lambda: 2], 2)
    assert sorted(os.listdir("/proc/self/fd")) == before
