"""The OpenAPI document: what the server does, including its limits.

FastAPI builds the document from the routes and models; this module adds
what depends on how the server was started:

- the bounds its limits put on requests (``maximum`` of ``n_banks``,
  ``num_steps``, lookahead ``steps`` and ``seeds``, training size), so a
  request the schema allows is never refused for size;
- links from ``POST /simulation/init`` to every operation that takes
  ``sim_id`` (clients and stateful testers follow them);
- the bearer-token security scheme and the 401 answer when a token is set.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from finsim_mesa.api.limits import ApiLimits, lookahead_bounds

__all__ = ["LOOKAHEAD_VARIANTS", "default_banks", "default_train", "install_openapi",
           "lookahead_limits"]

# variants simulated per seed: what-if (baseline, hypothetical); a recommendation
# (every candidate action and the bank's own brain)
LOOKAHEAD_VARIANTS = {"what_if": 2, "recommend": None, "recommend_all": None}
_DEFAULTS = {"what_if": (10, 10), "recommend": (10, 10), "recommend_all": (5, 3)}


def lookahead_limits(limits: ApiLimits, kind: str) -> Any:
    """The bounds and defaults of ``steps`` and ``seeds`` for ``kind``
    (``what_if``, ``recommend``, ``recommend_all``)."""
    from finsim_mesa.decision import CANDIDATES

    variants = LOOKAHEAD_VARIANTS[kind] or len(CANDIDATES) + 1
    return lookahead_bounds(limits, variants, *_DEFAULTS[kind])


def default_banks(limits: ApiLimits) -> int:
    """Banks of a simulation when the request does not say: 30, or the limit."""
    return min(30, limits.max_banks)


def default_train(limits: ApiLimits) -> tuple[int, int]:
    """Episodes and banks of a training job when the request does not say."""
    return min(200, limits.max_train_episodes), min(30, limits.max_train_banks)


DESCRIPTION = """\
Financial contagion simulations (Mesa) over HTTP. Endpoints that act on a
simulation take `?sim_id=...`; without it they act on the most recently
created one.

**Errors** all have one shape: `{"detail": "<message>"}`; an invalid request
(422) adds `"errors": [{"loc": [...], "msg": "...", "type": "..."}]`, one entry
per problem (the values sent are never echoed). Statuses: 401 missing or
wrong token, 404 unknown simulation, bank or model, 405 method not allowed
(with `Allow`), 409 the request does not fit the current state, 413 body too
large, 422 invalid request, 503 training without the `learn` extra, or a
change the server's journal could not record.

**Restarts**: a server started with a data folder (`finsim serve --data`,
the default) journals every change of every simulation and brings them back,
bit-identical, when it restarts (a kill included).

**Limits** of this server are the `maximum`s of the schema (banks, steps per
request, lookahead steps and seeds, training size); the size of a network
(links) and the memory of a simulation are estimated from the request and
refused (422) over the server's limits, with the estimate.
"""


def _param(op: dict[str, Any], name: str) -> dict[str, Any] | None:
    for p in op.get("parameters", []):
        if p.get("name") == name:
            return p
    return None


def _set_int(schema: dict[str, Any], maximum: int, default: int | None = None) -> None:
    """An integer parameter (FastAPI writes ``int | None`` as anyOf integer/null;
    None only stands for the default here) with the server's bounds."""
    for branch in schema.pop("anyOf", []):
        if branch.get("type") == "integer":
            schema.update(branch)
    schema["type"] = "integer"
    schema["maximum"] = maximum
    if default is not None:
        schema["default"] = default


def apply_limits(doc: dict[str, Any], limits: ApiLimits) -> None:
    """Write the server's limits into the document's bounds."""
    paths, comps = doc["paths"], doc["components"]["schemas"]
    init = comps["InitRequest"]["properties"]
    for name in ("n_banks", "num_banks"):
        init[name]["maximum"] = limits.max_banks
    init["n_banks"]["default"] = default_banks(limits)
    init["steps"]["anyOf"][0]["maximum"] = limits.max_episode_steps
    train = comps["TrainRequest"]["properties"]
    train["episodes"]["maximum"] = limits.max_train_episodes
    train["episodes"]["default"] = default_train(limits)[0]
    for name in ("n_banks", "num_banks"):
        train[name]["maximum"] = limits.max_train_banks
    train["n_banks"]["default"] = default_train(limits)[1]
    for path in ("/simulation/step", "/simulation/run"):
        _param(paths[path]["post"], "num_steps")["schema"]["maximum"] = \
            limits.max_steps_per_request
    b = lookahead_limits(limits, "what_if")
    wi = comps["WhatIfRequest"]["properties"]
    _set_int(wi["steps"], b.steps, b.default_steps)
    _set_int(wi["seeds"], b.seeds, b.default_seeds)
    for path, kind in (("/recommendations/{bank_id}", "recommend"),
                       ("/recommendations", "recommend_all")):
        b = lookahead_limits(limits, kind)
        op = paths[path]["get"]
        _set_int(_param(op, "steps")["schema"], b.steps, b.default_steps)
        _set_int(_param(op, "seeds")["schema"], b.seeds, b.default_seeds)
    for path in ("/recommendations/{bank_id}", "/metrics/bank/{bank_id}"):
        op = paths[path]["get"]
        _param(op, "bank_id")["schema"]["maximum"] = limits.max_banks - 1


def add_links(doc: dict[str, Any]) -> None:
    """Links from the new simulation to every operation taking ``sim_id``."""
    links: dict[str, Any] = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if _param(op, "sim_id") is None:
                continue
            name = op["operationId"]
            links[name] = {"operationId": name,
                           "parameters": {"query.sim_id": "$response.body#/sim_id"},
                           "description": f"{method.upper()} {path} on the new simulation"}
    doc["paths"]["/simulation/init"]["post"]["responses"]["200"]["links"] = links


def add_security(doc: dict[str, Any]) -> None:
    """Bearer-token security on every operation but ``GET /health``."""
    comps = doc["components"]
    comps.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer",
        "description": "the server's token (finsim serve --token or FINSIM_API_TOKEN)"}
    doc["security"] = [{"bearer": []}]
    for path, item in doc["paths"].items():
        for op in item.values():
            if path == "/health":
                op["security"] = []
                continue
            op["responses"].setdefault("401", {
                "description": "Missing or wrong bearer token",
                "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/ErrorResponse"}}}})


def install_openapi(app: FastAPI, limits: ApiLimits, token: str | None) -> None:
    """Make ``app.openapi()`` return the document with limits, links and security."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version,
                              description=app.description, routes=app.routes)
            apply_limits(doc, limits)
            add_links(doc)
            if token:
                add_security(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
