"""The finsim command line, end to end."""

import subprocess
import sys

import pandas as pd
import pytest
import yaml

from finsim_mesa.cli import main
from finsim_mesa.config import ModelConfig, make_config
from finsim_mesa.model import FinancialModel
from finsim_mesa.scenarios import list_scenarios


def _direct_run(seed, **params):
    """The model `finsim simulate` runs, run here without the command line."""
    model = FinancialModel(config=make_config(None, **params), rng=seed)
    while model.running:
        model.step()
    return model


def _table_rows(text, header, ncells=None):
    """Rows of a printed pandas table after its header line (given as its words), as
    row name -> its last `ncells` cells (default: one per header word)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == header)
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        name, *cells = line.rsplit(maxsplit=ncells or len(header))
        rows[name.strip()] = cells
    return rows


def test_simulate_prints_summary_and_writes_csv(tmp_path, capsys):
    out = tmp_path / "results.csv"
    assert main(["simulate", "--banks", "20", "--steps", "15", "--seed", "3", "--scenario",
                 "asset_crash", "--brain", "greedy", "--out", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    for needle in ("20 banks", "asset_crash", "greedy", "seed 3", "defaults",
                   "asset price", "DebtRank", "systemic-risk index", "capital ratio",
                   "most systemically important surviving banks"):
        assert needle in text
    df = pd.read_csv(out)
    assert len(df) == 16 and "debtrank_total" in df.columns


def test_simulate_is_reproducible_by_seed(capsys):
    main(["simulate", "--banks", "15", "--steps", "10", "--seed", "9", "-q"])
    a = capsys.readouterr().out
    main(["simulate", "--banks", "15", "--steps", "10", "--seed", "9", "-q"])
    assert capsys.readouterr().out == a
    # and what it prints is the model's own summary for that seed
    model = _direct_run(9, n_banks=15, steps=10)
    s, cfg = model.summary(), model.config
    lines = [" ".join(line.split()) for line in a.splitlines()]
    assert (f"finsim-mesa: 15 banks, {cfg.topology} network, scenario '{cfg.scenario}', "
            f"brain '{cfg.brain}', seed 9") in lines
    assert f"ran {s['steps']} of 10 steps (episode complete)" in lines
    for row in (f"defaults {s['defaults']} of 15 ({s['default_rate']:.1%})",
                f"asset price (start = 1) {s['price']:.4g}",
                f"total equity of survivors {s['total_equity']:.4g}",
                f"capital ratio: mean / p10 / min {s['capital_ratio_mean']:.4f} / "
                f"{s['capital_ratio_p10']:.4f} / {s['capital_ratio_min']:.4f}",
                f"DebtRank (propagated distress) {s['debtrank']:.4g}",
                f"DebtRank total distress {s['debtrank_total']:.4g}",
                f"liquidity index (cash / short-term debt) {s['liquidity_index']:.4g}",
                f"stress index {s['stress_index']:.4g}",
                f"systemic-risk index (0-1) {s['systemic_risk_index']:.4g}",
                f"max contagion depth (default rounds) {s['max_contagion_depth']}"):
        assert row in lines, row
    top = lines.index("rank bank DebtRank total assets links")
    assert len(s["most_systemic"]) == 5
    for k, b in enumerate(s["most_systemic"], 1):
        assert lines[top + k] == (f"{k} {b['bank']} {b['debtrank']:.4f} "
                                  f"{b['total_assets']:.2f} {b['degree']}")


def test_compare_runs_every_scenario(capsys):
    assert main(["simulate", "--compare", "--banks", "12", "--steps", "10", "--seed", "1",
                 "-q"]) == 0
    text = capsys.readouterr().out
    for name in ("normal", "liquidity_crisis", "asset_crash", "systemic"):
        assert name in text
    assert "default_rate" in text
    assert "all scenarios, 12 banks, brain 'rule_based', seed 1, up to 10 steps" in text
    header = ["steps", "defaults", "default_rate", "price", "total_equity", "capital_ratio",
              "debtrank_peak", "sri_peak", "max_depth", "top_bank"]
    rows = _table_rows(text, header)
    assert rows.pop("scenario") == []  # the index name, on its own line
    assert list(rows) == list(list_scenarios())
    g = "{:.4g}".format
    for name, cells in rows.items():  # each row is that scenario run alone, same seed
        model = _direct_run(1, n_banks=12, steps=10, scenario=name)
        s, df = model.summary(top=1), model.datacollector.get_model_vars_dataframe()
        assert cells == [str(s["steps"]), str(s["defaults"]), g(s["default_rate"]),
                         g(s["price"]), g(s["total_equity"]), g(s["capital_ratio_mean"]),
                         g(df["debtrank_total"].max()), g(df["systemic_risk_index"].max()),
                         str(s["max_contagion_depth"]), str(s["most_systemic"][0]["bank"])], name


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
    blocks: dict[str, list[str]] = {}  # scenario name -> the indented lines below it
    for line in text.splitlines():
        if line.startswith(" "):
            blocks[next(reversed(blocks))].append(line)
        else:
            blocks[line] = []
    assert list(blocks) == list(list_scenarios())
    for name, sc in list_scenarios().items():  # its description, then its parameters
        desc = [line.strip() for line in blocks[name] if not line.startswith("      ")]
        assert " ".join(desc) == " ".join(sc.description.split()), name
        params = sc.model_dump(exclude={"name", "description"})
        fields = type(sc).model_fields  # each parameter with its meaning and unit
        assert blocks[name][len(desc):] == [f"      {k} = {v}  ({fields[k].description})"
                                            for k, v in params.items()]
        assert all(fields[k].description for k in params)
    assert main(["scenarios"]) == 0
    short = capsys.readouterr().out
    assert [line for line in short.splitlines() if not line.startswith(" ")] == \
        list(list_scenarios())
    assert "      " not in short  # parameters only with -v


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
    assert "without infrastructure" in text and "with 2 exchanges, 1 CCP" in text
    assert "difference" in text and "defaults" in text
    cells = _table_rows(text, ["without", "infrastructure", "with", "2", "exchanges,", "1",
                               "CCP", "difference"], ncells=3)
    assert list(cells) == ["defaults", "default_rate", "equity_lost", "price",
                           "debtrank_peak", "sri_peak", "sri_mean"]
    off = _direct_run(2, n_banks=20, steps=15, scenario="systemic")
    on = _direct_run(2, n_banks=20, steps=15, scenario="systemic", n_exchanges=2, n_ccps=1)
    assert cells["defaults"] == [str(off.measures.n_defaults), str(on.measures.n_defaults),
                                 str(on.measures.n_defaults - off.measures.n_defaults)]
    assert cells["price"][:2] == [f"{off.measures.asset_price:.4g}",
                                  f"{on.measures.asset_price:.4g}"]
    assert main(["simulate", "--ccps", "1", "-q"]) == 2
    assert "needs n_exchanges" in capsys.readouterr().err


def test_whatif_command(capsys):
    assert main(["whatif", "--banks", "20", "--seed", "3", "--warmup", "5", "--horizon", "4",
                 "--seeds", "3", "--shock", "price_crash:0.2", "--bank", "2",
                 "--recommend"]) == 0
    text = capsys.readouterr().out
    assert "state after step 5" in text and "hypothetical - baseline" in text
    assert "recommendation" in text and "bank 2:" in text and "own_brain" in text
    assert main(["whatif", "--banks", "20", "--seed", "3", "--warmup", "5", "--horizon", "4",
                 "--seeds", "3", "--shock", "price_crash:0.2", "--bank", "2",
                 "--recommend", "--workers", "2"]) == 0  # forked runs: the same tables
    strip = [line for line in capsys.readouterr().out.splitlines() if " s)" not in line]
    assert strip == [line for line in text.splitlines() if " s)" not in line]


@pytest.mark.parametrize(("argv", "needle"), [
    (["--shock", "meteor"], "unknown"),
    (["--shock", "price_crash:lots"], "KIND[:MAGNITUDE"),
    (["--recommend"], "needs --bank"),
    (["--horizon", "0"], "--horizon 0"),
    (["--bank", "99"], "--bank 99"),
    (["--workers", "0"], "--workers 0"),
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


@pytest.mark.slow
def test_killing_finsim_viz_takes_its_server_down(tmp_path):
    """SIGTERM of `finsim viz` used to orphan the `solara run` child, which kept the
    port: the next `finsim viz` failed with 'address already in use'."""
    import os
    import signal
    import socket
    import time
    import urllib.request
    from pathlib import Path

    finsim = Path(sys.executable).with_name("finsim")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(finsim), "viz", "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while True:
            assert proc.poll() is None, "finsim viz exited"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                assert time.time() < deadline, "the server did not come up"
                time.sleep(0.5)
        children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                    and _parent(p) == proc.pid]
        assert children, "no server child found"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 128 + signal.SIGTERM
        for pid in children:  # the child is gone with it
            deadline = time.time() + 10
            while Path(f"/proc/{pid}").exists() and _state(pid) != "Z":
                assert time.time() < deadline, f"server {pid} outlived finsim viz"
                time.sleep(0.2)
        with socket.socket() as s:  # and the port is free again
            s.bind(("127.0.0.1", port))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.system(f"pkill -f 'solara run finsim_mesa.viz.app --host 127.0.0.1 --port {port}'")


def _parent(proc_dir) -> int:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _state(pid: int) -> str:
    try:
        from pathlib import Path

        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_summary_numbers_are_never_in_scientific_notation():
    from finsim_mesa.cli.common import fmt, plural

    assert fmt(3.864e-09) == "0.0000" and fmt(-2e-7) == "-0.0000"
    assert fmt(0.6051) == "0.6051" and fmt(1.4391) == "1.439" and fmt(123456.7) == "123,457"
    assert fmt(0.0) == "0.0000"
    assert "e-" not in fmt(1e-300) and "e+" not in fmt(1e12)
    assert plural(1, "CCP") == "1 CCP" and plural(2, "CCP") == "2 CCPs"
    assert plural(1, "exchange") == "1 exchange"


def test_compare_flags_write_what_they_say(tmp_path, capsys):
    out, plot = tmp_path / "cmp.csv", tmp_path / "cmp.png"
    assert main(["simulate", "--compare", "--banks", "10", "--steps", "4", "--seed", "1",
                 "-q", "--out", str(out), "--plot", str(plot)]) == 0
    table = pd.read_csv(out, index_col=0)
    assert list(table.index) == list(list_scenarios())
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out2, plot2 = tmp_path / "infra.csv", tmp_path / "infra.png"
    assert main(["simulate", "--compare-infrastructure", "--banks", "10", "--steps", "4",
                 "--seed", "1", "-q", "--ccps", "1", "--exchanges", "1", "--out", str(out2),
                 "--plot", str(plot2)]) == 0
    text = capsys.readouterr().out
    assert "with 1 exchange, 1 CCP" in text and "1 CCPs" not in text
    table = pd.read_csv(out2, index_col=0)
    assert list(table.columns) == ["without infrastructure", "with 1 exchange, 1 CCP",
                                   "difference"]
    assert plot2.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_whatif_help_documents_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["whatif", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in (("--warmup", "20"), ("--horizon", "10"), ("--seeds", "10")):
        assert f"{flag} {flag[2:].upper()}" in text and f"(default: {default})" in text
    from finsim_mesa.cli import build_parser

    whatif = build_parser()._subparsers._group_actions[0].choices["whatif"]
    for action in whatif._actions:
        assert action.help, action.dest  # no option without a description
