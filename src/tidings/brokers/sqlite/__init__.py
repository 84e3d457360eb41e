"""The embedded durable broker (``sqlite:///./tidings.db``): one SQLite file, no server.

Several processes on one machine share the file: producers, consumers of
one group (partitions are leased to live members and move when one dies),
and the CLI. Publishes from concurrent tasks are group-committed, so a
durable (fsynced) publish does not cost one fsync each.

Durability (``?durability=``): ``full`` (default) fsyncs every commit before
``publish`` returns, so an acknowledged event survives power loss;
``normal`` survives a crash of the process but may lose the last commits on
an OS crash or power loss.

URL options (``?name=value``, see :class:`SqliteConfig`): ``durability``,
``partitions``, ``session_timeout``, ``heartbeat``, ``retention_interval``,
``dedup_window``.

Topics keep events forever unless :meth:`SqliteBroker.ensure_topic` sets
a retention by age or size, or compaction by key; a background pass applies
it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime

from tidings.broker import (
    Capabilities,
    Delivery,
    Message,
    Position,
    RevokeHandler,
    SubscribeOptions,
)
from tidings.brokers.sqlite import _admin, _ops, _retention
from tidings.brokers.sqlite._commit import is_processed
from tidings.brokers.sqlite._config import SqliteConfig
from tidings.brokers.sqlite._delivery import SqliteDelivery
from tidings.brokers.sqlite._member import SqliteSubscription
from tidings.brokers.sqlite._reader import Reader
from tidings.brokers.sqlite._schema import Durability
from tidings.brokers.sqlite._schemas import SqliteSchemaStore
from tidings.brokers.sqlite._topics import TopicRegistry
from tidings.brokers.sqlite._watcher import Watcher
from tidings.brokers.sqlite._webhooks import SqliteWebhookStore
from tidings.brokers.sqlite._writer import Writer
from tidings.errors import BrokerClosedError, ConfigurationError
from tidings.inspection import GroupInfo, StoredMessage, TopicInfo

__all__ = ["SqliteBroker", "SqliteConfig", "SqliteDelivery", "SqliteSubscription"]

log = logging.getLogger("tidings.sqlite")

#: Connected brokers per database file (real path) in this process.
_SAME_FILE: dict[str, weakref.WeakSet[SqliteBroker]] = {}

CAPABILITIES = Capabilities(
    persistent=True,
    ordered_per_key=True,
    consumer_groups=True,
    key_affinity=True,
    replay=True,
    delayed_publish=True,
    delayed_redelivery=True,
    exactly_once=True,
    headers=True,
    wildcards=False,
)


class SqliteBroker:
    """A client of one SQLite broker file (options: see :class:`SqliteConfig`)."""

    capabilities = CAPABILITIES

    def __init__(
        self,
        path: str,
        *,
        durability: Durability = "full",
        partitions: int = 4,
        session_timeout: float = 10.0,
        heartbeat_interval: float | None = None,
        retention_interval: float = 30.0,
        dedup_window: float = 7 * 24 * 3600.0,
        busy_timeout: float = 30.0,
    ) -> None:
        self.config = SqliteConfig(
            path,
            durability=durability,
            partitions=partitions,
            session_timeout=session_timeout,
            heartbeat_interval=heartbeat_interval,
            retention_interval=retention_interval,
            dedup_window=dedup_window,
            busy_timeout=busy_timeout,
        )
        self.path = path
        self.durability = durability
        self.default_partitions = partitions
        self._topics: TopicRegistry | None = None
        self._subscriptions: list[SqliteSubscription] = []
        self._writer: Writer | None = None
        self._reader: Reader | None = None
        self._watcher: Watcher | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._rotation = int.from_bytes(os.urandom(2), "big")
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Brokers of this process on the same file share wake-ups (see ``_advance``).
        self._file_key = os.path.realpath(path)
        self._read_only = False

    @classmethod
    def from_url(cls, url: str) -> SqliteBroker:
        """``sqlite:///relative.db`` or ``sqlite:////absolute.db``, with query options."""
        return cls(**asdict(SqliteConfig.from_url(url)))

    def __repr__(self) -> str:
        return f"<SqliteBroker {self.path} durability={self.durability}>"

    # -- connections -------------------------------------------------------------

    @property
    def writer(self) -> Writer:
        if self._read_only:
            raise BrokerClosedError(f"{self.path} was opened read-only (for inspection)")
        if self._writer is None:
            raise BrokerClosedError("the embedded broker is not connected (or is closed)")
        return self._writer

    @property
    def reader(self) -> Reader:
        if self._reader is None:
            raise BrokerClosedError("the embedded broker is not connected (or is closed)")
        return self._reader

    @property
    def heads(self) -> dict[tuple[int, int], int]:
        """(topic_id, partition) -> next offset to be written, as far as known here."""
        if self._watcher is None:
            raise BrokerClosedError("the embedded broker is not connected (or is closed)")
        return self._watcher.heads

    async def connect(self) -> None:
        if self._closed:
            raise BrokerClosedError("the embedded broker is closed")
        if self._writer is not None or self._reader is not None:
            return
        config = self.config
        if self._read_only:
            self._reader = await Reader.open_read_only(config.path, config.durability)
            return
        self._reader, conn = await Reader.open(config.path, config.durability)
        # The writer waits for the write lock itself, in short steps (see Writer.begin).
        conn.execute("PRAGMA busy_timeout = 0")
        wal = self.path + "-wal"
        self._writer = Writer(conn, wal, db_path=config.path, busy_timeout=config.busy_timeout)
        self._topics = TopicRegistry(self._writer, self.default_partitions)
        self._watcher = Watcher(
            wal, self._reader, self._writer, self._subscriptions, config.session_timeout
        )
        self._maintenance = asyncio.create_task(self._maintain(), name="tidings-sqlite-retention")
        self._loop = asyncio.get_running_loop()
        _SAME_FILE.setdefault(self._file_key, weakref.WeakSet()).add(self)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        siblings = _SAME_FILE.get(self._file_key)
        if siblings is not None:
            siblings.discard(self)
            if not siblings:
                _SAME_FILE.pop(self._file_key, None)
        for subscription in list(self._subscriptions):
            await subscription.close()
        if self._watcher is not None:
            await self._watcher.stop()
        if self._maintenance is not None:
            self._maintenance.cancel()
            await asyncio.gather(self._maintenance, return_exceptions=True)
        if self._writer is not None:
            await asyncio.to_thread(self._writer.close)
            self._writer.conn.close()
        if self._reader is not None:
            await self._reader.close()
        self._writer = None
        self._reader = None

    def missing_storage(self) -> str | None:
        """The database path if the file does not exist yet (``LocalStorage``)."""
        return None if os.path.exists(self.path) else self.path

    def open_read_only(self) -> None:
        """Connect without writing, for inspection (:class:`~tidings.inspection.ReadOnly`).

        Works on a read-only file or directory; only ``list_topics``,
        ``list_groups`` and ``read`` can be used.
        """
        self._read_only = True

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosedError("the embedded broker is closed")
        if self._read_only and self._reader is not None:
            return
        if self._writer is None:
            raise BrokerClosedError("the embedded broker is not connected; call connect()")

    # -- topics --------------------------------------------------------------------

    @property
    def topics(self) -> TopicRegistry:
        if self._topics is None:
            raise BrokerClosedError("the embedded broker is not connected (or is closed)")
        return self._topics

    async def topic(self, name: str) -> tuple[int, int]:
        """``(topic_id, partitions)``, creating the topic with the default partitions."""
        self._check_open()
        return await self.topics.resolve(name)

    async def ensure_topic(
        self,
        name: str,
        *,
        partitions: int | None = None,
        retention: float | None = None,
        retention_bytes: int | None = None,
        compact: bool = False,
    ) -> None:
        """Create a topic or set its retention (:class:`~tidings.broker.Provisioning`).

        ``retention``: seconds to keep events (None: forever). ``retention_bytes``:
        per partition, keep the newest events whose values fit in this many
        bytes. ``compact``: keep only the newest event of each key. The
        partition count is fixed when the topic is created (``None``: the
        existing count, or the broker's default for a new topic).
        """
        self._check_open()
        await self.topics.ensure(name, partitions, retention, retention_bytes, compact)

    async def apply_retention(self) -> int:
        """Apply every topic's retention now; return how many events were removed.

        The same pass deletes the rows of group-less readers whose process died.
        """
        self._check_open()
        window, timeout = self.config.dedup_window, self.config.session_timeout
        return await self.writer.submit(
            lambda conn: _retention.apply_retention(conn, time.time(), window, timeout)
        )

    async def _maintain(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.config.retention_interval)
            try:
                await self.apply_retention()
            except BrokerClosedError:
                return
            except Exception:
                log.exception("retention pass failed; will retry")

    def next_rotation(self, count: int) -> int:
        start = self._rotation
        self._rotation += count
        return start

    # -- publishing ------------------------------------------------------------------

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        self._check_open()
        if not messages:
            return
        known = self.topics.cached(topic)  # no await on the hot path
        topic_id, partitions = known if known is not None else await self.topic(topic)
        rotation = self.next_rotation(len(messages))
        now = time.time()
        heads = await self.writer.submit(_ops.Append(topic_id, partitions, messages, now, rotation))
        self._advance({topic_id: heads})

    async def publish_many(self, batches: Sequence[tuple[str, Sequence[Message]]]) -> None:
        """Store messages of several topics in one transaction: all or nothing."""
        self._check_open()
        resolved = [(*(await self.topic(name)), messages) for name, messages in batches]
        rotation = self.next_rotation(sum(len(m) for _, _, m in resolved))
        now = time.time()
        self._advance(
            await self.writer.submit(lambda conn: _ops.append_many(conn, resolved, now, rotation))
        )

    def _advance(self, heads: dict[int, dict[int, int]]) -> None:
        """Partitions written here grew to ``heads`` (per topic): wake their readers.

        Readers of other brokers on the same file in this process (and event
        loop) are woken too, rather than when their watcher notices the commit.
        """
        loop = asyncio.get_running_loop()
        siblings = _SAME_FILE.get(self._file_key)
        # Alone on the file (the usual case) it is this broker: skip copying the WeakSet.
        brokers = (self,) if siblings is None or len(siblings) <= 1 else list(siblings)
        for broker in brokers:
            watcher = broker._watcher
            if watcher is not None and broker._loop is loop:
                for topic_id, topic_heads in heads.items():
                    watcher.advance(topic_id, topic_heads)

    # -- consuming -------------------------------------------------------------------

    async def subscribe(
        self,
        topics: Sequence[str],
        group: str | None,
        options: SubscribeOptions = SubscribeOptions(),  # noqa: B008 - frozen
        on_revoke: RevokeHandler | None = None,
    ) -> SqliteSubscription:
        """Join ``group`` on ``topics``; ``None``: a group-less reader from the end.

        Of ``options`` only ``start`` and ``client_name`` (shown in the member
        id, ``<client_name>@<host>:<pid>-<random>``) apply: prefetch is the consumer's to
        enforce, an unsettled delivery stays with its member as long as the
        member heartbeats (no ``ack_wait``), and redeliveries are not counted
        against ``max_deliveries`` here (the retry policy decides).
        """
        self._check_open()
        if not topics:
            raise ConfigurationError("subscribe needs at least one topic")
        resolved = [(name, *(await self.topic(name))) for name in topics]
        watcher = self._watcher
        assert watcher is not None
        await watcher.refresh_heads([topic_id for _, topic_id, _ in resolved])
        subscription = SqliteSubscription(
            self, group, resolved, options.start == "latest", on_revoke, options.client_name
        )
        self._subscriptions.append(subscription)
        try:
            await subscription.join()
        except BaseException:
            self._subscriptions.remove(subscription)
            raise
        watcher.start()
        return subscription

    def forget(self, subscription: SqliteSubscription) -> None:
        """A subscription closed: stop waking it."""
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    # -- replay ------------------------------------------------------------------------

    async def seek(self, topic: str, group: str, position: Position) -> None:
        self._check_open()
        if not (
            position in ("beginning", "end")
            or isinstance(position, datetime)
            or (isinstance(position, int) and not isinstance(position, bool))
        ):
            raise ConfigurationError(f"cannot seek to {position!r}")
        topic_id, partitions = await self.topic(topic)
        await self.writer.submit(
            lambda conn: _ops.seek(conn, group, topic_id, partitions, position)
        )
        for subscription in list(self._subscriptions):
            if subscription.group == group and topic_id in subscription.topics:
                await subscription.heartbeat()

    # -- exactly-once --------------------------------------------------------------------

    async def is_processed(self, delivery: Delivery, dedup_key: str) -> bool:
        group = delivery.group
        return await self.reader.run(lambda conn: is_processed(conn, group, dedup_key))

    async def commit(
        self,
        delivery: Delivery,
        outputs: Sequence[tuple[str, Message]],
        dedup_key: str | None = None,
    ) -> bool:
        self._check_open()
        if not isinstance(delivery, SqliteDelivery):
            raise ConfigurationError("commit needs a delivery from this broker")
        if delivery.settled or delivery.fenced():
            return False
        grouped: dict[str, list[Message]] = {}
        for topic, message in outputs:
            grouped.setdefault(topic, []).append(message)
        resolved = []
        if grouped:
            topics = self.topics
            for name, messages in grouped.items():
                known = topics.cached(name)  # no await on the hot path
                topic_id, partitions = known if known is not None else await self.topic(name)
                resolved.append((topic_id, partitions, messages))
        outcome, heads = await delivery._member.commit(delivery, resolved, dedup_key)
        self._advance(heads)
        return outcome == "committed"

    def schema_store(self) -> SqliteSchemaStore:
        """The schema registry's storage in this database (:class:`~tidings.schemas.SchemaStorage`).

        ``StoredRegistry(broker.schema_store())`` is a registry every process
        using this file shares; the broker must be connected to use it.
        """
        return SqliteSchemaStore(self)

    def webhook_store(self) -> SqliteWebhookStore:
        """Webhook registrations in this database (:class:`~tidings.webhooks.WebhookStorage`)."""
        return SqliteWebhookStore(self)

    # -- inspection and administration (tidings.inspection.Inspectable) ---------------

    async def list_topics(self) -> list[TopicInfo]:
        self._check_open()
        return await self.reader.run(_admin.list_topics)

    async def list_groups(self) -> list[GroupInfo]:
        self._check_open()
        timeout = self.config.session_timeout
        return await self.reader.run(lambda conn: _admin.list_groups(conn, timeout))

    async def read(
        self,
        topic: str,
        *,
        after: Mapping[int, int] | None = None,
        last: int | None = None,
        limit: int = 1000,
    ) -> list[StoredMessage]:
        self._check_open()
        return await self.reader.run(lambda conn: _admin.read(conn, topic, after, last, limit))

    async def delete(self, topic: str, entries: Sequence[tuple[int, int]]) -> int:
        self._check_open()
        topic_id, _ = await self.topic(topic)
        return await self.writer.submit(lambda conn: _admin.delete(conn, topic_id, entries))

    async def delete_group(self, name: str) -> bool:
        """Delete the group's rows in one transaction (:class:`~tidings.inspection.GroupAdmin`)."""
        self._check_open()
        timeout = self.config.session_timeout
        return await self.writer.submit(lambda conn: _admin.delete_group(conn, name, timeout))

    async def move(self, topic: str, entries: Sequence[tuple[int, int, str, Message]]) -> int:
        self._check_open()
        source_id, _ = await self.topic(topic)
        targets = [(p, offset, await self.topic(name), m) for p, offset, name, m in entries]
        rotation = self.next_rotation(len(entries))
        now = time.time()
        moved, heads = await self.writer.submit(
            lambda conn: _admin.move(conn, source_id, targets, now, rotation)
        )
        self._advance(heads)
        return moved
