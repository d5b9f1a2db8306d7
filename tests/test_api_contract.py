"""The REST API's contract: the OpenAPI schema says what the server does.

Every status an operation can answer is declared, every error has the one
documented shape, the server's limits are the schema's bounds (a request
inside them is never refused for size), requests are strict, OPTIONS and 405
name the allowed methods, ``n_banks`` is the name (``num_banks`` an alias),
and the documentation pages work without the internet.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

pytest.importorskip("fastapi", reason="the REST API needs the 'api' extra")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from fastapi.testclient import TestClient  # noqa: E402

from finsim_mesa.api import ApiLimits, create_app  # noqa: E402
from finsim_mesa.decision import CANDIDATES  # noqa: E402

LIMITS = ApiLimits(max_banks=40, max_steps_per_request=7, max_lookahead_work=500,
                   max_train_episodes=9, max_train_banks=6)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app(str(tmp_path_factory.mktemp("models")), LIMITS, learn=lambda: False)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def doc(client):
    return client.get("/openapi.json").json()


def init(c, **body) -> str:
    r = c.post("/simulation/init", json=body)
    assert r.status_code == 200, r.text
    return r.json()["sim_id"]


def operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield path, method, op


# ---------------------------------------------------------------- statuses and error shape
def test_every_error_status_is_declared_where_it_occurs(doc):
    for path, method, op in operations(doc):
        declared = set(op["responses"])
        params = {p["name"] for p in op.get("parameters", [])}
        want = {"200"}
        if params or "requestBody" in op:
            want.add("422")
        if "sim_id" in params or "bank_id" in params:
            want.add("404")
        if "requestBody" in op:
            want.add("413")
        if path.startswith(("/train", "/models")):
            want.add("503")
        if path in ("/simulation/step", "/simulation/run", "/train/start", "/train/stop",
                    "/models/save", "/simulation/init", "/scenarios/set"):
            want.add("409")
        assert want <= declared, (method, path, sorted(want - declared))
        for code in declared - {"200"}:
            schema = op["responses"][code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, code)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    err = doc["components"]["schemas"]["ErrorResponse"]
    assert err["properties"]["detail"]["type"] == "string" and err["required"] == ["detail"]
    assert "Errors" in doc["info"]["description"]  # the shape is documented


def test_every_error_answer_has_the_one_shape(client):
    init(client, n_banks=5, seed=1)
    answers = [
        client.post("/simulation/init", json={"n_banks": 1}),            # field validation
        client.post("/simulation/init", json={"scenario": "mars"}),      # a name the server lacks
        client.post("/simulation/init", content=b"{oops", headers={"content-type":
                                                                     "application/json"}),
        client.post("/simulation/run"),                                  # missing parameter
        client.get("/metrics?sim_id=sim-0-none"),                        # 404
        client.get("/metrics/bank/39"),                                  # 404 (bank)
        client.put("/simulation"),                                       # 405
        client.get("/train/status"),                                     # 503
        client.get("/no/such/path"),                                     # 404 (route)
    ]
    for r in answers:
        assert r.status_code >= 400, r.text
        body = r.json()
        assert isinstance(body["detail"], str) and body["detail"], body
        assert set(body) <= {"detail", "errors"}
        if "errors" in body:  # request validation: where and what, never the value sent
            assert r.status_code == 422
            for issue in body["errors"]:
                assert set(issue) == {"loc", "msg", "type"} and issue["loc"][0] in (
                    "body", "query", "path"), issue


# ---------------------------------------------------------------- bounds = limits
def test_the_servers_limits_are_the_schemas_bounds(client, doc):
    comps, paths = doc["components"]["schemas"], doc["paths"]

    def param(path, method, name):
        return next(p for p in paths[path][method]["parameters"] if p["name"] == name)["schema"]

    assert param("/simulation/run", "post", "num_steps")["maximum"] == 7
    assert param("/simulation/step", "post", "num_steps")["maximum"] == 7
    init_req = comps["InitRequest"]["properties"]
    assert init_req["n_banks"]["maximum"] == 40 and init_req["n_banks"]["default"] == 30
    train = comps["TrainRequest"]["properties"]
    assert train["episodes"]["maximum"] == 9 and train["episodes"]["default"] == 9
    assert train["n_banks"]["maximum"] == 6 and train["n_banks"]["default"] == 6
    # lookahead: the largest steps x seeds x variants fits the work limit
    wi = comps["WhatIfRequest"]["properties"]
    assert wi["steps"]["maximum"] * wi["seeds"]["maximum"] * 2 <= 500
    assert wi["steps"]["default"] <= wi["steps"]["maximum"]
    for path in ("/recommendations/{bank_id}", "/recommendations"):
        steps, seeds = param(path, "get", "steps"), param(path, "get", "seeds")
        assert steps["type"] == seeds["type"] == "integer" and steps["minimum"] == 1
        assert steps["maximum"] * seeds["maximum"] * (len(CANDIDATES) + 1) <= 500
        assert steps["default"] <= steps["maximum"] and seeds["default"] <= seeds["maximum"]
    # a request at every maximum is served; one past it is refused
    sid = init(client, n_banks=40, seed=2, steps=10_000)
    assert client.post(f"/simulation/run?sim_id={sid}&num_steps=7").status_code == 200
    assert client.post(f"/simulation/run?sim_id={sid}&num_steps=8").status_code == 422
    r = client.post(f"/what_if?sim_id={sid}", json={"steps": wi["steps"]["maximum"],
                                                    "seeds": wi["seeds"]["maximum"]})
    assert r.status_code == 200, r.text
    assert client.post(f"/what_if?sim_id={sid}", json={}).status_code == 200  # the defaults
    assert client.post(f"/what_if?sim_id={sid}", json={"steps": wi["steps"]["maximum"] + 1}
                       ).status_code == 422
    steps = param("/recommendations/{bank_id}", "get", "steps")["maximum"]
    seeds = param("/recommendations/{bank_id}", "get", "seeds")["maximum"]
    assert client.get(f"/recommendations/0?sim_id={sid}&steps={steps}&seeds={seeds}"
                      ).status_code == 200
    assert client.get(f"/recommendations?sim_id={sid}").status_code == 200
    assert client.post("/simulation/init", json={"n_banks": 41}).status_code == 422


def test_refusals_the_schema_did_not_express_are_in_it_now(client, doc):
    comps = doc["components"]["schemas"]
    # banks: [] is refused, and the schema says at least one
    for name in ("Loss", "Default", "PriceCrash", "ModelLoadRequest"):
        banks = comps[name]["properties"]["banks"]
        arr = banks["anyOf"][0] if "anyOf" in banks else banks
        assert arr["minItems"] == 1, name
    init(client, n_banks=5, seed=3)
    r = client.post("/scenarios/shock", json={"kind": "default", "banks": []})
    assert r.status_code == 422
    # /scenarios/set needs exactly one of scenario and definition
    assert comps["ScenarioSetRequest"]["oneOf"] == [{"required": ["scenario"]},
                                                    {"required": ["definition"]}]
    for body in ({}, {"restart": True}, {"scenario": "normal", "definition": {"name": "x"}},
                 {"scenario": None}):
        assert client.post("/scenarios/set", json=body).status_code == 422, body
    # a shock's magnitude range is per kind, in the schema
    assert comps["PriceCrash"]["properties"]["magnitude"]["exclusiveMaximum"] == 1
    assert comps["Loss"]["properties"]["magnitude"]["maximum"] == 10
    assert "banks" in comps["Loss"]["required"]


def test_requests_are_strict(client):
    base = {"n_banks": 5, "seed": 1}
    for extra in ({"n_ccps": False}, {"n_exchanges": True}, {"n_banks": "5"},
                  {"seed": 1.5}, {"steps": "10"}, {"config": {"n_assets": True}},
                  {"config": {"forced_deleveraging": 1}}, {"config": {"loan_maturity": 2.5}},
                  {"config": {"balance_sheets": "/etc/passwd"}}, {"brain": None}):
        r = client.post("/simulation/init", json=base | extra)
        assert r.status_code == 422, (extra, r.text)
    # JSON has one number type: 5.0 is the integer 5
    r = client.post("/simulation/init", json={"n_banks": 5.0, "seed": 1, "n_ccps": 0.0})
    assert r.status_code == 200 and r.json()["n_banks"] == 5
    assert client.post("/scenarios/shock", json={"kind": "default", "banks": [1.0]}
                       ).status_code == 200


def test_options_and_405_name_the_allowed_methods(client):
    r = client.options("/simulation")
    assert r.status_code == 204 and r.headers["allow"] == "GET, DELETE, OPTIONS"
    r = client.put("/simulation")
    assert r.status_code == 405 and r.headers["allow"] == "GET, DELETE, OPTIONS"
    assert "DELETE" in r.json()["detail"]
    assert client.options("/simulation/init").headers["allow"] == "POST, OPTIONS"
    assert client.options("/metrics/bank/3").headers["allow"] == "GET, OPTIONS"
    r = client.delete("/metrics/bank/3")
    assert r.status_code == 405 and r.headers["allow"] == "GET, OPTIONS"
    assert client.options("/nowhere").status_code == 404


# ---------------------------------------------------------------- naming
def test_n_banks_is_the_name_and_num_banks_an_alias(client, doc):
    init_req = doc["components"]["schemas"]["InitRequest"]["properties"]
    assert init_req["num_banks"]["deprecated"] is True and "n_banks" in init_req
    for body in ({"n_banks": 7}, {"num_banks": 7}, {"n_banks": 7, "num_banks": 7}):
        r = client.post("/simulation/init", json=body | {"seed": 1})
        assert r.status_code == 200, (body, r.text)
        assert r.json()["n_banks"] == r.json()["num_banks"] == 7
    r = client.post("/simulation/init", json={"n_banks": 7, "num_banks": 8})
    assert r.status_code == 422 and "differ" in r.json()["detail"]
    r = client.post("/simulation/init", json={"seed": 1})
    assert r.status_code == 200 and r.json()["n_banks"] == 30


# ---------------------------------------------------------------- docs offline
class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_use_only_local_assets(client, page):
    r = client.get(page)
    assert r.status_code == 200
    html = r.text
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.I), \
        "the page points off the server"
    refs = _Refs()
    refs.feed(html)
    urls = refs.urls + re.findall(r"""(?:url|spec-url)\s*[:=]\s*['"]([^'"]+)['"]""", html)
    assert any(u.endswith(".js") for u in urls) and "/openapi.json" in urls, urls
    for url in urls:
        assert url.startswith("/"), url
        got = client.get(url)
        assert got.status_code == 200 and len(got.content) > 100, url
    if page == "/docs":
        bundle = client.get(next(u for u in urls if u.endswith("swagger-ui-bundle.js"))).text
        assert re.search(r'"5\.\d+\.\d+"', bundle)  # Swagger UI 5: reads OpenAPI 3.1
