"""Sweeps on mesa.batch_run (local and Dask) and static figures."""

import numpy as np
import pandas as pd
import pytest

from finsim_mesa import ConfigError, FinancialModel
from finsim_mesa.model import MODEL_REPORTERS
from finsim_mesa.sweeps import load_grid, run_sweep, summarise_sweep, sweep_figure
from finsim_mesa.viz import plots

GRID = {"scenario": ["normal", "systemic"], "capital_ratio": [0.08, 0.12]}


def test_sweep_rows_columns_and_a_model_run_agree():
    df = run_sweep(GRID, seeds=[1, 2], steps=12, progress=False)
    assert len(df) == 2 * 2 * 2 * 12  # combinations x seeds x steps 1..12
    assert list(df.columns[:4]) == ["scenario", "capital_ratio", "seed", "step"]
    assert set(MODEL_REPORTERS) <= set(df.columns)
    assert df.step.min() == 1 and df.step.max() == 12
    # each row is the state after that step: equal to running the model by hand
    m = FinancialModel(scenario="systemic", capital_ratio=0.12, steps=12,
                       agent_collect_every=0, rng=2)
    m.run_for(12)
    mine = m.datacollector.get_model_vars_dataframe().iloc[1:]
    row = df[(df.scenario == "systemic") & (df.capital_ratio == 0.12) & (df.seed == 2)]
    np.testing.assert_allclose(row.price.to_numpy(), mine.price.to_numpy())
    np.testing.assert_allclose(row.n_defaults.to_numpy(), mine.n_defaults.to_numpy())


def test_sweep_keeps_the_collapse_step():
    df = run_sweep({"scenario": ["systemic"], "collapse_threshold": [0.1]}, seeds=[3],
                   steps=60, progress=False)
    m = FinancialModel(scenario="systemic", collapse_threshold=0.1, steps=60, rng=3)
    m.run_for(60)
    assert m.collapsed and m.t < 60
    assert df.step.max() == m.t and df.default_rate.iloc[-1] == m.measures.default_rate


def test_local_processes_are_forked_and_give_the_one_process_rows(monkeypatch):
    import multiprocessing

    from finsim_mesa import forked

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform: Mesa's own (spawn) pool runs")
    import threading

    methods, real = [], multiprocessing.get_context
    monkeypatch.setattr(forked.multiprocessing, "get_context",
                        lambda method=None: methods.append(method) or real(method))
    grid = {"scenario": ["systemic"], "n_banks": [10, 12]}
    one = run_sweep(grid, seeds=[3, 4], steps=5, progress=False)
    alone = forked.can_fork()  # (another test may have left a thread running)
    two = run_sweep(grid, seeds=[3, 4], steps=5, processes=2, progress=False)
    # forked, not Mesa's spawn pool whose workers import everything again
    assert methods == (["fork"] if alone else [])
    pd.testing.assert_frame_equal(two, one)
    # with another thread running, no fork (it could hold a lock): Mesa's pool, same rows
    methods.clear()
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        three = run_sweep(grid, seeds=[3, 4], steps=5, processes=2, progress=False)
    finally:
        stop.set()
        other.join()
    assert methods == []
    pd.testing.assert_frame_equal(three, one)


@pytest.mark.slow
def test_processes_and_dask_give_identical_results():
    pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
    local = run_sweep(GRID, seeds=[5, 6], steps=8, progress=False)
    two = run_sweep(GRID, seeds=[5, 6], steps=8, processes=2, progress=False)
    dask = run_sweep(GRID, seeds=[5, 6], steps=8, workers=2, progress=False)
    pd.testing.assert_frame_equal(local, two)
    pd.testing.assert_frame_equal(local, dask)


@pytest.mark.parametrize(("grid", "kw", "needle"), [
    ({}, {}, "at least one parameter"),
    ({"nbanks": [10]}, {}, "not a model parameter"),
    ({"rng": [1]}, {}, "not a model parameter"),
    ({"n_banks": [1, 10]}, {}, "n_banks = 1"),
    ({"n_banks": []}, {}, "no values"),
    ({"n_banks": [10]}, {"seeds": 0}, "seeds"),
    ({"n_banks": [10]}, {"steps": 0}, "steps"),
    pytest.param({"n_banks": [10]}, {"scheduler": "tcp://127.0.0.1:9"}, "cannot reach",
                 marks=pytest.mark.slow),
])
def test_bad_sweeps(grid, kw, needle):
    with pytest.raises(ConfigError, match=needle):
        run_sweep(grid, **({"seeds": 1, "steps": 2, "progress": False} | kw))


def test_grid_file(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("parameters:\n  scenario: [normal]\n  n_banks: [10, 20]\nseeds: 2\n"
                    "steps: 5\n")
    spec = load_grid(path)
    df = run_sweep(spec["parameters"], seeds=spec["seeds"], steps=spec["steps"],
                   progress=False)
    assert df.groupby(["n_banks", "seed"]).ngroups == 4
    bad = tmp_path / "b.yaml"
    bad.write_text("parameters: {n_banks: [10]}\nrepeats: 3\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_grid(bad)


def test_summary_bands_and_figure(tmp_path):
    df = run_sweep(GRID, seeds=[1, 2, 3], steps=10, progress=False)
    s = summarise_sweep(df, list(GRID))
    assert len(s) == 4 and (s["count"] == 3).all()
    assert (s["low"] <= s["mean"]).all() and (s["mean"] <= s["high"]).all()
    fig = sweep_figure(df, list(GRID))
    out = tmp_path / "s.png"
    fig.savefig(out)
    assert out.stat().st_size > 10_000
    # one error-bar series per capital ratio, no connecting line across the categories
    bars = fig.axes[0].containers
    assert len(bars) == 2 and all(b.lines[0].get_linestyle() == "None" for b in bars)


def _non_empty(fig, path):
    fig.savefig(path, dpi=60)
    img = np.asarray(__import__("matplotlib.image", fromlist=["imread"]).imread(path))
    assert img.std() > 0.02  # not a blank canvas
    return img


def test_static_figures(tmp_path):
    m = FinancialModel(n_banks=40, n_exchanges=2, n_ccps=1, scenario="systemic", rng=2)
    m.run_for(25)
    _non_empty(plots.timeseries_dashboard(m), tmp_path / "ts.png")
    fig = plots.network_snapshot(m)
    _non_empty(fig, tmp_path / "net.png")
    ax = fig.axes[0]
    # one point per bank plus one marker per exchange and CCP
    from matplotlib.collections import PathCollection

    sizes = [len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)]
    assert 40 in sizes and sizes.count(1) == 3
    _non_empty(plots.risk_dashboard(m), tmp_path / "risk.png")
    frames = {}
    for sc in ("normal", "systemic"):
        x = FinancialModel(n_banks=20, scenario=sc, rng=1)
        x.run_for(10)
        frames[sc] = x.datacollector.get_model_vars_dataframe()
    fig = plots.scenario_comparison(frames)
    _non_empty(fig, tmp_path / "cmp.png")
    assert len(fig.axes[0].lines) == 2
    _non_empty(plots.run_figure(m), tmp_path / "run.png")


def test_sweep_figure_does_not_join_categories_with_a_line():
    from finsim_mesa.sweeps import run_sweep, sweep_figure

    df = run_sweep({"scenario": ["normal", "systemic"]}, seeds=2, steps=3)
    ax = sweep_figure(df, ["scenario"]).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["normal", "systemic"]
    assert ax.get_lines() and all(line.get_linestyle() == "None" for line in ax.get_lines())
    assert not ax.collections or all(c.__class__.__name__ == "LineCollection"
                                     for c in ax.collections)  # error bars, no band
    numeric = run_sweep({"n_banks": [5, 8]}, seeds=2, steps=3)
    ax = sweep_figure(numeric, ["n_banks"]).axes[0]
    assert any(line.get_linestyle() == "-" for line in ax.get_lines())  # a scale: a line
