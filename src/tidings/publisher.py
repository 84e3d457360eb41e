"""The publisher: payloads -> events -> messages -> the broker, through publish middleware.

It owns what every publish needs (codec, routing table, size limit, publish
middleware) and what follow-ups need (deriving them from the event that caused
them, capturing them for an atomic commit). The App holds one; each
subscription's consumer receives it, so nothing below the App calls back into it.

Delayed delivery on a broker that cannot schedule (``delayed_publish`` not
declared) is emulated: the message is stored at once with a
``tidings-deliver-at`` header, and the consumer that receives it early keeps
it aside until its time (see ``tidings._delays``). Never early.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Unpack

from tidings.broker import Broker, Message, MultiTopicPublisher, NativeReplies
from tidings.codec import Codec
from tidings.errors import EventTooLargeError
from tidings.event import Event
from tidings.middleware import Outgoing, PublishFn, PublishMiddleware, build_stack
from tidings.options import EventAttributes
from tidings.payload import payload_info
from tidings.routing import Router, validate_topic

__all__ = ["DELIVER_AT_HEADER", "Emitted", "Publisher"]

#: Header carrying the delivery time of an event on a broker that cannot schedule.
DELIVER_AT_HEADER = "tidings-deliver-at"
#: A payload queued with ``Context.emit``: (payload, topic override, attributes).
Emitted = tuple[Any, str | None, Mapping[str, Any]]
# Where publish middleware delivers messages that are to be committed atomically.
_capture_buffer: ContextVar[list[tuple[str, Message]]] = ContextVar("tidings_capture_buffer")


class Publisher:
    """Publishes events of one App to its broker."""

    def __init__(
        self, broker: Broker, *, source: str, codec: Codec, router: Router, max_event_size: int
    ) -> None:
        self.broker = broker
        self.source = source
        self.codec = codec
        self.router = router
        self.max_event_size = max_event_size
        self._middleware: list[PublishMiddleware] = []
        #: Publish an :class:`Outgoing` through the publish middleware (built at connect).
        self.send: PublishFn = self._send
        self._capture_fn: PublishFn = self._collect
        #: Topic names given to ``publish`` that passed :func:`validate_topic`.
        self.checked_topics: set[str] = set()
        #: Replies go to the broker's own inboxes rather than to reply topics.
        self.native_replies = isinstance(broker, NativeReplies)

    def check_topic(self, topic: str) -> None:
        """Refuse a topic name no broker takes (checked once per name)."""
        if topic not in self.checked_topics:
            validate_topic(topic)
            if len(self.checked_topics) >= 10_000:
                self.checked_topics.clear()
            self.checked_topics.add(topic)

    def add_middleware(self, middleware: PublishMiddleware) -> None:
        self._middleware.append(middleware)

    def build(self, inner: Sequence[PublishMiddleware] = ()) -> None:
        """Build the middleware stacks (when the App connects); ``inner`` goes innermost."""
        send: PublishFn = self._send
        collect: PublishFn = self._collect
        self.native_replies = isinstance(self.broker, NativeReplies)
        self.send = build_stack(send, [*self._middleware, *inner])
        self._capture_fn = build_stack(collect, [*self._middleware, *inner])

    def remove_middleware(self, middleware: PublishMiddleware) -> None:
        self._middleware.remove(middleware)

    # -- events ------------------------------------------------------------------------

    def event(
        self,
        payload: Any,
        *,
        key: str | None = None,
        type: str | None = None,
        **attributes: Unpack[EventAttributes],
    ) -> Event:
        """The event ``publish`` would send for ``payload`` (an Event passes through)."""
        if isinstance(payload, Event):
            if key is not None or type is not None or attributes:
                changes: dict[str, Any] = dict(attributes)
                if key is not None:
                    changes["partitionkey"] = key
                if type is not None:
                    changes["type"] = type
                return payload.replace(**changes)
            return payload
        if type is None:
            info = payload_info(payload)
            type = info.name
            if not attributes:  # the common case, without a dict of attributes
                return Event(
                    type=type,
                    source=self.source,
                    data=payload,
                    partitionkey=key,
                    schemaversion=info.version,
                )
            attributes.setdefault("schemaversion", info.version)
        if "source" not in attributes:
            attributes["source"] = self.source
        if key is not None:
            attributes["partitionkey"] = key
        return Event(type=type, data=payload, **attributes)

    def follow_ups(
        self,
        parent: Event,
        result: Any,
        emitted: Sequence[Emitted] = (),
        routes: dict[str, str] | None = None,
    ) -> list[Event]:
        """Turn a handler's return value and emitted payloads into follow-up events.

        An emitted payload with a topic override is recorded in ``routes``
        (event id -> topic), which :meth:`publish_events` then honours.
        """
        if result is None and not emitted:
            return []
        items: list[Emitted] = []
        if result is not None:
            if isinstance(result, list | tuple):
                items.extend((r, None, {}) for r in result if r is not None)
            else:
                items.append((result, None, {}))
        items.extend(emitted)
        out = []
        for payload, topic, attributes in items:
            if isinstance(payload, Event):
                event = payload.replace(**attributes) if attributes else payload
            else:
                event = parent.derive(payload, source=self.source, **attributes)
            if topic is not None and routes is not None:
                routes[event.id] = topic
            out.append(event)
        return out

    # -- publishing ----------------------------------------------------------------------

    async def publish_batch(self, outgoing: Sequence[Outgoing]) -> None:
        """Publish several topics' events: in one transaction where the broker can."""
        if len(outgoing) > 1 and isinstance(self.broker, MultiTopicPublisher):
            messages: dict[str, list[Message]] = {}
            for target, message in await self.capture(outgoing):
                messages.setdefault(target, []).append(message)
            await self.broker.publish_many(list(messages.items()))
        else:
            for item in outgoing:
                await self.send(item)

    async def publish_events(
        self, events: Iterable[Event], routes: Mapping[str, str] | None = None
    ) -> None:
        """Publish follow-ups, each to its topic (``routes`` overrides the routing table)."""
        for target, batch in self._by_topic(events, routes).items():
            await self.send(Outgoing(target, batch))

    async def prepare_commit(
        self, events: Sequence[Event], routes: Mapping[str, str] | None = None
    ) -> list[tuple[str, Message]]:
        """Follow-ups as messages for an atomic commit (through the publish middleware)."""
        if not events:
            return []
        return await self.capture(
            [Outgoing(target, batch) for target, batch in self._by_topic(events, routes).items()]
        )

    async def capture(self, outgoing: Sequence[Outgoing]) -> list[tuple[str, Message]]:
        """Run ``outgoing`` through the publish middleware, collecting the messages
        instead of sending them (for a broker call that stores them all at once)."""
        if not self._middleware:  # nothing to run: encode directly
            return [(o.topic, message) for o in outgoing for message in self.encode(o)]
        buffer: list[tuple[str, Message]] = []
        token = _capture_buffer.set(buffer)
        try:
            for item in outgoing:
                await self._capture_fn(item)
        finally:
            _capture_buffer.reset(token)
        return buffer

    def encode(self, outgoing: Outgoing) -> list[Message]:
        """Encode ``outgoing``'s events, refusing any over the size limit."""
        messages = []
        limit = self.max_event_size
        codec = self.codec
        structured = codec.mode == "structured"
        deliver_at = outgoing.deliver_at
        capabilities = self.broker.capabilities
        emulated = deliver_at is not None and not capabilities.delayed_publish
        with_ids = capabilities.publish_dedup
        for event in outgoing.events:
            if structured:  # the common case, without the (body, headers) tuple
                value = codec.encode_structured(event)
                headers: dict[str, str] = {}
                size = len(value)
            else:
                value, headers = codec.encode(event)
                size = len(value) + sum(map(len, headers)) + sum(map(len, headers.values()))
            if size > limit:
                raise EventTooLargeError(size, limit)
            if emulated:
                headers = {**headers, DELIVER_AT_HEADER: repr(deliver_at)}
            messages.append(
                Message(value, headers, event.key, deliver_at, event.id if with_ids else None)
            )
        return messages

    async def send_reply(self, address: str, reply: Event) -> None:
        """Send ``reply`` to a requester's address: its inbox, or its reply topic."""
        broker = self.broker
        if self.native_replies:
            (message,) = self.encode(Outgoing(address, (reply,)))
            await broker.send_reply(address, message)  # type: ignore[attr-defined]
        else:
            await self.send(Outgoing(address, (reply,)))

    async def _send(self, outgoing: Outgoing) -> None:
        await self.broker.publish(outgoing.topic, self.encode(outgoing))

    async def _collect(self, outgoing: Outgoing) -> None:
        _capture_buffer.get().extend((outgoing.topic, m) for m in self.encode(outgoing))

    def _by_topic(
        self, events: Iterable[Event], routes: Mapping[str, str] | None
    ) -> dict[str, list[Event]]:
        grouped: dict[str, list[Event]] = {}
        topic_for = self.router.topic_for
        for event in events:
            topic = routes.get(event.id) if routes else None
            if topic is None:
                topic = topic_for(event.data, event)
            grouped.setdefault(topic, []).append(event)
        return grouped
