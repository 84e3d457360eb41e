"""The Redis Streams broker (``redis://host:port/db[?options]``, extra ``tidings[redis]``).

A topic is ``partitions`` streams (``<prefix>:s:<topic>:<p>``); the partition
comes from the key (CRC-32, as in the embedded broker). Entry ids are
``<ms>-<offset>`` (see :mod:`._scripts`): offsets count per partition. A
consumer group is a Redis consumer group on each stream; members own
partitions through leases (see :mod:`._group`), so one member at a time reads
a key, in order. ``nack(delay)`` keeps the entry pending and claims it again
after the delay; the attempt is the entry's delivery counter. See
``docs/brokers/redis.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from tidings.broker import Capabilities, Message, Position, RevokeHandler, SubscribeOptions
from tidings.brokers._member_id import member_id
from tidings.brokers._partitioning import partition_for
from tidings.errors import BrokerClosedError, BrokerUnavailable, ConfigurationError, PublishError
from tidings.inspection import GroupInfo, StoredMessage, TopicInfo

try:
    import redis.exceptions
    from redis.asyncio import BlockingConnectionPool, Redis
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("the redis:// broker needs redis-py: pip install 'tidings[redis]'") from None

from tidings.brokers.redis import _admin
from tidings.brokers.redis._binding import Keys, entry_fields
from tidings.brokers.redis._connection import connection_class
from tidings.brokers.redis._delivery import Source
from tidings.brokers.redis._group import Coordinator
from tidings.brokers.redis._reader import RedisReader
from tidings.brokers.redis._seek import seek_stream
from tidings.brokers.redis._subscription import RedisSubscription, Scripts
from tidings.brokers.redis._topics import Topic, load_topic
from tidings.brokers.redis._url import RedisOptions

__all__ = ["RedisBroker", "RedisOptions"]

log = logging.getLogger("tidings.brokers.redis")

#: Connections a client opens at most: commands beyond wait for one (up to publish_timeout).
_MAX_CONNECTIONS = 256

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
    max_message_size=512 << 20,
)


class RedisBroker:
    """A client of a Redis server (5.0+; 7.0+ for every feature). Create with :meth:`from_url`."""

    #: OpenTelemetry's ``messaging.system`` for spans of this broker.
    messaging_system = "redis"

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self.capabilities = CAPABILITIES
        self.keys = Keys(options.prefix)
        self.client: Redis | None = None
        self._scripts: Scripts | None = None
        self._topics: dict[str, Topic] = {}
        self._members: dict[RedisSubscription, Coordinator] = {}
        self._readers: set[RedisReader] = set()
        self._spread = 0
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> RedisBroker:
        """``redis[s]://[[user]:password@]host[:port][/db][?option=value...]``."""
        return cls(RedisOptions.from_url(url))

    def __repr__(self) -> str:
        return f"<RedisBroker {self.options.url}>"

    # -- connection -------------------------------------------------------------

    def _check_open(self) -> Redis:
        if self._closed or self.client is None:
            raise BrokerClosedError(f"redis broker {self.options.url} is closed")
        return self.client

    @property
    def scripts(self) -> Scripts:
        assert self._scripts is not None
        return self._scripts

    async def connect(self) -> None:
        if self._closed:
            raise BrokerClosedError(f"redis broker {self.options.url} is closed")
        options = self.options
        extra: dict[str, Any] = {}
        if options.tls:
            extra = {"ssl_ca_certs": options.tls_ca}
        # A blocking pool: a burst of concurrent commands (a thousand publishes or
        # requests at once) waits for a connection instead of failing with redis-py's
        # MaxConnectionsError; hiredis packs the commands (see _connection).
        pool = BlockingConnectionPool(
            host=options.host,
            port=options.port,
            db=options.db,
            username=options.username,
            password=options.password,
            socket_connect_timeout=options.connect_timeout,
            client_name="tidings",
            connection_class=connection_class(options.tls),
            max_connections=_MAX_CONNECTIONS,
            timeout=options.publish_timeout,
            **extra,
        )
        client = Redis.from_pool(pool)
        try:
            await asyncio.wait_for(client.ping(), options.connect_timeout)
        except (TimeoutError, OSError, redis.exceptions.RedisError) as exc:
            with contextlib.suppress(Exception):
                await client.aclose()
                await client.connection_pool.disconnect(inuse_connections=True)
            reason = (
                str(exc)
                if isinstance(
                    exc, redis.exceptions.ResponseError | redis.exceptions.AuthenticationError
                )
                else f"no answer within {options.connect_timeout:g}s ({type(exc).__name__})"
            )
            raise BrokerUnavailable(f"no Redis server at {options.url}: {reason}") from None
        self.client = client
        self._scripts = Scripts(client)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._members):
            with contextlib.suppress(Exception):
                await self._leave(subscription)
        for reader in list(self._readers):
            await reader.close()
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    # -- topics ---------------------------------------------------------------------

    async def topic(self, name: str, *, create: bool = True) -> Topic | None:
        """The settings of ``name`` (stored with this URL's defaults on first use)."""
        known = self._topics.get(name)
        if known is not None:
            return known
        try:
            found = await load_topic(self._check_open(), self.keys, name, self.options, create)
        except redis.exceptions.RedisError as exc:
            raise BrokerUnavailable(
                f"cannot read topic {name!r} on {self.options.url}: {exc!r}"
            ) from exc
        if found is None:
            return None
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
        """Create or update the settings of ``name``.

        ``retention`` becomes ``XADD MINID ~`` (entries older than it are trimmed
        as new ones come). Redis trims by count or id, not bytes or key:
        ``retention_bytes`` and ``compact`` are refused.
        """
        if compact or retention_bytes is not None:
            raise ConfigurationError(
                "redis:// streams trim by length or age only: retention_bytes and compact "
                "are not supported (use maxlen= in the URL or retention=)"
            )
        if partitions is not None and partitions < 1:
            raise ConfigurationError("partitions must be >= 1")
        client = self._check_open()
        existing = await self.topic(name, create=False)
        if existing is not None and partitions is not None and existing.partitions != partitions:
            raise ConfigurationError(
                f"topic {name!r} has {existing.partitions} partitions; "
                "the count is fixed when a topic is created"
            )
        count = partitions or (existing.partitions if existing else self.options.partitions)
        retention_ms = int(retention * 1000) if retention else 0
        async with client.pipeline(transaction=True) as pipe:
            pipe.hset(
                self.keys.topic(name), mapping={"partitions": count, "retention_ms": retention_ms}
            )
            pipe.hsetnx(self.keys.topic(name), "maxlen", self.options.maxlen)
            pipe.sadd(self.keys.topics(), name)
            await pipe.execute()
        self._topics.pop(name, None)

    # -- publishing -------------------------------------------------------------------

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        self._check_open()
        if not messages:
            return
        found = await self.topic(topic)
        assert found is not None
        batches: dict[int, list[str | bytes]] = {}
        for message in messages:
            if message.key is None:
                self._spread += 1
                partition = self._spread % found.partitions
            else:
                partition = partition_for(message.key, found.partitions)
            batches.setdefault(partition, []).extend(entry_fields(message))
        client = self._check_open()
        try:
            # asyncio.timeout, not wait_for: no task per publish.
            async with asyncio.timeout(self.options.publish_timeout):
                if len(batches) == 1:  # one EVALSHA; a pipeline of scripts asks SCRIPT EXISTS
                    [(partition, fields)] = batches.items()
                    await self.scripts.publish(
                        keys=[self.keys.stream(topic, partition)],
                        args=[found.maxlen, found.retention_ms, *fields],
                    )
                    return
                async with client.pipeline(transaction=False) as pipe:
                    for partition, fields in batches.items():
                        await self.scripts.publish(
                            keys=[self.keys.stream(topic, partition)],
                            args=[found.maxlen, found.retention_ms, *fields],
                            client=pipe,
                        )
                    await pipe.execute()
        except (TimeoutError, redis.exceptions.RedisError) as exc:
            if self._closed:
                raise BrokerClosedError(f"redis broker {self.options.url} is closed") from None
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
    ) -> RedisSubscription | RedisReader:
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
                reader = RedisReader(
                    client,
                    {
                        self.keys.stream(t.name, p): (t.name, p)
                        for t in found
                        for p in range(t.partitions)
                    },
                )
                await reader.start()
                self._readers.add(reader)
                return reader
            return await self._join(client, found, group, options, on_revoke)
        except redis.exceptions.RedisError as exc:
            raise BrokerUnavailable(f"cannot subscribe on {self.options.url}: {exc!r}") from exc

    async def _join(
        self,
        client: Redis,
        topics: Sequence[Topic],
        group: str,
        options: SubscribeOptions,
        on_revoke: RevokeHandler | None,
    ) -> RedisSubscription:
        start = "0" if options.start == "earliest" else "$"
        sources: list[Source] = []
        for topic in topics:
            for partition in range(topic.partitions):
                stream = self.keys.stream(topic.name, partition)
                with contextlib.suppress(redis.exceptions.ResponseError):  # BUSYGROUP
                    await client.xgroup_create(stream, group, start, mkstream=True)
                sources.append(
                    Source(
                        topic.name,
                        partition,
                        stream,
                        self.keys.lease(group, topic.name, partition),
                        self.keys.dues(group, topic.name, partition),
                    )
                )
        subscription = RedisSubscription(
            client,
            self.scripts,
            group,
            member_id(options.client_name),
            sources,
            on_revoke,
            options.prefetch,
            self._leave,
        )
        coordinator = Coordinator(
            client, self.keys, subscription, self.options.heartbeat, self.options.session_timeout
        )
        self._members[subscription] = coordinator
        await coordinator.start()
        return subscription

    async def _leave(self, subscription: RedisSubscription) -> None:
        coordinator = self._members.pop(subscription, None)
        subscription.closed = True
        subscription.wake.set()
        if coordinator is None:
            return
        try:
            await coordinator.stop()
        except Exception as exc:
            log.warning("redis %s: leaving the group cleanly failed: %r", self.options.url, exc)

    # -- replay -------------------------------------------------------------------------

    async def seek(self, topic: str, group: str, position: Position) -> None:
        """Move ``group`` on ``topic`` (``XGROUP SETID`` on every partition stream).

        An offset is a sequence number within each partition; a time is a stream
        id's time part. Members in this process forget what they hold first.
        """
        client = self._check_open()
        found = await self.topic(topic, create=False)
        if found is None:
            raise ConfigurationError(f"no topic {topic!r} on {self.options.url}")
        for subscription in self._members:
            if subscription.group == group:
                for source in subscription.sources:
                    if source.topic == topic:
                        subscription.forget(source)
        for partition in range(found.partitions):
            await seek_stream(client, self.keys.stream(topic, partition), group, position)

    # -- inspection (tidings.inspection.Inspectable) ----------------------------------

    async def _all_topics(self) -> list[Topic]:
        stored: Any = await self._check_open().smembers(self.keys.topics())
        names = sorted(name.decode() for name in stored)
        found = [await self.topic(name, create=False) for name in names]
        return [topic for topic in found if topic is not None]

    async def list_topics(self) -> list[TopicInfo]:
        return await _admin.list_topics(self._check_open(), self.keys, await self._all_topics())

    async def list_groups(self) -> list[GroupInfo]:
        return await _admin.list_groups(self._check_open(), self.keys, await self._all_topics())

    async def delete_group(self, name: str) -> bool:
        """Forget group ``name`` (:class:`~tidings.inspection.GroupAdmin`)."""
        return await _admin.delete_group(
            self._check_open(),
            self.keys,
            await self._all_topics(),
            name,
            self.options.session_timeout,
        )

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
        return await _admin.read(
            self._check_open(), self.keys, topic, found.partitions, after, last, limit
        )

    async def delete(self, topic: str, entries: Sequence[tuple[int, int]]) -> int:
        client = self._check_open()
        deleted = 0
        for partition, offset in entries:
            stream = self.keys.stream(topic, partition)
            stream_id = await _admin.entry_id(client, stream, offset)
            if stream_id is not None:
                deleted += await client.xdel(stream, stream_id)
        return deleted

    async def move(self, topic: str, entries: Sequence[tuple[int, int, str, Message]]) -> int:
        """Publish each message to its target, then delete the original (not atomic:
        a failure in between leaves both copies, never none)."""
        moved = 0
        for partition, offset, target, message in entries:
            await self.publish(target, [message])
            moved += await self.delete(topic, [(partition, offset)])
        return moved
