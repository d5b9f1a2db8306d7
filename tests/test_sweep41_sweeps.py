"""Sweeps: a local Dask cluster starts while this process runs the first runs
(issue 15); scipy.stats is not imported by the package until an interval is
formed."""

import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from finsim_mesa import sweeps
from finsim_mesa.intervals import ci95
from finsim_mesa.sweeps import run_sweep

ROOT = os.path.dirname(os.path.dirname(__file__))


@pytest.mark.slow
def test_a_local_cluster_starts_while_this_process_runs(monkeypatch):
    """The first runs are made here until the workers are up, the rest on the
    cluster; the rows are those of one process."""
    pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
    grid = {"scenario": ["normal", "systemic"], "n_banks": [10, 12]}
    seeds = list(range(6))  # 24 runs
    one = run_sweep(grid, seeds=seeds, steps=6, progress=False)
    here, real = [], sweeps._one_run

    def slow_here(combo, seed, steps, every):  # only this process's calls are slowed
        here.append((combo["scenario"], combo["n_banks"], seed))
        time.sleep(0.4)  # a start-up of ~2 s: about 5 runs here, 19 on the cluster
        return real(combo, seed, steps, every)
    monkeypatch.setattr(sweeps, "_one_run", slow_here)
    t0 = time.perf_counter()
    dask = run_sweep(grid, seeds=seeds, steps=6, workers=2, progress=False)
    took = time.perf_counter() - t0
    pd.testing.assert_frame_equal(dask, one)
    first = [(c["scenario"], c["n_banks"], s) for c in sweeps._combinations(
        sweeps._check_grid(grid)) for s in seeds][:len(here)]
    assert here == first  # in order, from the first
    assert 1 <= len(here) < 24, here  # some here, the rest on the workers
    assert took < 24 * 0.4  # the workers ran the rest (not slowed)


def test_a_failing_run_here_closes_the_starting_cluster(monkeypatch):
    pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
    closed = []

    class FakeCluster:
        def __init__(self, **kw):
            time.sleep(0.2)

        def close(self):
            closed.append(True)
    monkeypatch.setattr("dask.distributed.LocalCluster", FakeCluster)

    def boom(combo, seed, steps, every):
        raise ValueError("run failed")
    monkeypatch.setattr(sweeps, "_one_run", boom)
    with pytest.raises(ValueError, match="run failed"):
        run_sweep({"n_banks": [10]}, seeds=2, steps=2, workers=2, progress=False)
    assert closed == [True]


def test_every_run_made_here_closes_the_cluster_and_gives_the_rows(monkeypatch):
    pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
    closed = []

    class SlowCluster:  # up only after every run is made here
        def __init__(self, **kw):
            time.sleep(3)

        def close(self):
            closed.append(True)
    monkeypatch.setattr("dask.distributed.LocalCluster", SlowCluster)
    grid = {"n_banks": [10, 11]}
    one = run_sweep(grid, seeds=2, steps=3, progress=False)
    pd.testing.assert_frame_equal(run_sweep(grid, seeds=2, steps=3, workers=2,
                                            progress=False), one)
    assert closed == [True]


def test_a_cluster_that_fails_to_start_raises(monkeypatch):
    pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")

    class Broken:
        def __init__(self, **kw):
            raise OSError("no ports")
    monkeypatch.setattr("dask.distributed.LocalCluster", Broken)
    with pytest.raises(OSError, match="no ports"):
        run_sweep({"n_banks": [10]}, seeds=30, steps=2, workers=2, progress=False)


def test_the_package_does_not_import_scipy_stats_until_an_interval():
    code = ("import sys, finsim_mesa, finsim_mesa.sweeps, finsim_mesa.decision, "
            "finsim_mesa.evaluation\n"
            "print('scipy.stats' in sys.modules)\n"
            "from finsim_mesa.intervals import ci95\n"
            "ci95([1.0, 2.0])\n"
            "print('scipy.stats' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.stdout.split() == ["False", "True"], out.stdout + out.stderr[-2000:]


def test_ci95_against_the_t_table():
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]  # mean 5.5, sd sqrt(55/6)
    mean, std, low, high = ci95(x)
    sd = (55 / 6) ** 0.5
    half = 2.262157 * sd / 10 ** 0.5  # t(0.975, 9) from a printed table
    assert mean == 5.5 and std == pytest.approx(sd, rel=1e-12)
    assert (low, high) == pytest.approx((5.5 - half, 5.5 + half), rel=1e-6)
    assert ci95([3.0])[2] != ci95([3.0])[2]  # one value: NaN interval
