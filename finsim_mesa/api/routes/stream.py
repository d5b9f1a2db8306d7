"""The WebSocket ``/simulation/stream``: per-step metrics as JSON messages."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from finsim_mesa.api.deps import Store
from finsim_mesa.api.payloads import clean
from finsim_mesa.api.sessions import NotFound

__all__ = ["router"]

router = APIRouter()


def _after(log: Sequence[dict[str, Any]], seq: int) -> list[dict[str, Any]]:
    """The records of ``log`` (a deque, oldest first) with sequence number > ``seq``."""
    start = max(0, len(log) - (log[-1]["seq"] - seq))
    return [rec for rec in itertools.islice(log, start, None) if rec["seq"] > seq]


@router.websocket("/simulation/stream")
async def stream(ws: WebSocket, store: Store, sim_id: str | None = None, since: int = 0,
                 max_messages: int | None = None) -> None:
    """Per-step metrics as JSON messages, from sequence number ``since`` on
    (each record has ``seq``, ``sim_id`` and the fields of GET /metrics)."""
    await ws.accept()
    try:
        session = store.get(sim_id)
    except NotFound as err:
        await ws.send_json({"error": str(err).strip("'\"")})
        await ws.close(code=4404)
        return
    sent, seq = 0, max(int(since), 0)
    try:
        while max_messages is None or sent < max_messages:
            log = session.log
            if not (log and log[-1]["seq"] > seq):
                await asyncio.sleep(0.02)
                continue
            for rec in _after(log, seq):
                await ws.send_json(clean(rec))
                seq, sent = rec["seq"], sent + 1
                if max_messages is not None and sent >= max_messages:
                    break
        await ws.close()
    except WebSocketDisconnect:
        return
