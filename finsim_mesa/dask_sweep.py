"""The Dask side of :func:`finsim_mesa.sweeps.run_sweep`: a running cluster
(``scheduler=ADDRESS``) or a local one that the sweep starts (``workers=N``).

The runs go to the workers in tasks of several runs (:func:`chunks`): one task
per run cost the scheduler and this process about 7 ms of CPU per run, on the
cores the workers need (on two cores, 1.1 CPU-s for 160 runs of 70 ms). The
tasks are *guided*: each takes about half of what is left divided by the
workers' threads, so the first are long and the last are single runs, and the
workers finish together (issue 15). Rows come back in the order of the runs,
the same rows as one task per run.

A local cluster is started in a thread while this process makes the first runs
itself, one after the other, until the workers are up (spawning them and
importing the package in them takes 1.5-2 s, as long as a small sweep). It is
started *quiet* (:data:`QUIET`): its scheduler and nannies share this process
with those runs, and its workers run the rest, so the event loops' 20 ms
health tick, the workers' 10 ms statistical profiler (a dashboard's, and the
cluster has none) and the 100 ms memory polls are slowed down or off; with
Dask's defaults an idle local cluster made the runs in this process 20-40%
slower (GIL hand-overs to its event-loop thread), with these, no slower.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from finsim_mesa.errors import ConfigError
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
    try:
        if scheduler is None:
            setting, restore = _forkserver()
            cluster, done = _start_cluster_running(tasks, workers, setting, run_here, parts,
                                                   bar)
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
            futures = {client.submit(run_chunk, [tasks[i] for i in r], *args, pure=False): k
                       for k, r in enumerate(ranges)}
            out: list[list[dict[str, Any]] | None] = [None] * len(ranges)
            for fut in as_completed(futures):
                out[futures[fut]] = fut.result()
                bar.update(len(ranges[futures[fut]]))
            parts.extend(o for o in out if o is not None)
        return [row for part in parts for row in part]
    finally:
        bar.close()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        if restore is not None:
            restore()


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
    """Start a local cluster in a thread while this process runs the first tasks
    itself (into ``parts``), one after the other until the cluster is up (1.5-2
    s: the package is imported in the fork server or in each spawned worker, as
    long as a small sweep). ``forkserver``: Dask settings for the workers' start
    method (:func:`_forkserver`). Returns the cluster (None when every run was made here) and how
    many runs were made here; their rows are those a worker would return."""
    import dask
    from dask.distributed import LocalCluster

    box: dict[str, Any] = {}

    def start() -> None:
        try:
            with dask.config.set(QUIET | forkserver):
                box["cluster"] = LocalCluster(n_workers=workers, threads_per_worker=1,
                                              processes=True, dashboard_address=None)
        except BaseException as err:  # raised in the caller's thread below
            box["error"] = err

    # Workers come from multiprocessing's fork server where there is one (see
    # _forkserver), else Dask's spawn; never a fork of this process, whose
    # event-loop thread may hold locks (a forked start failed in CI when filelock
    # refused os.fork mid-transition). One BLAS / torch thread here and, through
    # the environment (read by the fork server when it starts), in the workers.
    done, ok = 0, False
    with single_threaded():
        starter = threading.Thread(target=start, name="finsim-sweep-cluster", daemon=True)
        starter.start()
        try:
            while starter.is_alive() and done < len(tasks):
                parts.append(run_here(*tasks[done]))
                done += 1
                bar.update()
            ok = True
        finally:
            starter.join()
            cluster = box.get("cluster")
            if cluster is not None and (not ok or done == len(tasks)):
                cluster.close()  # a run failed here, or every run was made here
    if "error" in box:
        raise box["error"]
    return (None if done == len(tasks) else cluster), done
