"""``GET /topics/{topic}/stream``: new events as Server-Sent Events.

Each event is one ``id: <partition>:<offset>`` and one ``data:`` line holding
the structured CloudEvent; an idle stream sends a comment line now and then
(``: heartbeat``) so that proxies and clients keep it open. On an inspectable
broker the stream reads what is stored without joining a group, and a client
reconnecting with ``Last-Event-ID`` resumes after that event; elsewhere it is
a group-less live subscription: events published while it is open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tidings.broker import SubscribeOptions
from tidings.codec import Codec
from tidings.errors import ConfigurationError, DecodeError
from tidings.event import Event
from tidings.filters import Filter, all_of, exact
from tidings.gateway._responses import error
from tidings.gateway._state import Gateway, gateway_of
from tidings.inspection import Inspectable
from tidings.positions import head, since
from tidings.routing import validate_topic

__all__ = ["BadRequest", "Item", "parse_filter", "parse_limit", "source", "stream_events"]

_PAGE = 500
_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class BadRequest(Exception):
    """A query parameter or header of a stream request is wrong (answered with 400)."""


async def stream_events(request: Request) -> Response:
    gateway = gateway_of(request)
    topic = request.path_params["topic"]
    try:
        validate_topic(topic)
        match = parse_filter(request.query_params.getlist("filter"))
        limit = parse_limit(request.query_params.get("limit"))
        resume = _last_event_id(request.headers.get("last-event-id"))
    except (ConfigurationError, BadRequest) as exc:
        return error(400, str(exc))
    frames = _frames(source(gateway, topic, resume), match, limit, gateway.settings.heartbeat)
    return StreamingResponse(frames, media_type="text/event-stream", headers=_HEADERS)


def parse_filter(specs: list[str]) -> Filter | None:
    parts = []
    for spec in specs:
        name, equals, value = spec.partition("=")
        if not equals or not name:
            raise BadRequest(f"filter {spec!r} is not ATTR=VALUE, e.g. type=OrderPlaced")
        try:
            parts.append(exact(**{name: value}))
        except ConfigurationError as exc:
            raise BadRequest(f"filter {spec!r}: {exc}") from None
    return all_of(*parts) if parts else None


def parse_limit(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or int(text) < 1:
        raise BadRequest(f"limit must be a positive integer, got {text!r}")
    return int(text)


def _last_event_id(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    partition, colon, offset = text.partition(":")
    if not colon or not partition.isdigit() or not offset.lstrip("-").isdigit():
        raise BadRequest(f"Last-Event-ID {text!r} is not <partition>:<offset>, e.g. 0:41")
    return int(partition), int(offset)


#: What a source yields: an event with its id, or None when it found nothing for a while.
Item = tuple[str, Event] | None


def source(
    gateway: Gateway, topic: str, resume: tuple[int, int] | None = None
) -> AsyncGenerator[Item, None]:
    """New events of ``topic``: read from storage where the broker can be inspected, else live."""
    broker = gateway.inspectable
    if broker is not None:
        return _stored(gateway, broker, topic, resume)
    return _live(gateway, topic)


async def _frames(
    items: AsyncGenerator[Item, None], match: Filter | None, limit: int | None, heartbeat: float
) -> AsyncIterator[str]:
    codec = Codec()
    sent = 0
    quiet_since = time.monotonic()
    yield ": stream open\n\n"  # headers and a first byte now, not with the first event
    async with aclosing(items):  # closes a live subscription as the stream ends
        async for item in items:
            if item is None:
                if time.monotonic() - quiet_since >= heartbeat:
                    quiet_since = time.monotonic()
                    yield ": heartbeat\n\n"
                continue
            position, event = item
            if match is not None and not match.matches(event):
                continue
            data = codec.encode_structured(event).decode()
            yield f"id: {position}\ndata: {data}\n\n"
            quiet_since = time.monotonic()
            sent += 1
            if limit is not None and sent >= limit:
                return


async def _stored(
    gateway: Gateway, broker: Inspectable, topic: str, resume: tuple[int, int] | None
) -> AsyncGenerator[Item, None]:
    """New events read from storage; poison (not a CloudEvent) is skipped."""
    codec = gateway.app.codec
    positions = await _start(broker, topic, resume)
    while True:
        if not positions:  # no such topic yet: look again
            positions = await _start(broker, topic, None, created=True)
        page = await broker.read(topic, after=positions, limit=_PAGE) if positions else []
        for record in page:
            positions[record.partition] = record.offset + 1
            message = record.message
            try:
                event = codec.decode(message.value, message.headers)
            except DecodeError:
                continue
            yield f"{record.partition}:{record.offset}", event
        if len(page) < _PAGE:
            yield None
            await asyncio.sleep(gateway.settings.poll_interval)


async def _start(
    broker: Inspectable, topic: str, resume: tuple[int, int] | None, *, created: bool = False
) -> dict[int, int]:
    """Per partition, the offset to read from; empty while the topic does not exist."""
    info = next((t for t in await broker.list_topics() if t.name == topic), None)
    if info is None:
        return {}
    partitions = range(info.partitions)
    if created:  # it appeared while the stream was open: all of it is new
        return dict.fromkeys(partitions, 0)
    if resume is None:
        return {p: await head(broker, topic, p) for p in partitions}
    partition, offset = resume
    found = await broker.read(topic, after={partition: offset}, limit=1)
    if not found:  # nothing stored there or later: the client saw it all
        return {p: await head(broker, topic, p) for p in partitions}
    # Other partitions resume from the time of that event: an event published in
    # the same instant may come twice, none is skipped.
    cutoff = found[0].published_at
    positions = {p: await since(broker, topic, p, cutoff) for p in partitions if p != partition}
    positions[partition] = offset + 1
    return positions


async def _live(gateway: Gateway, topic: str) -> AsyncGenerator[Item, None]:
    """Events published while the stream is open, from a group-less subscription."""
    codec = gateway.app.codec
    wait = min(gateway.settings.heartbeat, 1.0)
    source = await gateway.broker.subscribe([topic], None, SubscribeOptions(start="latest"))
    try:
        while True:
            deliveries = await source.fetch(_PAGE, wait)
            if not deliveries:
                yield None
            for delivery in deliveries:
                await delivery.ack()
                try:
                    event = codec.decode(delivery.value, delivery.headers)
                except DecodeError:
                    continue
                yield f"{delivery.partition}:{delivery.offset}", event
    finally:
        await source.close()
