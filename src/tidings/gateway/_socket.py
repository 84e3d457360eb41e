"""``/topics/{topic}/ws``: new events over a WebSocket, one text frame each.

Each frame is one structured CloudEvent (JSON), the same as a ``data:``
line of the event stream, from the same source: stored events from now on
where the broker can be inspected, else a group-less live subscription.
``filter=ATTR=VALUE`` (repeatable) and ``limit=N`` work as on the stream;
after ``limit`` events the gateway closes with 1000. Bad parameters close
the socket with 4400 and the reason, a broker failure with 1011. What the
client sends is ignored.
(The origin and token checks are :mod:`tidings.gateway._guard`'s.)
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.websockets import WebSocket, WebSocketDisconnect

from tidings.codec import Codec
from tidings.errors import ConfigurationError, TidingsError
from tidings.filters import Filter
from tidings.gateway._state import gateway_of
from tidings.gateway._stream import BadRequest, parse_filter, parse_limit, source
from tidings.routing import validate_topic

__all__ = ["BAD_REQUEST", "stream_socket"]

#: Close code for a request the gateway cannot serve as asked (application range).
BAD_REQUEST = 4400
NORMAL = 1000
INTERNAL_ERROR = 1011


async def stream_socket(websocket: WebSocket) -> None:
    topic = websocket.path_params["topic"]
    await websocket.accept()
    try:
        validate_topic(topic)
        match = parse_filter(websocket.query_params.getlist("filter"))
        limit = parse_limit(websocket.query_params.get("limit"))
    except (ConfigurationError, BadRequest) as exc:
        await websocket.close(BAD_REQUEST, _reason(str(exc)))
        return
    sender = asyncio.create_task(_send(websocket, topic, match, limit))
    listener = asyncio.create_task(_until_closed(websocket))
    try:
        await asyncio.wait((sender, listener), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, listener):
            task.cancel()
        await asyncio.gather(sender, listener, return_exceptions=True)
    failure = None if sender.cancelled() else sender.exception()
    if sender.cancelled() or isinstance(failure, WebSocketDisconnect):  # the client left
        return
    if failure is not None and not isinstance(failure, TidingsError):
        raise failure
    code, reason = NORMAL, ""
    if failure is not None:  # the broker failed: say so, as a 503 would
        code, reason = INTERNAL_ERROR, _reason(f"the broker failed: {failure}")
    with contextlib.suppress(RuntimeError):  # the client left meanwhile
        await websocket.close(code, reason)


def _reason(text: str) -> str:
    """``text`` cut to what a close frame holds (123 bytes of UTF-8)."""
    return text.encode()[:123].decode(errors="ignore")


async def _send(websocket: WebSocket, topic: str, match: Filter | None, limit: int | None) -> None:
    """Send events until ``limit`` (if any); returns when done, raises when the client left."""
    codec = Codec()
    sent = 0
    items = source(gateway_of(websocket), topic)
    async with contextlib.aclosing(items):  # closes a live subscription as the socket ends
        async for item in items:
            if item is None:
                continue
            _, event = item
            if match is not None and not match.matches(event):
                continue
            await websocket.send_text(codec.encode_structured(event).decode())
            sent += 1
            if limit is not None and sent >= limit:
                return


async def _until_closed(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
