"""The embedded durable broker (``sqlite:///./tidings.db``): one SQLite file, no server.

Several processes on one machine share the file: producers, consumers of
one group (partitions are leased to live members and move when one dies),
and the CLI. Publishes from concurrent tasks are group-committed, so a
durable (fsynced) publish does not cost one fsync each.

Durability (``?durability=``): ``full`` (default) fsyncs every commit before
``publish`` returns, so an acknowledged event survives power loss;
``normal`` survives a crash of the process but may lose the last commits on
an OS crash or power loss.

URL options: ``durability``, ``partitions`` (default for new topics, 4),
``session_timeout`` (seconds before a silent member's partitions move, 10),
``heartbeat`` (seconds between heartbeats, 1), ``retention_interval``
(seconds between retention passes, 30), ``dedup_window`` (seconds an
exactly-once dedup record is kept, 7 days).

Topics keep events forever unless :meth:`SqliteBroker.ensure_topic` sets
a retention by age or size, or compaction by key; a background pass applies
it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from tidings.broker import (
    Capabilities,
    Delivery,
    Message,
    Position,
    RevokeHandler,
    SubscribeOptions,
)
from tidings.brokers import redact_url
from tidings.brokers.sqlite import _admin, _ops
from tidings.brokers.sqlite._delivery import SqliteDelivery
from tidings.brokers.sqlite._member import SqliteSubscription
from tidings.brokers.sqlite._schema import Durability, connect, migrate
from tidings.brokers.sqlite._writer import Writer, wal_stamp
from tidings.errors import BrokerClosedError, ConfigurationError
from tidings.inspection import GroupInfo, StoredMessage, TopicInfo

__all__ = ["SqliteBroker", "SqliteDelivery", "SqliteSubscription"]

log = logging.getLogger("tidings.sqlite")
T = TypeVar("T")

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
    """A client of one SQLite broker file."""

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
    ) -> None:
        if partitions < 1:
            raise ConfigurationError("partitions must be >= 1")
        if session_timeout <= 0:
            raise ConfigurationError("session_timeout must be > 0")
        if durability not in ("full", "normal"):
            raise ConfigurationError(f"durability must be 'full' or 'normal', got {durability!r}")
        self.path = path
        self.durability = durability
        self.default_partitions = partitions
        self.session_timeout = session_timeout
        self.heartbeat_interval = heartbeat_interval or min(1.0, session_timeout / 3)
        if retention_interval <= 0:
            raise ConfigurationError("retention_interval must be > 0")
        self.retention_interval = retention_interval
        if dedup_window <= 0:
            raise ConfigurationError("dedup_window must be > 0 seconds")
        self.dedup_window = dedup_window
        self._maintenance: asyncio.Task[None] | None = None
        self.heads: dict[tuple[int, int], int] = {}
        self._topics: dict[str, tuple[int, int]] = {}
        self._topic_requests: dict[str, asyncio.Future[tuple[int, int]]] = {}
        self._subscriptions: list[SqliteSubscription] = []
        self._writer: Writer | None = None
        self._reader: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._rotation = int.from_bytes(os.urandom(2), "big")
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> SqliteBroker:
        """``sqlite:///relative.db`` or ``sqlite:////absolute.db``, with query options."""
        parts = urlsplit(url)
        if parts.scheme != "sqlite":
            raise ConfigurationError(f"not a sqlite:// URL: {redact_url(url)!r}")
        path = unquote(parts.path)
        if parts.netloc or not path.startswith("/") or len(path) < 2:
            raise ConfigurationError(
                f"bad sqlite URL {redact_url(url)!r}: use sqlite:///relative/path.db "
                "or sqlite:////absolute/path.db"
            )
        path = path[1:]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {
            "durability",
            "partitions",
            "session_timeout",
            "heartbeat",
            "retention_interval",
            "dedup_window",
        }
        if unknown:
            raise ConfigurationError(f"unknown sqlite URL option(s): {', '.join(sorted(unknown))}")
        try:
            return cls(
                path,
                durability=query.get("durability", "full"),  # type: ignore[arg-type]
                partitions=int(query.get("partitions", 4)),
                session_timeout=float(query.get("session_timeout", 10.0)),
                heartbeat_interval=float(query["heartbeat"]) if "heartbeat" in query else None,
                retention_interval=float(query.get("retention_interval", 30.0)),
                dedup_window=float(query.get("dedup_window", 7 * 24 * 3600.0)),
            )
        except ValueError as exc:
            if isinstance(exc, ConfigurationError):
                raise
            raise ConfigurationError(
                f"bad sqlite URL option in {redact_url(url)!r}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"<SqliteBroker {self.path} durability={self.durability}>"

    # -- connections -------------------------------------------------------------

    @property
    def writer(self) -> Writer:
        if self._writer is None:
            raise BrokerClosedError("the embedded broker is not connected (or is closed)")
        return self._writer

    async def connect(self) -> None:
        if self._closed:
            raise BrokerClosedError("the embedded broker is closed")
        if self._writer is not None:
            return

        def open_all() -> tuple[sqlite3.Connection, sqlite3.Connection]:
            directory = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(directory):
                raise ConfigurationError(f"directory {directory} does not exist")
            conn = connect(self.path, self.durability)
            try:
                migrate(conn, self.path)
            except BaseException:
                conn.close()
                raise
            return conn, connect(self.path, self.durability)

        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tidings-sqlite-reader")
        try:
            conn, reader = await asyncio.get_running_loop().run_in_executor(
                self._executor, open_all
            )
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        self._reader = reader
        self._writer = Writer(conn, self.path + "-wal")
        self._maintenance = asyncio.create_task(self._maintain(), name="tidings-sqlite-retention")

    async def _read(self, query: Any) -> Any:
        if self._reader is None or self._executor is None:
            raise BrokerClosedError("the embedded broker is not connected (or is closed)")
        reader = self._reader
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: query(reader)
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.close()
        for task in (self._watcher, self._maintenance):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._writer is not None:
            await asyncio.to_thread(self._writer.close)
            self._writer.conn.close()
        if self._reader is not None and self._executor is not None:
            reader = self._reader
            await asyncio.get_running_loop().run_in_executor(self._executor, reader.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._writer = None
        self._reader = None

    def missing_storage(self) -> str | None:
        """The database path if the file does not exist yet (``LocalStorage``)."""
        return None if os.path.exists(self.path) else self.path

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosedError("the embedded broker is closed")
        if self._writer is None:
            raise BrokerClosedError("the embedded broker is not connected; call connect()")

    # -- topics --------------------------------------------------------------------

    async def topic(self, name: str) -> tuple[int, int]:
        """``(topic_id, partitions)``, creating the topic with the default partitions."""
        found = self._topics.get(name)
        if found is not None:
            return found
        pending = self._topic_requests.get(name)
        if pending is None:  # one writer operation however many tasks ask at once
            partitions = self.default_partitions
            pending = self.writer.submit(
                lambda conn: _ops.find_or_create_topic(conn, name, partitions, time.time())
            )
            self._topic_requests[name] = pending
        try:
            found = await asyncio.shield(pending)
        finally:
            self._topic_requests.pop(name, None)
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
        """Create a topic or set its retention (:class:`~tidings.broker.Provisioning`).

        ``retention``: seconds to keep events (None: forever). ``retention_bytes``:
        per partition, keep the newest events whose values fit in this many
        bytes. ``compact``: keep only the newest event of each key. The
        partition count is fixed when the topic is created.
        """
        self._check_open()
        if retention is not None and retention <= 0:
            raise ConfigurationError("retention must be > 0 seconds (or None: forever)")
        if retention_bytes is not None and retention_bytes <= 0:
            raise ConfigurationError("retention_bytes must be > 0 (or None: no limit)")
        count = partitions or self._topics.get(name, (0, self.default_partitions))[1]
        retention_ms = None if retention is None else int(retention * 1000)

        def operation(conn: sqlite3.Connection) -> tuple[int, int]:
            return _ops.ensure_topic(
                conn, name, count, retention_ms, retention_bytes, compact, time.time()
            )

        try:
            self._topics[name] = await self.writer.submit(operation)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc

    async def apply_retention(self) -> int:
        """Apply every topic's retention now; return how many events were removed.

        The same pass deletes the rows of group-less readers whose process died.
        """
        self._check_open()
        window, timeout = self.dedup_window, self.session_timeout

        def operation(conn: sqlite3.Connection) -> int:
            now = time.time()
            _ops.drop_dead_readers(conn, now - timeout)
            return _ops.apply_retention(conn, now, window)

        return await self.writer.submit(operation)

    async def _maintain(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.retention_interval)
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
        topic_id, partitions = await self.topic(topic)
        rotation = self.next_rotation(len(messages))
        now = time.time()
        heads = await self.writer.submit(
            lambda conn: _ops.append(conn, topic_id, partitions, messages, now, rotation)
        )
        self._advance(topic_id, heads)

    async def publish_many(self, batches: Sequence[tuple[str, Sequence[Message]]]) -> None:
        """Store messages of several topics in one transaction: all or nothing."""
        self._check_open()
        resolved = [(*(await self.topic(name)), messages) for name, messages in batches]
        rotation = self.next_rotation(sum(len(m) for _, _, m in resolved))
        now = time.time()

        def operation(conn: sqlite3.Connection) -> dict[int, dict[int, int]]:
            return {
                topic_id: _ops.append(conn, topic_id, partitions, messages, now, rotation)
                for topic_id, partitions, messages in resolved
            }

        heads = await self.writer.submit(operation)
        for topic_id, topic_heads in heads.items():
            self._advance(topic_id, topic_heads)

    def _advance(self, topic_id: int, heads: dict[int, int]) -> None:
        moved = False
        for p, head in heads.items():
            key = (topic_id, p)
            if self.heads.get(key, 0) < head:
                self.heads[key] = head
                moved = True
        if moved:
            for subscription in self._subscriptions:
                if topic_id in subscription.topics:
                    subscription.wake()

    # -- consuming -------------------------------------------------------------------

    async def subscribe(
        self,
        topics: Sequence[str],
        group: str | None,
        options: SubscribeOptions = SubscribeOptions(),  # noqa: B008 - frozen
        on_revoke: RevokeHandler | None = None,
    ) -> SqliteSubscription:
        """Join ``group`` on ``topics``; ``None``: a group-less reader from the end.

        Of ``options`` only ``start`` applies: prefetch is the consumer's to
        enforce, an unsettled delivery stays with its member as long as the
        member heartbeats (no ``ack_wait``), and redeliveries are not counted
        against ``max_deliveries`` here (the retry policy decides).
        """
        self._check_open()
        if not topics:
            raise ConfigurationError("subscribe needs at least one topic")
        if group is not None and group.startswith(_ops.READER_PREFIX):
            raise ConfigurationError(
                f"group names starting with {_ops.READER_PREFIX!r} are reserved for "
                "group-less readers; pick another name, or pass group=None"
            )
        resolved = [(name, *(await self.topic(name))) for name in topics]
        await self._refresh_heads([topic_id for _, topic_id, _ in resolved])
        subscription = SqliteSubscription(
            self, group, resolved, options.start == "latest", on_revoke
        )
        self._subscriptions.append(subscription)
        try:
            await subscription.join()
        except BaseException:
            self._subscriptions.remove(subscription)
            raise
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(), name="tidings-sqlite-watcher")
        return subscription

    def _forget(self, subscription: SqliteSubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    async def read_messages(
        self, requests: list[tuple[int, int, list[int], int, int]]
    ) -> list[tuple[list[Any], list[Any]]]:
        """For each (topic_id, partition, due offsets, cursor, count): the due rows and new rows."""

        def query(conn: sqlite3.Connection) -> list[tuple[list[Any], list[Any]]]:
            out = []
            columns = "offset, key, value, headers, published_at, deliver_at"
            for topic_id, p, due, cursor, count in requests:
                due_rows = [
                    conn.execute(
                        f"SELECT {columns} FROM messages "
                        "WHERE topic_id = ? AND partition = ? AND offset = ?",
                        (topic_id, p, offset),
                    ).fetchone()
                    for offset in due
                ]
                fresh_rows = []
                if count:
                    fresh_rows = conn.execute(
                        f"SELECT {columns} FROM messages WHERE topic_id = ? AND partition = ? "
                        "AND offset >= ? ORDER BY offset LIMIT ?",
                        (topic_id, p, cursor, count),
                    ).fetchall()
                out.append(([r for r in due_rows if r is not None], fresh_rows))
            return out

        return await self._read(query)  # type: ignore[no-any-return]

    async def _refresh_heads(self, topic_ids: Sequence[int]) -> None:
        if not topic_ids:
            return
        marks = ",".join("?" * len(topic_ids))
        rows = await self._read(
            lambda conn: conn.execute(
                f"SELECT topic_id, partition, next_offset FROM partition_heads "
                f"WHERE topic_id IN ({marks})",
                tuple(topic_ids),
            ).fetchall()
        )
        by_topic: dict[int, dict[int, int]] = {}
        for topic_id, p, head in rows:
            by_topic.setdefault(topic_id, {})[p] = head
        for topic_id, heads in by_topic.items():
            self._advance(topic_id, heads)

    async def _watch(self) -> None:
        """Notice other processes' commits by polling the WAL file's stamp, cheaply.

        A stamp this broker's own writer left is ignored (local publishes wake
        subscribers directly), so an idle member's heartbeats do not keep the
        watcher in its fast mode. Heads are re-read now and then regardless, as a
        safety net for a foreign commit hidden behind an own one.
        """
        wal = self.path + "-wal"
        last: tuple[int, int] | None = None
        active_until = 0.0
        last_refresh = 0.0
        while not self._closed:
            stamp = wal_stamp(wal)
            now = time.monotonic()
            active = now < active_until
            foreign = stamp != last and (self._writer is None or stamp != self._writer.wal_stamp)
            last = stamp
            if foreign:
                active_until = now + 1.0
            if foreign or now - last_refresh > (0.1 if active else 0.5):
                last_refresh = now
                try:
                    await self._refresh()
                except BrokerClosedError:
                    return
            await asyncio.sleep(0.002 if active or foreign else 0.02)

    async def _refresh(self) -> None:
        """Re-read heads of watched topics, and rebalance groups whose membership changed."""
        subscriptions = list(self._subscriptions)
        watched = sorted({t for s in subscriptions for t in s.topics})
        await self._refresh_heads(watched)
        groups = sorted({s.group for s in subscriptions})
        if not groups:
            return
        marks = ",".join("?" * len(groups))
        timeout = self.session_timeout
        rows = await self._read(
            lambda conn: conn.execute(
                f"SELECT grp, COUNT(*) FROM members WHERE grp IN ({marks}) "
                "AND heartbeat >= ? GROUP BY grp",
                (*groups, time.time() - timeout),
            ).fetchall()
        )
        counts = dict(rows)
        for subscription in subscriptions:
            if counts.get(subscription.group, 0) != subscription.members_seen:
                subscription.members_seen = counts.get(subscription.group, 0)
                subscription.poke()

    # -- replay ------------------------------------------------------------------------

    async def seek(self, topic: str, group: str, position: Position) -> None:
        self._check_open()
        topic_id, partitions = await self.topic(topic)
        if isinstance(position, datetime):
            when = position.timestamp()
        elif position in ("beginning", "end") or (
            isinstance(position, int) and not isinstance(position, bool)
        ):
            when = 0.0
        else:
            raise ConfigurationError(f"cannot seek to {position!r}")

        def operation(conn: sqlite3.Connection) -> None:
            targets = {}
            for p in range(partitions):
                head = int(
                    conn.execute(
                        "SELECT next_offset FROM partition_heads "
                        "WHERE topic_id = ? AND partition = ?",
                        (topic_id, p),
                    ).fetchone()[0]
                )
                if position == "beginning":
                    targets[p] = 0
                elif position == "end":
                    targets[p] = head
                elif isinstance(position, datetime):
                    row = conn.execute(
                        "SELECT MIN(offset) FROM messages WHERE topic_id = ? AND partition = ? "
                        "AND published_at >= ?",
                        (topic_id, p, when),
                    ).fetchone()
                    targets[p] = head if row[0] is None else int(row[0])
                else:
                    assert isinstance(position, int)
                    targets[p] = min(max(position, 0), head)
            _ops.seek_targets(conn, group, topic_id, targets)

        await self.writer.submit(operation)
        for subscription in list(self._subscriptions):
            if subscription.group == group and topic_id in subscription.topics:
                await subscription.heartbeat()

    # -- exactly-once --------------------------------------------------------------------

    async def is_processed(self, delivery: Delivery, dedup_key: str) -> bool:
        group = delivery.group
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT 1 FROM processed WHERE grp = ? AND dedup_key = ?", (group, dedup_key)
            ).fetchone()
        )
        return row is not None

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
        for name, messages in grouped.items():
            known = self._topics.get(name)  # cached: no await on the hot path
            topic_id, partitions = known if known is not None else await self.topic(name)
            resolved.append((topic_id, partitions, messages))
        outcome, heads = await delivery.commit(resolved, dedup_key)
        for topic_id, topic_heads in heads.items():
            self._advance(topic_id, topic_heads)
        return outcome == "committed"

    # -- inspection and administration (tidings.inspection.Inspectable) ---------------

    async def list_topics(self) -> list[TopicInfo]:
        self._check_open()
        return await self._read(_admin.list_topics)  # type: ignore[no-any-return]

    async def list_groups(self) -> list[GroupInfo]:
        self._check_open()
        timeout = self.session_timeout
        return await self._read(  # type: ignore[no-any-return]
            lambda conn: _admin.list_groups(conn, timeout)
        )

    async def read(
        self,
        topic: str,
        *,
        after: Mapping[int, int] | None = None,
        last: int | None = None,
        limit: int = 1000,
    ) -> list[StoredMessage]:
        self._check_open()
        return await self._read(  # type: ignore[no-any-return]
            lambda conn: _admin.read(conn, topic, after, last, limit)
        )

    async def delete(self, topic: str, entries: Sequence[tuple[int, int]]) -> int:
        self._check_open()
        topic_id, _ = await self.topic(topic)
        rows = [(topic_id, p, offset) for p, offset in entries]
        return await self.writer.submit(
            lambda conn: sum(
                conn.execute(
                    "DELETE FROM messages WHERE topic_id = ? AND partition = ? AND offset = ?",
                    row,
                ).rowcount
                for row in rows
            )
        )

    async def move(self, topic: str, entries: Sequence[tuple[int, int, str, Message]]) -> int:
        self._check_open()
        source_id, _ = await self.topic(topic)
        targets = {name: await self.topic(name) for name in {e[2] for e in entries}}
        rotation = self.next_rotation(len(entries))
        now = time.time()

        def operation(conn: sqlite3.Connection) -> tuple[int, dict[int, dict[int, int]]]:
            moved = 0
            heads: dict[int, dict[int, int]] = {}
            for i, (p, offset, target, message) in enumerate(entries):
                deleted = conn.execute(
                    "DELETE FROM messages WHERE topic_id = ? AND partition = ? AND offset = ?",
                    (source_id, p, offset),
                ).rowcount
                if deleted:
                    topic_id, partitions = targets[target]
                    written = _ops.append(conn, topic_id, partitions, [message], now, rotation + i)
                    heads.setdefault(topic_id, {}).update(written)
                    moved += 1
            return moved, heads

        moved, heads = await self.writer.submit(operation)
        for topic_id, topic_heads in heads.items():
            self._advance(topic_id, topic_heads)
        return moved
