"""Independent runs in forked worker processes (the lookahead's ``workers``).

A what-if or a recommendation is many short runs (candidates × seeds), each
restoring the same snapshot into a scratch model and stepping it: they do not
depend on each other or on their order, so they can be split between
processes. Workers are *forked*, so they start in milliseconds with the scratch
models and the snapshot already in memory (nothing is pickled but the results,
small dicts of floats); a spawned worker would import the package first
(about a second, longer than the runs). Each worker takes one contiguous share
of the runs; the results come back in the order of the runs, so the outcome is
the same, value for value, as running them one after the other.

Where forking is not safe or not possible, the runs are made in this process
instead (same results): on platforms without ``fork``, and in a process where
other Python threads are running (a web server's worker threads: a forked child
would inherit locks another thread holds).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np

from finsim_mesa.errors import ConfigError
from finsim_mesa.threads import single_threaded

__all__ = ["can_fork", "check_workers", "fork_pool", "max_workers", "run_all"]

_JOBS: Sequence[Callable[[], Any]] = ()  # what the forked workers read (set before the fork)


def max_workers() -> int:
    """The most worker processes allowed: 4 × the CPU count (a guard against a
    typo such as 200, which would start 200 interpreters)."""
    return 4 * (os.cpu_count() or 1)


def check_workers(workers: Any) -> int:
    """``workers`` as a whole number in 1 … :func:`max_workers`, or ConfigError."""
    ok = isinstance(workers, int | np.integer) and not isinstance(workers, bool)
    if not ok or not 1 <= int(workers) <= max_workers():
        raise ConfigError(f"workers {workers!r}: give a whole number of worker processes from "
                          f"1 to {max_workers()} (4 x the {os.cpu_count()} CPUs here); "
                          "1 runs everything in this process")
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
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")
                                 ) as pool:
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


def _run(i: int) -> Any:
    return _JOBS[i]()


def run_all(jobs: Sequence[Callable[[], Any]], workers: int = 1) -> list[Any]:
    """Call every job and return their results in order.

    Args:
        jobs: calls without arguments, independent of each other.
        workers: processes to split them between (1: here, one after the other);
            more than one where :func:`can_fork` holds, else run here.

    Returns:
        ``[job() for job in jobs]``; with several workers each result is pickled
        back from the worker that made it. An exception in a job is raised here;
        a worker that dies (killed, exiting) raises ``BrokenProcessPool``.
    """
    global _JOBS
    workers = min(check_workers(workers), len(jobs))
    if workers <= 1 or not can_fork():
        return [job() for job in jobs]
    outer, _JOBS = _JOBS, jobs  # a job may split runs of its own (in its worker)
    try:
        with fork_pool(workers) as pool:
            return list(pool.map(_run, range(len(jobs)),
                                 chunksize=math.ceil(len(jobs) / workers)))
    finally:
        _JOBS = outer
