"""The Dask side of :func:`finsim_mesa.sweeps.run_sweep`: a running cluster
(``scheduler=ADDRESS``) or a local one that the sweep starts (``workers=N``).

The runs go to the workers in tasks of several runs (:func:`chunks`): one task
per run cost the scheduler and this process about 7 ms of CPU per run, on the
cores the workers need (on two cores, 1.1 CPU-s for 160 runs of 70 ms). The
tasks are *guided*: each takes about half of what is left divided by the
workers' threads, so the first are long and the last are single runs, and the
workers finish together (issue 15). Rows come back in the order of the runs,
the same rows as one task per run.

A local cluster's workers are forks of this process where it may fork (no
thread runs but tqdm's monitor and Dask's idle offload thread, and the user
left Dask's start method at its default): they are forked before any thread
starts, get the scheduler's address through a pipe and are up in ~0.3 s with
the package already imported. Elsewhere (other threads, e.g. a Jupyter
kernel's; no ``fork``; a start method the user chose) the cluster's nannies
start them through multiprocessing's fork server, which imports the package
once (1.5-2 s, as long as a small sweep), or Dask's spawn. Either way the
cluster is started in a thread while this process makes the first runs itself,
one after the other, until the workers are up. It is started *quiet*
(:data:`QUIET`): its scheduler (and nannies) share this process with those
runs, and its workers run the rest, so the event loops' 20 ms health tick,
the workers' 10 ms statistical profiler (a dashboard's, and the cluster has
none) and the 100 ms memory polls are slowed down or off; with
Dask's defaults an idle local cluster made the runs in this process 20-40%
slower (GIL hand-overs to its event-loop thread), with these, no slower.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from finsim_mesa.errors import ConfigError
from finsim_mesa.forked import (
    _cuda_in_use,
    after_fork_in_child,
    can_fork,
    fork_section,
    fork_with_pipe,
)
from finsim_mesa.threads import single_threaded

__all__ = ["QUIET", "chunks", "run"]

# the local cluster's Dask settings (see the module's docstring); a running
# cluster keeps its own
QUIET = {
    "distributed.admin.tick.interval": "1s",  # event-loop health check (20 ms)
    "distributed.worker.profile.enabled": False,  # statistical profiler, every 10 ms
    "distributed.worker.memory.monitor-interval": "1s",  # nanny / worker memory (100 ms)
    "distributed.admin.system-monitor.interval": "2s",  # psutil samples (500 ms)
}

Run = tuple[dict[str, Any], int]


def chunks(n: int, threads: int) -> list[range]:
    """Consecutive ranges covering ``0..n-1``, each about half of what is left
    shared among ``threads`` (at least one run): with 160 runs and 2 threads
    40, 30, 23, 17, 13, ... 2, 1, 1."""
    out, start, threads = [], 0, max(1, threads)
    while start < n:
        size = max(1, -(-(n - start) // (2 * threads)))
        out.append(range(start, start + size))
        start += size
    return out


def run(tasks: Sequence[Run], run_here: Callable[[dict[str, Any], int], list],
        run_chunk: Callable[..., list], args: tuple, scheduler: str | None,
        workers: int | None, progress: bool) -> list[dict[str, Any]]:
    """Every run of ``tasks`` on Dask; ``run_here(combo, seed)`` makes a run in
    this process (while a local cluster starts) and ``run_chunk(runs, *args)``
    is the task a worker runs. Returns the rows in the order of ``tasks``."""
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise ConfigError("Dask sweeps need the `distributed` extra: "
                          "pip install 'finsim-mesa[distributed]'") from None
    from tqdm import tqdm

    if workers is not None and workers < 1:
        raise ConfigError(f"workers = {workers}: must be >= 1")
    parts: list[list[dict[str, Any]]] = []
    bar = tqdm(total=len(tasks), disable=not progress, desc="sweep (dask)")
    cluster, done, client, restore = None, 0, None, None
    children: list[tuple[int, int]] = []
    finished = False
    try:
        if scheduler is None:
            if _can_fork_workers():
                from dask.system import CPU_COUNT

                workers = workers or max(1, CPU_COUNT)  # LocalCluster's default
                children = _fork_workers(workers)
                cluster, done = _run_while(_forked_start(children), tasks, run_here, parts,
                                           bar)
            else:
                setting, restore = _forkserver()
                cluster, done = _start_cluster_running(tasks, workers, setting, run_here,
                                                       parts, bar)
            client = Client(cluster) if done < len(tasks) else None
        else:
            try:
                client = Client(scheduler, timeout="10s")
            except OSError as err:
                raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: "
                                  f"{err}") from None
        if client is not None:
            threads = workers if cluster is not None else sum(client.nthreads().values())
            ranges = [range(done + r.start, done + r.stop)
                      for r in chunks(len(tasks) - done, threads or 1)]
            futures = {client.submit(_packed, run_chunk, [tasks[i] for i in r], *args,
                                     pure=False): k
                       for k, r in enumerate(ranges)}
            out: list[list[dict[str, Any]] | None] = [None] * len(ranges)
            for fut in as_completed(futures):
                out[futures[fut]] = pickle.loads(zlib.decompress(fut.result()))
                bar.update(len(ranges[futures[fut]]))
            parts.extend(o for o in out if o is not None)
        finished = True
        return [row for part in parts for row in part]
    finally:
        bar.close()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()  # the scheduler tells the forked workers to close
        if children:  # killed at once if the sweep failed
            _reap_workers(children, kill=not finished)
        if restore is not None:
            restore()


def _packed(run_chunk: Callable[..., list], runs: list[Run], *args: Any) -> bytes:
    """What a worker runs: ``run_chunk(runs, *args)``'s rows pickled and
    compressed (zlib, level 1). Dask's own serialisation of a list of dicts sent
    2.4 MB for 40 runs of 100 steps, these bytes 0.58 MB, one frame: the client
    read each task's result in thousands of small socket reads, ~0.4 s of CPU a
    160-run sweep in this process, on the cores the workers need (issue 15)."""
    return zlib.compress(pickle.dumps(run_chunk(runs, *args), pickle.HIGHEST_PROTOCOL), 1)


def _forkserver() -> tuple[dict[str, str], Callable[[], None]]:
    """Dask's setting for workers forked by multiprocessing's fork server, with
    the package preloaded there (imported once, not once per spawned worker),
    and what puts things back after the sweep: the server stopped if this call
    started it, its preload list as it was. ({}, no-op) where there is no fork
    server (Windows) or its internals differ, and where the user chose the
    workers' start method (``distributed.worker.multiprocessing-method`` other
    than Dask's default "spawn"): theirs is kept."""
    import multiprocessing
    from multiprocessing import forkserver

    import dask

    server = getattr(forkserver, "_forkserver", None)
    if ("forkserver" not in multiprocessing.get_all_start_methods()
            or dask.config.get("distributed.worker.multiprocessing-method") != "spawn"
            or not all(hasattr(server, a)
                       for a in ("_stop", "_forkserver_pid", "_preload_modules"))):
        return {}, lambda: None
    from distributed.utils import get_mp_context

    setting = {"distributed.worker.multiprocessing-method": "forkserver"}
    # the list to put back is the one from before Dask's (which replaces it)
    running, preload = server._forkserver_pid is not None, list(server._preload_modules)
    with dask.config.set(setting):
        get_mp_context()  # Dask's preload list, set once per process
    server.set_forkserver_preload([*server._preload_modules, "finsim_mesa.sweeps"])

    def restore() -> None:
        if not running:  # started for this sweep (its workers are closed)
            server._stop()
        server.set_forkserver_preload(preload)
    return setting, restore


def _start_cluster_running(tasks: Sequence[Run], workers: int | None, forkserver: dict,
                           run_here: Callable[[dict[str, Any], int], list],
                           parts: list[list[dict[str, Any]]], bar: Any) -> tuple[Any, int]:
    """Start a local cluster of nannies (workers from the fork server or spawned)
    while this process runs the first tasks (:func:`_run_while`). ``forkserver``:
    Dask settings for the workers' start method (:func:`_forkserver`)."""
    import dask
    from dask.distributed import LocalCluster

    def start(box: dict[str, Any]) -> None:
        with dask.config.set(QUIET | forkserver):
            box["cluster"] = LocalCluster(n_workers=workers, threads_per_worker=1,
                                          processes=True, dashboard_address=None)
    # Without forked workers (_can_fork_workers), never a fork of this process,
    # whose event-loop thread may hold locks (a forked start failed in CI when
    # filelock refused os.fork mid-transition). One BLAS / torch thread here and,
    # through the environment (read by the fork server when it starts), in the
    # workers.
    return _run_while(start, tasks, run_here, parts, bar)


def _run_while(start: Callable[[dict[str, Any]], None], tasks: Sequence[Run],
               run_here: Callable[[dict[str, Any], int], list],
               parts: list[list[dict[str, Any]]], bar: Any) -> tuple[Any, int]:
    """Call ``start(box)`` in a thread (it puts the cluster in ``box["cluster"]``
    as soon as there is one, and returns when its workers are up) while this
    process runs the first tasks itself (into ``parts``), one after the other.
    Returns the cluster (None when every run was made here) and how many runs
    were made here; their rows are those a worker would return."""
    box: dict[str, Any] = {}

    def starter() -> None:
        try:
            start(box)
        except BaseException as err:  # raised in the caller's thread below
            box["error"] = err

    done, ok = 0, False
    with single_threaded():
        thread = threading.Thread(target=starter, name="finsim-sweep-cluster", daemon=True)
        thread.start()
        try:
            while thread.is_alive() and done < len(tasks):
                parts.append(run_here(*tasks[done]))
                done += 1
                bar.update()
            ok = True
        finally:
            thread.join()
            cluster = box.get("cluster")
            if cluster is not None and (not ok or done == len(tasks) or "error" in box):
                cluster.close()  # a run failed here, every run was made here, or no start
    if "error" in box and done < len(tasks):
        raise box["error"]
    return (None if done == len(tasks) else cluster), done


# ---- a local cluster whose workers are forks of this process ------------------

def _can_fork_workers() -> bool:
    """Whether the local cluster's workers may be forked from this process: it
    can fork safely (:func:`finsim_mesa.forked.can_fork`: ``fork`` exists and no
    thread runs but tqdm's monitor), CUDA is not initialised here (a forked
    child cannot use it; fresh workers can) and the user left Dask's start
    method at its default ("spawn"; another one they chose is kept)."""
    import dask

    if dask.config.get("distributed.worker.multiprocessing-method", "spawn") != "spawn":
        return False  # the user's choice ("spawn" is Dask's default)
    if _cuda_in_use():
        return False
    if can_fork():
        return True
    # Dask's offload thread (started by an earlier Dask sweep here, it lives as
    # long as the process) is idle when no event-loop thread runs; a forked
    # worker gets an executor of its own (_serve)
    offload = getattr(sys.modules.get("distributed.utils"), "_offload_executor", None)
    idle = set(getattr(offload, "_threads", ()))
    return "fork" in multiprocessing.get_all_start_methods() and all(
        t is threading.main_thread() or t.name == "tqdm_monitor" or t in idle
        for t in threading.enumerate())


def _fork_workers(n: int) -> list[tuple[int, int]]:
    """Fork ``n`` worker processes now, before any thread starts (the caller
    checked :func:`_can_fork_workers`), with one BLAS / torch thread and
    :data:`QUIET` (both inherited); each waits for the scheduler's address on a
    pipe (:func:`_worker_child`). Returns (pid, write end of its pipe) each.

    They inherit the imported package: up in ~0.1 s instead of the 1.5-2 s a
    fresh interpreter takes to import it (the fork server's or a spawned
    worker's), while one core ran sweep runs and the other waited (issue 15)."""
    import dask

    children: list[tuple[int, int]] = []
    with single_threaded(), dask.config.set(QUIET), fork_section():
        try:
            for _ in range(n):
                pid, read, write = fork_with_pipe()
                if pid == 0:  # never returns
                    os.close(write)
                    _worker_child(read, [w for _, w in children])
                os.close(read)
                children.append((pid, write))
        except BaseException:
            _reap_workers(children, kill=True)
            raise
    return children


def _worker_child(read: int, siblings: list[int]) -> None:
    """In a forked worker: read the scheduler's address (until the pipe closes;
    nothing: exit), run a one-thread Dask worker until the scheduler closes it,
    and exit without Python's clean-up (the parent's objects are not this
    process's to finalise)."""
    code = 1
    try:
        for fd in siblings:  # the other workers' pipes: EOF must reach them
            os.close(fd)
        after_fork_in_child()
        with os.fdopen(read, "rb") as pipe:
            address = pipe.read().decode()
        if address:
            asyncio.run(_serve(address))
        code = 0
    except BaseException:  # reported; this process ends here in any case
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        os._exit(code)


async def _serve(address: str) -> None:
    import distributed.utils
    from distributed import Worker

    # what LocalCluster's silence_logs does in its workers: no INFO lines
    logging.getLogger("distributed").setLevel(logging.WARNING)
    # the parent's offload executor counts a thread this process does not have
    # (work sent to it would wait for ever): a new one, as at import
    executor = distributed.utils._offload_executor
    distributed.utils._offload_executor = type(executor)(
        max_workers=1, thread_name_prefix="Dask-Offload")
    async with Worker(address, nthreads=1) as worker:
        await worker.finished()


def _forked_start(children: list[tuple[int, int]]) -> Callable[[dict[str, Any]], None]:
    """The start of a local cluster for :func:`_run_while`: a scheduler in this
    process, its address sent to the forked workers, which it waits for."""
    from dask.distributed import LocalCluster

    def start(box: dict[str, Any]) -> None:
        import dask

        # no nanny restarts a worker that dies: with none left, the tasks fail
        # after 10 s instead of waiting for ever
        with dask.config.set(QUIET | {"distributed.scheduler.no-workers-timeout": "10s"}):
            box["cluster"] = cluster = LocalCluster(n_workers=0, processes=True,
                                                    dashboard_address=None)
        for i, (pid, write) in enumerate(children):
            os.write(write, cluster.scheduler_address.encode())
            os.close(write)
            children[i] = (pid, -1)
        while len(cluster.scheduler.workers) < len(children):
            _check_alive(children)
            time.sleep(0.005)
    return start


def _check_alive(children: list[tuple[int, int]]) -> None:
    """RuntimeError if a forked worker has exited (it is reaped then)."""
    for i, (pid, fd) in enumerate(children):
        if pid > 0 and os.waitpid(pid, os.WNOHANG)[0]:
            children[i] = (-pid, fd)  # reaped: its pid may be another process's now
            raise RuntimeError(f"a forked Dask worker (pid {pid}) exited")


def _reap_workers(children: list[tuple[int, int]], kill: bool = False,
                  wait: float = 5.0) -> None:
    """Close the pipes not yet written and wait for the forked workers (closed
    by the scheduler, or, with nothing to read, ended at once); with ``kill``,
    or after ``wait`` seconds, SIGKILL those still running. A worker already
    reaped (negative pid) is not signalled: its pid may be another process's."""
    for _pid, fd in children:
        if fd >= 0:
            os.close(fd)
    end = time.monotonic() + (0.0 if kill else wait)
    for pid, _ in children:
        if pid <= 0:
            continue
        while not os.waitpid(pid, os.WNOHANG)[0]:
            if time.monotonic() >= end:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.005)
    children[:] = [(-abs(pid), -1) for pid, _ in children]
