"""Nothing lost, nothing crashes: all-or-nothing steps, NaN-free arithmetic,
honest checks and clear errors for bad input (the model and the CLI)."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
from support import model_state

from finsim_mesa import Brain, BrainError, ConfigError, FinancialModel
from finsim_mesa.agents.brains import RuleBasedBrain
from finsim_mesa.cli import main
from finsim_mesa.errors import AccountingError
from finsim_mesa.infrastructure import layer
from finsim_mesa.market import capped_share


# ----------------------------------------------------------------- NaN-free
def test_capped_share_never_divides_by_nothing():
    part = np.array([-7e-16, -2.0, -1.0, 3.0, 1.0, 0.0, 5.0])
    whole = np.array([0.0, -1.0, 2.0, 2.0, 4.0, 0.0, 0.0])
    out = capped_share(part, whole)
    np.testing.assert_array_equal(out, [1.0, 1.0, 0.0, 1.0, 0.25, 1.0, 1.0])
    assert np.all(np.isfinite(out))


def test_margin_call_with_round_off_negative_cash_stays_finite():
    """The reviewer's case: cash −7e-16 after a payment and nothing called gave
    −inf, then NaN margin accounts, and every later step failed."""
    m = FinancialModel(n_banks=12, n_exchanges=1, n_ccps=1, brain="greedy", rng=3)
    m.run_for(3)
    L = m.ledger
    i = int(np.flatnonzero(L.active)[0])
    L.cash[i] = -7e-16
    L.equity[i] -= 7e-16 + 0.0  # the round-off sits on both sides
    called = layer.call_margin(L, m.ccps, m.router, m.margin_rate, m.config, m._sell, m.t)
    assert math.isfinite(called)
    assert np.all(np.isfinite(L.margin)) and np.all(np.isfinite(L.cash))
    m.run_for(5)
    assert np.all(np.isfinite(m.ledger.margin))


# ----------------------------------------------------------------- transactional steps
class FailsAt(Brain):
    """Acts like the rule-based brain, raises once at step ``when``."""

    name = "fails_at"

    def __init__(self, when: int, error: type[Exception] = RuntimeError) -> None:
        self.when, self.error, self.model, self.inner = when, error, None, RuleBasedBrain()

    def setup(self, model):
        self.model = model
        self.inner.setup(model)

    def act(self, obs):
        if self.model.t == self.when:
            self.when = -1
            raise self.error("boom")
        return self.inner.act(obs)


class NaNAt(FailsAt):
    def act(self, obs):
        if self.model.t == self.when:
            self.when = -1
            return np.full((len(obs), 4), np.nan)
        return self.inner.act(obs)


@pytest.mark.parametrize("kw", [dict(scenario="systemic"),
                                dict(scenario="liquidity_crisis", n_exchanges=2, n_ccps=1)])
@pytest.mark.parametrize("brain_cls, error", [(FailsAt, RuntimeError), (NaNAt, BrainError)])
def test_a_failed_step_leaves_the_model_exactly_as_before(kw, brain_cls, error):
    m = FinancialModel(n_banks=16, brain=brain_cls(6), rng=2, **kw)
    twin = FinancialModel(n_banks=16, brain="rule_based", rng=2, **kw)
    m.run_for(5)
    twin.run_for(5)
    before = model_state(m)
    rows = len(m.datacollector.get_model_vars_dataframe())
    agent_rows = len(m.datacollector.get_agent_vars_dataframe())
    steps = m.steps
    with pytest.raises(error):
        m.step()
    assert model_state(m) == before  # the price, shocks, counter: nothing moved
    assert m.t == 5 and m.steps == steps
    assert len(m.datacollector.get_model_vars_dataframe()) == rows
    assert len(m.datacollector.get_agent_vars_dataframe()) == agent_rows
    # a retry runs the very step that failed, exactly as a model that never failed
    m.run_for(10)
    twin.run_for(10)
    assert m.t == twin.t == 15 and m.steps == twin.steps
    df, tf = (x.datacollector.get_model_vars_dataframe() for x in (m, twin))
    assert df.equals(tf)
    if hasattr(m, "time"):  # Mesa >= 3.5: the clock and its step schedule recover too
        assert m.time == twin.time


@pytest.mark.parametrize("stage", ["clear", "price", "record"])
def test_a_step_failing_after_the_logs_grew_rolls_them_back(stage, monkeypatch):
    """A failure late in a step, after the shock log, the exchanges' histories
    and the router's audit have grown (the transaction holds these append-only
    logs by their length): all three are back to their length before the step,
    and the retried step gives what a model that never failed gives."""
    kw = dict(n_banks=16, scenario="systemic", n_exchanges=2, n_ccps=1, rng=5)
    m, twin = FinancialModel(**kw), FinancialModel(**kw)
    m.run_for(4)
    twin.run_for(4)
    before = model_state(m)
    logs = (len(m.shock_log), [len(e.queue.history) for e in m.exchanges],
            m.router.transactions())
    real = getattr(m, stage)

    def late_failure():
        real()
        m.apply_shock("price_crash", 0.05)  # a shock inside the step: the log grows
        assert len(m.shock_log) > logs[0] and m.router.transactions() > logs[2]
        raise RuntimeError("late")

    monkeypatch.setattr(m, stage, late_failure)
    with pytest.raises(RuntimeError, match="late"):
        m.step()
    assert (len(m.shock_log), [len(e.queue.history) for e in m.exchanges],
            m.router.transactions()) == logs
    monkeypatch.undo()  # the stage is the model's own again
    assert model_state(m) == before
    m.run_for(6)
    twin.run_for(6)
    assert len(m.shock_log) == len(twin.shock_log)
    assert m.router.audit().equals(twin.router.audit())
    assert m.datacollector.get_model_vars_dataframe().equals(
        twin.datacollector.get_model_vars_dataframe())


@pytest.mark.parametrize("kw", [dict(scenario="systemic", brain="greedy"),
                                dict(scenario="liquidity_crisis", n_exchanges=2, n_ccps=1),
                                dict(n_assets=3, brain="random")])
def test_the_state_a_step_replaces_is_never_changed_in_place(kw):
    """A step's transaction holds the dataclasses of REPLACED_STATE by a shallow
    copy, which is safe only if no stage writes into their arrays: with every
    array in them made read-only before each step, steps run (a write would
    raise), defaults and shocks included."""
    from finsim_mesa.state import REPLACED_STATE

    m = FinancialModel(n_banks=20, rng=3, **kw)
    m.apply_shock("default", banks=[1, 2])
    for _ in range(12):
        for name in REPLACED_STATE:
            for value in vars(getattr(m, name)).values():
                arrays = value.values() if isinstance(value, dict) else [value]
                for a in arrays:
                    if isinstance(a, np.ndarray):
                        a.flags.writeable = False
        m.step()
    assert m.t == 12 and m.measures.n_defaults >= 2


def test_the_transactions_shallow_copy_is_copy_copy():
    import copy

    from finsim_mesa.state import REPLACED_STATE, _shallow

    m = FinancialModel(n_banks=8, rng=1, n_exchanges=1, n_ccps=1)
    m.run_for(2)
    for name in REPLACED_STATE:
        obj = getattr(m, name)
        ours, ref = _shallow(obj), copy.copy(obj)
        assert type(ours) is type(obj) and ours is not obj
        assert vars(ours).keys() == vars(ref).keys()
        assert all(vars(ours)[k] is vars(ref)[k] for k in vars(ref))  # the same values

    class Slotted:
        __slots__ = ("x",)

    one = Slotted()
    one.x = [1]
    two = _shallow(one)  # no __dict__: copy.copy's way
    assert two is not one and two.x is one.x


def test_a_failure_while_recording_data_is_rolled_back():
    m = FinancialModel(n_banks=10, rng=1)
    m.run_for(3)
    calls = {"n": 0}

    def flaky(model):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ValueError("reporter broke")
        return 1.0

    m.datacollector._new_model_reporter("flaky", flaky)
    m.datacollector.model_vars["flaky"] = [1.0] * len(m.datacollector.model_vars["price"])
    m.step()
    lengths = {k: len(v) for k, v in m.datacollector.model_vars.items()}
    before = model_state(m)
    with pytest.raises(ValueError, match="reporter broke"):
        m.step()
    assert {k: len(v) for k, v in m.datacollector.model_vars.items()} == lengths
    assert model_state(m) == before
    m.step()
    assert len(set(len(v) for v in m.datacollector.model_vars.values())) == 1


# ----------------------------------------------------------------- honest checks
def test_ledger_check_tolerance_is_the_systems_size_at_the_start():
    m = FinancialModel(n_banks=10, rng=1)
    L = m.ledger
    scale0 = L.initial_scale
    assert scale0 == pytest.approx(np.abs(m.sheets.total_assets).max())
    # a total collapse: almost nothing left, and round-off of the sums it came from
    L.cash[:] = 1e-6
    L.holdings[:] = 0.0
    L.other_assets[:] = 0.0
    L.loans.keep(np.zeros(len(L.loans), dtype=bool))
    L.deposits[:] = 0.0
    L.equity[:] = L.total_assets() - L.total_liabilities()
    L.equity[0] += 1e-13 * scale0  # round-off of a step that moved sums of size scale0
    L.external_in["collapse"] = float(L.system_cash() - L.initial_cash_total)
    L.check()  # measured against the start: fine
    L.equity[0] += 1e-6 * scale0
    with pytest.raises(AccountingError, match="bank 0"):
        L.check()


def test_defaults_are_reported_at_once_after_a_default_shock():
    m = FinancialModel(n_banks=10, rng=1)
    m.step()
    m.apply_shock("default", banks=[2, 5])
    assert m.measures.n_defaults == 2 and m.measures.default_rate == 0.2


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("rng", [-1, 1.5, "abc", float("nan"), True, [1.5]])
def test_bad_seeds_name_the_parameter(rng):
    with pytest.raises(ConfigError, match="rng = "):
        FinancialModel(n_banks=5, rng=rng)


@pytest.mark.parametrize("steps", [float("nan"), None, float("inf"), -1, 1.5, "3", True])
def test_run_for_refuses_what_is_not_a_count(steps):
    m = FinancialModel(n_banks=5, rng=1)
    with pytest.raises(ConfigError, match="steps = "):
        m.run_for(steps)
    assert m.t == 0


@pytest.mark.parametrize("kw, needle", [
    (dict(seeds="abc"), "seeds = "), (dict(seeds=[1.5, 2]), "integers >= 0"),
    (dict(seeds=[-1]), "integers >= 0"), (dict(seeds=True), "seeds = "),
    (dict(seeds=0), "positive"), (dict(actions={1: "abc"}), r"actions\[1\]"),
    (dict(actions={1: [0, 0, 1j, 0]}), r"actions\[1\]"), (dict(actions=[1, 2]), "mapping"),
    (dict(steps=2.5), "steps = "), (dict(steps=float("nan")), "steps = "),
])
def test_what_if_bad_input(kw, needle):
    m = FinancialModel(n_banks=6, rng=1)
    with pytest.raises(ConfigError, match=needle):
        m.what_if(**({"steps": 2, "seeds": 2} | kw))


def test_what_if_with_one_seed_says_n_a():
    m = FinancialModel(n_banks=6, rng=1)
    res = m.what_if(steps=2, seeds=1)
    assert res.summary["std"].isna().all() and res.summary["ci95_low"].isna().all()
    assert "n/a" in str(res) and "nan" not in str(res).lower()


@pytest.mark.parametrize("exposures, needle", [
    ([["a", "b"], ["c", "d"]], "real numbers"),
    (np.array([[0, 1 + 1j], [1, 0]]), "real numbers"),
    ([[0, 1], [1]], "matrix of numbers|square"),
])
def test_bad_exposures(exposures, needle):
    with pytest.raises(ConfigError, match=needle):
        FinancialModel(exposures=exposures, rng=1)


def test_brain_problems_are_named():
    with pytest.raises(ConfigError, match="that is a class; pass an instance"):
        FinancialModel(n_banks=5, brain=RuleBasedBrain, rng=1)
    with pytest.raises(ConfigError, match="brain mapping has keys"):
        FinancialModel(n_banks=5, brain={True: "greedy"}, rng=1)

    class Complex(Brain):
        def act(self, obs):
            return np.full((len(obs), 4), 0.5 + 0.1j)

    m = FinancialModel(n_banks=5, brain=Complex(), rng=1)
    with pytest.raises(BrainError, match="not an array of numbers"):
        m.step()


def test_user_networks():
    g = nx.Graph([(0, 1)])
    with pytest.raises(ConfigError, match="not both"):
        FinancialModel(graph=g, exposures=np.array([[0, 1.0], [0, 0]]), rng=1)
    # two banks are a valid network (the generator's edges_per_node does not apply)
    m = FinancialModel(graph=g, rng=1)
    assert m.config.topology == "user" and m.n_banks == 2
    m.run_for(3)
    m = FinancialModel(exposures=np.array([[0, 2.0], [1.0, 0]]), rng=1)
    assert m.n_banks == 2 and m.ledger.loans.owed.sum() > 0
    with pytest.raises(ConfigError, match="topology = 'user'"):
        FinancialModel(n_banks=5, topology="user", rng=1)


def test_overflowing_and_oversized_models_are_refused(monkeypatch):
    with pytest.raises(ConfigError, match="mean_total_assets"):
        FinancialModel(n_banks=5, mean_total_assets=1e300, rng=1)
    import finsim_mesa.resources as resources

    monkeypatch.setattr(resources, "available_memory", lambda: 8 * 2**30)
    with pytest.raises(ConfigError, match=r"n_banks = 10000000 .* GiB of memory; 8\.0 GiB"):
        FinancialModel(n_banks=10**7, rng=1)
    with pytest.raises(ConfigError, match="1,999,000 links"):  # a complete graph
        monkeypatch.setattr(resources, "available_memory", lambda: 0.5 * 2**30)
        FinancialModel(n_banks=2000, topology="erdos_renyi", mean_degree=1e9, rng=1)


@pytest.mark.parametrize("kw", [dict(topology="barabasi_albert", edges_per_node=3),
                                dict(topology="erdos_renyi", mean_degree=6.0),
                                dict(topology="core_periphery", core_fraction=0.1,
                                     core_density=0.5, edges_per_node=2)])
def test_expected_links_match_the_generated_networks(kw):
    from finsim_mesa.config import make_config
    from finsim_mesa.resources import expected_links

    m = FinancialModel(n_banks=800, rng=4, **kw)
    estimate = expected_links(make_config(None, n_banks=800, **kw))
    assert estimate == pytest.approx(m.graph.number_of_edges(), rel=0.05)


def test_non_utf8_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe n_banks: 3")
    with pytest.raises(ConfigError, match="not UTF-8"):
        FinancialModel(config=bad, rng=1)


# ----------------------------------------------------------------- the CLI
@pytest.mark.parametrize("argv, needle", [
    (["simulate", "--out", "{f}/x.csv"], "is a file, not a folder"),
    (["simulate", "--plot", "{f}/x.png"], "is a file, not a folder"),
    (["sweep", "--param", "n_banks=5", "--out", "{f}/x.csv"], "is a file, not a folder"),
    (["config", "-o", "{f}/x.yaml"], "is a file, not a folder"),
    (["simulate", "--out", "{d}"], "is a folder"),
])
def test_cli_checks_output_paths_before_any_work(argv, needle, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    import finsim_mesa.cli.simulate as simulate
    import finsim_mesa.sweeps as sweeps

    def no_work(*a, **k):
        raise AssertionError("ran before checking the output path")

    monkeypatch.setattr(simulate, "run_model", no_work)  # the name simulate calls
    monkeypatch.setattr(sweeps, "run_sweep", no_work)
    argv = [a.format(f=blocker, d=tmp_path) for a in argv]
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("argv, needle", [
    (["simulate", "--set", "n_banks=[1"], "not valid YAML"),
    (["simulate", "--seed", "-1"], "--seed -1"),
    (["sweep", "--param", "n_banks=[1"], "not valid YAML"),
])
def test_cli_bad_flags(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("text, needle", [
    ("parameters: abc\n", "parameters must be a mapping"),
    ("parameters: {n_banks: [5]}\nseeds: abc\n", "seeds = 'abc'"),
    ("parameters: {n_banks: [5]}\nsteps: -3\n", "steps = -3"),
])
def test_cli_bad_grid_files(text, needle, tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    assert main(["sweep", "--grid", str(grid)]) == 2
    assert needle in capsys.readouterr().err


def test_cli_outputs_are_written_atomically(tmp_path, capsys):
    out = tmp_path / "run.csv"
    out.write_text("old results\n")
    assert main(["simulate", "--banks", "6", "--steps", "3", "--seed", "1", "-q",
                 "--out", str(out)]) == 0
    assert out.read_text().startswith("step,")
    assert [p.name for p in tmp_path.iterdir()] == ["run.csv"]  # no temporary left
