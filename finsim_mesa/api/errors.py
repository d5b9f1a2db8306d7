"""Errors of the REST API: one JSON shape for every error, the exceptions
handlers raise, the status each is answered with, and the responses each
operation declares in the OpenAPI schema.

Every error answer (4xx and 5xx) is ``{"detail": "<one message>"}``; a request
that fails validation adds ``"errors"``: one entry per problem with ``loc``
(where: ``["body", "n_banks"]``, ``["query", "num_steps"]``), ``msg`` and
``type``. The value that was sent is never echoed back (it may be NaN, huge or
binary), so an error answer is always valid JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from finsim_mesa.errors import FinsimError

__all__ = [
    "ERROR_STATUS",
    "Conflict",
    "ErrorIssue",
    "ErrorResponse",
    "MethodTable",
    "NotFound",
    "install_error_handlers",
    "responses",
]


class NotFound(LookupError):
    """No such simulation (never created, deleted or expired) or bank."""


class Conflict(RuntimeError):
    """The request does not fit the state of the simulation or of the server
    (its episode is over, a job is running, a table is full)."""


class ErrorIssue(BaseModel):
    loc: list[str | int] = Field(description="where: 'body', 'query' or 'path', then the "
                                             "field names and list positions")
    msg: str
    type: str = Field(description="pydantic's error type, e.g. 'missing', 'int_type'")


class ErrorResponse(BaseModel):
    """Every error answer: one message, and for invalid requests each problem."""

    detail: str = Field(description="what went wrong and what is accepted")
    errors: list[ErrorIssue] | None = Field(
        None, description="request validation only (422): one entry per problem")


def _late_imports() -> dict[type[Exception], int]:
    from finsim_mesa.api.journal import JournalError
    from finsim_mesa.api.training import LearnMissing

    return {LearnMissing: 503, JournalError: 503}


# exceptions a handler may raise and the status they are answered with (the
# most specific class wins: LearnMissing is a FinsimError)
ERROR_STATUS: dict[type[Exception], int] = {
    NotFound: 404,
    FileNotFoundError: 404,
    Conflict: 409,
    FinsimError: 422,
}

_DESCRIPTIONS = {
    400: "The body could not be read (e.g. it is not UTF-8)",
    401: "Missing or wrong bearer token (Authorization: Bearer ...)",
    404: "No such simulation (never created, deleted or expired), bank or model",
    409: "The request does not fit the current state (episode over, a job running, a "
         "server table full)",
    413: "The request body is larger than the server accepts",
    422: "Invalid request: a field out of range, an unknown name, a value the model "
         "refuses, or work beyond the server's limits",
    503: "Training and trained models need the 'learn' extra, which this server lacks; or "
         "the server's journal could not record a change (its data folder is full or not "
         "writable; the message names the file)",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses (``ErrorResponse``)."""
    return {code: {"model": ErrorResponse, "description": _DESCRIPTIONS[code]}
            for code in codes}


def error_json(status: int, detail: str, headers: dict[str, str] | None = None,
               errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    content: dict[str, Any] = {"detail": detail}
    if errors is not None:
        content["errors"] = errors
    return JSONResponse(status_code=status, content=content, headers=headers)


def _loc_text(loc: Iterable[Any]) -> str:
    return ".".join(str(p) for p in loc)


def validation_errors(errs: Iterable[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The one-line message and the issue list of a validation error, without
    the values sent."""
    issues = []
    for e in errs:
        loc = [p if isinstance(p, int) else str(p) for p in e.get("loc", ())]
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if e.get("type") == "extra_forbidden":
            msg = "unknown field (not accepted here)"
        elif e.get("type") in ("literal_error", "enum", "union_tag_invalid"):
            msg = f"unknown value; {msg[:1].lower()}{msg[1:]}"
        elif e.get("type") == "json_invalid":
            msg = f"not valid JSON: {(e.get('ctx') or {}).get('error', 'decode error')}"
            loc = ["body"]
        issues.append({"loc": loc, "msg": msg, "type": str(e.get("type", "invalid"))})
    text = "; ".join(f"{_loc_text(i['loc'])}: {i['msg']}" if i["loc"] else i["msg"]
                     for i in issues)
    return text or "invalid request", issues


class MethodTable:
    """Which methods each path answers, from the routes' own paths and methods
    (several routes may share a path: GET and DELETE /simulation)."""

    ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE")

    def __init__(self, routes: Iterable[Any]) -> None:
        from starlette.routing import compile_path

        self._table: list[tuple[Any, set[str]]] = []
        for route in routes:
            path, methods = getattr(route, "path", None), getattr(route, "methods", None)
            if path and methods:
                self._table.append((compile_path(path)[0], set(methods)))

    def allowed(self, path: str) -> list[str]:
        """The methods ``path`` answers, OPTIONS last; [] if no route has it."""
        methods: set[str] = set()
        for regex, ms in self._table:
            if regex.match(path):
                methods |= ms
        methods.discard("HEAD")
        if not methods:
            return []
        return ([m for m in self.ORDER if m in methods] + sorted(methods - set(self.ORDER))
                + ["OPTIONS"])


def install_error_handlers(app: FastAPI) -> None:
    """Map exceptions to statuses and give every error the one JSON shape."""
    table = ERROR_STATUS | _late_imports()

    def handler(status: int):
        async def handle(request: Request, exc: Exception) -> JSONResponse:
            return error_json(status, str(exc).strip("'\""))
        return handle

    for exc, status in table.items():
        app.add_exception_handler(exc, handler(status))

    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        text, issues = validation_errors(exc.errors())
        return error_json(422, text, errors=issues)

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allow = request.app.state.methods.allowed(request.url.path) or ["OPTIONS"]
            headers["Allow"] = ", ".join(allow)
            detail = (f"method {request.method} is not allowed on {request.url.path}; "
                      f"allowed: {', '.join(allow)}")
        else:
            detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return error_json(exc.status_code, detail, headers=headers or None)

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
