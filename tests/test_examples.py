"""The course examples run as scripts and print what they promise: every number
they print is recomputed here, directly, with the same seeds and parameters."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import mesa
import numpy as np
import pytest

from finsim_mesa import Brain, FinancialModel, eisenberg_noe
from finsim_mesa.observation import OBS

EXAMPLES = Path(__file__).parent.parent / "examples"
NUM = r"-?\d+(?:\.\d+)?"


def start_example(name: str, cwd: Path) -> subprocess.Popen:
    """Start ``examples/name`` as a script in ``cwd`` (the test recomputes its
    numbers meanwhile)."""
    return subprocess.Popen([sys.executable, str(EXAMPLES / name)], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def example_output(proc: subprocess.Popen, cwd: Path) -> list[str]:
    """The script's stdout lines. It must exit 0, write nothing to stderr and
    leave no files behind."""
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert err == "", err
    assert list(cwd.iterdir()) == []  # the examples write no files
    return out.splitlines()


def test_every_example_has_a_content_test():
    tested = {"01_first_run.py", "02_contagion_cascade.py", "03_custom_brain.py",
              "04_clearing_by_hand.py", "05_sweep.py"}  # one test_* below each
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


# ---------------------------------------------------------------- 01


def test_first_run(tmp_path):
    proc = start_example("01_first_run.py", tmp_path)
    model = FinancialModel(n_banks=30, scenario="asset_crash", brain="rule_based", rng=1)
    model.run_for(60)
    df = model.datacollector.get_model_vars_dataframe()
    cols = ["price", "n_defaults", "mean_capital_ratio", "systemic_risk_index"]
    out = example_output(proc, tmp_path)

    assert out[0].split() == cols
    rows = [line.split() for line in out[1:8]]
    assert [int(r[0]) for r in rows] == list(range(0, 61, 10))
    printed = np.array([[float(x) for x in r[1:]] for r in rows])
    np.testing.assert_allclose(printed, df[cols].iloc[::10].to_numpy(), atol=1e-6, rtol=0)
    assert printed[-1, 0] < 0.9  # the asset crash shows in the price
    assert out[8] == ""

    m = re.fullmatch(r"largest surviving bank (\d+): (\{.*\})", out[9])
    assert m, out[9]
    bank_id, sheet = int(m[1]), ast.literal_eval(m[2])
    alive = np.flatnonzero(~model.ledger.defaulted)
    assert bank_id == alive[np.argmax(model.sheets.total_assets[alive])]
    truth = model.banks[bank_id].balance_sheet()
    assert list(sheet) == list(truth)
    assert sheet == {k: round(v, 2) for k, v in truth.items()}
    assert sheet["defaulted"] == 0

    m = re.fullmatch(r"most systemic banks: \[([\d, ]+)\]", out[10])
    assert m, out[10]
    top = [int(x) for x in m[1].split(",")]
    assert top == [r["bank"] for r in model.systemic_ranking(top=3)]
    from finsim_mesa.measures import initial_debtrank

    scores = initial_debtrank(model)  # the ranking's measure: DebtRank on the initial network
    assert not model.ledger.defaulted[top].any()
    assert scores[top[0]] == scores[alive].max()
    assert len(out) == 11


# ---------------------------------------------------------------- 02


def _cascade(fire_sales: bool) -> tuple[FinancialModel, int]:
    model = FinancialModel(n_banks=50, brain="passive", scenario="normal",
                           forced_deleveraging=fire_sales, price_impact=1.0,
                           marketable_share=0.5, rng=3)
    owed = np.asarray(model.ledger.exposure_matrix().sum(axis=0)).ravel()
    victim = int(owed.argmax())
    model.apply_shock("loss", 2.0, banks=[victim])
    model.apply_shock("price_crash", 0.03)
    model.run_for(10)
    return model, victim


def test_contagion_cascade(tmp_path):
    proc = start_example("02_contagion_cascade.py", tmp_path)
    runs = [_cascade(fire_sales) for fire_sales in (False, True)]
    out = example_output(proc, tmp_path)
    assert len(out) == 2
    pattern = (rf"fire sales (on |off): bank (\d+) failed -> (\d+) defaults, "
               rf"price ({NUM}), stress index ({NUM})")
    parsed = []
    for line, fire_sales, (model, victim) in zip(out, (False, True), runs, strict=True):
        m = re.fullmatch(pattern, line)
        assert m, line
        assert m[1] == ("on " if fire_sales else "off")
        assert int(m[2]) == victim and model.ledger.defaulted[victim]  # it did fail
        assert int(m[3]) == model.measures.n_defaults
        assert float(m[4]) == pytest.approx(model.measures.asset_price, abs=5e-4)
        assert float(m[5]) == pytest.approx(model.measures.stress_index, abs=5e-4)
        parsed.append((int(m[3]), float(m[4])))
    (off_defaults, off_price), (on_defaults, on_price) = parsed
    # the lesson: fire sales turn a couple of defaults into a systemic crisis
    assert off_defaults <= 2 < on_defaults and on_defaults > 10 * off_defaults
    assert on_price < off_price


# ---------------------------------------------------------------- 03


def _example_brain_class():
    """The ``Cautious`` brain as the example defines it (its imports and classes
    only, not its race)."""
    tree = ast.parse((EXAMPLES / "03_custom_brain.py").read_text())
    keep = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom | ast.ClassDef)]
    namespace: dict = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "03_custom_brain.py", "exec"),
         namespace)
    return namespace["Cautious"]


def test_custom_brain_does_what_its_docstring_says():
    """Lends while calm, hoards and sells as stress rises (sells below 8% capital)."""
    cautious = _example_brain_class()
    assert issubclass(cautious, Brain) and cautious.name == "cautious"
    stress = np.array([0.0, 0.25, 0.5, 1.0, 0.0, 1.0])
    obs = np.zeros((len(stress), len(OBS)))
    obs[:, OBS["market_stress"]] = stress
    obs[:, OBS["capital_ratio"]] = [0.12, 0.12, 0.12, 0.12, 0.05, 0.05]
    a = cautious().act(obs)
    assert a.shape == (len(stress), 4)
    lend, hoard, sell = a[:4, 0], a[:4, 1], a[:, 2]
    assert (np.diff(lend) < 0).all() and (np.diff(hoard) > 0).all()  # as stress rises
    assert lend[0] > hoard[0] and hoard[-1] > lend[-1]  # calm: lend; stressed: hoard
    np.testing.assert_array_equal(sell, [0, 0, 0, 0, 1, 1])  # sells below 8% capital only


def test_custom_brain(tmp_path):
    proc = start_example("03_custom_brain.py", tmp_path)
    brains = [_example_brain_class()(), "rule_based", "greedy", "passive"]
    expected = []  # (mean episode reward, mean defaults) per brain, seeds 0..2
    for brain in brains:
        rewards, defaults = [], []
        for seed in range(3):
            model = FinancialModel(n_banks=30, scenario="liquidity_crisis", brain=brain,
                                   rng=seed)
            model.run_for(100)
            assert model.t == 100
            rewards.append(model.datacollector.get_model_vars_dataframe()["mean_reward"].sum())
            defaults.append(model.measures.n_defaults)
        expected.append((np.mean(rewards), np.mean(defaults)))
    out = example_output(proc, tmp_path)
    assert len(out) == len(brains)
    pattern = rf"\s*(\w+): mean episode reward\s+({NUM}), mean defaults\s+({NUM})"
    for line, brain, (reward, n_defaults) in zip(out, brains, expected, strict=True):
        m = re.fullmatch(pattern, line)
        assert m, line
        assert m[1] == (brain if isinstance(brain, str) else "cautious")
        assert len(line.split(":")[0]) == 12  # names right-aligned in 12 columns
        assert float(m[2]) == pytest.approx(reward, abs=5e-4)
        assert float(m[3]) == pytest.approx(n_defaults, abs=0.05)


# ---------------------------------------------------------------- 04


def _vector(text: str) -> list[str]:
    m = re.fullmatch(r"\[\s*(.*?)\s*\]", text.strip())
    assert m, text
    return m[1].split()


def test_clearing_by_hand(tmp_path):
    out = example_output(start_example("04_clearing_by_hand.py", tmp_path), tmp_path)
    lines = dict(line.split(None, 1) for line in out)
    assert list(lines) == ["payments", "defaulted", "recovery", "rounds"]

    L = np.array([[0, 4, 0], [0, 0, 3], [2, 0, 0]], dtype=float)
    result = eisenberg_noe(L, 0.9 * np.array([20.0, 20.0, 10.0]),
                           external_liabilities=np.array([17.0, 18.0, 8.0]))
    payments = np.array([float(x) for x in _vector(lines["payments"])])
    defaulted = [{"True": True, "False": False}[x] for x in _vector(lines["defaulted"])]
    recovery = np.array([float(x) for x in _vector(lines["recovery"])])

    np.testing.assert_allclose(payments, result.payments, atol=1e-9)
    assert defaulted == result.defaulted.tolist()
    np.testing.assert_allclose(recovery, result.recovery.round(3))
    assert int(lines["rounds"]) == result.rounds
    # and the figures the docstring derives by hand: bank 0 has 18 + 2 = 20 < 4 + 17
    np.testing.assert_allclose(payments, [20.0, 21.0, 10.0])
    assert defaulted == [True, False, False]
    np.testing.assert_allclose(recovery, [round(20 / 21, 3), 1.0, 1.0])


# ---------------------------------------------------------------- 05


def _batch_run_drops_last_step() -> bool:
    """Mesa 3.3's batch_run reports each run's second-to-last collected row as
    its last (mesa issue #2514); later versions report the last. Probe it."""

    class Counter(mesa.Model):
        def __init__(self, rng=None):
            super().__init__(rng=rng)
            self.n = 0
            self.datacollector = mesa.DataCollector({"n": "n"})
            self.datacollector.collect(self)

        def step(self):
            self.n += 1
            self.datacollector.collect(self)
            self.running = self.n < 3

    rows = mesa.batch_run(Counter, parameters={}, max_steps=10, number_processes=1,
                          display_progress=False)
    assert max(r["n"] for r in rows) in (2, 3)
    return max(r["n"] for r in rows) == 2


def test_sweep(tmp_path):
    proc = start_example("05_sweep.py", tmp_path)
    drops_last = _batch_run_drops_last_step()
    expected = {}  # scenario -> mean final default rate per capital ratio, seeds 1..3
    for scenario in ("asset_crash", "normal", "systemic"):
        for cr in (0.08, 0.12):
            rates = []
            for seed in (1, 2, 3):
                m = FinancialModel(scenario=scenario, capital_ratio=cr, n_banks=30,
                                   agent_collect_every=0, rng=seed)
                m.run_for(100)
                assert m.t == 100 or m.collapsed
                series = m.datacollector.get_model_vars_dataframe()["default_rate"]
                assert series.iloc[-1] == m.measures.default_rate
                rates.append(series.iloc[-2] if drops_last else series.iloc[-1])
            expected.setdefault(scenario, []).append(np.mean(rates))
    out = example_output(proc, tmp_path)

    assert out[0].split() == ["capital_ratio", "0.08", "0.12"]
    assert out[1].split() == ["scenario"]
    table = {}
    for line in out[2:]:
        name, *values = line.split()
        table[name] = [float(v) for v in values]
    assert list(table) == list(expected)
    for scenario, printed in table.items():
        np.testing.assert_allclose(printed, expected[scenario], atol=5e-7, rtol=0,
                                   err_msg=scenario)
    assert table["systemic"][0] > 0.2 and table["normal"] == [0.0, 0.0]

