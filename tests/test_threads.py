"""single_threaded(): one BLAS / OpenMP / torch thread inside the block, in this
process and in the workers it forks or spawns, and everything put back after."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os

import numpy as np
import pytest

from finsim_mesa import sweeps
from finsim_mesa.threads import THREAD_VARS, _openblas_controls, blas_threads, single_threaded

needs_openblas = pytest.mark.skipif(not blas_threads(), reason="no bundled OpenBLAS")


def _worker_threads(_: int) -> tuple[list[int], dict[str, str | None]]:
    return blas_threads(), {k: os.environ.get(k) for k in THREAD_VARS}


@pytest.fixture
def three_blas_threads():
    """Start from 3 OpenBLAS threads so that pinning and restoring both show."""
    controls = _openblas_controls()
    before = [int(get()) for _, get in controls]
    for setter, _ in controls:
        setter(ctypes.c_int(3))
    yield
    for (setter, _), n in zip(controls, before, strict=True):
        setter(ctypes.c_int(n))


@needs_openblas
def test_pins_this_process_and_restores(three_blas_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert set(blas_threads()) == {3}
    with single_threaded():
        assert set(blas_threads()) == {1}
        assert all(os.environ[k] == "1" for k in THREAD_VARS)
        a = np.arange(12.0).reshape(6, 2)
        assert np.array_equal(a @ np.array([1.0, 2.0]), a[:, 0] + 2 * a[:, 1])
    assert set(blas_threads()) == {3}
    assert os.environ["OMP_NUM_THREADS"] == "7"
    assert "OPENBLAS_NUM_THREADS" not in os.environ


@needs_openblas
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_started_inside_get_one_thread(three_blas_threads, method):
    if method not in mp.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    with single_threaded(), mp.get_context(method).Pool(1) as pool:
        threads, env = pool.map(_worker_threads, [0])[0]
    assert threads and set(threads) == {1}
    assert all(env[k] == "1" for k in THREAD_VARS)


def test_torch_threads_pinned_and_restored():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with single_threaded():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@needs_openblas
def test_a_parallel_sweep_runs_its_workers_single_threaded(three_blas_threads, monkeypatch):
    seen = []

    def fake_batch_run(*args, **kwargs):
        seen.append((kwargs["number_processes"], blas_threads(),
                     os.environ.get("OPENBLAS_NUM_THREADS")))
        return []

    monkeypatch.setattr(sweeps.mesa, "batch_run", fake_batch_run)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    sweeps._batch({"n_banks": [10]}, [0], 2, 2, False, 1)
    sweeps._batch({"n_banks": [10]}, [0], 2, 1, False, 1)
    assert seen[0][0] == 2 and set(seen[0][1]) == {1} and seen[0][2] == "1"
    # one process: the caller's own settings are left alone
    assert seen[1][0] == 1 and set(seen[1][1]) == {3} and seen[1][2] is None
    assert set(blas_threads()) == {3}


@needs_openblas
def test_evaluation_runs_single_threaded(three_blas_threads, monkeypatch):
    from finsim_mesa import evaluation

    seen = []

    def fake_run(brain, scenario, seed, **params):
        seen.append(blas_threads())
        return dict.fromkeys((*evaluation.METRICS, "steps"), float(seed))

    monkeypatch.setattr(evaluation, "evaluate_run", fake_run)
    evaluation.run_evaluation(["rule_based"], ["normal"], seeds=[0, 1])
    assert len(seen) == 2 and all(set(s) == {1} for s in seen)
    assert set(blas_threads()) == {3}


def _threads_row(combo, seed, steps, every):
    return [{"seed": seed, "threads": blas_threads(),
             "env": os.environ.get("OPENBLAS_NUM_THREADS")}]


@needs_openblas
def test_forked_sweep_workers_inherit_one_thread(three_blas_threads, monkeypatch):
    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork here")
    monkeypatch.setattr(sweeps, "_one_run", _threads_row)  # inherited by the forked workers
    rows = sweeps._forked_runs({"n_banks": [10]}, [0, 1, 2], 2, 2, False, 1)
    assert sorted(r["seed"] for r in rows) == [0, 1, 2]
    assert all(set(r["threads"]) == {1} for r in rows)
    assert set(blas_threads()) == {3}  # the caller's pools put back
