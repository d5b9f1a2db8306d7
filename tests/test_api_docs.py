"""What README.md and docs/design.md say about the REST API, checked claim by
claim where no other test does: the error body, the server full (409) and
how to free a place, the episode limit, the stream's close codes, and that
the limits quoted are the server's defaults and ``finsim serve``'s."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the REST API needs the 'api' extra")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from finsim_mesa.api import ApiLimits, create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def rest_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## REST API"):text.index("\n## ", text.index("## REST API") + 3)]


def ok(r):
    assert r.status_code == 200, r.text
    return r.json()


def test_the_readme_error_example_is_what_a_bad_request_gets(tmp_path):
    section = rest_section()
    block = section[section.index("```json") + 7:]
    documented = json.loads(block[:block.index("```")])
    with TestClient(create_app(str(tmp_path))) as c:
        assert c.post("/simulation/init", json={"n_banks": -5}).json() == documented
        r = c.post("/simulation/init", json={"n_banks": -987654321})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "n_banks"]
    assert "987654321" not in r.text  # the value sent is not echoed


def test_a_full_server_answers_409_saying_how_to_free_a_place(tmp_path):
    with TestClient(create_app(str(tmp_path), ApiLimits(max_simulations=2))) as c:
        first = ok(c.post("/simulation/init", json={"n_banks": 5, "seed": 1}))["sim_id"]
        ok(c.post("/simulation/init", json={"n_banks": 5, "seed": 2}))
        r = c.post("/simulation/init", json={"n_banks": 5, "seed": 3})
        assert r.status_code == 409
        detail = r.json()["detail"]
        assert "2 simulations, its limit" in detail and "DELETE /simulation?sim_id=" in detail
        assert "expire (3600 s)" in detail
        ok(c.delete("/simulation", params={"sim_id": first}))
        ok(c.post("/simulation/init", json={"n_banks": 5, "seed": 3}))  # a place again


def test_episodes_are_bounded_by_the_server(tmp_path):
    limits = ApiLimits()
    with TestClient(create_app(str(tmp_path), limits)) as c:
        r = c.post("/simulation/init", json={"n_banks": 5, "steps": limits.max_episode_steps + 1})
        assert r.status_code == 422
        assert f"at most {limits.max_episode_steps} steps" in r.json()["detail"]
        ok(c.post("/simulation/init", json={"n_banks": 5, "steps": limits.max_episode_steps}))
    assert f"{limits.max_episode_steps:,} steps" in rest_section()


def close_code(ws) -> tuple[int, list]:
    """Messages until the server closes the stream, and its close code."""
    messages = []
    while True:
        try:
            messages.append(ws.receive_json())
        except WebSocketDisconnect as end:
            return end.code, messages


def test_the_streams_close_codes(tmp_path):
    with TestClient(create_app(str(tmp_path), ApiLimits(max_streams=1))) as c:
        sid = ok(c.post("/simulation/init", json={"n_banks": 5, "seed": 1}))["sim_id"]
        ok(c.post("/simulation/run", params={"sim_id": sid, "num_steps": 3}))
        with c.websocket_connect(f"/simulation/stream?sim_id={sid}&max_messages=2") as ws:
            code, got = close_code(ws)
        assert code == 1000 and [m["seq"] for m in got] == [1, 2]  # max_messages
        with c.websocket_connect("/simulation/stream?sim_id=sim-9-nope") as ws:
            code, got = close_code(ws)
        assert code == 4404 and "not found" in got[0]["error"]
        with c.websocket_connect(f"/simulation/stream?sim_id={sid}&since=3") as busy:
            with c.websocket_connect(f"/simulation/stream?sim_id={sid}") as ws:
                code, got = close_code(ws)
            assert code == 1013 and "its limit" in got[0]["error"]
            ok(c.delete("/simulation", params={"sim_id": sid}))
            code, got = close_code(busy)
        assert code == 4410 and "deleted or expired" in got[-1]["error"]
    section = rest_section()
    for code in (1000, 4404, 4410, 1013, 1008):
        assert str(code) in section, code


def test_the_limits_quoted_are_the_defaults_of_the_server_and_of_finsim_serve():
    from finsim_mesa.cli import build_parser

    lim = ApiLimits()
    args = build_parser().parse_args(["serve"])
    assert (args.max_banks, args.max_steps, args.max_simulations, args.idle_ttl) == (
        lim.max_banks, lim.max_steps_per_request, lim.max_simulations, lim.idle_ttl_s)
    section = " ".join(rest_section().split())
    quoted = {f"`--max-banks` {lim.max_banks}", f"`--max-steps` {lim.max_steps_per_request}",
              f"`--max-simulations` {lim.max_simulations}",
              f"`--idle-ttl` {lim.idle_ttl_s:g} s", f"({lim.max_links:,})",
              f"({lim.max_model_mb:g} MB)", f"({lim.max_total_model_mb:,.0f} MB)",
              f"{lim.max_lookahead_work:,} per request", f"{lim.max_scenarios} client scenarios",
              f"{lim.max_streams} streams", f"{lim.max_body_bytes // 2**20} MiB bodies"}
    missing = [q for q in quoted if q not in section]
    assert not missing, missing
    # and the design notes name the same modules the package has
    design = (ROOT / "docs" / "design.md").read_text()
    api = design[design.index("## REST API"):]
    for module in re.findall(r"`(\w+)\.py`", api[:api.index("\n## ")]):
        assert (ROOT / "finsim_mesa" / "api" / f"{module}.py").exists(), module


def test_the_other_409s_say_how_to_make_room(tmp_path):
    """A scenario name taken by a different definition; simulations over the
    server's memory (estimated) and its room again after a DELETE."""
    with TestClient(create_app(str(tmp_path), ApiLimits(max_total_model_mb=1.0))) as c:
        first = ok(c.post("/simulation/init", json={"n_banks": 200, "seed": 1}))
        assert 0.5 < first["memory_mb_estimate"] < 1.0  # one fits, two do not
        r = c.post("/simulation/init", json={"n_banks": 200, "seed": 2})
        assert r.status_code == 409 and "delete one first" in r.json()["detail"]
        ok(c.delete("/simulation", params={"sim_id": first["sim_id"]}))
        ok(c.post("/simulation/init", json={"n_banks": 200, "seed": 2}))
        spec = {"name": "mine", "price_volatility": 0.03}
        ok(c.post("/scenarios/set", json={"definition": spec}))
        ok(c.post("/scenarios/set", json={"definition": spec}))  # the same again: fine
        r = c.post("/scenarios/set", json={"definition": spec | {"price_volatility": 0.05}})
        assert r.status_code == 409 and "choose another name" in r.json()["detail"]
