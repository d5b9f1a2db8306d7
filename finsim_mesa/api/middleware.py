"""ASGI middleware of the service, outermost first: the bearer token, the
OPTIONS answer and the request-size cap.

- :class:`BearerAuth`: with a token set, every request but ``GET /health``
  (HTTP and WebSocket) needs ``Authorization: Bearer <token>``; the token is
  compared in constant time; a refusal is 401 with ``WWW-Authenticate``.
- :class:`Options`: ``OPTIONS`` on a known path answers 204 with ``Allow``
  listing the methods of every route on that path.
- :class:`BodyLimit`: a body whose ``Content-Length`` is over the limit is
  answered 413 without reading it; a body sent without a length (chunked) is
  cut off with 413 as soon as it passes the limit.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BearerAuth", "BodyLimit", "Options"]

PUBLIC_PATHS = frozenset({"/health"})


async def _send_json(send: Send, status: int, body: dict[str, Any],
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value
    return None


class BearerAuth:
    """Require ``Authorization: Bearer <token>`` (``token`` None: nothing required)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    def allowed(self, scope: Scope) -> bool:
        if self.token is None or scope["path"] in PUBLIC_PATHS:
            return True
        raw = _header(scope, b"authorization") or b""
        scheme, _, given = raw.partition(b" ")
        # compare_digest on equal-length bytes takes the same time wherever they differ
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allowed(scope):
            await self.app(scope, receive, send)
            return
        detail = ("this server needs a bearer token: send 'Authorization: Bearer <token>' "
                  "(the token finsim serve was given)")
        if scope["type"] == "websocket":
            if "websocket.http.response" in scope.get("extensions", {}):
                data = json.dumps({"detail": detail}).encode()
                await send({"type": "websocket.http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b"Bearer")]})
                await send({"type": "websocket.http.response.body", "body": data})
            else:
                await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
            return
        await _send_json(send, 401, {"detail": detail},
                         [(b"www-authenticate", b'Bearer realm="finsim"')])


class Options:
    """Answer ``OPTIONS`` on a known path with ``Allow`` (204)."""

    def __init__(self, app: ASGIApp, methods: Any) -> None:
        self.app = app
        self.methods = methods  # callable: path -> allowed methods ([] if no route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            allow = self.methods(scope["path"])
            if allow:
                await send({"type": "http.response.start", "status": 204,
                            "headers": [(b"allow", ", ".join(allow).encode())]})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised while a body is read past the limit (FastAPI passes an
    HTTPException raised by ``receive`` on to the error handlers: 413)."""


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, reading no more than that."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self, size: str) -> dict[str, str]:
        return {"detail": f"request body {size} is over this server's limit of "
                          f"{self.max_bytes:,} bytes"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                await _send_json(send, 400, {"detail": "Content-Length is not a number"})
                return
            if size > self.max_bytes:
                await _send_json(send, 413, self._detail(f"of {size:,} bytes"),
                                 [(b"connection", b"close")])
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(413, self._detail("(sent without a length)")["detail"],
                                       headers={"Connection": "close"})
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _send_json(send, 413, self._detail("(sent without a length)"),
                             [(b"connection", b"close")])
