"""Dask sweeps (issue 15): runs go in guided tasks of several runs, the rows are
those of one process and in the order of the runs; a local cluster is started
quiet (no 10 ms profiler, a 1 s tick) with workers forked by multiprocessing's
fork server, which is stopped again after the sweep."""

import os
import time
from multiprocessing import forkserver

import pandas as pd
import pytest

from finsim_mesa import dask_sweep, sweeps
from finsim_mesa.sweeps import run_sweep


@pytest.mark.parametrize(("n", "threads"), [(1, 2), (7, 1), (24, 2), (160, 2), (1000, 8)])
def test_chunks_cover_every_run_once_in_order_and_shrink(n, threads):
    parts = dask_sweep.chunks(n, threads)
    assert [i for r in parts for i in r] == list(range(n))
    sizes = [len(r) for r in parts]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-1] == 1  # the last tasks are single runs: the workers end together
    assert sizes[0] == -(-n // (2 * threads))


def test_chunks_worked_example():
    # 160 runs, 2 threads: half of what is left over 2 threads, rounded up, by hand
    sizes = [len(r) for r in dask_sweep.chunks(160, 2)]
    assert sizes[:6] == [40, 30, 23, 17, 13, 10]
    assert sum(sizes) == 160
    assert len(sizes) < 160 / 8  # far fewer tasks than runs
    assert dask_sweep.chunks(0, 2) == []
    assert [len(r) for r in dask_sweep.chunks(3, 0)] == [2, 1]  # no threads: as one


def _cluster():
    pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
    from dask.distributed import LocalCluster
    return LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                        dashboard_address=None)


@pytest.mark.slow
def test_a_running_cluster_gets_guided_tasks_and_gives_the_one_process_rows():
    from dask.distributed import Client, get_task_stream

    grid = {"scenario": ["normal", "systemic"], "n_banks": [10, 12]}
    seeds = list(range(5))  # 20 runs
    one = run_sweep(grid, seeds=seeds, steps=5, progress=False)
    cluster = _cluster()
    try:
        with Client(cluster) as client, get_task_stream(client) as ts:
            dask = run_sweep(grid, seeds=seeds, steps=5, progress=False,
                             scheduler=cluster.scheduler_address)
        pd.testing.assert_frame_equal(dask, one)
        assert len(ts.data) == len(dask_sweep.chunks(20, 2)) < 20  # not one task per run
        # before tidying, the rows come back in the order of the runs
        tasks = [(c, s) for c in sweeps._combinations(sweeps._check_grid(grid)) for s in seeds]
        rows = dask_sweep.run(tasks, None, sweeps._run_chunk, (5, 1),
                              cluster.scheduler_address, None, False)
        expect = [r for c, s in tasks for r in sweeps._one_run(c, s, 5, 1)]
        pd.testing.assert_frame_equal(pd.DataFrame(rows), pd.DataFrame(expect))
    finally:
        cluster.close()


def _worker_settings():
    import dask
    return (dask.config.get("distributed.worker.profile.enabled"),
            dask.config.get("distributed.admin.tick.interval"), os.getppid(),
            "finsim_mesa.model" in __import__("sys").modules)


@pytest.mark.slow
def test_a_local_cluster_is_quiet_and_forked_by_the_fork_server():
    pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
    from dask.distributed import Client

    server = forkserver._forkserver
    was = server._forkserver_pid  # None unless something here started one
    setting, restore = dask_sweep._forkserver()
    assert setting == {"distributed.worker.multiprocessing-method": "forkserver"}
    assert "finsim_mesa.sweeps" in server._preload_modules
    parts: list = []

    def slow_run(combo, seed):  # runs here until the cluster is up (at most 8 s)
        time.sleep(0.02)
        return sweeps._one_run(combo, seed, 2, 1)
    try:
        cluster, done = dask_sweep._start_cluster_running(
            [({"n_banks": 10}, 0)] * 400, 2, setting, slow_run, parts,
            type("Bar", (), {"update": lambda self, k=1: None})())
        assert 1 <= done == len(parts) < 400
        try:
            with Client(cluster) as client:
                got = client.run(_worker_settings)
            fork_server = server._forkserver_pid
            assert fork_server is not None and fork_server != os.getpid()
            for profile, tick, parent, preloaded in got.values():
                assert profile is False and tick == "1s"
                assert parent == fork_server  # forked by the server, not spawned here
                assert preloaded  # the package came with the fork
        finally:
            cluster.close()
    finally:
        restore()
    assert server._forkserver_pid == was  # stopped again if it was started for this
    assert "finsim_mesa.sweeps" not in server._preload_modules


@pytest.mark.slow
def test_a_local_sweep_stops_the_fork_server_it_started():
    pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
    grid = {"n_banks": [10, 11]}
    one = run_sweep(grid, seeds=12, steps=4, progress=False)
    server = forkserver._forkserver
    was = server._forkserver_pid
    pd.testing.assert_frame_equal(
        run_sweep(grid, seeds=12, steps=4, workers=2, progress=False), one)
    assert server._forkserver_pid == was
    assert "finsim_mesa.sweeps" not in server._preload_modules
