"""The route class of every endpoint: request bodies are read as strict JSON.

JSON has no NaN or Infinity, and ``1e400`` is not a number a float can hold;
Python's parser lets all three through, and a value that cannot be written
back as JSON then breaks the error answer. Here they are refused while the
body is parsed (422 with the reason), as is anything else that is not JSON
(invalid UTF-8 included).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

__all__ = ["FinsimRoute", "strict_json"]


class _NonFinite(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _NonFinite(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(f"{text} is too large for a number (the largest is about 1.8e308)")
    return value


def strict_json(body: bytes) -> Any:
    """``json.loads`` refusing NaN, Infinity and overflowing numbers.

    Raises:
        json.JSONDecodeError: the body is not strict JSON (the message says why).
    """
    try:
        return json.loads(body, parse_constant=_constant, parse_float=_float)
    except json.JSONDecodeError:
        raise
    except ValueError as err:  # _NonFinite, invalid UTF-8, an integer of > 4300 digits
        doc = body.decode("utf-8", "replace")
        raise json.JSONDecodeError(str(err), doc, 0) from None


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
        return self._json


class FinsimRoute(APIRoute):
    """An ``APIRoute`` whose request parses its body with :func:`strict_json`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
