"""The RabbitMQ broker (``amqp://user:pass@host:port/vhost``, extra ``tidings[rabbitmq]``).

A topic is a durable topic exchange; an event's routing key is
``<partition>.<type>`` (the partition from its key, CRC-32 as in the embedded
broker; the CloudEvents type after it). Every event is kept in its partition's
history stream (``<topic>.history.<p>``, for the topic's retention), which
inspection reads (:mod:`._admin`, :mod:`._history`). A consumer group is
``partitions`` durable quorum queues, one per partition: every group gets
every event, and within a group one member at a time owns a partition (see
:mod:`._subscription`), so a key's events are handled in order. Publishes
wait for publisher confirms. The attempt is the quorum queue's
``x-delivery-count``; ``nack(delay)`` sends a copy through a delay queue that
dead-letters it back (see :mod:`._topology`). Events no group takes wait in
``<topic>.unrouted`` for the first group. A lost connection is opened again
by the next call (publishers) or the App's supervision (members re-join).
See ``docs/brokers/rabbitmq.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import ssl
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from tidings.broker import Capabilities, Message, Position, RevokeHandler, SubscribeOptions
from tidings.brokers._member_id import member_id
from tidings.brokers._partitioning import partition_for
from tidings.codec import Codec
from tidings.errors import BrokerClosedError, BrokerUnavailable, ConfigurationError, PublishError
from tidings.inspection import GroupInfo, StoredMessage, TopicInfo

try:
    import aio_pika
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
    from aio_pika.exceptions import AMQPError
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the amqp:// broker needs aio-pika: pip install 'tidings[rabbitmq]'"
    ) from None

from tidings.brokers.rabbitmq._admin import Inspector
from tidings.brokers.rabbitmq._alive import alive, close_connection
from tidings.brokers.rabbitmq._binding import codec_for, copy, routing_key, write
from tidings.brokers.rabbitmq._history import tombstone_record
from tidings.brokers.rabbitmq._management import Management
from tidings.brokers.rabbitmq._reader import RabbitReader
from tidings.brokers.rabbitmq._seek import refill, start_offset
from tidings.brokers.rabbitmq._subscription import RabbitMember
from tidings.brokers.rabbitmq._topology import (
    QUORUM,
    RESERVED_GROUPS,
    declare_partition,
    declare_topic,
    groups_exchange,
    keeps_history,
    partition_queue,
    stream_arguments,
    tombstones_queue,
    unrouted,
)
from tidings.brokers.rabbitmq._url import RabbitOptions

__all__ = ["RabbitBroker", "RabbitOptions"]

log = logging.getLogger("tidings.brokers.rabbitmq")


class _NoTransportNoise(logging.Filter):
    """aiormq logs a failed connect as an error before raising it; the adapter raises
    :class:`BrokerUnavailable` naming the URL (without its password) instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("error when creating transport")


logging.getLogger("aiormq.connection").addFilter(_NoTransportNoise())

CAPABILITIES = Capabilities(
    persistent=True,
    ordered_per_key=True,
    consumer_groups=True,
    key_affinity=True,
    replay=True,
    delayed_publish=False,
    delayed_redelivery=True,
    exactly_once=False,
    publish_dedup=False,
    headers=True,
    wildcards=False,
    max_message_size=128 << 20,
)


class RabbitBroker:
    """A client of a RabbitMQ server (3.8+, quorum queues). Create with :meth:`from_url`."""

    #: OpenTelemetry's ``messaging.system`` for spans of this broker.
    messaging_system = "rabbitmq"

    def __init__(self, options: RabbitOptions) -> None:
        self.options = options
        self.capabilities = (
            CAPABILITIES if options.history else dataclasses.replace(CAPABILITIES, replay=False)
        )
        self.connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._members: set[RabbitMember] = set()
        self._readers: set[RabbitReader] = set()
        #: Delay queues declared through this client (they expire once unused).
        self.delay_queues: set[str] = set()
        self._spread = 0
        self._closed = False
        self._inspector: Inspector | None = None
        self._reconnecting = asyncio.Lock()
        #: Held while a channel opens on the main connection (see _declare_group).
        self._opening = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str) -> RabbitBroker:
        """``amqp[s]://[user:password@]host[:port][/vhost][?option=value...]``."""
        return cls(RabbitOptions.from_url(url))

    def default_codec(self) -> Codec:
        """CloudEvents binary mode (``cloudEvents_`` headers), or structured with
        ``binding=structured``."""
        return codec_for(self.options.binding)

    def __repr__(self) -> str:
        return f"<RabbitBroker {self.options.url}>"

    # -- connection -------------------------------------------------------------

    def _check_open(self) -> AbstractChannel:
        if self._closed or self._channel is None:
            raise BrokerClosedError(f"amqp broker {self.options.url} is closed")
        return self._channel

    async def _reopen(self) -> None:
        """A failed declaration or publish closes the channel: open another one (the
        exchanges are declared again on it)."""
        channel = self._channel
        if self._closed or channel is None or not channel.is_closed:
            return
        self._exchanges.clear()
        if alive(self.connection):
            assert self.connection is not None
            with contextlib.suppress(AMQPError, OSError, RuntimeError):
                async with self._opening:
                    self._channel = await self.connection.channel(
                        publisher_confirms=True, on_return_raises=True
                    )

    async def _ensure(self) -> AbstractChannel:
        """The publishing channel, connecting again first if the connection was lost
        (raises :class:`BrokerUnavailable` while the server cannot be reached)."""
        channel = self._check_open()
        if alive(self.connection) and not channel.is_closed:
            return channel
        async with self._reconnecting:
            if alive(self.connection):
                await self._reopen()
                if not self._check_open().is_closed:
                    return self._check_open()
            log.warning("amqp broker %s: connection lost; connecting again", self.options.url)
            fresh = await self._connect()
            if self._closed:
                await close_connection(fresh)
                raise BrokerClosedError(f"amqp broker {self.options.url} is closed")
            old, self.connection = self.connection, fresh
            self._exchanges.clear()
            self._channel = await fresh.channel(publisher_confirms=True, on_return_raises=True)
            if old is not None:
                await close_connection(old)
            return self._channel

    async def _connect(self, name: str = "") -> AbstractConnection:
        """A new connection, named ``tidings <pid> [<name>]`` in the server's listings."""
        options = self.options
        context = None
        if options.tls:
            context = ssl.create_default_context(cafile=options.tls_ca)
        try:
            return await asyncio.wait_for(
                aio_pika.connect(
                    host=options.host,
                    port=options.port,
                    login=options.username,
                    password=options.password,
                    virtualhost=options.vhost,
                    ssl=options.tls,
                    ssl_context=context,
                    timeout=options.connect_timeout,
                    client_properties={"connection_name": f"tidings {os.getpid()} {name}".rstrip()},
                ),
                options.connect_timeout,
            )
        except (TimeoutError, OSError, AMQPError) as exc:
            reason = (
                str(exc) or type(exc).__name__
                if isinstance(exc, AMQPError)
                else f"no answer within {options.connect_timeout:g}s ({type(exc).__name__})"
            )
            raise BrokerUnavailable(f"no RabbitMQ server at {options.url}: {reason}") from None

    async def connect(self) -> None:
        if self._closed:
            raise BrokerClosedError(f"amqp broker {self.options.url} is closed")
        self.connection = await self._connect()
        self._channel = await self.connection.channel(
            publisher_confirms=True, on_return_raises=True
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for member in list(self._members):
            await self._leave(member)
        for reader in list(self._readers):
            await reader.close()
        inspector, self._inspector = self._inspector, None
        if inspector is not None:
            await close_connection(inspector.connection)
        connection, self.connection = self.connection, None
        self._channel = None
        if connection is not None:
            await close_connection(connection)

    # -- topics ---------------------------------------------------------------------

    async def exchange(self, topic: str) -> AbstractExchange:
        """``topic``'s exchange, declared (with its history streams, group exchange and
        ``unrouted`` queue) on first use."""
        found = self._exchanges.get(topic)
        if found is None:
            if not topic or topic.startswith("amq."):
                raise ConfigurationError(f"{topic!r} cannot name a RabbitMQ exchange")
            channel = await self._ensure()
            options = self.options
            try:
                found = await declare_topic(
                    channel,
                    topic,
                    options.partitions,
                    options.retention,
                    options.retention_bytes,
                    options.history,
                )
            except (AMQPError, OSError, RuntimeError) as exc:
                await self._reopen()
                raise BrokerUnavailable(
                    f"cannot declare topic {topic!r} on {self.options.url}: {exc!r}"
                ) from exc
            self._exchanges[topic] = found
        return found

    # -- publishing -------------------------------------------------------------------

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        self._check_open()
        if not messages:
            return
        try:
            exchange = await self.exchange(topic)
        except BrokerUnavailable as exc:
            raise PublishError(f"publish to {topic!r} failed: {exc}; nothing was stored") from exc
        now = datetime.now(UTC)
        structured = self.options.binding == "structured"
        partitions = self.options.partitions
        sends = []
        for message in messages:
            if message.key is None:
                self._spread += 1
                partition = self._spread % partitions
            else:
                partition = partition_for(message.key, partitions)
            sends.append(
                exchange.publish(
                    write(message, now, structured),
                    routing_key(partition, message),
                    mandatory=True,
                )
            )
        try:
            async with asyncio.timeout(self.options.publish_timeout):
                await asyncio.gather(*sends)
        except (TimeoutError, AMQPError, RuntimeError, OSError) as exc:
            # A lost connection fails every unconfirmed publish here: nothing is dropped
            # silently. The next call connects again.
            if self._closed:
                raise BrokerClosedError(f"amqp broker {self.options.url} is closed") from None
            await self._reopen()
            raise PublishError(
                f"publish to {topic!r} on {self.options.url} failed: {exc!r}; the events may "
                "or may not be stored"
            ) from exc

    # -- subscribing --------------------------------------------------------------------

    async def subscribe(
        self,
        topics: Sequence[str],
        group: str | None,
        options: SubscribeOptions = SubscribeOptions(),  # noqa: B008 - frozen
        on_revoke: RevokeHandler | None = None,
    ) -> RabbitMember | RabbitReader:
        self._check_open()
        if not topics:
            raise ConfigurationError("subscribe needs at least one topic")
        if group in RESERVED_GROUPS:
            raise ConfigurationError(f"{group!r} names a topic's own queues on amqp://")
        exchanges = [await self.exchange(topic) for topic in topics]
        channel = await self._ensure()
        assert self.connection is not None
        try:
            if group is None:
                async with self._opening:
                    opened = await self.connection.channel(publisher_confirms=False)
                reader = RabbitReader(opened)
                await reader.start(topics)
                self._readers.add(reader)
                return reader
            for topic, exchange in zip(topics, exchanges, strict=True):
                await self._declare_group(channel, exchange, topic, group, options)
            identity = member_id(options.client_name)
            member = RabbitMember(
                await self._connect(f"{group} {identity}"),
                group,
                identity,
                topics,
                self.options.partitions,
                options.prefetch,
                self.options.heartbeat,
                on_revoke,
                self._leave,
                self.delay_queues,
            )
            self._members.add(member)
            try:
                await member.start()
            except BaseException:
                await self._leave(member)
                raise
            return member
        except (AMQPError, OSError, RuntimeError) as exc:
            await self._reopen()
            raise BrokerUnavailable(f"cannot subscribe on {self.options.url}: {exc!r}") from exc

    async def _declare_group(
        self,
        channel: AbstractChannel,
        _exchange: AbstractExchange,
        topic: str,
        group: str,
        options: SubscribeOptions,
    ) -> None:
        """Declare the group's queues; a new group starting at ``earliest`` takes what
        waits in ``<topic>.unrouted``."""
        assert self.connection is not None
        # No other channel opens on this connection until the server's close of a failed
        # probe is answered (see StreamReader._opening: aiormq would reuse its number).
        async with self._opening:
            probe = await self.connection.channel(publisher_confirms=False)
            try:
                await probe.declare_queue(partition_queue(topic, group, 0), passive=True)
                new = False
            except AMQPError:  # NOT_FOUND (closes the probe channel)
                new = True
        with contextlib.suppress(Exception):
            await probe.close()
        for partition in range(self.options.partitions):
            await declare_partition(channel, topic, group, partition)
        if new and options.start == "earliest":
            await self._take_unrouted(channel, topic)

    async def _take_unrouted(self, channel: AbstractChannel, topic: str) -> None:
        """Route again, in order, what no group took: now this group's queues do (the
        history already holds them)."""
        exchange = await channel.get_exchange(groups_exchange(topic), ensure=False)
        waiting = await channel.declare_queue(unrouted(topic), durable=True, arguments=QUORUM)
        moved = 0
        while (message := await waiting.get(no_ack=False, fail=False)) is not None:
            await exchange.publish(copy(message, 0), message.routing_key or "0.event")
            await message.ack()
            moved += 1
        if moved:
            log.info("%s: %d events published before any group went to the first", topic, moved)

    async def _leave(self, member: RabbitMember) -> None:
        self._members.discard(member)
        await member.stop()

    # -- replay -------------------------------------------------------------------------

    async def seek(self, topic: str, group: str, position: Position) -> None:
        """Refill ``group``'s queues on ``topic`` from the history at ``position`` (see
        :mod:`._seek`); the group is created if it does not exist. Members in this process
        give the topic's partitions up meanwhile (revoking what they hold)."""
        if group in RESERVED_GROUPS:
            raise ConfigurationError(f"{group!r} names a topic's own queues on amqp://")
        if not self.options.history or not keeps_history(topic):
            raise ConfigurationError(f"{topic!r} keeps no history to replay on {self.options.url}")
        await self.exchange(topic)
        channel = await self._ensure()
        members = [m for m in self._members if m.group == group and topic in m.parts]
        inspector = await self._inspecting()
        partitions = self.options.partitions
        try:
            for member in members:
                await member.hold(topic)
            for partition in range(partitions):
                await declare_partition(channel, topic, group, partition)
            bounds = await inspector.bounds(topic, partitions)
            for partition, kept in sorted(bounds.items()):
                start = await start_offset(inspector.streams, topic, partition, kept, position)
                await refill(
                    channel, inspector.streams, topic, group, partition, start, kept,
                    self.delay_queues,
                )  # fmt: skip
        except (AMQPError, OSError, RuntimeError) as exc:
            await self._reopen()
            raise BrokerUnavailable(
                f"cannot move group {group!r} on {topic!r} at {self.options.url}: {exc!r}"
            ) from exc
        finally:
            for member in members:
                await member.resume(topic)

    # -- inspection (tidings.inspection.Inspectable) ----------------------------------

    async def _inspecting(self) -> Inspector:
        if not self.options.history:
            raise ConfigurationError(
                f"{self.options.url} keeps no history (history=false): nothing to inspect"
            )
        self._check_open()
        if self._inspector is None or not alive(self._inspector.connection):
            if self._inspector is not None:
                await close_connection(self._inspector.connection)
            # A connection of its own: reading streams opens many channels, and nothing
            # that goes wrong there reaches the publishing connection.
            connection = await self._connect("inspection")
            options = self.options
            context = None
            if options.management.startswith("https://"):
                context = ssl.create_default_context(cafile=options.tls_ca)
            management = Management(
                options.management,
                options.username,
                options.password,
                options.vhost,
                options.connect_timeout,
                context,
            )
            self._inspector = Inspector(management, connection)
        return self._inspector

    async def list_topics(self) -> list[TopicInfo]:
        """Every topic (an exchange with history streams), its events and retention."""
        return await (await self._inspecting()).list_topics()

    async def list_groups(self) -> list[GroupInfo]:
        """Every group, its members (consumer tags) and per-partition lag."""
        return await (await self._inspecting()).list_groups()

    async def delete_group(self, name: str) -> bool:
        """Delete group ``name``'s queues (:class:`~tidings.inspection.GroupAdmin`)."""
        return await (await self._inspecting()).delete_group(name)

    async def read(
        self,
        topic: str,
        *,
        after: Mapping[int, int] | None = None,
        last: int | None = None,
        limit: int = 1000,
    ) -> list[StoredMessage]:
        """Stored events of ``topic`` from its history streams, joining no group."""
        return await (await self._inspecting()).read(topic, after, last, limit)

    async def delete(self, topic: str, entries: Sequence[tuple[int, int]]) -> int:
        """Tombstone entries of ``topic``'s history (a stream cannot drop one entry):
        inspection no longer reads them; retention removes them with their segment."""
        inspector = await self._inspecting()
        partitions = await inspector.partitions(topic)
        if partitions is None or not entries:
            return 0
        bounds = await inspector.bounds(topic, partitions)
        gone = await inspector.tombstones(topic)
        fresh = set()
        for partition, offset in entries:
            kept = bounds.get(partition)
            stored = kept is not None and kept.first <= offset < kept.head
            if stored and (partition, offset) not in gone:
                fresh.add((partition, offset))
        if not fresh:
            return 0
        channel = await self._ensure()
        options = self.options
        try:
            async with asyncio.timeout(self.options.publish_timeout):
                await channel.declare_queue(
                    tombstones_queue(topic),
                    durable=True,
                    arguments=stream_arguments(options.retention, options.retention_bytes),
                )
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        tombstone_record(fresh), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                    ),
                    tombstones_queue(topic),
                )
        except (TimeoutError, AMQPError, RuntimeError, OSError) as exc:
            await self._reopen()
            raise PublishError(f"deleting from {topic!r} failed: {exc!r}") from exc
        inspector.deleted(topic)
        return len(fresh)

    async def move(self, topic: str, entries: Sequence[tuple[int, int, str, Message]]) -> int:
        """Publish each message to its target, then delete the original (not atomic:
        a failure in between leaves both copies, never none)."""
        by_target: dict[str, list[Message]] = {}
        for _, _, target, message in entries:
            by_target.setdefault(target, []).append(message)
        for target, messages in by_target.items():
            await self.publish(target, messages)
        return await self.delete(topic, [(p, o) for p, o, _, _ in entries])
