"""The Google Cloud Pub/Sub broker (``gcppubsub://PROJECT``, extra ``tidings[gcp]``).

A topic is a Pub/Sub topic; a consumer group is a subscription on it, created
on first use, so every group gets every event (fan-out) and the members of a
group compete for its messages. The partition key is the ordering key, and
group subscriptions enable message ordering: a key's events come in publish
order, one batch at a time. Each group subscription has a dead-letter policy
to ``<topic>.dlq`` (Pub/Sub's own, after ``max_deliveries`` attempts; the App
dead-letters earlier, by its retry policy, with a failure record). Topics keep
their messages for ``retention`` (7 days), so new groups start at
``earliest`` and groups can seek to a time (replay). Names are mapped in
:mod:`._topology`, events in :mod:`._binding`, pulling and settling in
:mod:`._subscription` and :mod:`._delivery`.

The client is google-cloud-pubsub's generated asyncio layer (the GAPIC
``PublisherAsyncClient`` and ``SubscriberAsyncClient`` on grpc.aio), with
unary ``Pull``, ``Acknowledge`` and ``ModifyAckDeadline`` calls. The library's
high-level ``PublisherClient``/``SubscriberClient`` run their batching,
streaming pull and lease management in threads and hand messages to
callbacks in other threads: each message would cross into the event loop
alone, and its flow control and leases would be a second copy of what core
already does (prefetch, extend). Unary pulls of up to a hundred messages,
with settlements batched per subscription, keep everything on the event loop;
measured on the emulator tidings published at 0.69x-1.25x and consumed at
0.67x-1.32x of the raw GAPIC client over five runs (see ``docs/brokers/pubsub.md``). What
Pub/Sub lacks is declared, not pretended: no offsets (``seek`` takes a time,
``"beginning"`` or ``"end"``), no delayed publish (core keeps those), no
transactions.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tidings.broker import Capabilities, Message, Position, RevokeHandler, SubscribeOptions
from tidings.codec import Codec
from tidings.errors import (
    BrokerClosedError,
    BrokerUnavailable,
    ConfigurationError,
    EventTooLargeError,
    PublishError,
)

try:
    import google.pubsub_v1  # noqa: F401
    from google.api_core import exceptions as api_errors
    from google.pubsub_v1.types import PublishRequest
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the gcppubsub:// broker needs google-cloud-pubsub: pip install 'tidings[gcp]'"
    ) from None

from tidings.brokers.pubsub._binding import codec_for, exact_size, fields
from tidings.brokers.pubsub._client import GOOGLE_ERRORS, Google
from tidings.brokers.pubsub._delivery import Settlements
from tidings.brokers.pubsub._subscription import Feed, PubSubMember
from tidings.brokers.pubsub._url import PubSubOptions

__all__ = ["PubSubBroker", "PubSubOptions"]

log = logging.getLogger("tidings.brokers.pubsub")

#: Pub/Sub takes messages, and publish requests, of up to 10 MB.
WIRE_LIMIT = 10_000_000
#: The largest value that always fits with its attributes (at most 100 of ~1 KiB).
MAX_VALUE = WIRE_LIMIT - 128 * 1024
#: Pub/Sub takes at most 1000 messages per publish request.
_BATCH = 1000
_BATCH_BYTES = 9_000_000
#: Requests of one publish sent at once (when no message has a key).
_IN_FLIGHT = 8
#: The protobuf message under the proto-plus ``PublishRequest``: messages go in in place.
_Request: Any = PublishRequest.pb()


def capabilities_for(options: PubSubOptions) -> Capabilities:
    """What the URL's settings can do."""
    return Capabilities(
        persistent=True,
        ordered_per_key=options.ordering,
        consumer_groups=True,
        key_affinity=options.ordering,
        replay=options.retention > 0,
        delayed_publish=False,
        delayed_redelivery=True,
        exactly_once=False,
        publish_dedup=False,
        headers=True,
        wildcards=False,
        max_message_size=MAX_VALUE,
    )


class PubSubBroker:
    """A client of Google Cloud Pub/Sub (or its emulator). Create with :meth:`from_url`."""

    messaging_system = "gcp_pubsub"

    def __init__(self, options: PubSubOptions) -> None:
        self.options = options
        self.capabilities = capabilities_for(options)
        self.google = Google(options)
        self._members: set[PubSubMember] = set()
        self._connected = False
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> PubSubBroker:
        """``gcppubsub://PROJECT[?option=value...]``."""
        return cls(PubSubOptions.from_url(url))

    def default_codec(self) -> Codec:
        """CloudEvents binary mode (``ce-`` attributes), or structured (``binding=structured``)."""
        return codec_for(self.options.binding)

    def __repr__(self) -> str:
        return f"<PubSubBroker {self.options.url}>"

    # -- connection -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed or not self._connected:
            raise BrokerClosedError(f"Pub/Sub broker {self.options.url} is closed")

    async def connect(self) -> None:
        if self._closed:
            raise BrokerClosedError(f"Pub/Sub broker {self.options.url} is closed")
        await self.google.open()
        self._connected = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Together: each waits for its pulls in flight (up to ``wait``).
        await asyncio.gather(*(self._leave(member) for member in list(self._members)))
        await self.google.close()

    # -- publishing ---------------------------------------------------------------------

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Publish in requests of up to a thousand messages; return once Pub/Sub stored all."""
        self._check_open()
        if not messages:
            return
        requests = self._requests(self.google.topic_path(topic), messages)
        timeout = self.options.publish_timeout
        try:
            if len(requests) == 1 or any(m.key is not None for m in messages):
                for request in requests:  # in order: a key's messages stay in sequence
                    await self._send(topic, request, timeout)
            else:
                gate = asyncio.Semaphore(_IN_FLIGHT)

                async def limited(request: PublishRequest) -> None:
                    async with gate:
                        await self._send(topic, request, timeout)

                await asyncio.gather(*(limited(request) for request in requests))
        except GOOGLE_ERRORS as exc:
            if self._closed:
                raise BrokerClosedError(f"Pub/Sub broker {self.options.url} is closed") from None
            reason = (
                f"no answer within {timeout:g}s"
                if isinstance(exc, TimeoutError | api_errors.DeadlineExceeded)
                else repr(exc)
            )
            raise PublishError(
                f"publish to {topic!r} on {self.options.url} failed: {reason}; the events may "
                "or may not be stored"
            ) from exc

    async def _send(self, topic: str, request: PublishRequest, timeout: float) -> None:
        """Send one request; a missing topic (first use, or an emulator restarted empty) is
        created, once."""
        for last in (False, True):
            try:
                async with asyncio.timeout(timeout):
                    await self.google.publisher.publish(request=request, timeout=timeout)
                return
            except api_errors.NotFound:
                if last:
                    raise
                self.google.topics.discard(request.topic)
                await self.google.create_topic(topic)

    @staticmethod
    def _requests(path: str, messages: Sequence[Message]) -> list[PublishRequest]:
        """Requests of at most a thousand messages and 9 MB.

        The messages are built in place, in the request's protobuf (copying them into it
        would cost as much again); the proto-plus request only wraps it.
        """
        requests: list[PublishRequest] = []
        add: Any = None
        count = size = 0
        for message in messages:
            attributes, key, bytes_ = fields(message)
            if bytes_ > WIRE_LIMIT:  # an upper bound: measure exactly
                bytes_ = exact_size(message.value, attributes, key)
                if bytes_ > WIRE_LIMIT:
                    raise EventTooLargeError(bytes_, WIRE_LIMIT)
            if add is None or count == _BATCH or size + bytes_ > _BATCH_BYTES:
                request = _Request(topic=path)
                requests.append(PublishRequest.wrap(request))
                add = request.messages.add
                count = size = 0
            into = add(data=message.value, ordering_key=key).attributes
            for name, value in attributes.items():  # a third faster than update()
                into[name] = value
            count += 1
            size += bytes_
        return requests

    # -- subscribing ----------------------------------------------------------------------

    async def subscribe(
        self,
        topics: Sequence[str],
        group: str | None,
        options: SubscribeOptions = SubscribeOptions(),  # noqa: B008 - frozen
        on_revoke: RevokeHandler | None = None,
    ) -> PubSubMember:
        """Join ``group`` (its subscription per topic) on ``topics``.

        A new group's subscription starts at ``options.start``: ``earliest`` reads
        what the topic retains, ``latest`` what is published from now on.
        ``ack_wait`` is the ack deadline of a new subscription (10-600 s).
        ``max_deliveries`` is not used: the URL's ``max_deliveries`` is the
        dead-letter policy of every group subscription.
        """
        self._check_open()
        if not topics:
            raise ConfigurationError("subscribe needs at least one topic")
        feeds: list[Feed] = []
        try:
            for topic in topics:
                reader = group is None
                name = self.google.subscription_path(
                    topic, f"tail-{secrets.token_hex(6)}" if reader else group or ""
                )
                feed = Feed(
                    topic,
                    name,
                    Settlements(self.google.subscriber, name),
                    reader,
                    self.options.ordering and not reader,
                )
                await self._open_feed(feed, options.ack_wait, "latest" if reader else options.start)
                feeds.append(feed)
        except GOOGLE_ERRORS as exc:
            for feed in feeds:
                if feed.reader:
                    await self.google.delete_subscription(feed.name)
            raise BrokerUnavailable(
                f"cannot subscribe to {list(topics)} on {self.options.url}: {exc!r}"
            ) from exc
        member = PubSubMember(
            self.google,
            feeds,
            group,
            options,
            on_revoke,
            self._leave,
            lambda feed: self._open_feed(feed, options.ack_wait, "earliest"),
        )
        self._members.add(member)
        member.start(self.options.pullers)
        return member

    async def _open_feed(self, feed: Feed, ack_wait: float, start: str) -> None:
        """Create the feed's subscription if missing; place a new one at ``start``."""
        created = await self.google.create_subscription(
            feed.topic, feed.name, ack_wait, feed.reader
        )
        got = await self.google.subscriber.get_subscription(request={"subscription": feed.name})
        feed.deadline = got.ack_deadline_seconds or 10
        if not created or not self.options.retention:
            return
        # Google's service gives a new subscription only what is published after it is
        # made; the emulator gives it what the topic retains. Seek makes both start where
        # asked; the emulator cannot seek an ordered subscription, so there its backlog
        # is what ``earliest`` wants, and ``latest`` skips what was published before now.
        when = 1.0 if start == "earliest" else time.time()
        try:
            await self.google.seek(feed.name, when)
        except ConfigurationError:
            if start == "latest":
                feed.not_before = when

    async def seek(self, topic: str, group: str, position: Position) -> None:
        """Move ``group`` on ``topic`` to a time, ``"beginning"`` (the oldest message the
        topic retains) or ``"end"``. Pub/Sub has no offsets: an ``int`` is refused."""
        self._check_open()
        when: float | datetime
        if position == "beginning":
            when = 1.0
        elif position == "end":
            when = time.time()
        elif isinstance(position, datetime):
            when = position
        else:
            raise ConfigurationError(
                f"Pub/Sub has no offsets: seek {group!r} on {topic!r} to a time, 'beginning' "
                f"or 'end' (got {position!r})"
            )
        name = self.google.subscription_path(topic, group)
        try:
            await self.google.seek(name, when)
        except api_errors.NotFound:
            raise ConfigurationError(f"group {group!r} has no subscription on {topic!r}") from None
        except GOOGLE_ERRORS as exc:
            raise BrokerUnavailable(f"seek on {self.options.url} failed: {exc!r}") from exc

    async def _leave(self, member: PubSubMember) -> None:
        self._members.discard(member)
        await member.stop()
