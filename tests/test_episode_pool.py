"""``--workers``: the searches' episodes in worker processes
(finsim_mesa.learning.episode_pool). Two workers give the same outcomes, in
the same order, as running each episode here, so a search with two workers
writes bit-identical weights; each worker has one BLAS thread; bad counts are
refused with a message."""

import importlib.util
import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file

from finsim_mesa.cli import main
from finsim_mesa.errors import ConfigError
from finsim_mesa.evaluation import evaluate_run
from finsim_mesa.learning.episode_pool import EpisodePool, check_workers, max_workers
from finsim_mesa.learning.evolve import (
    SEARCH_SEEDS,
    _obs_fields,
    _Recorder,
    binned_actor,
    evolve_binned,
    stratified_seeds,
)
from finsim_mesa.learning.evolve_objective import refine_scenarios
from finsim_mesa.policies import SHIPPED
from finsim_mesa.threads import blas_threads

CUTS = [0.15, 0.4, 0.65]
ENV = {"n_banks": 10, "steps": 6}
TORCH = importlib.util.find_spec("torch") is not None


def test_two_workers_return_each_episodes_outcome_in_the_order_given():
    """Against evaluate_run of the same actor, one run at a time in this process:
    the same outcome for every (scenario, seed), in the order of the list (the
    runs differ, so a reordering would show), and the same bins seen."""
    names = _obs_fields(ENV)
    j = names.index("market_stress")
    w = binned_actor(np.array([[0.1, 0.2, 0.0, 0.3], [0.0, 0.4, 0.1, 0.1],
                               [0.0, 0.5, 0.3, 0.2], [0.0, 0.8, 0.6, 0.4]]), CUTS, j, len(names))
    runs = [("systemic", 5), ("normal", 3), ("mixture", 1_000_007), ("asset_crash", 9),
            ("liquidity_crisis", 2), ("systemic", 6)]
    want = []
    for sc, s in runs:
        rec = _Recorder(w, names, j, CUTS, 0.05)
        want.append((evaluate_run(rec, sc, s, **ENV), rec.seen))
    assert len({o["episode_reward"] for o, _ in want}) == len(runs)  # all different
    with EpisodePool(2) as pool:
        assert pool._pool is not None
        got = pool.run(w, names, j, CUTS, 0.05, runs, ENV)
        # each worker: one BLAS thread, read from the environment before NumPy loaded
        for _ in range(4):
            assert pool._pool.apply(os.getenv, ("OPENBLAS_NUM_THREADS",)) == "1"
            assert set(pool._pool.apply(blas_threads)) <= {1}
    assert got == want
    assert pool._pool is None  # stopped on leaving the block


def test_init_search_with_two_workers_writes_the_same_actor():
    seeds = stratified_seeds(SEARCH_SEEDS, 1)
    kw = dict(iterations=2, population=3, seed=4, extras=[("capital_ratio", 0.123)], **ENV)
    one = evolve_binned([0.05, 0.4, 0.1, 0.2], seeds, **kw)
    two = evolve_binned([0.05, 0.4, 0.1, 0.2], seeds, workers=2, **kw)
    assert one.history and any(h["block_best"] != one.history[0]["block_best"]
                               for h in one.history)  # a real search, not one value
    for k, v in one.weights.items():
        np.testing.assert_array_equal(two.weights[k], v)
    assert (two.value, two.history, two.episodes) == (one.value, one.history, one.episodes)
    assert (one.workers, two.workers) == (1, 2)


def test_refine_with_two_workers_writes_the_same_actor():
    start = json.loads((SHIPPED / "meta.json").read_text())["evolve"]
    kw = dict(kappa=10.0, blocks=[0, 1, 6], iterations=2, population=3, seed=3,
              scenarios=("normal", "asset_crash"), **ENV)
    one = refine_scenarios(start, 2, **kw)
    two = refine_scenarios(start, 2, workers=2, **kw)
    for k, v in one.weights.items():
        np.testing.assert_array_equal(two.weights[k], v)
    assert (two.value, two.history, two.episodes) == (one.value, one.history, one.episodes)
    assert one.episodes > 4  # candidates ran, not only the incumbent


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", max_workers() + 1])
def test_bad_worker_counts_are_refused(bad):
    with pytest.raises(ConfigError, match="whole number of worker processes"):
        check_workers(bad)
    with pytest.raises(ConfigError, match="whole number of worker processes"):
        EpisodePool(bad)
    assert check_workers(np.int64(2)) == 2 and check_workers(max_workers()) == max_workers()


def test_train_refine_with_two_workers_on_the_command_line(tmp_path, capsys):
    args = ["train", "-q", "--refine", "1,1,3", "--init-from", str(SHIPPED), "--banks", "10",
            "--steps", "4", "--refine-blocks", "0,1", "--refine-kappa", "10", "--seed", "2"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--workers", "2", "--out", str(tmp_path / "two")]) == 0
    one = load_file(tmp_path / "one" / "evolved" / "weights.safetensors")
    two = load_file(tmp_path / "two" / "evolved" / "weights.safetensors")
    assert one.keys() == two.keys()
    for k in one:
        np.testing.assert_array_equal(two[k], one[k])
    metas = [json.loads((tmp_path / d / "evolved" / "meta.json").read_text())
             for d in ("one", "two")]
    assert [m["evolve"]["workers"] for m in metas] == [1, 2]
    assert "--workers" not in metas[0]["command"] and "--workers 2" in metas[1]["command"]
    assert metas[0]["check"] == metas[1]["check"]
    capsys.readouterr()
    for bad in ("0", "-1", "1.5", "two", str(max_workers() + 1)):
        assert main([*args, "--workers", bad, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert f"--workers {bad}" in err and f"from 1 to {max_workers()}" in err
    assert not (tmp_path / "bad").exists()  # refused before anything was written


@pytest.mark.slow
@pytest.mark.skipif(not TORCH, reason="finsim train without --refine needs the learn extra")
def test_train_init_search_with_two_workers_on_the_command_line(tmp_path, capsys):
    args = ["train", "-q", "--mixture", "--init-search", "1,1,3", "--episodes", "0",
            "--init-action", "0.05,0.4,0.1,0.2", "--banks", "10", "--steps", "4",
            "--seed", "1"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--workers", "2", "--out", str(tmp_path / "two")]) == 0
    one = load_file(tmp_path / "one" / "evolved" / "weights.safetensors")
    two = load_file(tmp_path / "two" / "evolved" / "weights.safetensors")
    for k in one:
        np.testing.assert_array_equal(two[k], one[k])
    meta = json.loads((tmp_path / "two" / "evolved" / "meta.json").read_text())
    assert meta["evolve"]["workers"] == 2 and meta["command"].endswith(
        f"--workers 2 --out {tmp_path / 'two'}")
    capsys.readouterr()
    assert main([*args, "--workers", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "--workers 0" in capsys.readouterr().err
    # MAPPO training alone runs in one process: --workers there is refused
    assert main(["train", "-q", "--episodes", "1", "--workers", "2",
                 "--out", str(tmp_path / "m")]) == 2
    assert "only the searches" in capsys.readouterr().err
