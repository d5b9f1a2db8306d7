"""REST API end to end (FastAPI TestClient; a real uvicorn server for the load test).

Independent references: a simulation run through the API must equal a
FinancialModel built directly with the same parameters and seed; what-if and
recommendations must equal the Python API's on a twin model.
"""

from __future__ import annotations

import importlib.util
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the REST API needs the 'api' extra")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from fastapi.testclient import TestClient  # noqa: E402

from finsim_mesa.api import ApiLimits, create_app  # noqa: E402
from finsim_mesa.measures import MODEL_REPORTERS, report  # noqa: E402
from finsim_mesa.model import FinancialModel  # noqa: E402
from finsim_mesa.scenarios import list_scenarios  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(models_dir=str(tmp_path / "models"))) as c:
        yield c


def init(c, **body) -> str:
    r = c.post("/simulation/init", json=body)
    assert r.status_code == 200, r.text
    return r.json()["sim_id"]


def direct(steps: int, seed: int, **params) -> FinancialModel:
    m = FinancialModel(rng=seed, agent_collect_every=0, **params)
    for _ in range(steps):
        m.step()
    return m


def same_metrics(api: dict, model: FinancialModel) -> None:
    for key in MODEL_REPORTERS:
        assert api[key] == pytest.approx(float(report(model, key)), rel=1e-12, abs=1e-12), key
    assert api["step"] == model.t


# ---------------------------------------------------------------- the quick session
def test_readme_session_exact_requests(client):
    r = client.post("/simulation/init", json={"num_banks": 30, "scenario": "normal"})
    assert r.status_code == 200
    info = r.json()
    assert info["num_banks"] == 30 and info["scenario"] == "normal" and info["step"] == 0
    r = client.post("/simulation/run?num_steps=50")
    assert r.status_code == 200
    body = r.json()
    assert body["steps_run"] == 50 and body["step"] == 50
    # the drawn seed is reported: the same run is reproducible from it
    same_metrics(body["metrics"], direct(50, info["seed"], n_banks=30, scenario="normal",
                                         brain="rule_based"))
    risk = client.get("/metrics/risk").json()
    assert 0 <= risk["systemic_risk_index"] <= 1 and len(risk["most_systemic"]) == 5
    rec = client.get("/recommendations/0?steps=3&seeds=3").json()
    assert rec["bank_id"] == 0 and rec["action"] in {row["action"] for row in rec["table"]}


def test_simulation_matches_direct_model_and_reset_replays(client):
    sid = init(client, num_banks=20, scenario="liquidity_crisis", seed=7, brain="conservative")
    for _ in range(3):
        client.post(f"/simulation/step?sim_id={sid}")
    r = client.post(f"/simulation/run?sim_id={sid}&num_steps=7").json()
    ref = direct(10, 7, n_banks=20, scenario="liquidity_crisis", brain="conservative")
    same_metrics(r["metrics"], ref)
    same_metrics(client.get(f"/metrics?sim_id={sid}").json(), ref)
    hist = client.get(f"/metrics/history?sim_id={sid}").json()
    assert [h["step"] for h in hist] == list(range(1, 11))
    # reset: the same seed replays the same path; a new seed gives another one
    assert client.post(f"/simulation/reset?sim_id={sid}").json()["step"] == 0
    same_metrics(client.post(f"/simulation/run?sim_id={sid}&num_steps=10").json()["metrics"],
                 ref)
    client.post(f"/simulation/reset?sim_id={sid}", json={"seed": 8})
    other = client.post(f"/simulation/run?sim_id={sid}&num_steps=10").json()["metrics"]
    same_metrics(other, direct(10, 8, n_banks=20, scenario="liquidity_crisis",
                               brain="conservative"))


def test_episode_end_stops_a_run_then_conflict(client):
    init(client, num_banks=10, steps=5, seed=1)
    r = client.post("/simulation/run?num_steps=50").json()
    assert r["steps_run"] == 5 and r["running"] is False
    r = client.post("/simulation/step")
    assert r.status_code == 409 and "reset" in r.json()["detail"]


def test_bank_metrics_equal_the_ledger(client):
    init(client, num_banks=15, seed=3)
    client.post("/simulation/run?num_steps=4")
    b = client.get("/metrics/bank/6").json()
    m = direct(4, 3, n_banks=15)
    sheet = m.banks[6].balance_sheet()
    for k, v in sheet.items():
        assert b["balance_sheet"][k] == pytest.approx(v, rel=1e-12), k
    assert b["equity_initial"] == pytest.approx(m.ledger.equity0[6])
    assert b["debtrank"] == pytest.approx(m.debtrank_per_bank()[6])
    assert list(b["last_action"].values()) == pytest.approx(m.decisions.actions[6].tolist())
    assert b["observation"]["capital_ratio"] == pytest.approx(m.decisions.observations[6, 0])
    assert client.get("/metrics/bank/15").status_code == 404


def test_topology_edges_carry_the_exposures(client):
    init(client, num_banks=12, seed=4, n_exchanges=2, n_ccps=1)
    client.post("/simulation/run?num_steps=3")
    topo = client.get("/network/topology").json()
    kinds = {n["type"] for n in topo["nodes"]}
    assert kinds == {"bank", "exchange", "ccp"} and len(topo["nodes"]) == 15
    m = direct(3, 4, n_banks=12, n_exchanges=2, n_ccps=1)
    lent = np.zeros(12)
    for e in topo["edges"]:
        if e["type"] in ("loan", "cleared_loan") and e["source"] < 12:
            lent[e["source"]] += e["exposure"]
    # every bank's receivables (bilateral + cleared through the CCP) are on its edges
    assert lent == pytest.approx(m.sheets.interbank_assets, rel=1e-9, abs=1e-9)
    for n in topo["nodes"]:
        if n["type"] == "bank":
            assert n["equity"] == pytest.approx(m.ledger.equity[n["id"]], rel=1e-12)


def test_scenarios_list_set_and_user_definition(client):
    names = [s["name"] for s in client.get("/scenarios").json()]
    assert set(list_scenarios()) <= set(names)
    init(client, num_banks=10, seed=2)
    client.post("/simulation/run?num_steps=2")
    r = client.post("/scenarios/set", json={"scenario": "asset_crash"}).json()
    assert r["scenario"] == "asset_crash" and r["step"] == 2  # switched, not restarted
    mine = {"name": "crash_at_3", "description": "a 40% crash at step 3", "crash_step": 3,
            "crash_magnitude": 0.4}
    r = client.post("/scenarios/set", json={"definition": mine, "restart": True}).json()
    assert r["scenario"] == "crash_at_3" and r["step"] == 0
    before = client.post("/simulation/run?num_steps=2").json()["metrics"]["price"]
    after = client.post("/simulation/step").json()["metrics"]["price"]
    assert after < 0.7 * before  # the user's crash happened
    assert "crash_at_3" in [s["name"] for s in client.get("/scenarios").json()]
    assert "crash_at_3" not in list_scenarios()  # kept by this service, not process-wide
    bad = client.post("/scenarios/set", json={"definition": {"name": "x", "crash_step": 2}})
    assert bad.status_code == 422 and "crash_magnitude" in bad.json()["detail"]
    both = client.post("/scenarios/set", json={"scenario": "normal", "definition": mine})
    assert both.status_code == 422


def test_shock_applies_now(client):
    init(client, num_banks=10, seed=5)
    client.post("/simulation/run?num_steps=2")
    p0 = client.get("/metrics").json()["price"]
    r = client.post("/scenarios/shock", json={"kind": "price_crash", "magnitude": 0.25}).json()
    assert r["metrics"]["price"] == pytest.approx(0.75 * p0, rel=1e-9)
    r = client.post("/scenarios/shock", json={"kind": "default", "banks": [1, 2]})
    assert r.json()["applied"]["banks"] == [1, 2]
    assert client.post("/simulation/step").json()["metrics"]["n_defaults"] >= 2
    for body in ({"kind": "loss", "magnitude": 0.5},            # needs banks
                 {"kind": "price_crash", "magnitude": 1.5},      # out of range
                 {"kind": "meteor"},                             # unknown kind
                 {"kind": "default", "banks": [99]}):            # no such bank
        r = client.post("/scenarios/shock", json=body)
        assert r.status_code == 422 and r.json()["detail"], body


def test_what_if_and_recommendations_equal_the_python_api(client):
    init(client, num_banks=12, seed=9)
    client.post("/simulation/run?num_steps=3")
    twin = direct(3, 9, n_banks=12)
    body = {"steps": 4, "seeds": 3, "shock": {"kind": "price_crash", "magnitude": 0.3},
            "bank": 2}
    r = client.post("/what_if", json=body).json()
    ref = twin.what_if(4, 3, shock={"kind": "price_crash", "magnitude": 0.3, "banks": None},
                       bank=2)
    got = {(d["outcome"]): d["mean"] for d in r["difference"]}
    for row in ref.difference.itertuples():
        assert got[row.outcome] == pytest.approx(row.mean, rel=1e-9, abs=1e-12)
    r = client.post("/what_if", json={"steps": 3, "seeds": 2, "actions": {"4": [0, 1, 1, 0]},
                                      "brains": {"5": "passive"}})
    assert r.status_code == 200
    rec = client.get("/recommendations/2?steps=4&seeds=3").json()
    ref_rec = twin.recommend(2, steps=4, seeds=3)
    assert rec["action"] == ref_rec.action
    assert rec["expected_equity"] == pytest.approx(ref_rec.expected_equity, rel=1e-12)
    allrec = client.get("/recommendations?steps=2&seeds=2").json()
    assert len(allrec["recommendations"]) + len(allrec["skipped"]) == 12
    # the live simulation did not move
    same_metrics(client.get("/metrics").json(), twin)
    for bad in ({"steps": 3, "actions": {"4": [0, 2, 0, 0]}},
                {"steps": 3, "actions": {"x": [0, 0, 0, 0]}},
                {"steps": 3, "brains": {"3": "genius"}},
                {"steps": 0}):
        assert client.post("/what_if", json=bad).status_code == 422, bad


def test_websocket_streams_every_step(client):
    sid = init(client, num_banks=8, seed=11)
    with client.websocket_connect(f"/simulation/stream?sim_id={sid}&max_messages=6") as ws:
        client.post(f"/simulation/run?sim_id={sid}&num_steps=6")
        msgs = [ws.receive_json() for _ in range(6)]
    assert [m["seq"] for m in msgs] == list(range(1, 7))
    assert [m["step"] for m in msgs] == list(range(1, 7))
    hist = client.get(f"/metrics/history?sim_id={sid}").json()
    assert [m["price"] for m in msgs] == [h["price"] for h in hist]
    # resuming from a sequence number replays what was missed
    with client.websocket_connect(f"/simulation/stream?sim_id={sid}&since=4&max_messages=2"
                                  ) as ws:
        assert [ws.receive_json()["seq"] for _ in range(2)] == [5, 6]
    with client.websocket_connect("/simulation/stream?sim_id=nope") as ws:
        assert "not found" in ws.receive_json()["error"]


def test_several_simulations_are_isolated(client):
    a = init(client, num_banks=10, seed=1, scenario="normal")
    b = init(client, num_banks=14, seed=2, scenario="systemic", brain="passive")
    for _ in range(5):
        client.post(f"/simulation/step?sim_id={a}")
        client.post(f"/simulation/step?sim_id={b}", params={"num_steps": 2})
    same_metrics(client.get(f"/metrics?sim_id={a}").json(), direct(5, 1, n_banks=10))
    same_metrics(client.get(f"/metrics?sim_id={b}").json(),
                 direct(10, 2, n_banks=14, scenario="systemic", brain="passive"))
    # plain endpoints act on the most recent simulation
    assert client.get("/simulation").json()["sim_id"] == b
    ids = {s["sim_id"] for s in client.get("/simulations").json()}
    assert ids == {a, b}
    assert client.delete(f"/simulation?sim_id={b}").status_code == 200
    assert client.get("/simulation").json()["sim_id"] == a
    assert client.get(f"/metrics?sim_id={b}").status_code == 404


def test_concurrent_steps_on_one_simulation_are_serialised(client):
    sid = init(client, num_banks=20, seed=13)
    errors: list[str] = []

    def worker() -> None:
        for _ in range(5):
            r = client.post(f"/simulation/step?sim_id={sid}")
            if r.status_code != 200:
                errors.append(r.text)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    hist = client.get(f"/metrics/history?sim_id={sid}").json()
    assert [h["step"] for h in hist] == list(range(1, 31))  # no step lost or repeated
    same_metrics(client.get(f"/metrics?sim_id={sid}").json(), direct(30, 13, n_banks=20))


def test_metrics_answer_while_a_long_run_is_in_progress(client):
    slow = init(client, num_banks=200, seed=1, steps=400)
    fast = init(client, num_banks=10, seed=2)
    done = threading.Event()

    def long_run() -> None:
        client.post(f"/simulation/run?sim_id={slow}&num_steps=400")
        done.set()

    t = threading.Thread(target=long_run)
    t.start()
    deadline = time.time() + 60
    while client.get(f"/metrics?sim_id={slow}").json()["step"] < 2:
        assert not done.is_set() and time.time() < deadline
        time.sleep(0.01)
    answered = 0
    for _ in range(5):
        assert client.post(f"/simulation/step?sim_id={fast}").status_code == 200
        bank = client.get(f"/metrics/bank/0?sim_id={slow}")  # waits one step, not the run
        assert bank.status_code == 200
        answered += not done.is_set()
    mid = client.get(f"/metrics?sim_id={slow}").json()["step"]
    t.join()
    assert answered == 5 and 0 < mid < 400  # served while the run went on
    assert client.get(f"/metrics?sim_id={slow}").json()["step"] == 400


# ---------------------------------------------------------------- errors and limits
def test_bad_requests_are_4xx_with_a_message(tmp_path):
    limits = ApiLimits(max_banks=50, max_steps_per_request=20, max_simulations=2,
                       max_lookahead_work=100)
    with TestClient(create_app(str(tmp_path), limits)) as c:
        assert c.get("/metrics").status_code == 404  # nothing yet
        assert "POST /simulation/init" in c.get("/metrics").json()["detail"]
        cases = [({"num_banks": 51}, "at most 50"), ({"num_banks": 1}, "num_banks"),
                 ({"scenario": "mars"}, "unknown"), ({"brain": "oracle"}, "unknown"),
                 ({"config": {"n_banks": 3}}, "top-level"),
                 ({"config": {"bogus": 1}}, "bogus"),
                 ({"config": {"fire_sale_impact": -1}}, "fire_sale_impact"),
                 ({"topology": "ring"}, "topology"), ({"nonsense": 1}, "nonsense")]
        for body, words in cases:
            r = c.post("/simulation/init", json=body | ({"num_banks": 5} if "num_banks" not in
                                                        body else {}))
            assert r.status_code == 422, body
            assert words in str(r.json()["detail"]), (body, r.json())
        init(c, num_banks=5, seed=1)
        assert c.post("/simulation/run?num_steps=21").status_code == 422
        assert c.post("/simulation/run?num_steps=0").status_code == 422
        assert c.post("/simulation/run").status_code == 422  # num_steps is required
        assert c.get("/recommendations/0?steps=10&seeds=10").status_code == 422  # work limit
        init(c, num_banks=5, seed=2)
        r = c.post("/simulation/init", json={"num_banks": 5})
        # the server is full: a state of the server, not a fault of the request (409)
        assert r.status_code == 409 and "limit" in r.json()["detail"]
        assert c.get("/metrics?sim_id=sim-0-nothing").status_code == 404
        assert c.post("/simulation/init", content=b"{not json").status_code == 422


def test_idle_simulations_expire(tmp_path):
    with TestClient(create_app(str(tmp_path), ApiLimits(idle_ttl_s=1.5))) as c:
        sid = init(c, num_banks=5, seed=1)
        assert c.get(f"/metrics?sim_id={sid}").status_code == 200
        time.sleep(2.0)
        r = c.get(f"/metrics?sim_id={sid}")
        assert r.status_code == 404 and "expired" in r.json()["detail"]


# ---------------------------------------------------------------- training and models
def test_training_and_models_need_the_learn_extra(tmp_path):
    with TestClient(create_app(str(tmp_path), learn=lambda: False)) as c:
        init(c, num_banks=5, seed=1)
        for method, url, body in [("post", "/train/start", {}), ("get", "/train/status", None),
                                  ("post", "/train/stop", None), ("get", "/models", None),
                                  ("post", "/models/save", {}),
                                  ("post", "/models/load", {"model": "final"})]:
            r = getattr(c, method)(url, **({"json": body} if body is not None else {}))
            assert r.status_code == 503, url
            assert "learn" in r.json()["detail"] and "pip install" in r.json()["detail"]
        assert c.get("/health").json()["learn_available"] is False


@pytest.mark.skipif(not HAS_TORCH, reason="training needs the learn extra (torch)")
def test_train_start_status_stop_save_and_load(tmp_path):
    with TestClient(create_app(str(tmp_path / "models"))) as c:
        assert c.get("/train/status").json()["state"] == "idle"
        assert c.post("/models/save", json={}).status_code == 409  # nothing trained yet
        assert c.post("/train/stop").status_code == 409
        r = c.post("/train/start", json={"episodes": 8, "num_banks": 5, "steps": 8,
                                         "eval_every": 4, "eval_seeds": 1})
        assert r.status_code == 200 and r.json()["state"] == "running"
        assert c.post("/train/start", json={"episodes": 8}).status_code == 409
        assert c.app.state.training.wait(120)
        st = c.get("/train/status").json()
        assert st["state"] == "finished" and st["episode"] == 8, st
        assert st["summary"]["episodes"] == 8 and st["history"]
        saved = c.post("/models/save", json={"name": "demo"}).json()
        assert saved["name"] == "demo/v1"
        names = {m["name"] for m in c.get("/models").json()}
        assert {"demo/v1", f"jobs/{st['job_id']}/final"} <= names
        # a stopped job ends early and still saves its policy
        c.post("/train/start", json={"episodes": 20_000, "num_banks": 5, "steps": 8})
        deadline = time.time() + 120
        while (st := c.get("/train/status").json())["episode"] < 4:
            assert st["state"] == "running" and time.time() < deadline, st
            time.sleep(0.05)
        assert c.post("/train/stop").json()["state"] == "stopping"
        assert c.app.state.training.wait(120)
        st2 = c.get("/train/status").json()
        assert st2["state"] == "stopped" and st2["episode"] < 20_000
        assert st2["summary"]["stopped"] is True
        # the saved policy decides for the banks of a simulation
        init(c, num_banks=5, seed=3)
        r = c.post("/models/load", json={"model": "demo", "banks": [0, 1]})
        assert r.status_code == 200 and r.json()["policy"] == "demo"
        c.post("/simulation/step")
        brains = [c.get(f"/metrics/bank/{i}").json()["brain"] for i in range(5)]
        assert brains == ["policy", "policy", "rule_based", "rule_based", "rule_based"]
        c.post("/simulation/reset")  # a reset keeps the brains the simulation was given
        assert c.get("/simulation").json()["policy"] == "demo"
        assert c.get("/metrics/bank/1").json()["brain"] == "policy"
        for body in ({"model": "../../etc"}, {"model": "nothere"},
                     {"model": "demo", "version": "v9"}, {"model": "demo", "banks": [7]}):
            r = c.post("/models/load", json=body)
            assert 400 <= r.status_code < 500 and r.json()["detail"], body
        # a policy trained without exchanges does not fit a model with them
        init(c, num_banks=6, seed=3, n_exchanges=1, n_ccps=1)
        r = c.post("/models/load", json={"model": "demo"})
        assert r.status_code == 422 and "observation columns" in r.json()["detail"]


def test_health(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["simulations"] == 0 and h["training"] == "idle"
    assert client.get("/openapi.json").json()["info"]["title"] == "finsim-mesa"


# ---------------------------------------------------------------- portfolios over HTTP (issue 13)
def test_per_class_prices_equal_the_datacollectors_columns(client):
    sid = init(client, n_banks=12, seed=4, config={"n_assets": 3, "price_impact": 0.2})
    client.post("/simulation/run", params={"num_steps": 6})
    m = FinancialModel(n_banks=12, n_assets=3, price_impact=0.2, rng=4, agent_collect_every=0)
    m.run_for(6)
    df = m.datacollector.get_model_vars_dataframe()
    names = [f"asset_{j}" for j in range(3)]
    hist = client.get("/metrics/history", params={"sim_id": sid}).json()
    assert [h["step"] for h in hist] == list(range(1, 7))
    for h, (_, row) in zip(hist, df.iloc[1:].iterrows(), strict=True):  # row 0: step 0
        assert list(h["prices"]) == names
        for name in names:
            assert h["prices"][name] == row[f"price_{name}"]
        assert h["price"] == pytest.approx(np.mean(list(h["prices"].values())), rel=1e-12)
    assert client.get("/metrics").json()["prices"] == hist[-1]["prices"]
    assert len(set(hist[-1]["prices"].values())) == 3  # the classes moved apart


def test_bank_observation_is_named_by_observation_names(client):
    from finsim_mesa.observation import observation_names

    sid = init(client, seed=2, config={"balance_sheets": "eba2018"})
    client.post("/simulation/step", params={"sim_id": sid})
    m = FinancialModel(balance_sheets="eba2018", rng=2, agent_collect_every=0)
    m.step()
    obs = client.get("/metrics/bank/5", params={"sim_id": sid}).json()["observation"]
    names = observation_names(m.config, m.market.names)
    assert list(obs) == names and names[-2:] == ["price_corporate_bonds",
                                                 "price_government_bonds"]
    assert list(obs.values()) == [float(v) for v in m.decisions.observations[5]]


def test_balance_sheets_are_a_choice_of_shipped_tables_never_a_path(client, tmp_path):
    from finsim_mesa.api.strict import BALANCE_SHEET_TABLES
    from finsim_mesa.balance_sheets import read_table

    assert all(read_table(name).names for name in BALANCE_SHEET_TABLES)
    config = client.get("/openapi.json").json()["components"]["schemas"]["SimulationConfig"]
    choice = config["properties"]["balance_sheets"]["anyOf"][0]
    assert choice.get("enum", [choice.get("const")]) == ["eba2018"]
    r = client.post("/simulation/init", json={"seed": 1, "config": {"balance_sheets":
                                                                    "eba2018"}})
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["n_banks"] == 48 and info["links"] == 0
    prices = client.get("/metrics").json()["prices"]
    assert prices == {"corporate_bonds": 1.0, "government_bonds": 1.0}
    table = tmp_path / "mine.csv"  # a valid table on the server's disk: still refused
    table.write_text("bank_id,cet1,leverage_pct,debt_securities,government_bonds\n"
                     "A,10,5,50,20\nB,8,4,40,10\n")
    for name in (str(table), "/etc/passwd", "eba2018.csv", "../data/eba2018", "EBA2018"):
        r = client.post("/simulation/init", json={"config": {"balance_sheets": name}})
        assert r.status_code == 422, (name, r.text)
        assert r.json()["errors"][0]["loc"] == ["body", "config", "balance_sheets"]
    r = client.post("/simulation/init", json={"n_banks": 30, "config": {"balance_sheets":
                                                                        "eba2018"}})
    assert r.status_code == 422 and "48 banks" in r.json()["detail"]
