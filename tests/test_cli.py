"""The finsim command line, end to end."""

import subprocess
import sys

import pandas as pd
import pytest
import yaml

from finsim_mesa.cli import main
from finsim_mesa.config import ModelConfig


def test_simulate_prints_summary_and_writes_csv(tmp_path, capsys):
    out = tmp_path / "results.csv"
    assert main(["simulate", "--banks", "20", "--steps", "15", "--seed", "3", "--scenario",
                 "asset_crash", "--brain", "greedy", "--out", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    for needle in ("20 banks", "asset_crash", "greedy", "seed 3", "defaults",
                   "asset price", "DebtRank", "systemic-risk index", "capital ratio",
                   "most systemically important banks"):
        assert needle in text
    df = pd.read_csv(out)
    assert len(df) == 16 and "debtrank_total" in df.columns


def test_simulate_is_reproducible_by_seed(capsys):
    main(["simulate", "--banks", "15", "--steps", "10", "--seed", "9", "-q"])
    a = capsys.readouterr().out
    main(["simulate", "--banks", "15", "--steps", "10", "--seed", "9", "-q"])
    assert capsys.readouterr().out == a


def test_compare_runs_every_scenario(capsys):
    assert main(["simulate", "--compare", "--banks", "12", "--steps", "10", "--seed", "1",
                 "-q"]) == 0
    text = capsys.readouterr().out
    for name in ("normal", "liquidity_crisis", "asset_crash", "systemic"):
        assert name in text
    assert "default_rate" in text


def test_config_file_and_set_flags(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    assert main(["config", "-o", str(path), "--set", "n_banks=14"]) == 0
    data = yaml.safe_load(path.read_text())
    assert data["n_banks"] == 14 and set(data) == set(ModelConfig.model_fields)
    assert main(["simulate", "--config", str(path), "--steps", "3", "--seed", "1", "-q",
                 "--set", "capital_ratio=0.2"]) == 0
    assert "14 banks" in capsys.readouterr().out


def test_scenarios_lists_descriptions(capsys):
    assert main(["scenarios", "-v"]) == 0
    text = capsys.readouterr().out
    assert "liquidity_crisis" in text and "funding_stress" in text


@pytest.mark.parametrize(("argv", "needle"), [
    (["simulate", "--banks", "1"], "n_banks = 1"),
    (["simulate", "--scenario", "nope"], "unknown scenario"),
    (["simulate", "--brain", "oracle"], "unknown brain"),
    (["simulate", "--set", "capital_ratoi=0.1"], "did you mean 'capital_ratio'"),
    (["simulate", "--set", "novalue"], "KEY=VALUE"),
    (["simulate", "--config", "/nonexistent.yaml"], "not found"),
])
def test_bad_input_exits_2_with_a_message(argv, needle, capsys):
    assert main([*argv, "-q"]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_console_script_runs_with_progress_bar():
    out = subprocess.run([sys.executable, "-m", "finsim_mesa.cli", "simulate", "--banks", "10",
                          "--steps", "5", "--seed", "2"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "5/5" in out.stderr  # tqdm progress bar
    assert "most systemically important" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "finsim_mesa.cli", "simulate", "--topology",
                          "ring"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_simulate_with_infrastructure_and_comparison(capsys):
    assert main(["simulate", "--banks", "20", "--steps", "15", "--seed", "2",
                 "--exchanges", "2", "--ccps", "1", "-q"]) == 0
    text = capsys.readouterr().out
    for needle in ("market infrastructure", "exchange fees collected", "netting efficiency",
                   "default fund", "uncovered loss"):
        assert needle in text
    assert main(["simulate", "--compare-infrastructure", "--banks", "20", "--steps", "15",
                 "--seed", "2", "--scenario", "systemic", "-q"]) == 0
    text = capsys.readouterr().out
    assert "without infrastructure" in text and "with 2 exchanges, 1 CCPs" in text
    assert "difference" in text and "defaults" in text
    assert main(["simulate", "--ccps", "1", "-q"]) == 2
    assert "needs n_exchanges" in capsys.readouterr().err


def test_whatif_command(capsys):
    assert main(["whatif", "--banks", "20", "--seed", "3", "--warmup", "5", "--horizon", "4",
                 "--seeds", "3", "--shock", "price_crash:0.2", "--bank", "2",
                 "--recommend"]) == 0
    text = capsys.readouterr().out
    assert "state after step 5" in text and "hypothetical - baseline" in text
    assert "recommendation" in text and "bank 2:" in text and "own_brain" in text


@pytest.mark.parametrize(("argv", "needle"), [
    (["--shock", "meteor"], "unknown"),
    (["--shock", "price_crash:lots"], "KIND[:MAGNITUDE"),
    (["--recommend"], "needs --bank"),
    (["--horizon", "0"], "--horizon 0"),
    (["--bank", "99"], "--bank 99"),
])
def test_whatif_bad_flags(argv, needle, capsys):
    assert main(["whatif", *argv]) == 2
    assert needle in capsys.readouterr().err


def test_simulate_plot_and_sweep_command(tmp_path, capsys):
    png = tmp_path / "run.png"
    assert main(["simulate", "--banks", "15", "--steps", "5", "--seed", "1", "-q",
                 "--plot", str(png)]) == 0
    assert png.stat().st_size > 10_000
    out, fig = tmp_path / "s.parquet", tmp_path / "s.png"
    assert main(["sweep", "--param", "scenario=normal,asset_crash", "--param", "n_banks=12",
                 "--seeds", "2", "--steps", "4", "--out", str(out), "--plot", str(fig),
                 "-q"]) == 0
    df = pd.read_parquet(out)
    assert len(df) == 2 * 2 * 4 and fig.stat().st_size > 10_000
    assert "4 runs x 4 steps" in capsys.readouterr().out
    assert main(["sweep", "--param", "scenario", "-q"]) == 2
    assert main(["sweep", "--param", "n_banks=10", "--out", "x.txt", "-q"]) == 2
