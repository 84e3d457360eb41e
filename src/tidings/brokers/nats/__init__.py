"""The NATS JetStream broker (``nats://host:port[?options]``, extra ``tidings[nats]``).

A topic is a stream (subjects ``<topic>.<partition>``, file storage, created on
first use); the partition comes from the key (CRC-32, as in the embedded
broker). A consumer group is one durable pull consumer per partition; members
own partitions through leases (see :mod:`._group`), so one member at a time
reads a key, in order. Publishes carry ``Nats-Msg-Id`` (the event id), so a
retried publish inside the stream's duplicate window is dropped by JetStream.
``nack(delay)`` is JetStream's ``-NAK`` with a delay, ``extend`` is ``+WPI``,
the attempt is JetStream's delivery count. See ``docs/brokers/nats.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tidings._deadline import expire_after
from tidings.broker import Capabilities, Message, Position, RevokeHandler, SubscribeOptions
from tidings.brokers._partitioning import partition_for
from tidings.codec import Codec
from tidings.errors import (
    BrokerClosedError,
    BrokerUnavailable,
    ConfigurationError,
    EventTooLargeError,
    PublishError,
)
from tidings.inspection import GroupInfo, StoredMessage, TopicInfo

try:
    import nats
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import api
    from nats.js.errors import NotFoundError
    from nats.js.manager import JetStreamManager
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("the nats:// broker needs nats-py: pip install 'tidings[nats]'") from None

from tidings.brokers.nats import _admin
from tidings.brokers.nats._binding import to_wire
from tidings.brokers.nats._client import FastHeaderClient
from tidings.brokers.nats._delivery import Source
from tidings.brokers.nats._group import Coordinator, lease_bucket
from tidings.brokers.nats._inbox import open_inbox, send_reply
from tidings.brokers.nats._seek import seek_group
from tidings.brokers.nats._streams import (
    Topic,
    consumer_config,
    consumer_name,
    create_topic,
    find_topic,
)
from tidings.brokers.nats._subscription import NatsSubscription
from tidings.brokers.nats._url import NatsOptions

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

__all__ = ["NatsBroker", "NatsOptions"]

log = logging.getLogger("tidings.brokers.nats")

CAPABILITIES = Capabilities(
    persistent=True,
    ordered_per_key=True,
    consumer_groups=True,
    key_affinity=True,
    replay=True,
    delayed_publish=False,
    delayed_redelivery=True,
    exactly_once=False,
    publish_dedup=True,
    headers=True,
    wildcards=False,
    max_message_size=1 << 20,
)
#: Room for headers inside the server's max_payload.
_HEADER_ROOM = 4096


class NatsBroker:
    """A client of a NATS server with JetStream. Create with :meth:`from_url`."""

    #: OpenTelemetry's ``messaging.system`` for spans of this broker.
    messaging_system = "nats"

    def __init__(self, options: NatsOptions) -> None:
        self.options = options
        self.capabilities = CAPABILITIES
        self.client: FastHeaderClient | None = None
        self._jsm: JetStreamManager | None = None
        self._leases: KeyValue | None = None
        self._topics: dict[str, Topic] = {}
        self._subscriptions: set[NatsSubscription] = set()
        self._acks: dict[str, asyncio.Future[Msg]] = {}
        self._ack_prefix = ""
        self._sequence = 0
        self._spread = 0
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> NatsBroker:
        """``nats://[user:password@]host:port[,host:port][?option=value...]``."""
        return cls(NatsOptions.from_url(url))

    def default_codec(self) -> Codec:
        """CloudEvents binary mode in NATS headers, ``ce-`` prefixed (the NATS binding)."""
        return Codec("binary", header_prefix="ce-")

    def __repr__(self) -> str:
        return f"<NatsBroker {self.options.url}>"

    # -- connection -------------------------------------------------------------

    def _check_open(self) -> FastHeaderClient:
        if self._closed or self.client is None:
            raise BrokerClosedError(f"nats broker {self.options.url} is closed")
        return self.client

    async def connect(self) -> None:
        if self._closed:
            raise BrokerClosedError(f"nats broker {self.options.url} is closed")
        options = self.options
        client = FastHeaderClient()
        try:
            await asyncio.wait_for(
                client.connect(**self._connect_arguments()), options.connect_timeout
            )
            self._jsm = client.jsm()
            await self._jsm.account_info()
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            with contextlib.suppress(Exception):
                await client.close()
            reason = (
                "JetStream is not enabled on the server (start it with -js)"
                if isinstance(exc, nats.errors.NoRespondersError | nats.js.errors.APIError)
                else f"no answer within {options.connect_timeout:g}s ({type(exc).__name__})"
            )
            raise BrokerUnavailable(f"no NATS server at {options.url}: {reason}") from None
        self.client = client
        self._ack_prefix = client.new_inbox() + "."
        await client.subscribe(self._ack_prefix + "*", cb=self._on_ack)
        limit = client.max_payload - _HEADER_ROOM
        version = client.connected_server_version
        # nats-server 2.9 sometimes holds a consumer's delayed naks long past their delay
        # (seen with 2.9.10, not with 2.15): there the App waits out the delay itself and
        # naks at once.
        native_delay = (version.major, version.minor) >= (2, 10)
        self.capabilities = replace(
            CAPABILITIES, max_message_size=limit, delayed_redelivery=native_delay
        )

    def _connect_arguments(self) -> dict[str, Any]:
        options = self.options

        # Before the first connection, connect() reports the failure itself (one error).
        async def on_error(exc: Exception) -> None:
            level = logging.WARNING if self.client is not None else logging.DEBUG
            log.log(level, "nats %s: %s", options.url, exc or type(exc).__name__)

        async def on_disconnect() -> None:
            if not self._closed and self.client is not None:
                log.warning("nats %s: disconnected; reconnecting", options.url)

        async def on_reconnect() -> None:
            log.warning("nats %s: reconnected", options.url)

        arguments: dict[str, Any] = {
            "servers": list(options.servers),
            "connect_timeout": options.connect_timeout,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "error_cb": on_error,
            "disconnected_cb": on_disconnect,
            "reconnected_cb": on_reconnect,
            "name": options.name or "tidings",
            # Topics are checked when their stream is made; replies come from the server.
            "skip_subject_validation": True,
        }
        if options.user is not None:
            arguments["user"] = options.user
            arguments["password"] = options.password
        if options.token is not None:
            arguments["token"] = options.token
        if options.creds is not None:
            arguments["user_credentials"] = options.creds
        if options.uses_tls:
            context = ssl.create_default_context(cafile=options.tls_ca)
            if options.tls_cert is not None:
                context.load_cert_chain(options.tls_cert, options.tls_key)
            arguments["tls"] = context
        return arguments

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            with contextlib.suppress(Exception):
                await subscription.close()
        client, self.client = self.client, None
        for future in self._acks.values():
            if not future.done():
                future.cancel()
        self._acks.clear()
        if client is not None and not client.is_closed:
            with contextlib.suppress(Exception):
                await client.drain()
            with contextlib.suppress(Exception):
                await client.close()

    # -- topics ---------------------------------------------------------------------

    @property
    def jsm(self) -> JetStreamManager:
        self._check_open()
        assert self._jsm is not None
        return self._jsm

    async def topic(self, name: str, *, create: bool = True) -> Topic | None:
        """The topic ``name`` (its stream is created on first use when ``create``)."""
        known = self._topics.get(name)
        if known is not None:
            return known
        try:
            found = await find_topic(self.jsm, name, self.options.partitions)
            if found is None and create:
                found = await create_topic(
                    self.jsm,
                    name,
                    self.options.partitions,
                    replicas=self.options.replicas,
                    duplicate_window=self.options.duplicate_window,
                )
        except (TimeoutError, nats.errors.Error) as exc:
            raise PublishError(
                f"cannot reach the stream of {name!r} on {self.options.url}: {exc!r}"
            ) from exc
        if found is not None:
            self._topics[name] = found
        return found

    async def ensure_topic(
        self,
        name: str,
        *,
        partitions: int | None = None,
        retention: float | None = None,
        retention_bytes: int | None = None,
        compact: bool = False,
    ) -> None:
        """Create or update the stream of ``name``.

        ``retention`` is the stream's ``max_age``; ``retention_bytes`` (per
        partition) becomes ``max_bytes`` = retention_bytes x partitions.
        JetStream keeps limits per subject (partition), not per key: ``compact``
        is refused.
        """
        if compact:
            raise ConfigurationError(
                "nats:// cannot compact by key: JetStream limits apply per subject "
                "(partition), not per key"
            )
        if partitions is not None and partitions < 1:
            raise ConfigurationError("partitions must be >= 1")
        existing = await find_topic(self.jsm, name, self.options.partitions)
        count = partitions or (existing.partitions if existing else self.options.partitions)
        if existing is not None and partitions is not None and existing.partitions != partitions:
            raise ConfigurationError(
                f"topic {name!r} has {existing.partitions} partitions; "
                "the count is fixed when a topic is created"
            )
        max_bytes = retention_bytes * count if retention_bytes is not None else None
        if existing is None:
            self._topics[name] = await create_topic(
                self.jsm,
                name,
                count,
                replicas=self.options.replicas,
                duplicate_window=self.options.duplicate_window,
                max_age=retention,
                max_bytes=max_bytes,
            )
            return
        info = await self.jsm.stream_info(existing.stream)
        config = info.config
        config.max_age = retention or 0
        config.max_bytes = max_bytes if max_bytes is not None else -1
        await self.jsm.update_stream(config)
        self._topics[name] = existing

    # -- publishing -------------------------------------------------------------------

    async def open_inbox(self, deliver: Callable[[Message], None]) -> str:
        """Native request/reply: replies arrive on an inbox subject (see ``_inbox``)."""
        return await open_inbox(self._check_open(), deliver)

    async def send_reply(self, address: str, message: Message) -> None:
        await send_reply(self._check_open(), address, message)

    async def _on_ack(self, msg: Msg) -> None:
        future = self._acks.pop(msg.subject[len(self._ack_prefix) :], None)
        if future is not None and not future.done():
            future.set_result(msg)

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        client = self._check_open()
        if not messages:
            return
        found = await self.topic(topic)
        assert found is not None
        replies = await self._send(client, found, messages)
        missing = [m for m, reply in zip(messages, replies, strict=True) if _no_stream(reply)]
        if missing:  # the stream was deleted meanwhile: make it again, once
            self._topics.pop(topic, None)
            found = await self.topic(topic)
            assert found is not None
            replies = await self._send(client, found, missing)
            if any(_no_stream(reply) for reply in replies):
                raise PublishError(f"no stream takes topic {topic!r} on {self.options.url}")
        for reply in replies:
            if reply.data[:10] != b'{"stream":':
                raise PublishError(
                    f"JetStream refused a publish to {topic!r}: {reply.data[:200]!r}"
                )

    async def _send(self, client: Client, topic: Topic, messages: Sequence[Message]) -> list[Msg]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Msg]] = []
        prefix = self._ack_prefix
        partitions = topic.partitions
        try:
            for message in messages:
                key = message.key
                if key is None:
                    self._spread += 1
                    partition = self._spread % partitions
                else:
                    partition = partition_for(key, partitions)
                self._sequence += 1
                token = str(self._sequence)
                future: asyncio.Future[Msg] = loop.create_future()
                self._acks[token] = future
                futures.append(future)
                await client.publish(
                    topic.subject(partition),
                    message.value,
                    reply=prefix + token,
                    headers=to_wire(message),
                )
            # One timer rather than wait_for (a single publish needs no gather either).
            waiting: asyncio.Future[Any] = (
                futures[0] if len(futures) == 1 else asyncio.gather(*futures)
            )
            timer = expire_after(self.options.publish_timeout, waiting)
            try:
                done = await waiting
            finally:
                timer.cancel()
            return [done] if len(futures) == 1 else list(done)
        except nats.errors.MaxPayloadError:
            size = max(len(m.value) for m in messages)
            raise EventTooLargeError(size, self.capabilities.max_message_size or 0) from None
        except (TimeoutError, asyncio.CancelledError) as exc:
            self._forget(futures)
            if isinstance(exc, asyncio.CancelledError):
                raise
            if self._closed:
                raise BrokerClosedError(f"nats broker {self.options.url} is closed") from None
            raise PublishError(
                f"JetStream did not acknowledge a publish to {topic.name!r} on "
                f"{self.options.url} within {self.options.publish_timeout:g}s; the events "
                "may or may not be stored (publishing them again is safe: Nats-Msg-Id)"
            ) from None
        except nats.errors.Error as exc:
            self._forget(futures)
            if self._closed:
                raise BrokerClosedError(f"nats broker {self.options.url} is closed") from None
            raise PublishError(f"publish to {topic.name!r} failed: {exc!r}") from exc

    def _forget(self, futures: list[asyncio.Future[Msg]]) -> None:
        for future in futures:
            future.cancel()
        if len(self._acks) > 10_000:
            for token in [t for t, f in self._acks.items() if f.done()]:
                del self._acks[token]

    # -- subscribing --------------------------------------------------------------------

    async def subscribe(
        self,
        topics: Sequence[str],
        group: str | None,
        options: SubscribeOptions = SubscribeOptions(),  # noqa: B008 - frozen
        on_revoke: RevokeHandler | None = None,
    ) -> NatsSubscription:
        client = self._check_open()
        if not topics:
            raise ConfigurationError("subscribe needs at least one topic")
        found: list[Topic] = []
        for name in topics:
            topic = await self.topic(name)
            assert topic is not None
            found.append(topic)
        try:
            if group is None:
                sources = await self._reader_sources(found)
            else:
                sources = await self._member_sources(found, group, options)
        except (TimeoutError, nats.errors.Error) as exc:
            raise BrokerUnavailable(f"cannot subscribe on {self.options.url}: {exc!r}") from exc
        subscription = NatsSubscription(
            client, group, sources, on_revoke, self._close_member, prefetch=options.prefetch
        )
        await subscription.start()
        if group is not None:
            if self._leases is None:
                self._leases = await lease_bucket(client, self.options.replicas)
            assert self._leases is not None
            coordinator = Coordinator(
                client,
                self._leases,
                subscription,
                group,
                self.options.heartbeat,
                self.options.session_timeout,
            )
            subscription.coordinator = coordinator
            await coordinator.start()
        self._subscriptions.add(subscription)
        return subscription

    async def _reader_sources(self, topics: Sequence[Topic]) -> list[Source]:
        sources = []
        for index, topic in enumerate(topics):
            name = f"tidings-reader-{uuid.uuid4().hex[:12]}"
            await self.jsm.add_consumer(
                topic.stream,
                api.ConsumerConfig(
                    name=name,
                    deliver_policy=api.DeliverPolicy.NEW,
                    ack_policy=api.AckPolicy.NONE,
                    filter_subject=f"{topic.name}.*",
                    inactive_threshold=60.0,
                    mem_storage=True,
                    num_replicas=1,
                ),
            )
            sources.append(Source(index, topic.name, topic.stream, name, -1, acks=False))
        return sources

    async def _member_sources(
        self, topics: Sequence[Topic], group: str, options: SubscribeOptions
    ) -> list[Source]:
        sources: list[Source] = []
        start = api.DeliverPolicy.ALL if options.start == "earliest" else api.DeliverPolicy.NEW
        for topic in topics:
            for partition in range(topic.partitions):
                name = consumer_name(group, partition)
                config = consumer_config(
                    topic,
                    group,
                    partition,
                    ack_wait=options.ack_wait,
                    max_deliver=options.max_deliveries,
                    start=start,
                )
                try:
                    info = await self.jsm.consumer_info(topic.stream, name)
                except NotFoundError:
                    info = await self.jsm.add_consumer(topic.stream, config)
                else:
                    wanted = (config.ack_wait, config.max_deliver)
                    if (info.config.ack_wait, info.config.max_deliver) != wanted:
                        config.deliver_policy = info.config.deliver_policy
                        config.opt_start_seq = info.config.opt_start_seq
                        config.opt_start_time = info.config.opt_start_time
                        with contextlib.suppress(nats.errors.Error):
                            await self.jsm.add_consumer(topic.stream, config)
                source = Source(len(sources), topic.name, topic.stream, name, partition, acks=True)
                source.backlog = info.num_pending
                sources.append(source)
        return sources

    async def _close_member(self, subscription: NatsSubscription) -> None:
        self._subscriptions.discard(subscription)
        client = self.client
        try:
            if subscription.coordinator is not None:
                await subscription.coordinator.stop()
            elif client is not None and not client.is_closed:
                for source in subscription.sources:
                    with contextlib.suppress(Exception):
                        await self.jsm.delete_consumer(source.stream, source.consumer)
        except Exception as exc:
            log.warning("nats %s: leaving the group cleanly failed: %r", self.options.url, exc)
        await subscription.unsubscribe()

    # -- replay -------------------------------------------------------------------------

    async def seek(self, topic: str, group: str, position: Position) -> None:
        """Move ``group`` on ``topic``: its consumers are made again at ``position``.

        Offsets are stream sequences minus one (every partition of a topic shares
        the stream's sequence). Members in this process stop and forget what they
        hold first; members elsewhere may still settle a few deliveries made before
        the seek (harmless: they are delivered again from the new position).
        """
        self._check_open()
        found = await self.topic(topic, create=False)
        if found is None:
            raise ConfigurationError(f"no topic {topic!r} on {self.options.url}")
        local = [s for s in self._subscriptions if s.group == group]
        await seek_group(self.jsm, found, group, position, local)

    # -- inspection (tidings.inspection.Inspectable) ----------------------------------

    async def list_topics(self) -> list[TopicInfo]:
        return await _admin.list_topics(self.jsm, self.options.partitions)

    async def list_groups(self) -> list[GroupInfo]:
        leases = self._leases
        if leases is None:
            leases = self._leases = await lease_bucket(
                self._check_open(), self.options.replicas, create=False
            )
        return await _admin.list_groups(self.jsm, leases, self.options.partitions)

    async def read(
        self,
        topic: str,
        *,
        after: Mapping[int, int] | None = None,
        last: int | None = None,
        limit: int = 1000,
    ) -> list[StoredMessage]:
        found = await self.topic(topic, create=False)
        if found is None:
            return []
        return await _admin.read(self.jsm, found, after, last, limit)

    async def delete(self, topic: str, entries: Sequence[tuple[int, int]]) -> int:
        found = await self.topic(topic, create=False)
        if found is None:
            return 0
        return await _admin.delete(self.jsm, found, entries)

    async def move(self, topic: str, entries: Sequence[tuple[int, int, str, Message]]) -> int:
        """Publish each message to its target, then delete the original (not atomic:
        a failure in between leaves both copies, never none)."""
        found = await self.topic(topic, create=False)
        if found is None:
            return 0
        moved = 0
        for partition, offset, target, message in entries:
            await self.publish(target, [message])
            moved += await _admin.delete(self.jsm, found, [(partition, offset)])
        return moved


def _no_stream(reply: Msg) -> bool:
    headers = reply.headers
    return headers is not None and headers.get("Status") == "503"
