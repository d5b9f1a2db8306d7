"""A Dask sweep with a local cluster leaves multiprocessing's fork-server preload
list as the user set it (review of helper-45's dask_sweep._forkserver): Dask's
get_mp_context() overwrites the list the first time it is called in a process,
so the list to put back is the one from before that call."""

from multiprocessing import forkserver

import pytest

from finsim_mesa import dask_sweep


def test_the_users_preload_list_is_put_back(monkeypatch):
    pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
    import distributed.utils

    server = forkserver._forkserver
    if server._forkserver_pid is not None:
        pytest.skip("a fork server already runs here (its preload no longer matters)")
    # as in a fresh process: Dask has not set its own preload list yet
    monkeypatch.setattr(distributed.utils, "_forkserver_preload_set", False)
    monkeypatch.setattr(server, "_preload_modules", ["json"])
    setting, restore = dask_sweep._forkserver()
    try:
        assert setting == {"distributed.worker.multiprocessing-method": "forkserver"}
        assert "finsim_mesa.sweeps" in server._preload_modules
        assert "distributed" in server._preload_modules  # Dask's list, for the sweep
    finally:
        restore()
    assert server._preload_modules == ["json"]


def test_a_preload_list_set_before_dask_is_kept_during_the_sweep_too(monkeypatch):
    pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
    import distributed.utils

    server = forkserver._forkserver
    if server._forkserver_pid is not None:
        pytest.skip("a fork server already runs here (its preload no longer matters)")
    monkeypatch.setattr(distributed.utils, "_forkserver_preload_set", True)  # Dask's done
    monkeypatch.setattr(server, "_preload_modules", ["json"])
    _, restore = dask_sweep._forkserver()
    try:
        assert server._preload_modules == ["json", "finsim_mesa.sweeps"]
    finally:
        restore()
    assert server._preload_modules == ["json"]


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_a_start_method_the_user_chose_is_kept(monkeypatch, method):
    dask = pytest.importorskip("dask", reason="the distributed extra (Dask) is not installed")
    pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
    server = forkserver._forkserver
    monkeypatch.setattr(server, "_preload_modules", ["json"])
    with dask.config.set({"distributed.worker.multiprocessing-method": method}):
        setting, restore = dask_sweep._forkserver()
        restore()
        # nothing overrides the user's method, and their preload list is untouched
        assert setting == {}
        assert dask.config.get("distributed.worker.multiprocessing-method") == method
    assert server._preload_modules == ["json"]
