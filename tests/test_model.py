"""FinancialModel: stages, Mesa integration, determinism, brains, topologies, data."""

import inspect
import subprocess
import sys

import mesa
import networkx as nx
import numpy as np
import pandas as pd
import pytest

from finsim_mesa import BRAINS, Brain, BrainError, ConfigError, FinancialModel
from finsim_mesa.agents.bank import Bank
from finsim_mesa.model import MODEL_REPORTERS
from finsim_mesa.observation import OBS_DIM, OBS_FIELDS
from finsim_mesa.scenarios import list_scenarios


def test_issue_example_runs():
    model = FinancialModel(n_banks=50, scenario="asset_crash", brain="myopic", rng=42)
    model.run_for(100)
    df = model.datacollector.get_model_vars_dataframe()
    assert len(df) == model.t + 1  # initial row plus one per step
    assert set(MODEL_REPORTERS) <= set(df.columns)
    assert model.t == 100 or model.collapsed
    assert not model.running


def test_banks_are_mesa_agents_on_a_network_grid():
    m = FinancialModel(n_banks=20, rng=1)
    assert isinstance(m.grid, mesa.space.NetworkGrid)
    assert len(m.agents) == 20
    for bank in m.agents:
        assert isinstance(bank, Bank)
        assert bank.pos == bank.bank_id
        assert m.grid.G.nodes[bank.pos]["agent"] == [bank]
    b = m.banks[3]
    assert b.equity == m.ledger.equity[3] and b.cash == m.ledger.cash[3]
    sheet = b.balance_sheet()
    assets = sheet["cash"] + sheet["securities"] + sheet["other_assets"] + \
        sheet["interbank_assets"]
    assert assets == pytest.approx(sheet["total_assets"])
    assert assets - sheet["deposits"] - sheet["interbank_liabilities"] == \
        pytest.approx(sheet["equity"])


def test_stage_order_and_names(stage_watch):
    """step() runs the eight stages once each, in order (calls recorded, not read
    from the source)."""
    stages = ["shock", "observe", "decide", "act", "settle", "clear", "price", "record"]
    m = FinancialModel(n_banks=10, rng=1)
    watched = stage_watch(m)
    m.step()
    assert watched["calls"] == stages
    m.step()
    assert watched["calls"] == stages * 2


def test_calibration_targets():
    m = FinancialModel(n_banks=200, capital_ratio=0.11, interbank_share=0.15, rng=3)
    cr = m.sheets.capital_ratio
    np.testing.assert_allclose(cr, 0.11, rtol=1e-9)
    ta = m.sheets.total_assets
    share = m.sheets.interbank_assets.sum() / ta.sum()
    assert 0.10 < share <= 0.15 + 1e-12  # raised assets of net borrowers dilute it a bit
    assert np.all(m.ledger.deposits >= 0.1 * 0.99 * m.ledger.deposits.min())
    assert abs(m.sheets.total_assets.mean() / 100.0 - 1) < 0.35


def frames(seed, **kw):
    m = FinancialModel(n_banks=25, scenario="systemic", brain="random", rng=seed, **kw)
    m.run_for(40)
    return m.datacollector.get_model_vars_dataframe(), m.datacollector.get_agent_vars_dataframe()


def test_same_seed_identical_dataframes_different_seed_differs():
    a_model, a_agents = frames(7)
    b_model, b_agents = frames(7)
    pd.testing.assert_frame_equal(a_model, b_model)
    pd.testing.assert_frame_equal(a_agents, b_agents)
    c_model, _ = frames(8)
    assert not a_model.equals(c_model)


def _seeded_batch_run(seeds, processes):
    params = {"scenario": ["normal", "asset_crash"], "n_banks": [12], "steps": [15]}
    kwargs = {}
    if "rng" in inspect.signature(mesa.batch_run).parameters:
        kwargs["rng"] = seeds  # Mesa >= 3.4: seeds are batch_run's own argument
    else:
        params["rng"] = seeds  # Mesa 3.3: a model parameter like any other
    res = mesa.batch_run(FinancialModel, parameters=params, max_steps=15,
                         number_processes=processes, data_collection_period=1,
                         display_progress=False, **kwargs)
    df = pd.DataFrame(res)
    if "rng" not in df:
        df["rng"] = df["iteration"].map(dict(enumerate(seeds)))
    return df.sort_values(["scenario", "rng", "Step", "AgentID"]).reset_index(drop=True)


def test_batch_run_is_deterministic_across_processes():
    one = _seeded_batch_run([1, 2], 1)
    two = _seeded_batch_run([1, 2], 2)
    cols = ["scenario", "rng", "Step", "AgentID", "price", "n_defaults", "total_equity",
            "debtrank_total", "equity", "cash"]
    pd.testing.assert_frame_equal(one[cols], two[cols])
    # 2 scenarios x 2 seeds x 12 banks x at least 15 collections (Mesa versions
    # differ on whether the final step is included)
    assert len(one) >= 2 * 2 * 15 * 12 and len(one) % (2 * 2 * 12) == 0
    # different seeds really differ
    a = one[(one.scenario == "normal") & (one.Step == one.Step.max())]
    assert not np.allclose(a[a.rng == 1].equity.to_numpy(), a[a.rng == 2].equity.to_numpy())


def test_batch_run_with_iterations_as_in_the_issue():
    # Mesa 3.5 deprecates iterations= (a DeprecationWarning) but it must still work
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        res = mesa.batch_run(FinancialModel,
                             parameters={"scenario": ["normal", "systemic"], "n_banks": [10]},
                             iterations=2, max_steps=5, number_processes=1,
                             display_progress=False)
    assert len({(r["scenario"], r["iteration"]) for r in res}) == 4


@pytest.mark.parametrize("scenario", sorted(list_scenarios()))
@pytest.mark.parametrize("brain", sorted(BRAINS))
def test_every_scenario_and_brain_runs(scenario, brain):
    m = FinancialModel(n_banks=15, scenario=scenario, brain=brain, steps=30, rng=11)
    m.run_for(30)
    m.check()
    assert m.t >= 1
    assert (m.decisions.actions >= 0).all() and (m.decisions.actions <= 1).all()


def test_brain_per_bank_by_list_mapping_and_instance():
    class Counter(Brain):
        name = "counter"

        def __init__(self):
            self.calls = []

        def act(self, obs):
            self.calls.append(len(obs))
            return np.full((len(obs), 4), 0.25)

    c = Counter()
    m = FinancialModel(n_banks=6, brain={0: c, 1: c, "default": "passive"}, rng=1)
    m.step()
    assert c.calls == [2]  # one batched call for both banks
    assert m.brains.names == ["counter", "counter"] + ["passive"] * 4
    np.testing.assert_allclose(m.decisions.actions[:2], 0.25)
    m = FinancialModel(n_banks=3, brain=["greedy", "passive", c], rng=1)
    assert m.banks[0].brain == "greedy" and m.banks[2].brain == "counter"
    with pytest.raises(ConfigError, match="one per bank"):
        FinancialModel(n_banks=3, brain=["greedy"], rng=1)
    with pytest.raises(ConfigError, match="bank ids"):
        FinancialModel(n_banks=3, brain={7: "greedy"}, rng=1)


@pytest.mark.parametrize(("output", "needle"), [
    (lambda obs: np.full((len(obs), 4), np.nan), "NaN"),
    (lambda obs: np.full((len(obs), 4), np.inf), "NaN or infinite"),
    (lambda obs: np.zeros((len(obs), 3)), "shape"),
    (lambda obs: np.full((len(obs), 4), 2.0), r"outside \[0, 1\]"),
    (lambda obs: "buy", "not an array"),
])
def test_bad_brain_output_names_the_brain(output, needle):
    class Bad(Brain):
        name = "badbrain"

        def act(self, obs):
            return output(obs)

    m = FinancialModel(n_banks=5, brain=Bad(), rng=1)
    with pytest.raises(BrainError, match=needle) as err:
        m.step()
    assert "badbrain" in str(err.value)


def test_observation_matrix_documented_and_bounded():
    m = FinancialModel(n_banks=30, scenario="systemic", rng=2)
    m.run_for(20)
    obs = m.observe()
    assert obs.shape == (30, OBS_DIM) == (30, len(OBS_FIELDS))
    assert np.isfinite(obs).all()
    assert obs.min() >= -1 and obs.max() <= 2


def test_reward_components_recorded_and_combined():
    m = FinancialModel(n_banks=20, scenario="asset_crash", reward_liquidity_weight=0.3,
                       reward_system_risk_weight=0.7, rng=5)
    m.run_for(25)
    c = m.reward.components
    cfg = m.config
    expect = (cfg.reward_profit_weight * c["profit"] + 0.3 * c["liquidity"]
              - cfg.reward_default_penalty * c["default"] - 0.7 * c["system_risk"])
    live = ~(m.ledger.defaulted & (m.ledger.default_step < m.t))
    np.testing.assert_allclose(m.reward.per_bank[live], expect[live])
    df = m.datacollector.get_model_vars_dataframe()
    assert {"reward_profit", "reward_liquidity", "reward_default",
            "reward_system_risk"} <= set(df.columns)


@pytest.mark.parametrize("topology", ["barabasi_albert", "core_periphery", "erdos_renyi"])
def test_topologies(topology):
    m = FinancialModel(n_banks=60, topology=topology, mean_degree=5, core_fraction=0.1, rng=4)
    g = m.graph
    assert g.number_of_nodes() == 60
    if topology == "barabasi_albert":
        assert g.number_of_edges() == 2 * (60 - 2)
    elif topology == "core_periphery":
        core = set(range(6))
        assert all(g.has_edge(i, j) for i in core for j in core if i < j)  # density 1
        assert all(set(g.neighbors(i)) <= core for i in range(6, 60))
    else:
        assert 3.0 < 2 * g.number_of_edges() / 60 < 7.0
    m.run_for(5)
    m.check()


def test_user_graph_and_exposure_matrix():
    g = nx.DiGraph()
    g.add_edges_from([("a", "b"), ("b", "c"), ("c", "a"), ("a", "c")])
    m = FinancialModel(graph=g, rng=1)
    assert m.n_banks == 3 and m.node_labels == ["a", "b", "c"]
    assert {(int(x), int(y)) for x, y in zip(m.ledger.loans.lender, m.ledger.loans.borrower,
                                             strict=True)} == {(0, 1), (1, 2), (2, 0), (0, 2)}
    E = np.array([[0, 5.0, 0, 0], [0, 0, 3.0, 0], [1.0, 0, 0, 2.0], [0, 0, 0, 0]])
    m = FinancialModel(exposures=E, rng=1)
    np.testing.assert_allclose(m.ledger.exposure_matrix().toarray(), E)
    m.run_for(5)
    m.check()
    with pytest.raises(ConfigError, match="square"):
        FinancialModel(exposures=np.ones((2, 3)))
    with pytest.raises(ConfigError, match="non-negative"):
        FinancialModel(exposures=np.array([[0, -1.0], [1.0, 0]]))
    with pytest.raises(ConfigError, match="graph has 3 nodes"):
        FinancialModel(graph=g, n_banks=5)


def test_agent_collection_every_k_steps():
    m = FinancialModel(n_banks=10, agent_collect_every=5, rng=1)
    m.run_for(12)
    agents = m.datacollector.get_agent_vars_dataframe()
    steps = sorted(set(agents.index.get_level_values(0)))
    assert steps == [0, 5, 10]
    assert len(m.datacollector.get_model_vars_dataframe()) == 13
    m = FinancialModel(n_banks=10, agent_collect_every=0, rng=1)
    m.run_for(3)
    assert not m.datacollector.agent_reporters
    assert not m.datacollector._agent_records


def test_running_false_at_episode_end_and_on_collapse():
    m = FinancialModel(n_banks=10, steps=7, rng=1)
    m.run_for(100)
    assert m.t == 7 and not m.running and not m.collapsed
    m = FinancialModel(n_banks=10, steps=50, brain="passive", collapse_threshold=0.2, rng=1)
    m.apply_shock("default", banks=[0, 1, 2])
    m.run_for(50)
    assert m.collapsed and not m.running and m.t < 50


def test_default_contagion_through_the_network():
    """A forced default resolved through clearing hurts its creditors."""
    m = FinancialModel(n_banks=30, brain="passive", scenario="normal", rng=9)
    E = m.ledger.exposure_matrix()
    victim = int(np.argmax(np.asarray(E.sum(axis=0)).ravel()))  # most borrowed-from bank
    creditors = E[:, victim].nonzero()[0]
    eq_before = m.ledger.equity[creditors].copy()
    m.apply_shock("loss", 3.0, banks=[victim])  # deep insolvency
    m.apply_shock("default", banks=[victim])
    m.step()
    assert m.ledger.resolved[victim]
    assert (m.ledger.equity[creditors] < eq_before).any()
    assert m.flows.contagion_depth >= 1
    m.check()


def test_ranking_stays_informative_in_a_crisis():
    """In `systemic` at step 60 today's DebtRank is ~0 for every bank (exposures
    called in); the ranking uses the initial network: the same figures as
    DebtRank per bank computed on a fresh model of the same seed at step 0."""
    m = FinancialModel(n_banks=30, scenario="systemic", brain="rule_based", rng=3,
                       collapse_threshold=1.0)
    fresh = FinancialModel(n_banks=30, scenario="systemic", brain="rule_based", rng=3)
    initial = fresh.debtrank_per_bank()
    m.run_for(60)
    top = m.systemic_ranking(top=5)
    assert len(top) == 5 and top[0]["debtrank"] > 0.01
    for row in top:
        assert row["debtrank"] == pytest.approx(initial[row["bank"]], rel=1e-12)
        assert not m.ledger.defaulted[row["bank"]]
    alive = np.flatnonzero(~m.ledger.defaulted)
    assert top[0]["bank"] == alive[np.argmax(initial[alive])]


def test_summary_and_ranking():
    m = FinancialModel(n_banks=30, rng=2)
    m.run_for(10)
    s = m.summary(top=3)
    assert len(s["most_systemic"]) == 3
    scores = [b["debtrank"] for b in s["most_systemic"]]
    assert scores == sorted(scores, reverse=True)
    m2 = FinancialModel(n_banks=30, rng=2, ranking_every=5)
    m2.run_for(10)
    np.testing.assert_allclose(m2.sib_scores, m.debtrank_per_bank())


def test_import_does_not_import_torch():
    code = "import sys, finsim_mesa; m = finsim_mesa.FinancialModel(n_banks=5, rng=1); " \
           "m.step(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_large_exposure_limit_caps_new_lending():
    m = FinancialModel(n_banks=30, brain="greedy", large_exposure_limit=0.0, rng=2)
    for _ in range(10):
        m.step()
        assert m.flows.interbank_volume == 0.0  # greedy banks want to lend, the limit says no
    loose = FinancialModel(n_banks=30, brain="greedy", large_exposure_limit=5.0, rng=2)
    tight = FinancialModel(n_banks=30, brain="greedy", large_exposure_limit=0.6, rng=2)
    loose.run_for(30)
    tight.run_for(30)
    assert tight.measures.interbank_exposure < loose.measures.interbank_exposure
    # after a step, no pair that got new money is above the limit at lending time
    m = FinancialModel(n_banks=30, brain="greedy", large_exposure_limit=0.6, rng=4)
    m.run_for(5)
    m.t += 1
    m.shock()
    eq = m.ledger.equity.copy()  # the limit applies to equity at lending time
    before = m.ledger.exposure_matrix().toarray()
    m.act(m.decide(m.observe()))
    after = m.ledger.exposure_matrix().toarray()
    grew = after > before + 1e-9
    assert grew.any()
    limit = 0.6 * np.maximum(eq, 0)[:, None] * np.ones_like(after)
    assert np.all(after[grew] <= np.maximum(limit[grew], before[grew]) + 1e-6)


def test_docs_list_every_observation_column_and_action():
    from pathlib import Path

    from finsim_mesa.observation import ACTIONS

    doc = (Path(__file__).parent.parent / "docs" / "design.md").read_text()
    for i, (name, meaning) in enumerate(OBS_FIELDS):
        assert f"| {i} | `{name}` | {meaning} |" in doc
    for i, (name, meaning) in enumerate(ACTIONS):
        assert f"| {i} | `{name}` | {meaning} |" in doc


class _Recorder(Brain):
    """Passive, but keeps every observation matrix it is given."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def act(self, observations):
        self.seen.append(observations)
        return np.zeros((len(observations), 4))


class _ColumnRecorder(_Recorder):
    reads_columns = True


@pytest.mark.parametrize("recorder", [_Recorder, _ColumnRecorder])
def test_each_brain_gets_its_active_banks_rows_in_order(recorder):
    """The decide stage hands each brain a copy of its active banks' rows of the
    model's observation matrix, in bank order: row-major (a user's brain sees
    the arrays it always did, so its matrix products give the same bits) or,
    for a brain that reads columns, column-major. One brain for all banks,
    two brains on alternate banks, some in default."""
    layout = "F_CONTIGUOUS" if recorder.reads_columns else "C_CONTIGUOUS"
    one = recorder()
    m = FinancialModel(n_banks=20, brain=one, rng=3)
    m.step()
    np.testing.assert_array_equal(one.seen[-1], m.decisions.observations)
    assert one.seen[-1] is not m.decisions.observations and one.seen[-1].flags[layout]
    even, odd = recorder(), recorder()
    m = FinancialModel(n_banks=21, brain={**{i: even for i in range(0, 21, 2)},
                                          "default": odd}, rng=3)
    m.step()
    m.apply_shock("default", banks=[2, 3, 8])
    m.step()
    obs, active = m.decisions.observations, m.ledger.active
    for brain, start in ((even, 0), (odd, 1)):
        rows = [i for i in range(start, 21, 2) if active[i]]
        np.testing.assert_array_equal(brain.seen[-1], obs[rows])
        assert brain.seen[-1].flags[layout]
    assert not active[[2, 3, 8]].any()
