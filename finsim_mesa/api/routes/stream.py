"""The WebSocket ``/simulation/stream``: per-step metrics as JSON messages.

A stream ends when the client goes away (its close, or a dropped connection
that the server's pings find), when its simulation is deleted or expires (a
last ``{"error": ...}`` message, close code 4410), or after ``max_messages``.
At most ``ApiLimits.max_streams`` are open at once (close code 1013 beyond).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from finsim_mesa.api.deps import Store
from finsim_mesa.api.errors import NotFound
from finsim_mesa.api.payloads import clean

__all__ = ["router"]

router = APIRouter()

POLL_S = 0.02  # how often a stream looks for new records while the simulation steps
IDLE_POLL_S = 0.2  # ... and while nothing happens (no new record for a second)


def _after(log: Sequence[dict[str, Any]], seq: int) -> list[dict[str, Any]]:
    """The records of ``log`` (a deque, oldest first) with sequence number > ``seq``."""
    start = max(0, len(log) - (log[-1]["seq"] - seq))
    return [rec for rec in itertools.islice(log, start, None) if rec["seq"] > seq]


async def _until_gone(ws: WebSocket) -> None:
    """Return when the client has closed the connection (messages it sends are ignored)."""
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
    except (WebSocketDisconnect, RuntimeError, OSError):
        return


@router.websocket("/simulation/stream")
async def stream(ws: WebSocket, store: Store, sim_id: Annotated[str | None, Query(
                     max_length=64)] = None,
                 since: Annotated[int, Query(ge=0)] = 0,
                 max_messages: Annotated[int | None, Query(ge=1)] = None) -> None:
    """Per-step metrics as JSON messages, from sequence number ``since`` on
    (each record has ``seq``, ``sim_id`` and the fields of GET /metrics)."""
    state = ws.app.state
    if state.streams >= state.limits.max_streams:
        await ws.accept()
        await ws.send_json({"error": f"this server has {state.streams} streams open, its "
                                     "limit; try again later"})
        await ws.close(code=1013)
        return
    state.streams += 1
    try:
        await ws.accept()
        try:
            session = store.get(sim_id)
        except NotFound as err:
            await ws.send_json({"error": str(err).strip("'\"")})
            await ws.close(code=4404)
            return
        gone = asyncio.ensure_future(_until_gone(ws))
        try:
            await _send_records(ws, session, since, max_messages, gone)
        finally:
            gone.cancel()
    except (WebSocketDisconnect, RuntimeError, OSError):
        return  # the client went away while a message was sent
    finally:
        state.streams -= 1


async def _send_records(ws: WebSocket, session: Any, since: int, max_messages: int | None,
                        gone: asyncio.Future) -> None:
    sent, seq, idle = 0, since, 0.0
    while max_messages is None or sent < max_messages:
        if gone.done():
            return
        if session.closed.is_set():
            await ws.send_json({"error": f"simulation {session.sim_id} was deleted or expired"})
            await ws.close(code=4410)
            return
        log = session.log
        if not (log and log[-1]["seq"] > seq):
            delay = POLL_S if idle < 1.0 else IDLE_POLL_S
            idle += delay
            await asyncio.wait({gone}, timeout=delay)
            continue
        idle = 0.0
        for rec in _after(log, seq):
            await ws.send_json(clean(rec))
            seq, sent = rec["seq"], sent + 1
            if max_messages is not None and sent >= max_messages:
                break
    await ws.close()
