"""REST API robustness (issue: 5xx found and limits that did not bound the
work), in-process with Starlette's TestClient. Each test reproduces a finding
of the robustness review: the request that answered 5xx, or the request whose
work was not bounded, and checks the answer now (a 4xx with a message, or the
work done, bounded).

The findings that need a real server (a client that disconnects, WebSocket
clients that vanish, a body streamed past the limit) are in test_api_server.py.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the REST API needs the 'api' extra")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from fastapi.testclient import TestClient  # noqa: E402

from finsim_mesa.api import ApiLimits, create_app  # noqa: E402
from finsim_mesa.model import FinancialModel  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None


def strict_json(text: str):
    """Parse as a strict JSON client would (no NaN, no Infinity)."""
    def refuse(name):
        raise ValueError(f"{name} in a response")
    return json.loads(text, parse_constant=refuse)


def app_client(tmp_path, limits=None, **kw):
    return TestClient(create_app(str(tmp_path / "models"), limits, **kw),
                      raise_server_exceptions=False)


def init(c, **body) -> str:
    r = c.post("/simulation/init", json=body)
    assert r.status_code == 200, r.text
    return r.json()["sim_id"]


# ---------------------------------------------------------------- A: 5xx found
def test_topology_with_exchanges_and_no_ccp(tmp_path):
    """Was IndexError (500): exchanges without a CCP have no clearing link."""
    with app_client(tmp_path) as c:
        init(c, num_banks=10, seed=1, n_exchanges=2)
        c.post("/simulation/run?num_steps=3")
        r = c.get("/network/topology")
        assert r.status_code == 200, r.text
        topo = r.json()
        kinds = [n["type"] for n in topo["nodes"]]
        assert kinds.count("exchange") == 2 and "ccp" not in kinds
        edges = {e["type"] for e in topo["edges"]}
        assert "member" in edges and "clears_at" not in edges
        members = [e for e in topo["edges"] if e["type"] == "member"]
        assert sorted(e["source"] for e in members) == list(range(10))  # every bank a member


NON_FINITE = ("NaN", "Infinity", "-Infinity", "1e400", "-1e400")
# a body for each endpoint that reads one, with {} where a number goes
NUMERIC_BODIES = [
    ("/simulation/init", '{"n_banks": 5, "seed": %s}'),
    ("/simulation/init", '{"n_banks": 5, "config": {"price_impact": %s}}'),
    ("/simulation/reset", '{"seed": %s}'),
    ("/scenarios/set", '{"definition": {"name": "x", "price_volatility": %s}}'),
    ("/scenarios/shock", '{"kind": "price_crash", "magnitude": %s}'),
    ("/what_if", '{"steps": 2, "seeds": 1, "actions": {"0": [%s, 0, 0, 0]}}'),
    ("/what_if", '{"steps": %s}'),
    ("/train/start", '{"episodes": %s}'),
    ("/models/save", '{"metric": %s}'),
    ("/models/load", '{"model": "final", "banks": [%s]}'),
]


@pytest.mark.parametrize("token", NON_FINITE)
def test_non_finite_numbers_in_any_body_are_a_422_in_valid_json(tmp_path, token):
    """Was 500: the 422 echoed the NaN/inf it was sent, which JSON cannot carry."""
    with app_client(tmp_path, learn=lambda: True) as c:
        init(c, num_banks=5, seed=1)
        for path, body in NUMERIC_BODIES:
            r = c.post(path, content=body % token, headers={"content-type": "application/json"})
            assert r.status_code == 422, (path, token, r.status_code, r.text)
            detail = strict_json(r.text)["detail"]  # the answer is valid JSON
            assert isinstance(detail, str) and "JSON" in detail, (path, detail)


def _checkpoint(folder, meta, torch):
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    save_file({"actor.body.0.weight": torch.zeros(8, 16)}, str(folder / "weights.safetensors"))


@pytest.mark.skipif(not HAS_TORCH, reason="trained models need the learn extra (torch)")
def test_damaged_models_are_listed_with_their_error_and_refused_with_a_4xx(tmp_path):
    """Was 500 for GET /models (a truncated or list-shaped meta.json anywhere) and
    for POST /models/load (meta.json without obs_dim, mappo or hidden)."""
    import torch

    from finsim_mesa.learning.checkpoint import ModelCheckpointer
    from finsim_mesa.learning.mappo import Actor

    models = tmp_path / "models"
    actor = Actor(16, 8)
    ModelCheckpointer(models / "registry").save_checkpoint(
        "good", {f"actor.{k}": v for k, v in actor.state_dict().items()},
        {"obs_dim": 16, "mappo": {"hidden": 8}}, metric=1.0)
    damaged = {"truncated": '{"format_version": 1, "obs_dim": 16, "mapp',
               "list_shaped": "[1, 2, 3]",
               "no_obs_dim": {"format_version": 1, "mappo": {"hidden": 8}},
               "no_mappo": {"format_version": 1, "obs_dim": 16},
               "no_hidden": {"format_version": 1, "obs_dim": 16, "mappo": {}},
               "odd_types": {"format_version": 1, "obs_dim": "16", "mappo": {"hidden": 8},
                             "metric": "high", "episode": [1], "created": 3}}
    for name, meta in damaged.items():
        _checkpoint(models / name, meta, torch)
    (models / "registry" / "broken").mkdir(parents=True)
    (models / "registry" / "broken" / "index.json").write_text('{"versions": ["v1"')
    with app_client(tmp_path) as c:
        r = c.get("/models")
        assert r.status_code == 200, r.text
        rows = {m["name"]: m for m in r.json()}
        assert rows["good/v1"]["error"] is None and rows["good/v1"]["metric"] == 1.0
        for name in ("truncated", "list_shaped"):
            assert rows[name]["error"], rows[name]
        assert rows["broken"]["error"]
        assert rows["odd_types"]["metric"] is None and rows["odd_types"]["episode"] is None
        init(c, n_banks=5, seed=1)
        assert c.post("/models/load", json={"model": "good"}).status_code == 200
        for name in [*damaged, "broken"]:
            r = c.post("/models/load", json={"model": name})
            assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
            assert r.json()["detail"], name


def test_scenario_table_survives_concurrent_reads_and_definitions(tmp_path):
    """Was 500 ('dictionary changed size during iteration', 3 of 1,200):
    GET /scenarios iterated the table while POST /scenarios/set added to it."""
    limits = ApiLimits()
    limits.max_scenarios = 10_000  # a table large enough to be read while it grows
    codes: list[int] = []
    old = sys.getswitchinterval()
    with app_client(tmp_path, limits) as c:
        init(c, num_banks=5, seed=1)
        for k in range(300):
            c.post("/scenarios/set", json={"definition": {"name": f"pre{k}"}})

        def reader() -> None:
            for _ in range(60):
                codes.append(c.get("/scenarios").status_code)

        def writer() -> None:
            for k in range(300):
                codes.append(c.post("/scenarios/set", json={
                    "definition": {"name": f"s{k}", "price_volatility": 0.01}}).status_code)

        sys.setswitchinterval(1e-6)  # switch threads often: the race shows within the run
        try:
            threads = [threading.Thread(target=f) for f in (reader, reader, reader, writer)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            sys.setswitchinterval(old)
        assert codes.count(200) == len(codes) == 480, sorted(set(codes))
        names = [s["name"] for s in c.get("/scenarios").json()]
        assert len(names) == len(set(names)) and {f"s{k}" for k in range(300)} <= set(names)


# ---------------------------------------------------------------- C: limits
def test_network_size_is_bounded_by_links_and_memory_before_building(tmp_path):
    """max_banks bounded nodes only: 2,000 banks with mean_degree=1e9 built a
    complete graph (667 MB, 12 s). Links and memory are estimated first."""
    limits = ApiLimits(max_links=20_000, max_model_mb=40, max_total_model_mb=50)
    with app_client(tmp_path, limits) as c:
        t0 = time.perf_counter()
        r = c.post("/simulation/init", json={"n_banks": 2000, "topology": "erdos_renyi",
                                             "config": {"mean_degree": 1e9}})
        assert r.status_code == 422 and time.perf_counter() - t0 < 2.0
        detail = r.json()["detail"]
        assert "1,999,000 links" in detail and "20,000" in detail, detail  # estimate, limit
        r = c.post("/simulation/init", json={"n_banks": 1000, "topology": "core_periphery",
                                             "config": {"core_fraction": 1.0}})
        assert r.status_code == 422 and "links" in r.json()["detail"]
        r = c.post("/simulation/init", json={"n_banks": 2000, "config": {"n_assets": 1000}})
        assert r.status_code == 422 and "MB" in r.json()["detail"], r.text  # memory
        # within the limits: built, and the estimate is reported
        sid = init(c, n_banks=200, topology="erdos_renyi", config={"mean_degree": 50.0})
        info = c.get(f"/simulation?sim_id={sid}").json()
        assert 0 < info["links"] <= 200 * 199 / 2 and info["memory_mb_estimate"] > 0
        # all simulations together: the second large one does not fit (409, state)
        for _ in range(2):
            r = c.post("/simulation/init", json={"n_banks": 2000, "config": {"n_assets": 450}})
        assert r.status_code == 409 and "MB" in r.json()["detail"], r.text
        r = c.post("/simulation/init", json={"n_banks": 5, "steps": 10**6})
        assert r.status_code == 422 and "steps" in r.json()["detail"]


def test_recommendations_for_all_banks_are_bounded_and_paged(tmp_path):
    """GET /recommendations on 400 banks took 20-51 s; now each request does at
    most the work limit and says where the rest begin (next_start)."""
    limits = ApiLimits(max_lookahead_work=1_200)
    with app_client(tmp_path, limits) as c:
        init(c, n_banks=40, seed=3)
        c.post("/simulation/run?num_steps=3")
        c.post("/scenarios/shock", json={"kind": "default", "banks": [5, 17]})
        c.post("/simulation/step")
        seen, start, pages = [], 0, 0
        while start is not None:
            r = c.get(f"/recommendations?steps=3&seeds=2&start={start}")
            assert r.status_code == 200, r.text
            body = r.json()
            assert len(body["recommendations"]) <= 1_200 // (3 * 2 * 10)  # work limit
            seen += [rec["bank_id"] for rec in body["recommendations"]]
            start, pages = body["next_start"], pages + 1
        skipped = body["skipped"]
        assert {5, 17} <= set(skipped) and pages == 2
        assert sorted(seen + skipped) == list(range(40))  # each bank once, in order
        assert seen == sorted(seen)


def test_lookahead_does_not_hold_the_simulation(tmp_path, monkeypatch):
    """A long recommendation held the state lock throughout (steps of the same
    simulation waited 20-51 s); it now runs on a copy of the state."""
    from finsim_mesa.api.sessions import Session

    copied = threading.Event()
    original = Session.lookahead_model

    def watched(self):
        try:
            return original(self)
        finally:
            copied.set()

    monkeypatch.setattr(Session, "lookahead_model", watched)
    limits = ApiLimits(max_lookahead_work=200_000)
    with app_client(tmp_path, limits) as c:
        sid = init(c, n_banks=150, seed=2, steps=10_000)
        done = threading.Event()
        result: dict = {}

        def lookahead() -> None:  # about 2,000 steps of a 150-bank model: seconds
            result["r"] = c.get(f"/recommendations/7?sim_id={sid}&steps=20&seeds=10")
            done.set()

        t = threading.Thread(target=lookahead)
        t.start()
        assert copied.wait(30)
        steps_during = 0
        while not done.is_set() and steps_during < 3:
            r = c.post(f"/simulation/step?sim_id={sid}")
            assert r.status_code == 200
            steps_during += not done.is_set()
        t.join()
        assert steps_during >= 3, "steps waited for the lookahead"
        assert result["r"].status_code == 200, result["r"].text
        # the answer describes the state when it was asked, not the steps since
        assert result["r"].json()["step"] == 0


def test_lookahead_on_a_copy_equals_the_live_model(tmp_path):
    """The copy a lookahead runs on gives what the live model gives."""
    with app_client(tmp_path) as c:
        init(c, n_banks=12, seed=9, n_exchanges=1, n_ccps=1)
        c.post("/simulation/run?num_steps=4")
        ref = FinancialModel(n_banks=12, rng=9, n_exchanges=1, n_ccps=1, agent_collect_every=0)
        ref.run_for(4)
        got = c.get("/recommendations/3?steps=4&seeds=3").json()
        want = ref.recommend(3, steps=4, seeds=3)
        assert got["action"] == want.action
        assert got["expected_equity"] == pytest.approx(want.expected_equity, rel=1e-12)
        r = c.post("/what_if", json={"steps": 3, "seeds": 2,
                                     "shock": {"kind": "loss", "magnitude": 0.5,
                                               "banks": [1]}}).json()
        w = ref.what_if(3, 2, shock={"kind": "loss", "magnitude": 0.5, "banks": [1]})
        got = {d["outcome"]: d["mean"] for d in r["difference"]}
        for row in w.difference.itertuples():
            assert got[row.outcome] == pytest.approx(row.mean, rel=1e-9, abs=1e-12)


def test_scenario_definitions_are_bounded_in_number_and_size(tmp_path):
    """40 definitions of 1 MB each were kept; now both are bounded."""
    limits = ApiLimits(max_scenarios=3)
    with app_client(tmp_path, limits) as c:
        init(c, n_banks=5, seed=1)
        for k in range(3):
            r = c.post("/scenarios/set", json={"definition": {"name": f"mine{k}"}})
            assert r.status_code == 200, r.text
        r = c.post("/scenarios/set", json={"definition": {"name": "one_more"}})
        assert r.status_code == 409 and "limit" in r.json()["detail"]
        # the same definition again is no new entry; built-in ones stay usable
        assert c.post("/scenarios/set", json={"definition": {"name": "mine0"}}).status_code \
            == 200
        assert c.post("/scenarios/set", json={"scenario": "systemic"}).status_code == 200
        for definition in ({"name": "big", "description": "x" * 1001},
                           {"name": "n" * 65}, {"name": "../etc"}):
            r = c.post("/scenarios/set", json={"definition": definition})
            assert r.status_code == 422, definition
        assert len(c.get("/scenarios").json()) == 3 + len(c.app.state.scenarios.names()) - 3


def test_request_bodies_are_capped(tmp_path):
    """A 100 MB body was read in full before the 422; now 413 past the limit,
    without reading it (declared length) or as soon as it passes (streamed)."""
    limits = ApiLimits(max_body_bytes=4_096)
    with app_client(tmp_path, limits) as c:
        init(c, n_banks=5, seed=1)
        big = json.dumps({"kind": "default", "banks": list(range(2_000))}).encode()
        r = c.post("/scenarios/shock", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "4,096" in r.json()["detail"]
        chunks_read = []

        def stream():
            for k in range(100):
                chunks_read.append(k)
                yield b" " * 1_000
        r = c.post("/scenarios/shock", content=stream(),
                   headers={"content-type": "application/json"})
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        small = json.dumps({"kind": "default", "banks": [1]})
        assert c.post("/scenarios/shock", content=small,
                      headers={"content-type": "application/json"}).status_code == 200


def test_what_if_bank_ids_and_brains_are_checked_against_the_simulation(tmp_path):
    with app_client(tmp_path) as c:
        init(c, n_banks=6, seed=1)
        for body in ({"steps": 2, "seeds": 1, "brains": {"6": "passive"}},
                     {"steps": 2, "seeds": 1, "actions": {"9": [0, 0, 0, 0]}},
                     {"steps": 2, "seeds": 1, "bank": 6},
                     {"steps": 2, "seeds": 1, "shock": {"kind": "loss", "magnitude": 0.1,
                                                        "banks": [6]}}):
            r = c.post("/what_if", json=body)
            assert r.status_code == 422 and r.json()["detail"], body
        r = c.post("/what_if", json={"steps": 2, "seeds": 1})
        assert r.status_code == 200
        # one seed: no spread, so no interval (null, never NaN in the JSON)
        rows = strict_json(r.text)["summary"]
        assert all(row["ci95_low"] is None for row in rows)
        rec = c.get("/recommendations/0?steps=2&seeds=1")
        assert rec.status_code == 200
        assert all(v is None or np.isfinite(v) for v in strict_json(rec.text)["ci95"])
        assert np.isfinite(rec.json()["expected_equity"])


# ---------------------------------------------------------------- the model store behind the API
def test_model_names_are_matched_whole(tmp_path):
    """``check_name`` used ``re.match`` with ``$``, which matches before a trailing
    newline: "api\\n" passed."""
    from finsim_mesa.api.training import check_name
    from finsim_mesa.errors import FinsimError

    assert check_name("api", "model name") == "api"
    for bad in ("api\n", "api\r\n", "\napi", "a/b", "..", ".hidden", "a" * 65, ""):
        with pytest.raises(FinsimError, match="model name"):
            check_name(bad, "model name")
    with app_client(tmp_path) as c:
        init(c, n_banks=5, seed=1)
        for path, body in (("/models/save", {"name": "api\n"}),
                           ("/models/load", {"model": "api\n"})):
            r = c.post(path, json=body)
            assert r.status_code == 422 and r.json()["errors"], (path, r.text)


def test_the_models_list_skips_hidden_folders(tmp_path):
    """Temporary folders of a save in progress (or left by a kill) are not models."""
    from finsim_mesa.api.training import TrainingManager

    models = tmp_path / "models"
    meta = json.dumps({"format_version": 1, "obs_dim": 16, "mappo": {"hidden": 8}})
    for rel in ("final", "jobs/job-1/best", ".best.new-0123abcd", "jobs/job-1/.best.old-0a1b2c3d",
                ".trash/final"):
        (models / rel).mkdir(parents=True)
        (models / rel / "meta.json").write_text(meta)
    names = [m["name"] for m in TrainingManager(models, available=lambda: True).list()]
    assert names == ["final", "jobs/job-1/best"]


@pytest.mark.skipif(not HAS_TORCH, reason="trained models need the learn extra (torch)")
def test_a_model_folder_that_links_outside_the_store_is_refused(tmp_path):
    """/models/load reads only inside the models folder (symlinks resolved)."""
    import torch

    from finsim_mesa.learning.mappo import Actor

    outside = tmp_path / "elsewhere" / "final"
    _checkpoint(outside, {"format_version": 1, "obs_dim": 16, "mappo": {"hidden": 8}}, torch)
    from safetensors.torch import save_file

    save_file({f"actor.{k}": v for k, v in Actor(16, 8).state_dict().items()},
              str(outside / "weights.safetensors"))
    import shutil

    shutil.copytree(outside, tmp_path / "models" / "inside")  # the same checkpoint, inside
    (tmp_path / "models" / "escape").symlink_to(outside, target_is_directory=True)
    with app_client(tmp_path) as c:
        init(c, n_banks=5, seed=1)
        assert c.post("/models/load", json={"model": "inside"}).status_code == 200
        r = c.post("/models/load", json={"model": "escape"})
        assert r.status_code == 422 and "outside the model store" in r.json()["detail"], r.text


@pytest.mark.skipif(not HAS_TORCH, reason="trained models need the learn extra (torch)")
def test_a_policy_that_does_not_fit_the_observation_is_refused_at_load(tmp_path):
    """A 16-column policy loaded into a 3-asset simulation (19 columns) was accepted
    (PolicyBrain.setup does not count the per-class price columns) and every
    step after it failed in the matrix product."""
    from finsim_mesa.learning.checkpoint import ModelCheckpointer
    from finsim_mesa.learning.mappo import Actor

    ModelCheckpointer(tmp_path / "models" / "registry").save_checkpoint(
        "pol", {f"actor.{k}": v for k, v in Actor(16, 8).state_dict().items()},
        {"obs_dim": 16, "mappo": {"hidden": 8}}, metric=1.0)
    with app_client(tmp_path) as c:
        init(c, n_banks=6, seed=1, config={"n_assets": 3})
        r = c.post("/models/load", json={"model": "pol"})
        assert r.status_code == 422 and "observe 19" in r.json()["detail"], r.text
        assert c.post("/simulation/step").status_code == 200  # nothing was changed
        init(c, n_banks=6, seed=1)
        assert c.post("/models/load", json={"model": "pol"}).status_code == 200
        assert c.post("/simulation/step").status_code == 200
