"""The real server: `finsim serve` on 127.0.0.1 and a bounded load test with
concurrent clients on several simulations (no step lost, no state mixed)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="the REST API needs the 'api' extra")
httpx = pytest.importorskip("httpx", reason="the REST API needs the 'api' extra")

from finsim_mesa.measures import MODEL_REPORTERS, report  # noqa: E402
from finsim_mesa.model import FinancialModel  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "finsim_mesa.cli", "serve", "--port", str(port), "--models",
         str(tmp_path_factory.mktemp("models")), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"server did not start: {proc.stdout.read()}")
        time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


def test_serve_answers_and_documents(server):
    assert httpx.get(f"{server}/health").json()["status"] == "ok"
    paths = httpx.get(f"{server}/openapi.json").json()["paths"]
    for p in ("/simulation/init", "/simulation/run", "/metrics/risk", "/what_if",
              "/recommendations/{bank_id}", "/train/start", "/models/load",
              "/network/topology", "/scenarios/shock"):
        assert p in paths, p


def test_load_several_simulations_concurrent_clients(server):
    sims, clients_per_sim, steps_each = 4, 2, 10
    with httpx.Client(base_url=server, timeout=60) as c:
        ids = [c.post("/simulation/init", json={"num_banks": 20, "seed": 100 + k,
                                                "scenario": "liquidity_crisis"}).json()["sim_id"]
               for k in range(sims)]
    errors: list[str] = []

    def client(sim_id: str) -> None:
        with httpx.Client(base_url=server, timeout=60) as c:
            for _ in range(steps_each):
                r = c.post("/simulation/step", params={"sim_id": sim_id})
                if r.status_code != 200 or r.json()["sim_id"] != sim_id:
                    errors.append(r.text)
                if c.get("/metrics", params={"sim_id": sim_id}).json()["sim_id"] != sim_id:
                    errors.append("metrics of another simulation")

    threads = [threading.Thread(target=client, args=(sid,)) for sid in ids
               for _ in range(clients_per_sim)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    total = clients_per_sim * steps_each
    with httpx.Client(base_url=server, timeout=60) as c:
        for k, sid in enumerate(ids):
            hist = c.get("/metrics/history", params={"sim_id": sid}).json()
            assert [h["step"] for h in hist] == list(range(1, total + 1))  # none lost
            ref = FinancialModel(n_banks=20, scenario="liquidity_crisis", rng=100 + k,
                                 agent_collect_every=0)
            for h in hist:  # every step equals the simulation run alone
                ref.step()
                for key in MODEL_REPORTERS:
                    assert h[key] == pytest.approx(float(report(ref, key)), rel=1e-12,
                                                   abs=1e-12), (sid, h["step"], key)


def test_websocket_stream_over_the_wire(server):
    ws_client = pytest.importorskip("websockets.sync.client",
                                    reason="WebSockets need uvicorn[standard] (api extra)")
    import json

    with httpx.Client(base_url=server, timeout=60) as c:
        sid = c.post("/simulation/init", json={"num_banks": 10, "seed": 5}).json()["sim_id"]
        ws_url = server.replace("http", "ws") + f"/simulation/stream?sim_id={sid}&max_messages=3"
        with ws_client.connect(ws_url) as ws:
            c.post("/simulation/run", params={"sim_id": sid, "num_steps": 3})
            msgs = [json.loads(ws.recv(timeout=30)) for _ in range(3)]
    assert [m["step"] for m in msgs] == [1, 2, 3] and {m["sim_id"] for m in msgs} == {sid}


@pytest.mark.parametrize("flags, words", [(["--port", "70000"], "--port"),
                                          (["--max-banks", "0"], "--max-banks"),
                                          (["--idle-ttl", "-1"], "--idle-ttl")])
def test_serve_bad_flags(flags, words, capsys):
    from finsim_mesa.cli import main

    assert main(["serve", *flags]) == 2
    assert words in capsys.readouterr().err
