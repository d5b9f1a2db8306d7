"""Authentication: a token is required to serve beyond the loopback, and with a
token every route but /health needs ``Authorization: Bearer <token>``.

In-process (TestClient) for the routes; the command line for the refusal
(``finsim serve --host 0.0.0.0`` without a token exits 2 before binding
anything). A real server with a token on 127.0.0.1 is in test_api_server.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("fastapi", reason="the REST API needs the 'api' extra")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from finsim_mesa.api import create_app  # noqa: E402
from finsim_mesa.cli.serve import is_loopback  # noqa: E402

TOKEN = "s3cret-token-for-tests"
GOOD = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(str(tmp_path), token=TOKEN, learn=lambda: False)) as c:
        yield c


def _requests(doc):
    """One request per operation of the schema (path parameters filled in)."""
    for path, item in doc["paths"].items():
        for method in item:
            yield method, path.replace("{bank_id}", "0")


def test_every_route_but_health_needs_the_token(client):
    assert client.get("/health").status_code == 200  # without a token
    doc = client.get("/openapi.json", headers=GOOD).json()
    tried = 0
    for method, path in [*_requests(doc), ("get", "/docs"), ("get", "/redoc"),
                         ("get", "/openapi.json"), ("options", "/simulation"),
                         ("get", "/docs/static/swagger-ui.css"), ("get", "/no/such/path")]:
        if path == "/health":
            continue
        for headers in ({}, {"Authorization": "Bearer wrong"},
                        {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": f"Bearer {TOKEN}x"}):
            r = client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert "Bearer" in r.json()["detail"]
            tried += 1
    assert tried >= 5 * 20
    # with the token: served as usual
    r = client.post("/simulation/init", json={"n_banks": 5, "seed": 1}, headers=GOOD)
    assert r.status_code == 200
    assert client.post("/simulation/run?num_steps=2", headers=GOOD).json()["step"] == 2
    assert client.get("/metrics", headers={"authorization": f"bearer {TOKEN}"}
                      ).status_code == 200  # scheme and header name in any case
    assert client.get("/docs", headers=GOOD).status_code == 200


def test_the_token_is_compared_in_constant_time(client, monkeypatch):
    import hmac

    from finsim_mesa.api import middleware

    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(middleware.hmac, "compare_digest", spy)
    client.get("/simulations", headers={"Authorization": "Bearer nope"})
    client.get("/simulations", headers=GOOD)
    assert [b for _, b in calls] == [TOKEN.encode()] * 2


def test_websocket_needs_the_token(client):
    client.post("/simulation/init", json={"n_banks": 5, "seed": 1}, headers=GOOD)
    with pytest.raises(Exception) as info:  # refused before it is accepted
        with client.websocket_connect("/simulation/stream?max_messages=1") as ws:
            ws.receive_json()
    assert not isinstance(info.value, AssertionError)
    denied = getattr(info.value, "status_code", None) or getattr(info.value, "code", None)
    assert denied in (401, 1008) or isinstance(info.value, WebSocketDisconnect)
    with client.websocket_connect("/simulation/stream?max_messages=1", headers=GOOD) as ws:
        client.post("/simulation/step", headers=GOOD)
        assert ws.receive_json()["step"] == 1


def test_the_schema_declares_the_scheme_when_a_token_is_set(client, tmp_path):
    doc = client.get("/openapi.json", headers=GOOD).json()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"][
            "securitySchemes"]["bearer"]["description"]}
    assert doc["security"] == [{"bearer": []}]
    assert doc["paths"]["/health"]["get"]["security"] == []
    for path, item in doc["paths"].items():
        for op in item.values():
            assert ("401" in op["responses"]) == (path != "/health"), path
    with TestClient(create_app(str(tmp_path))) as open_client:  # no token: no scheme
        plain = open_client.get("/openapi.json").json()
        assert "security" not in plain and "securitySchemes" not in plain["components"]
        assert open_client.get("/simulations").status_code == 200


def test_an_empty_token_is_refused(tmp_path):
    from finsim_mesa.errors import ConfigError

    with pytest.raises(ConfigError):
        create_app(str(tmp_path), token="  ")


# ---------------------------------------------------------------- finsim serve
@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.4", False),
    ("example.org", False), ("", False)])
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


def _env_without_token():
    return {k: v for k, v in os.environ.items() if k != "FINSIM_API_TOKEN"}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_serve_beyond_loopback_refuses_to_start_without_a_token(host, capsys, monkeypatch,
                                                               tmp_path):
    from finsim_mesa.cli import main

    monkeypatch.chdir(tmp_path)  # the default data folder goes here
    monkeypatch.delenv("FINSIM_API_TOKEN", raising=False)
    started = []
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: started.append(a))
    assert main(["serve", "--host", host]) == 2
    err = capsys.readouterr().err
    assert "FINSIM_API_TOKEN" in err and "--token" in err and host in err
    assert not started
    # with a token (flag or variable) it would start
    assert main(["serve", "--host", host, "--token", TOKEN]) == 0 and len(started) == 1
    monkeypatch.setenv("FINSIM_API_TOKEN", TOKEN)
    assert main(["serve", "--host", host]) == 0 and len(started) == 2
    assert os.environ["FINSIM_API_TOKEN"] == TOKEN


def test_serve_empty_token_is_refused(capsys, monkeypatch):
    from finsim_mesa.cli import main

    monkeypatch.setenv("FINSIM_API_TOKEN", " ")
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: pytest.fail("started"))
    assert main(["serve"]) == 2
    assert "empty" in capsys.readouterr().err


def test_real_serve_on_all_interfaces_exits_2_with_a_message():
    """The real command, as a user runs it: refused before binding anything."""
    proc = subprocess.run([sys.executable, "-m", "finsim_mesa.cli", "serve", "--host",
                           "0.0.0.0", "--port", "1"], capture_output=True, text=True,
                          timeout=120, env=_env_without_token())
    assert proc.returncode == 2, proc.stderr
    assert "FINSIM_API_TOKEN" in proc.stderr and "0.0.0.0" in proc.stderr
    assert "Uvicorn running" not in proc.stderr + proc.stdout
