"""``GET /events/{id}`` and ``GET /trace/{id}``: one stored event, one flow, as JSON.

``/events/{id}`` searches every topic of the app's events (not tidings'
internal topics, ``tidings.*``, nor dead-letter topics, ``*.dlq``), or the
one topic ``?topic=`` names, any topic included; it answers the event in
structured mode and every place it is stored (a redriven event is stored
twice). ``/trace/{id}`` answers what ``tidings trace ID --json`` prints.
Both read the topics through: operators' looks, not paths for every request.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tidings._times import format_time
from tidings.causal import flow_document, read_flow
from tidings.codec import Codec
from tidings.deadletter import DLQ_SUFFIX
from tidings.errors import DecodeError, TidingsError
from tidings.event import Event
from tidings.gateway._inspect import not_inspectable
from tidings.gateway._responses import error
from tidings.gateway._state import gateway_of
from tidings.inspection import Inspectable, TopicInfo
from tidings.outcomes import is_internal_topic
from tidings.positions import stored

__all__ = ["show_event", "show_trace"]


async def show_event(request: Request) -> Response:
    broker = gateway_of(request).inspectable
    if broker is None:
        return not_inspectable(request)
    wanted = request.path_params["id"]
    named = request.query_params.get("topic")
    try:
        topics = await broker.list_topics()
        if named is not None:
            topics = [t for t in topics if t.name == named]
            if not topics:
                return error(404, f"no topic {named!r}")
        else:
            topics = [t for t in topics if _holds_events(t)]
        event, places = await _find(broker, wanted, topics)
    except TidingsError as exc:
        return error(503, f"the broker failed: {exc}")
    if event is None:
        where = f"topic {named!r}" if named is not None else "any topic"
        return error(404, f"no event with id {wanted!r} in {where}")
    document = json.loads(Codec().encode_structured(event))
    return JSONResponse({"event": document, "stored": places})


def _holds_events(info: TopicInfo) -> bool:
    return not is_internal_topic(info.name) and not info.name.endswith(DLQ_SUFFIX)


async def _find(
    broker: Inspectable, wanted: str, topics: list[TopicInfo]
) -> tuple[Event | None, list[dict[str, object]]]:
    codec = Codec()
    found: Event | None = None
    places: list[dict[str, object]] = []
    for info in topics:
        async for message in stored(broker, info.name, info.partitions):
            try:
                event = codec.decode(message.message.value, message.message.headers)
            except DecodeError:
                continue
            if event.id == wanted:
                found = found or event
                places.append(
                    {
                        "topic": message.topic,
                        "partition": message.partition,
                        "offset": message.offset,
                        "stored_at": format_time(message.published_at),
                    }
                )
    return found, places


async def show_trace(request: Request) -> Response:
    broker = gateway_of(request).inspectable
    if broker is None:
        return not_inspectable(request)
    wanted = request.path_params["id"]
    try:
        flow = await read_flow(broker, wanted)
    except TidingsError as exc:
        return error(503, f"the broker failed: {exc}")
    if flow is None:
        return error(404, f"no event with id or correlation id {wanted!r}")
    return JSONResponse(flow_document(wanted, flow))
