"""Independent runs in forked worker processes (the lookahead's ``workers``).

A what-if or a recommendation is many short runs (candidates × seeds), each
restoring the same snapshot into a scratch model and stepping it: they do not
depend on each other or on their order, so they can be split between
processes. Workers are *forked*, so they start in milliseconds with the scratch
models and the snapshot already in memory (nothing is pickled but the results,
small dicts of floats); a spawned worker would import the package first
(about a second, longer than the runs). With k processes the runs are cut
into k contiguous shares: this process runs the first itself while k − 1
children, each forked with a pipe (``os.fork``: no pool, no manager thread —
about 10 ms less than a ``ProcessPoolExecutor`` per call at 100 banks), run
the others and pickle their results back. The results come back in the order
of the runs, so the outcome is the same, value for value, as running them one
after the other. ``workers="auto"`` times the first run here and forks only
when the rest would take long enough to pay for it (:func:`auto_workers`).

Where forking is not safe or not possible, the runs are made in this process
instead (same results): on platforms without ``fork``, and in a process where
other Python threads are running (a web server's worker threads: a forked child
would inherit locks another thread holds).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np

from finsim_mesa.errors import ConfigError
from finsim_mesa.resources import available_memory
from finsim_mesa.threads import single_threaded

__all__ = ["AUTO", "after_fork_in_child", "auto_workers", "can_fork", "check_workers",
           "fork_pool", "max_workers", "run_all", "usable_cpus"]

AUTO = "auto"  # workers chosen by run_all: the cores, when the runs are long enough
# the least time the runs after the first must take for "auto" to fork: a fork,
# the copy-on-write of the pages the children write and the results' transfer
# cost ~10-20 ms of wall time at 100 banks (issue 15)
AUTO_SECONDS = 0.1


def max_workers() -> int:
    """The most worker processes allowed: 4 × the CPU count (a guard against a
    typo such as 200, which would start 200 interpreters)."""
    return 4 * (os.cpu_count() or 1)


def check_workers(workers: Any, auto: bool = False) -> Any:
    """``workers`` as a whole number in 1 … :func:`max_workers` (or, where
    ``auto``, :data:`AUTO`), or ConfigError."""
    if auto and isinstance(workers, str) and workers == AUTO:
        return AUTO
    ok = isinstance(workers, int | np.integer) and not isinstance(workers, bool)
    if not ok or not 1 <= int(workers) <= max_workers():
        raise ConfigError(f"workers {workers!r}: give a whole number of worker processes from "
                          f"1 to {max_workers()} (4 x the {os.cpu_count()} CPUs here)"
                          + (f" or {AUTO!r} (the cores, where that is faster)" if auto else "")
                          + "; 1 runs everything in this process")
    return int(workers)


def can_fork() -> bool:
    """Whether a pool may fork here: the platform has ``fork`` and no thread but
    the main one runs, except tqdm's monitor (``tqdm_monitor``, started by any
    progress bar, even a disabled one), whose only lock is held across the fork
    (see :func:`fork_pool`). Another thread (a Jupyter kernel's, a server's)
    may hold a lock at the fork."""
    return "fork" in multiprocessing.get_all_start_methods() and all(
        t is threading.main_thread() or t.name == "tqdm_monitor" for t in threading.enumerate())


@contextmanager
def fork_pool(processes: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``processes`` forked workers, each with one BLAS / OpenMP / torch
    thread (set before the fork, so inherited); call only where :func:`can_fork`.

    An executor, not a ``multiprocessing.Pool``: a worker that dies (killed,
    exiting) fails the call with ``BrokenProcessPool`` instead of a wait for
    ever. With the fork start method it forks all its workers at the first
    submission, which is made here, in the guarded region.
    """
    with single_threaded():
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"),
                                 initializer=after_fork_in_child) as pool:
            with warnings.catch_warnings():
                # Python >= 3.12 warns on fork() while other OS threads exist; with
                # no other Python thread (checked by the caller) they are OpenBLAS's
                # idle pool (pinned to one thread above), which holds no lock a
                # worker needs
                warnings.filterwarnings("ignore", message=r".*multi-threaded.*fork",
                                        category=DeprecationWarning)
                # tqdm's lock held while forking: its monitor thread cannot be inside it
                tqdm = sys.modules.get("tqdm")
                with tqdm.tqdm.get_lock() if tqdm is not None else nullcontext():
                    pool.submit(int).result()  # every worker forked now
            yield pool


def after_fork_in_child() -> None:
    """In a forked child: tqdm gets a lock of its own and no monitor thread.

    The child inherits tqdm's write lock held (the fork is made inside it, see
    :func:`fork_pool`): its thread part is owned by the child's main thread for
    good, and its semaphore is shared with every other process. A monitor
    thread started in the child (by its first bar, even a disabled one, e.g.
    ``mesa.batch_run``'s) woke after ``monitor_interval`` (10 s), took the
    shared semaphore, then waited for ever on the thread part: the whole pool
    and the caller hung (a forked sweep longer than ~10 s, issue 15). A child
    never draws a bar, so a plain lock and no monitor change nothing else.
    """
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None:
        # every bar class with a lock of its own gets the new one: a subclass
        # (tqdm.auto's, mesa.batch_run's bar) whose first bar came before any
        # plain one keeps its own lock object, over the same inherited thread
        # lock, owned in the child by the parent's forking thread: a bar made
        # in another thread of the child (a Dask worker's task) waited for ever
        lock, todo = threading.RLock(), [tqdm.tqdm]
        while todo:
            cls = todo.pop()
            todo.extend(cls.__subclasses__())
            if cls is tqdm.tqdm or "_lock" in vars(cls):
                cls.set_lock(lock)
            if "monitor" in vars(cls):
                cls.monitor = None
            if cls is tqdm.tqdm or "monitor_interval" in vars(cls):
                cls.monitor_interval = 0


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has
    one, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _cuda_in_use() -> bool:
    """Whether torch has initialised CUDA here (a forked child cannot use it)."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    return bool(cuda is not None and cuda.is_initialized())


def auto_workers(first_seconds: float, rest: int, memory: float = 0.0) -> int:
    """How many processes ``workers="auto"`` uses for ``rest`` more jobs after a
    first one took ``first_seconds`` here: 1 (this process) unless the rest would
    take at least :data:`AUTO_SECONDS`, the platform can fork (:func:`can_fork`)
    and CUDA is not in use; else up to :func:`usable_cpus`, ``rest`` and, with
    ``memory`` (bytes a worker may copy, e.g. a model's estimate), as many as
    half the available memory holds."""
    if first_seconds * rest < AUTO_SECONDS or not can_fork() or _cuda_in_use():
        return 1
    k = min(usable_cpus(), rest)
    have = available_memory()
    if memory > 0 and have is not None:
        k = min(k, max(1, int(have / 2 // memory)))
    return max(k, 1)


def run_all(jobs: Sequence[Callable[[], Any]], workers: int | str = 1,
            memory: float = 0.0) -> list[Any]:
    """Call every job and return their results in order.

    Args:
        jobs: calls without arguments, independent of each other.
        workers: processes to split them between (1: here, one after the other);
            more than one where :func:`can_fork` holds, else run here. ``"auto"``:
            the first job runs here, timed, and :func:`auto_workers` decides
            for the rest (with ``memory``, bytes a worker may copy).
        memory: see ``workers="auto"``.

    Returns:
        ``[job() for job in jobs]``. With k processes, this one runs the first
        of k contiguous shares and k - 1 forked children one each, whose
        results are pickled back. An exception in a job is raised here (one
        that cannot be rebuilt here as a RuntimeError with the child's
        traceback); a child that dies (killed, exiting) raises
        ``BrokenProcessPool``.
    """
    if isinstance(workers, str) and workers == AUTO:
        if not jobs:
            return []
        t0 = time.perf_counter()
        first = jobs[0]()
        k = auto_workers(time.perf_counter() - t0, len(jobs) - 1, memory)
        return [first, *run_all(jobs[1:], k)]
    workers = min(check_workers(workers), len(jobs))
    if workers <= 1 or not can_fork():
        return [job() for job in jobs]
    cuts = [round(i * len(jobs) / workers) for i in range(workers + 1)]
    with single_threaded():
        children = _fork_children(jobs, cuts)
        done = False
        try:
            mine = [job() for job in jobs[:cuts[1]]]
            out = mine + [r for pid, fd in children for r in _collect(pid, fd)]
            done = True
            return out
        finally:
            _reap(children, kill=not done)


def _fork_children(jobs: Sequence[Callable[[], Any]], cuts: list[int]) -> list[tuple[int, int]]:
    """Fork one child per share but the first; (pid, read end of its pipe) each."""
    children: list[tuple[int, int]] = []
    with fork_section():
        try:
            for lo, hi in itertools.pairwise(cuts[1:]):
                pid, read, write = fork_with_pipe()
                if pid == 0:  # the child: its share, then exit at once
                    os.close(read)
                    _child(jobs[lo:hi], write)
                os.close(write)
                children.append((pid, read))
        except BaseException:
            _reap(children, kill=True)
            raise
    return children


@contextmanager
def fork_section() -> Iterator[None]:
    """Around ``os.fork()`` calls from a process where no other Python thread
    runs but tqdm's monitor (the caller checked, e.g. :func:`can_fork`):
    buffered output flushed first (nothing printed twice), Python >= 3.12's
    warning on fork() while other OS threads exist silenced (they are
    OpenBLAS's idle pool, one thread under :func:`single_threaded`, which holds
    no lock a child needs), and tqdm's lock held, so its monitor cannot be
    inside it when a child is made."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*multi-threaded.*fork",
                                category=DeprecationWarning)
        tqdm = sys.modules.get("tqdm")
        with tqdm.tqdm.get_lock() if tqdm is not None else nullcontext():
            yield


def fork_with_pipe() -> tuple[int, int, int]:
    """``os.fork()`` with a new pipe: (pid, read end, write end), pid 0 in the
    child; if the fork fails, both ends are closed before the error goes on."""
    read, write = os.pipe()
    try:
        pid = os.fork()
    except BaseException:  # no child: its pipe is this process's to close
        os.close(read)
        os.close(write)
        raise
    return pid, read, write


def _child(jobs: Sequence[Callable[[], Any]], fd: int) -> None:
    """In a forked child: run ``jobs``, write ("ok", results) or ("error", the
    pickled exception, its traceback) to ``fd`` and exit without Python's
    clean-up (the parent's objects are not this process's to finalise)."""
    try:
        after_fork_in_child()
        try:
            data = pickle.dumps(("ok", [job() for job in jobs]), pickle.HIGHEST_PROTOCOL)
        except BaseException as err:  # every error goes to the parent
            text = traceback.format_exc()
            try:
                inner = pickle.dumps(err, pickle.HIGHEST_PROTOCOL)
            except BaseException:  # an error that cannot be pickled
                inner = pickle.dumps(RuntimeError(f"a forked worker failed:\n{text}"))
            data = pickle.dumps(("error", inner, text), pickle.HIGHEST_PROTOCOL)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    finally:
        os._exit(0)


def _collect(pid: int, fd: int) -> list[Any]:
    """A child's results (the child is reaped by :func:`_reap`)."""
    with os.fdopen(os.dup(fd), "rb") as pipe:
        data = pipe.read()
    try:
        message = pickle.loads(data) if data else None
    except Exception:  # cut short: it died while writing (killed, e.g. out of memory)
        message = None
    if message is None:
        _, status = os.waitpid(pid, 0)
        raise BrokenProcessPool(f"a forked worker (pid {pid}) died before returning its "
                                f"results (exit status {os.waitstatus_to_exitcode(status)})")
    if message[0] == "ok":
        return message[1]
    try:
        err = pickle.loads(message[1])
    except Exception:  # one this process cannot rebuild
        raise RuntimeError(f"a forked worker failed:\n{message[2]}") from None
    err.add_note(f"(raised in a forked worker:\n{message[2]})")
    raise err


def _reap(children: list[tuple[int, int]], kill: bool) -> None:
    """Close the pipes and wait for the children; with ``kill`` (this process
    failed first: their results are not wanted) they are killed first. A child
    already reaped (:func:`_collect` found it dead) is not signalled: its pid is
    free and may be another process's by now (an exited, unreaped one is only
    reaped; a zombie keeps its pid, so the kill after that test is safe)."""
    for pid, fd in children:
        os.close(fd)
        try:
            if kill:
                if os.waitpid(pid, os.WNOHANG)[0]:  # it had exited: reaped now
                    continue
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except ChildProcessError:  # already reaped: nothing to wait for (or to kill)
            pass
