"""The REST API's journal (issue 12 item 9): a restart loses nothing.

Every simulation is journaled in the data folder (SQLite, one row per request
that changed it) and replayed at start-up, checked row by row against the
fingerprint of the state recorded then. The references are independent of the
journal: a server without one that received the same requests, and for one
simulation a FinancialModel driven directly; the real-kill test SIGKILLs
``finsim serve`` between requests and during a long run.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the REST API needs the 'api' extra")
httpx = pytest.importorskip("httpx", reason="the REST API needs the 'api' extra")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from fastapi.testclient import TestClient  # noqa: E402
from support import free_port, serve  # noqa: E402

from finsim_mesa.api import ApiLimits, create_app  # noqa: E402
from finsim_mesa.api.journal import JournalError  # noqa: E402
from finsim_mesa.measures import MODEL_REPORTERS, report  # noqa: E402
from finsim_mesa.model import FinancialModel  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None
VOLATILE = {"sim_id", "created", "idle_seconds"}  # differ between a server and its reference


def strip(v):
    """``v`` without the keys that name a server's simulation or its clock."""
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in VOLATILE}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v


def ok(r):
    assert r.status_code == 200, r.text
    return r.json()


def state(c, sid: str) -> dict:
    """Everything a client can read of a simulation."""
    q = {"sim_id": sid}
    info = ok(c.get("/simulation", params=q))
    out = {"info": info, "metrics": ok(c.get("/metrics", params=q)),
           "history": ok(c.get("/metrics/history", params=q | {"limit": 10_000})),
           "risk": ok(c.get("/metrics/risk", params=q)),
           "topology": ok(c.get("/network/topology", params=q))}
    for b in (0, 1, info["n_banks"] - 1):
        out[f"bank{b}"] = ok(c.get(f"/metrics/bank/{b}", params=q))
    return strip(out)


# the requests each simulation of the in-process tests receives
SCRIPTS = {
    "a": [("post", "/simulation/init", {}, {"n_banks": 20, "seed": 11,
                                            "scenario": "liquidity_crisis"}),
          ("post", "/simulation/run", {"num_steps": 30}, None),
          ("post", "/scenarios/shock", {}, {"kind": "loss", "magnitude": 0.3, "banks": [1, 2]}),
          ("post", "/simulation/run", {"num_steps": 20}, None)],
    "b": [("post", "/simulation/init", {}, {"n_banks": 12, "seed": 12, "n_exchanges": 2,
                                            "n_ccps": 1}),
          ("post", "/simulation/run", {"num_steps": 15}, None),
          ("post", "/scenarios/set", {}, {"definition": {"name": "kept", "price_volatility":
                                                         0.04, "shock_probability": 0.2}}),
          ("post", "/simulation/run", {"num_steps": 10}, None),
          ("post", "/simulation/reset", {}, {"seed": 5}),
          ("post", "/simulation/step", {}, None),
          ("post", "/simulation/step", {"num_steps": 7}, None)],
    "c": [("post", "/simulation/init", {}, {"n_banks": 15, "seed": 13,
                                            "config": {"n_assets": 3}}),
          ("post", "/simulation/run", {"num_steps": 10}, None),
          ("post", "/scenarios/set", {}, {"scenario": "asset_crash", "restart": True}),
          ("post", "/simulation/run", {"num_steps": 6}, None),
          ("post", "/scenarios/shock", {}, {"kind": "price_crash", "magnitude": 0.1})],
}


def play(c, script, sid: str | None = None) -> str:
    """Send a script's requests (the first one makes the simulation); its id."""
    for method, path, params, body in script:
        q = dict(params) if sid is None else dict(params, sim_id=sid)
        r = c.request(method.upper(), path, params=q, json=body)
        assert r.status_code == 200, (path, r.text)
        if path == "/simulation/init":
            sid = r.json()["sim_id"]
    return sid


def journal_rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT seq, op, args, step FROM records ORDER BY seq").fetchall()


# ---------------------------------------------------------------- in one process
def test_the_fingerprint_sees_one_bit_of_any_state():
    import numpy as np

    from finsim_mesa.api.fingerprint import fingerprint

    kw = dict(n_banks=10, n_exchanges=2, n_ccps=1, n_assets=2, agent_collect_every=0)
    a, b = FinancialModel(rng=3, **kw), FinancialModel(rng=3, **kw)
    a.run_for(4)
    b.run_for(4)
    assert fingerprint(a) == fingerprint(b)
    snap = a.snapshot()
    for change in (lambda m: m.ledger.cash.__setitem__(0, np.nextafter(m.ledger.cash[0], 9)),
                   lambda m: m.rng.random(),             # the generator moved
                   lambda m: m.market.prices.__setitem__(1, np.nextafter(m.market.prices[1], 0)),
                   lambda m: setattr(m.ccps[0], "fund_used", m.ccps[0].fund_used + 1e-9),
                   lambda m: m.shock_log.append({"kind": "loss"})):
        change(b)
        assert fingerprint(a) != fingerprint(b)
        b.restore(snap)
        assert fingerprint(a) == fingerprint(b)  # and back


def test_the_fingerprint_sees_the_initial_network_and_not_the_caches_a_read_fills():
    import numpy as np

    from finsim_mesa.api.fingerprint import fingerprint
    from finsim_mesa.measures import initial_debtrank

    a, b = (FinancialModel(rng=4, n_banks=12, agent_collect_every=0) for _ in range(2))
    assert fingerprint(a) == fingerprint(b)
    initial_debtrank(b)  # a read (GET /metrics/risk) fills reference.debtrank0
    assert b.reference.debtrank0 is not None and fingerprint(a) == fingerprint(b)
    exp = b.reference.exposures0.copy()  # the sparse initial network, one bit off
    exp.data[0] = np.nextafter(exp.data[0], np.inf)
    b.reference.exposures0 = exp
    assert fingerprint(a) != fingerprint(b)


def test_reads_between_changes_leave_the_journal_replayable(tmp_path):
    """Reads between step requests (risk, bank, topology, what-if,
    recommendations) change nothing a replay would have to repeat."""
    from finsim_mesa.api.fingerprint import fingerprint

    data, models = tmp_path / "data", str(tmp_path / "models")
    with TestClient(create_app(models, data_dir=data)) as c:
        sid = play(c, SCRIPTS["a"][:2])
        model = c.app.state.store.get(sid).model
        before = fingerprint(model)
        q = {"sim_id": sid}
        for path in ("/metrics/risk", "/metrics/bank/3", "/network/topology",
                     "/recommendations/2?steps=2&seeds=2"):
            ok(c.get(path, params=q))
        ok(c.post("/what_if", params=q, json={"steps": 2, "seeds": 2,
                                              "shock": {"kind": "loss", "magnitude": 0.1,
                                                        "banks": [1]}}))
        assert fingerprint(model) == before
        ok(c.post("/simulation/run", params=q | {"num_steps": 5}))
        after = state(c, sid)
    with TestClient(create_app(models, data_dir=data)) as c:
        assert c.app.state.replay.skipped == []
        assert state(c, sid) == after


def test_a_restart_brings_every_simulation_back_bit_identical(tmp_path):
    data, models = tmp_path / "data", str(tmp_path / "models")
    with TestClient(create_app(models, data_dir=data)) as c:
        ids = {k: play(c, s) for k, s in SCRIPTS.items()}
        before = {k: state(c, sid) for k, sid in ids.items()}
        latest = c.get("/simulation").json()["sim_id"]
    with TestClient(create_app(models, data_dir=data)) as c, \
            TestClient(create_app(models)) as ref:  # no journal: the same requests
        report_ = c.app.state.replay
        assert sorted(s for s, *_ in report_.restored) == sorted(ids.values())
        assert report_.skipped == [] and report_.scenarios == 1
        assert c.get("/simulation").json()["sim_id"] == latest
        assert "kept" in {s["name"] for s in c.get("/scenarios").json()}
        ref_ids = {k: play(ref, s) for k, s in SCRIPTS.items()}
        for k, sid in ids.items():
            assert state(c, sid) == before[k] == state(ref, ref_ids[k]), k
            for client, s in ((c, sid), (ref, ref_ids[k])):  # and they go on alike
                ok(client.post("/simulation/run", params={"sim_id": s, "num_steps": 5}))
            assert state(c, sid) == state(ref, ref_ids[k]), k
        # new ids never reuse a journaled one
        new = ok(c.post("/simulation/init", json={"n_banks": 5, "seed": 1}))["sim_id"]
        assert int(new.split("-")[1]) == 4


def test_the_restored_simulation_equals_the_model_run_directly(tmp_path):
    """An independent reference: FinancialModel with the same seed, steps and shock."""
    data = tmp_path / "data"
    with TestClient(create_app(str(tmp_path), data_dir=data)) as c:
        sid = play(c, SCRIPTS["a"])
    with TestClient(create_app(str(tmp_path), data_dir=data)) as c:
        got = ok(c.get("/metrics", params={"sim_id": sid}))
    m = FinancialModel(n_banks=20, scenario="liquidity_crisis", rng=11, agent_collect_every=0)
    m.run_for(30)
    m.apply_shock("loss", 0.3, [1, 2])
    m.run_for(20)
    assert got["step"] == m.t == 50
    for key in MODEL_REPORTERS:
        assert got[key] == pytest.approx(float(report(m, key)), rel=1e-12, abs=1e-12), key


def test_one_row_per_request_and_deleting_removes_the_journal(tmp_path):
    data = tmp_path / "data"
    limits = ApiLimits(idle_ttl_s=3600)
    with TestClient(create_app(str(tmp_path), limits, data_dir=data)) as c:
        sid = play(c, SCRIPTS["b"])
        path = data / "simulations" / f"{sid}.sqlite"
        rows = journal_rows(path)
        assert [r[1] for r in rows] == ["init", "step", "scenario", "step", "reset", "step",
                                        "step"]
        assert json.loads(rows[1][2]) == {"requested": 15, "done": 15}  # 15 steps, one row
        assert json.loads(rows[4][2]) == {"seed": 5}
        assert json.loads(rows[2][2])["scenario"]["price_volatility"] == 0.04
        assert [r[3] for r in rows] == [0, 15, 15, 25, 0, 1, 8]  # the step after each
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert ok(c.delete("/simulation", params={"sim_id": sid}))
        assert not list((data / "simulations").iterdir())  # no -wal/-shm left either
        # an idle simulation that expires goes with its journal too
        other = play(c, SCRIPTS["a"][:2])
        assert (data / "simulations" / f"{other}.sqlite").exists()
        c.app.state.store.limits.idle_ttl_s = 0.0
        time.sleep(0.01)
        assert c.get("/simulations").json() == []
        assert not list((data / "simulations").iterdir())


def test_a_row_that_replays_differently_is_reported_and_skipped(tmp_path, caplog):
    """As after a code upgrade: the state differs from the recorded fingerprint.
    The simulation is not served, the file is left alone, the others are served."""
    data = tmp_path / "data"
    with TestClient(create_app(str(tmp_path), data_dir=data)) as c:
        good, bad = play(c, SCRIPTS["b"]), play(c, SCRIPTS["a"])
    path = data / "simulations" / f"{bad}.sqlite"
    with sqlite3.connect(path) as conn:  # the shock now hits harder than it did
        conn.execute("UPDATE records SET args = replace(args, '0.3', '0.35') WHERE op='shock'")
        conn.execute("UPDATE meta SET value = '0.0.1' WHERE key = 'finsim_version'")
    content = path.read_bytes()
    with caplog.at_level(logging.ERROR, logger="finsim_mesa.api"), \
            TestClient(create_app(str(tmp_path), data_dir=data)) as c:
        assert c.get("/metrics", params={"sim_id": bad}).status_code == 404
        assert ok(c.get("/metrics", params={"sim_id": good}))["step"] == 8
        (skipped, why), = c.app.state.replay.skipped
        new = ok(c.post("/simulation/init", json={"n_banks": 5}))["sim_id"]
    assert skipped == str(path)
    for text in (why, caplog.text):
        assert str(path) in text and "row 3 (shock)" in text and "fingerprint" in text
        assert "written by finsim 0.0.1" in text
    assert "not served" in caplog.text
    assert path.read_bytes() == content  # never deleted nor changed
    assert int(new.split("-")[1]) == 3  # its id is not handed out again


def test_damaged_journals_are_skipped_never_deleted(tmp_path, caplog):
    data = tmp_path / "data"
    with TestClient(create_app(str(tmp_path), data_dir=data)) as c:
        ids = [play(c, SCRIPTS[k]) for k in "abc"]
    folder = data / "simulations"
    whole = (folder / f"{ids[1]}.sqlite").read_bytes()
    (folder / f"{ids[1]}.sqlite").write_bytes(whole[:len(whole) // 2])  # truncated
    (folder / f"{ids[2]}.sqlite").write_bytes(b"this is not a database" * 100)
    (folder / "sim-9-abcdef.sqlite").write_bytes(b"")  # empty
    (data / "scenarios.sqlite").write_bytes(b"\x00garbage" * 64)
    damaged = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != f"{ids[0]}.sqlite"}
    damaged_scenarios = (data / "scenarios.sqlite").read_bytes()
    with caplog.at_level(logging.ERROR, logger="finsim_mesa.api"), \
            TestClient(create_app(str(tmp_path), data_dir=data)) as c:
        assert [s["sim_id"] for s in ok(c.get("/simulations"))] == [ids[0]]
        assert len(c.app.state.replay.skipped) == 3
        assert ok(c.post("/simulation/init", json={"n_banks": 5}))["sim_id"].startswith(
            "sim-10-")
        r = c.post("/scenarios/set", json={"definition": {"name": "new"}})
        assert r.status_code == 503 and "scenarios.sqlite" in r.json()["detail"]
        assert "new" not in {s["name"] for s in c.get("/scenarios").json()}
    for name, content in damaged.items():
        assert name in caplog.text
        assert (folder / name).read_bytes() == content
    assert "scenarios.sqlite cannot be used" in caplog.text
    assert (data / "scenarios.sqlite").read_bytes() == damaged_scenarios


def test_two_servers_cannot_share_a_data_folder(tmp_path):
    data = tmp_path / "data"
    with TestClient(create_app(str(tmp_path), data_dir=data)):
        with pytest.raises(JournalError, match="in use by another process"):
            create_app(str(tmp_path), data_dir=data)
    with TestClient(create_app(str(tmp_path), data_dir=data)):  # free once the first stops
        pass


def test_a_failed_journal_write_is_a_503_and_the_simulation_takes_no_more_changes(tmp_path):
    with TestClient(create_app(str(tmp_path), data_dir=tmp_path / "data")) as c:
        sid = play(c, SCRIPTS["a"][:2])
        c.app.state.journal.open[sid]._conn.close()  # as if the disk went away
        r = c.post("/simulation/step", params={"sim_id": sid})
        assert r.status_code == 503 and f"{sid}.sqlite" in r.json()["detail"]
        for method, path, body in (("post", "/simulation/step", None),
                                   ("post", "/simulation/reset", {}),
                                   ("post", "/scenarios/shock", {"kind": "loss",
                                                                 "magnitude": 0.1,
                                                                 "banks": [0]})):
            r = c.request(method.upper(), path, params={"sim_id": sid}, json=body)
            assert r.status_code == 503 and "no more changes" in r.json()["detail"], path
        assert ok(c.get("/metrics", params={"sim_id": sid}))["step"] == 31  # still readable
        assert ok(c.delete("/simulation", params={"sim_id": sid}))
        assert play(c, SCRIPTS["a"][:2])  # other simulations are fine


def test_a_policy_row_needs_the_learn_extra_to_replay(tmp_path, caplog):
    """A brains row on a server without torch: skipped, saying what is missing."""
    data = tmp_path / "data"
    with TestClient(create_app(str(tmp_path), data_dir=data)) as c:
        sid = play(c, SCRIPTS["a"][:2])
    path = data / "simulations" / f"{sid}.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO records (op, args, step, fingerprint, at) VALUES "
                     "('brains', ?, 30, 'x', 0)", (json.dumps({
                         "policy": "pol", "banks": None, "source": {
                             "model": "pol", "version": "v1", "deterministic": True,
                             "weights": "0"}}),))
    with caplog.at_level(logging.ERROR, logger="finsim_mesa.api"), \
            TestClient(create_app(str(tmp_path), learn=lambda: False, data_dir=data)) as c:
        assert c.get("/simulations").json() == []
    assert "'learn' extra" in caplog.text and str(path) in caplog.text


def _policy(models: Path, name: str, seed: int, metric: float) -> None:
    import torch

    from finsim_mesa.learning.checkpoint import ModelCheckpointer
    from finsim_mesa.learning.mappo import Actor

    torch.manual_seed(seed)
    actor = Actor(16, 8)
    ModelCheckpointer(models / "registry").save_checkpoint(
        name, {f"actor.{k}": v for k, v in actor.state_dict().items()},
        {"obs_dim": 16, "mappo": {"hidden": 8}}, metric=metric)


@pytest.mark.skipif(not HAS_TORCH, reason="saved policies need the learn extra (torch)")
def test_a_loaded_policy_comes_back_by_its_version_and_weights(tmp_path, caplog):
    models, data = tmp_path / "models", tmp_path / "data"
    _policy(models, "pol", seed=1, metric=1.0)
    with TestClient(create_app(str(models), data_dir=data)) as c:
        sid = play(c, SCRIPTS["a"][:2])
        ok(c.post("/models/load", params={"sim_id": sid},
                  json={"model": "pol", "banks": [0, 1, 2], "deterministic": False}))
        ok(c.post("/simulation/run", params={"sim_id": sid, "num_steps": 10}))
        before = state(c, sid)
    rows = journal_rows(data / "simulations" / f"{sid}.sqlite")
    source = json.loads(rows[2][2])["source"]
    assert source["version"] == "v1" and len(source["weights"]) == 64
    _policy(models, "pol", seed=2, metric=2.0)  # 'best' is v2 now: the journal says v1
    with TestClient(create_app(str(models), data_dir=data)) as c:
        assert state(c, sid) == before
        assert before["bank1"]["brain"] == "policy" and before["info"]["policy"] == "pol"
    # the version the journal names has other weights now: refused, not served
    v1 = models / "registry" / "pol" / "v1" / "weights.safetensors"
    v1.write_bytes((models / "registry" / "pol" / "v2" / "weights.safetensors").read_bytes())
    with caplog.at_level(logging.ERROR, logger="finsim_mesa.api"), \
            TestClient(create_app(str(models), data_dir=data)) as c:
        assert c.get("/simulations").json() == []
    assert "other weights than when it was loaded" in caplog.text


# ---------------------------------------------------------------- a real kill
def kill(proc: subprocess.Popen) -> None:
    proc.kill()  # SIGKILL: no shutdown handler runs
    proc.wait(30)
    assert proc.returncode == -9


def test_finsim_serve_killed_with_sigkill_comes_back_identical(tmp_path):
    models, data = tmp_path / "models", tmp_path / "data"
    scripts = {k: list(s) for k, s in SCRIPTS.items()}
    scripts["a"][0] = ("post", "/simulation/init", {}, dict(scripts["a"][0][3], steps=20_000))
    if HAS_TORCH:  # a brain change too
        _policy(models, "pol", seed=1, metric=1.0)
        scripts["a"] += [("post", "/models/load", {}, {"model": "pol", "banks": [0, 1, 2]}),
                         ("post", "/simulation/run", {"num_steps": 4}, None)]
    proc, url = serve(data, models, timeout=120)
    try:
        with httpx.Client(base_url=url, timeout=120) as c:
            ids = {k: play(c, s) for k, s in scripts.items()}
        # kill 1: while a client sends one-step requests to b
        acked, stop = [], threading.Event()

        def stepper() -> None:
            with httpx.Client(base_url=url, timeout=120) as c:
                while not stop.is_set():
                    try:
                        r = c.post("/simulation/step", params={"sim_id": ids["b"]})
                    except httpx.TransportError:
                        return
                    assert r.status_code == 200, r.text
                    acked.append(r.json()["step"])

        t = threading.Thread(target=stepper)
        t.start()
        deadline = time.time() + 120
        while len(acked) < 10:
            assert t.is_alive() and time.time() < deadline, acked
            time.sleep(0.005)
        kill(proc)
        stop.set()
        t.join(60)
        proc, url = serve(data, models, timeout=120)
        with httpx.Client(base_url=url, timeout=120) as c:
            b_step = ok(c.get("/metrics", params={"sim_id": ids["b"]}))["step"]
            # every acknowledged step is there; at most the unanswered one beyond
            assert acked[-1] <= b_step <= acked[-1] + 1, (acked[-1], b_step)
            a_step = ok(c.get("/metrics", params={"sim_id": ids["a"]}))["step"]
        # kill 2: while a long run on a is in flight
        answered = []
        run = threading.Thread(target=lambda: answered.append(_long_run(url, ids["a"])))
        run.start()
        with httpx.Client(base_url=url, timeout=120) as c:
            deadline = time.time() + 120
            while ok(c.get("/metrics", params={"sim_id": ids["a"]}))["step"] < a_step + 100:
                assert run.is_alive() and time.time() < deadline
                time.sleep(0.01)
        assert not answered
        kill(proc)
        run.join(60)
        assert answered == [None]  # the client got no answer
        proc, url = serve(data, models, timeout=120)
        # a second server on the same data folder is refused with a message
        second = subprocess.run(
            [sys.executable, "-m", "finsim_mesa.cli", "serve", "--port", str(free_port()),
             "--data", str(data), "--models", str(models)],
            capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "in use by another process" in second.stderr
        with httpx.Client(base_url=url, timeout=120) as c, \
                TestClient(create_app(str(models))) as ref:
            assert ok(c.get("/metrics", params={"sim_id": ids["a"]}))["step"] == a_step
            ref_ids = {k: play(ref, s) for k, s in scripts.items()}
            play(ref, [("post", "/simulation/step", {}, None)] * (b_step - 8), ref_ids["b"])
            for k, sid in ids.items():
                assert state(c, sid) == state(ref, ref_ids[k]), k
                for client, s in ((c, sid), (ref, ref_ids[k])):
                    ok(client.post("/simulation/run", params={"sim_id": s, "num_steps": 5}))
                assert state(c, sid) == state(ref, ref_ids[k]), k
    finally:
        proc.kill()
        proc.wait(30)


def _long_run(url: str, sid: str) -> dict | None:
    try:
        return httpx.post(f"{url}/simulation/run", params={"sim_id": sid, "num_steps": 5000},
                          timeout=300).json()
    except httpx.TransportError:
        return None


# ---------------------------------------------------------------- finsim serve and the benchmark
def test_finsim_serve_restores_the_data_folder_and_says_so(tmp_path, capsys, monkeypatch):
    """``finsim serve --data`` builds the app (replay included) before uvicorn
    starts, prints what it restored, and closes the journal when uvicorn
    returns (the lock goes: a second app on the folder is accepted)."""
    from finsim_mesa.cli import main

    data, models = tmp_path / "data", str(tmp_path / "models")
    with TestClient(create_app(models, data_dir=data)) as c:
        sid = play(c, SCRIPTS["a"])
    served = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: served.setdefault("app", app))
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items()
                                        if not k.startswith("FINSIM_")})
    time.sleep(0.05)
    t0 = time.time()
    assert main(["serve", "--data", str(data), "--models", models]) == 0
    out = capsys.readouterr().out
    restored = {s.sim_id: s for s in served["app"].state.store.all()}  # all() touches none
    assert restored[sid].last_used >= t0  # idle time counts from the restart
    assert f"restoring the simulations journaled in {data} ..." in out
    assert "journal: 1 simulation(s) restored" in out and f"journal in {data}" in out
    assert served["app"].state.store.get(sid).model.t == 50
    with TestClient(create_app(models, data_dir=data)) as c:  # the folder was let go
        assert ok(c.get("/metrics", params={"sim_id": sid}))["step"] == 50
    # --no-journal: the folder is neither read nor written
    assert main(["serve", "--no-journal", "--data", str(tmp_path / "unused"),
                 "--models", models]) == 0
    assert "no journal: simulations end with the server" in capsys.readouterr().out
    assert not (tmp_path / "unused").exists()


def test_the_journal_benchmark_runs_and_reports_its_figures(tmp_path):
    """A tiny run of benchmarks/bench_journal.py (it checks each replay
    reaches the journaled step); the figures themselves are not asserted."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "bench_journal.py"), "--banks", "5",
         "--steps", "20", "--repeats", "1", "--requests", "5", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    for line in ("load average", "21 rows (1-step requests",
                 "journal off", "WAL    + synchronous=FULL", "x; the choice",
                 "per step of a 100-step request: journal off"):
        assert line in out.stdout, (line, out.stdout)
    assert list(tmp_path.iterdir()) == []  # its temporary data folders are gone


def test_fingerprint_covers_the_initial_network_and_ignores_the_ranking_cache():
    """Asking for the systemic ranking computes the initial-network DebtRank once
    and keeps it: not a change of state (a replayed simulation that was never
    asked must fingerprint the same); the initial exposure matrix is state."""
    from finsim_mesa.api.fingerprint import fingerprint
    from finsim_mesa.model import FinancialModel

    a = FinancialModel(n_banks=15, rng=3, agent_collect_every=0)
    b = FinancialModel(n_banks=15, rng=3, agent_collect_every=0)
    a.run_for(3)
    b.run_for(3)
    a.systemic_ranking()
    assert a.reference.debtrank0 is not None and b.reference.debtrank0 is None
    assert fingerprint(a) == fingerprint(b)
    b.reference.exposures0 = b.reference.exposures0 * 2.0
    assert fingerprint(a) != fingerprint(b)


def test_a_simulation_of_the_shipped_policy_comes_back(tmp_path):
    """brain='mappo' (numpy actor shipped with the package): journaled by
    name, replayed bit-identical, no learn extra needed."""
    data, models = tmp_path / "data", str(tmp_path / "models")
    with TestClient(create_app(models, data_dir=data, learn=lambda: False)) as c:
        sid = play(c, [("post", "/simulation/init", {}, {"n_banks": 10, "seed": 3,
                                                         "brain": "mappo"}),
                       ("post", "/simulation/run", {"num_steps": 6}, None)])
        before = state(c, sid)
    with TestClient(create_app(models, data_dir=data, learn=lambda: False)) as c:
        assert c.app.state.replay.skipped == [] and state(c, sid) == before
        assert before["info"]["brain"] == "mappo" and before["info"]["step"] == 6
