"""The real server: `finsim serve` on 127.0.0.1 and a bounded load test with
concurrent clients on several simulations (no step lost, no state mixed);
what only a real connection shows: a run whose client goes away, WebSocket
clients that vanish or whose simulation is deleted, bodies over the limit
(declared or streamed), and a server started with a token."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="the REST API needs the 'api' extra")
httpx = pytest.importorskip("httpx", reason="the REST API needs the 'api' extra")

from support import serve  # noqa: E402

from finsim_mesa.measures import MODEL_REPORTERS, report  # noqa: E402
from finsim_mesa.model import FinancialModel  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    proc, url = serve(tmp_path_factory.mktemp("data"), models)
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


@pytest.mark.parametrize("flags, words", [
    (["--port", "70000"], "argument --port: 70000 is out of range: give a port in 1..65535"),
    (["--max-banks", "0"], "argument --max-banks: 0 is out of range: give a whole number >= 1"),
    (["--max-simulations", "x"], "argument --max-simulations: 'x' is not a number"),
    (["--idle-ttl", "-1"], "argument --idle-ttl: -1 is out of range"),
    (["--idle-ttl", "0"], "argument --idle-ttl: 0 is out of range"),
    (["--idle-ttl", "nan"], "argument --idle-ttl: nan is out of range"),
    (["--idle-ttl", "inf"], "argument --idle-ttl: inf is out of range"),
    (["--idle-ttl", "1e400"], "argument --idle-ttl: 1e400 is out of range"),  # overflows to inf
    (["--idle-ttl=-inf"], "argument --idle-ttl: -inf is out of range"),
    (["--idle-ttl", "soon"], "argument --idle-ttl: 'soon' is not a number")])
def test_serve_bad_flags_are_usage_errors(flags, words, capsys, monkeypatch):
    """Refused by the parser (usage, the flag, the allowed range; exit 2)
    before anything starts (``--idle-ttl nan`` was once taken: nothing ever
    expired)."""
    from finsim_mesa.cli import main

    def no_server(*args, **kwargs):
        raise AssertionError("the server was started")

    monkeypatch.setattr("uvicorn.run", no_server)
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--no-journal", *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: finsim serve" in err and words in err and "Traceback" not in err
    if "--idle-ttl" in words:
        assert "give a finite number of seconds > 0" in err


def test_serve_good_idle_ttl_reaches_the_server(tmp_path, capsys, monkeypatch):
    """The accepted value is the one the server expires simulations with."""

    from finsim_mesa.cli import main

    seen = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: seen.setdefault("app", app))
    # finsim serve passes its settings as FINSIM_* variables: on a copy here
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items()
                                        if not k.startswith("FINSIM_")})
    assert main(["serve", "--no-journal", "--models", str(tmp_path), "--idle-ttl", "2.5",
                 "--max-simulations", "3"]) == 0
    limits = seen["app"].state.limits
    assert (limits.idle_ttl_s, limits.max_simulations) == (2.5, 3)
    assert "no journal: simulations end with the server" in capsys.readouterr().out


@pytest.mark.parametrize("raw", ["nan", "inf", "0", "-5"])
def test_an_idle_ttl_from_the_environment_is_checked_too(raw, monkeypatch):
    from finsim_mesa.api.app import create_app_from_env
    from finsim_mesa.errors import ConfigError

    monkeypatch.setenv("FINSIM_IDLE_TTL_S", raw)
    monkeypatch.setenv("FINSIM_DATA_DIR", "")
    with pytest.raises(ConfigError, match=r"FINSIM_IDLE_TTL_S.*finite number of seconds > 0"):
        create_app_from_env()


def test_serve_empty_data_folder_is_refused(capsys, monkeypatch):
    from finsim_mesa.cli import main

    monkeypatch.setattr("uvicorn.run", lambda *a, **k: pytest.fail("the server was started"))
    assert main(["serve", "--data", " "]) == 2
    assert "--data is empty" in capsys.readouterr().err


# ---------------------------------------------------------------- robustness over the wire
def _steps(server: str, sid: str) -> int:
    return httpx.get(f"{server}/metrics", params={"sim_id": sid}, timeout=30).json()["step"]


def test_a_run_stops_when_its_client_goes_away(server):
    """A /simulation/run kept stepping after its client disconnected (and another
    client's step timed out meanwhile)."""
    with httpx.Client(base_url=server, timeout=60) as c:
        sid = c.post("/simulation/init", json={"num_banks": 300, "seed": 3,
                                               "steps": 50_000}).json()["sim_id"]
    with pytest.raises(httpx.TimeoutException):  # the client gives up after 1 s
        httpx.post(f"{server}/simulation/run", params={"sim_id": sid, "num_steps": 5000},
                   timeout=1.0)
    deadline = time.time() + 10
    while True:  # the run stops within a step or two of the disconnect
        before = _steps(server, sid)
        time.sleep(0.5)
        after = _steps(server, sid)
        if after == before or time.time() > deadline:
            break
    assert after == before and 0 < after < 5000, (before, after)
    t0 = time.perf_counter()  # the simulation is free for the next client at once
    r = httpx.post(f"{server}/simulation/step", params={"sim_id": sid}, timeout=5)
    assert r.status_code == 200 and r.json()["step"] == after + 1
    assert time.perf_counter() - t0 < 5


def _ws_url(server: str, query: str) -> str:
    return server.replace("http", "ws") + f"/simulation/stream?{query}"


def test_streams_of_vanished_clients_end(server):
    """WebSocket streams whose clients vanished never ended (30 of 30 leaked,
    each polling every 20 ms)."""
    ws_client = pytest.importorskip("websockets.sync.client",
                                    reason="WebSockets need uvicorn[standard] (api extra)")
    sid = httpx.post(f"{server}/simulation/init", json={"num_banks": 5, "seed": 1},
                     timeout=60).json()["sim_id"]
    base = httpx.get(f"{server}/health").json()["streams"]
    conns = [ws_client.connect(_ws_url(server, f"sim_id={sid}")) for _ in range(6)]
    deadline = time.time() + 10
    while httpx.get(f"{server}/health").json()["streams"] < base + 6:
        assert time.time() < deadline
        time.sleep(0.05)
    for ws in conns:  # gone without a goodbye: the TCP connection just closes
        ws.socket.close()
    deadline = time.time() + 15
    while (n := httpx.get(f"{server}/health").json()["streams"]) > base:
        assert time.time() < deadline, f"{n - base} streams still open"
        time.sleep(0.1)


def test_a_stream_ends_when_its_simulation_is_deleted(server):
    ws_client = pytest.importorskip("websockets.sync.client",
                                    reason="WebSockets need uvicorn[standard] (api extra)")
    from websockets.exceptions import ConnectionClosed

    sid = httpx.post(f"{server}/simulation/init", json={"num_banks": 5, "seed": 1},
                     timeout=60).json()["sim_id"]
    with ws_client.connect(_ws_url(server, f"sim_id={sid}")) as ws:
        assert httpx.delete(f"{server}/simulation", params={"sim_id": sid}).status_code == 200
        msg = json.loads(ws.recv(timeout=10))
        assert "deleted" in msg["error"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 4410


def _raw_response(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def test_a_huge_body_is_refused_without_being_read(server):
    """A 100 MB body was read in full before the 422; now 413 from its length."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /simulation/init HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{")
        head = _raw_response(sock, 10)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]


def test_a_streamed_body_is_cut_off_past_the_limit(server):
    """Without a length (chunked), the server stops reading once past the limit."""
    import select

    host, port = server.removeprefix("http://").split(":")
    sent, head = 0, b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /scenarios/shock HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b" " * 65536
        try:
            while sent < 8 * 2**20:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                if select.select([sock], [], [], 0.01)[0]:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        head = _raw_response(sock, 10)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert sent < 4 * 2**20  # answered soon after the 1 MiB limit, not after 8 MiB


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    proc, url = serve(tmp_path_factory.mktemp("data"), models, token="wire-token")
    yield url
    proc.terminate()
    proc.wait(10)


def test_a_server_with_a_token_needs_it(token_server):
    assert httpx.get(f"{token_server}/health").status_code == 200
    r = httpx.get(f"{token_server}/simulations")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{token_server}/simulations",
                     headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = httpx.get(f"{token_server}/simulations",
                   headers={"Authorization": "Bearer wire-token"})
    assert ok.status_code == 200 and ok.json() == []
