"""``POST /topics/{topic}/events``: the CloudEvents HTTP binding, three modes.

* structured: ``Content-Type: application/cloudevents+json``, one event as JSON;
* batch: ``Content-Type: application/cloudevents-batch+json``, an array of them;
* binary: the attributes in ``ce-`` headers, the data in the body (any type).

Answers 202 with the ids once the broker accepted every event (one broker
call: a batch is stored whole or not at all where the broker can).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tidings.errors import (
    ConfigurationError,
    DecodeError,
    EventTooLargeError,
    InvalidEventError,
    TidingsError,
)
from tidings.event import Event
from tidings.gateway._responses import error
from tidings.gateway._state import Gateway, gateway_of
from tidings.routing import validate_topic

__all__ = ["BATCH_CONTENT_TYPE", "publish_events"]

BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
_STRUCTURED = frozenset({"application/cloudevents+json", "application/cloudevents"})
_SUPPORTED = (
    "send application/cloudevents+json (structured), "
    f"{BATCH_CONTENT_TYPE} (batch), or binary mode with ce-specversion, ce-id, "
    "ce-source and ce-type headers"
)


class _TooLarge(Exception):
    pass


async def publish_events(request: Request) -> Response:
    gateway = gateway_of(request)
    topic = request.path_params["topic"]
    try:
        validate_topic(topic)
    except ConfigurationError as exc:
        return error(400, str(exc))
    limit = gateway.settings.max_body_size
    try:
        body = await _body(request, limit)
    except _TooLarge:
        return error(413, f"request body over the limit of {limit} bytes")
    try:
        events = _decode(gateway, request, body)
    except _Unsupported as exc:
        return error(415, str(exc))
    except DecodeError as exc:
        return error(400, f"invalid CloudEvent: {exc}")
    key = request.query_params.get("key")
    if key:
        events = [e if e.partitionkey else e.replace(partitionkey=key) for e in events]
    try:
        await gateway.app.publish_batch(events, topic=topic)
    except EventTooLargeError as exc:
        return error(413, str(exc))
    except InvalidEventError as exc:
        return error(400, f"invalid CloudEvent: {exc}")
    except TidingsError as exc:
        return error(503, f"the broker did not accept the events: {exc}")
    return JSONResponse({"topic": topic, "ids": [e.id for e in events]}, status_code=202)


class _Unsupported(Exception):
    pass


def _decode(gateway: Gateway, request: Request, body: bytes) -> list[Event]:
    headers = request.headers
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if "ce-specversion" in headers:
        return [gateway.http_codec.decode(body, dict(headers))]
    if media in _STRUCTURED:
        return [gateway.http_codec.decode_structured(body)]
    if media == BATCH_CONTENT_TYPE:
        events = gateway.http_codec.decode_batch(body)
        if not events:
            raise DecodeError("the batch is empty")
        return events
    if any(name.startswith("ce-") for name in headers):
        raise DecodeError("binary mode needs a ce-specversion header (1.0)")
    shown = f"content type {media!r}" if media else "no content type"
    raise _Unsupported(f"{shown} and no ce- headers: {_SUPPORTED}")


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)
