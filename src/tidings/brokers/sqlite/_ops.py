"""SQL operations of the embedded broker. Each runs inside a writer transaction.

They are plain functions of a connection (no event loop, no shared state),
so they are easy to read in one place and to reason about as transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from tidings.broker import Message, Position
from tidings.brokers._partitioning import partition_for
from tidings.brokers.sqlite import _ahead

__all__ = [
    "READER_PREFIX",
    "Acquired",
    "Append",
    "OffsetUpdate",
    "Rebalanced",
    "append",
    "append_many",
    "drop_group",
    "find_or_create_topic",
    "flush",
    "group_tables",
    "leave",
    "rebalance",
    "seek",
    "write_position",
]

_json = msgspec.json.Encoder()

#: Group names of group-less readers (``subscribe(topics, None)``): one group each.
READER_PREFIX = "~reader-"


@dataclass(frozen=True, slots=True)
class OffsetUpdate:
    """A member's progress on one partition, written only while it holds the lease."""

    topic_id: int
    partition: int
    epoch: int
    committed: int
    delivered: int
    #: Offsets settled beyond ``committed`` (``_ahead.encode``); None leaves them as stored.
    ahead: bytes | None = None


@dataclass(frozen=True, slots=True)
class Acquired:
    """A partition a member now holds (new, or reset by a seek)."""

    topic_id: int
    partition: int
    epoch: int
    committed: int
    delivered: int
    retries: list[tuple[int, float, int, str | None]]  # (offset, due, attempts, key)
    ahead: set[int]


@dataclass(frozen=True, slots=True)
class Rebalanced:
    """What a heartbeat found: held partitions, new ones, live members, waiting, releasing."""

    held: dict[tuple[int, int], int]
    acquired: list[Acquired]
    members: int
    waiting: bool
    releasing: bool
    """Partitions are due elsewhere: the member revokes their deliveries, then releases."""


def find_or_create_topic(
    conn: sqlite3.Connection, name: str, partitions: int, now: float
) -> tuple[int, int]:
    """``(topic_id, partitions)`` of ``name``, creating the topic if needed."""
    row = conn.execute("SELECT id, partitions FROM topics WHERE name = ?", (name,)).fetchone()
    if row is not None:
        return int(row[0]), int(row[1])
    cursor = conn.execute(
        "INSERT INTO topics (name, partitions, created_at) VALUES (?, ?, ?)",
        (name, partitions, now),
    )
    topic_id = int(cursor.lastrowid or 0)
    conn.executemany(
        "INSERT INTO partition_heads (topic_id, partition, next_offset) VALUES (?, ?, 0)",
        [(topic_id, p) for p in range(partitions)],
    )
    return topic_id, partitions


def append(
    conn: sqlite3.Connection,
    topic_id: int,
    partitions: int,
    messages: Sequence[Message],
    now: float,
    rotation: int,
) -> dict[int, int]:
    """Append ``messages``; return the new head (next offset) of each partition written."""
    heads: dict[int, int] = {}
    rows: list[tuple[object, ...]] = []
    _rows(conn, topic_id, partitions, messages, now, rotation, heads, rows)
    _write(conn, topic_id, heads, rows)
    return heads


def _rows(
    conn: sqlite3.Connection,
    topic_id: int,
    partitions: int,
    messages: Sequence[Message],
    now: float,
    rotation: int,
    heads: dict[int, int],
    rows: list[tuple[object, ...]],
) -> None:
    """Add the rows of ``messages`` to ``rows``, moving ``heads`` (read once per partition)."""
    select = "SELECT next_offset FROM partition_heads WHERE topic_id = ? AND partition = ?"
    for i, message in enumerate(messages):
        p = partition_for(message.key, partitions, rotation + i)
        offset = heads.get(p)
        if offset is None:
            offset = int(conn.execute(select, (topic_id, p)).fetchone()[0])
        headers = _json.encode(message.headers).decode() if message.headers else None
        rows.append(
            (topic_id, p, offset, message.key, message.value, headers, now, message.deliver_at)
        )
        heads[p] = offset + 1


def _write(
    conn: sqlite3.Connection,
    topic_id: int,
    heads: dict[int, int],
    rows: list[tuple[object, ...]],
) -> None:
    insert = "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    update = "UPDATE partition_heads SET next_offset = ? WHERE topic_id = ? AND partition = ?"
    if len(rows) == 1:  # the common case of one follow-up: skip executemany's overhead
        conn.execute(insert, rows[0])
        ((p, head),) = heads.items()
        conn.execute(update, (head, topic_id, p))
    else:
        conn.executemany(insert, rows)
        conn.executemany(update, [(head, topic_id, p) for p, head in heads.items()])


@dataclass(frozen=True, slots=True)
class Append:
    """One publish to one topic, as a writer operation.

    Concurrent single publishes queue many of these; the writer hands a run of
    them to :meth:`run_many`, which writes them with one ``executemany`` per
    topic instead of a savepoint and three statements each. Each message keeps
    the partition its own publish chose (its key, or its rotation).
    """

    topic_id: int
    partitions: int
    messages: Sequence[Message]
    now: float
    rotation: int

    def __call__(self, conn: sqlite3.Connection) -> dict[int, int]:
        return append(conn, self.topic_id, self.partitions, self.messages, self.now, self.rotation)

    @staticmethod
    def run_many(conn: sqlite3.Connection, appends: Sequence[Append]) -> list[dict[int, int]]:
        """Write every append; each gets the heads of its topic after all of them."""
        per_topic: dict[int, tuple[dict[int, int], list[tuple[object, ...]]]] = {}
        for a in appends:
            heads, rows = per_topic.setdefault(a.topic_id, ({}, []))
            _rows(conn, a.topic_id, a.partitions, a.messages, a.now, a.rotation, heads, rows)
        for topic_id, (heads, rows) in per_topic.items():
            _write(conn, topic_id, heads, rows)
        return [per_topic[a.topic_id][0] for a in appends]


def append_many(
    conn: sqlite3.Connection,
    batches: Sequence[tuple[int, int, Sequence[Message]]],
    now: float,
    rotation: int,
) -> dict[int, dict[int, int]]:
    """:func:`append` each (topic_id, partitions, messages); the heads written per topic."""
    return {
        topic_id: append(conn, topic_id, partitions, messages, now, rotation)
        for topic_id, partitions, messages in batches
    }


_OWNS = (
    "EXISTS (SELECT 1 FROM assignments a WHERE a.grp = ? AND a.topic_id = ? "
    "AND a.partition = ? AND a.member_id = ? AND a.epoch = ?)"
)


def _owns(
    conn: sqlite3.Connection, group: str, member: str, topic_id: int, partition: int, epoch: int
) -> bool:
    row = conn.execute(f"SELECT {_OWNS}", (group, topic_id, partition, member, epoch)).fetchone()
    return bool(row[0])


def write_position(conn: sqlite3.Connection, group: str, member: str, update: OffsetUpdate) -> bool:
    """Move a group's position forward, only while ``member`` holds the lease (fencing)."""
    cursor = conn.execute(
        "UPDATE group_offsets SET committed = MAX(committed, ?), delivered = MAX(delivered, ?) "
        f"WHERE grp = ? AND topic_id = ? AND partition = ? AND {_OWNS}",
        (
            update.committed,
            update.delivered,
            group,
            update.topic_id,
            update.partition,
            group,
            update.topic_id,
            update.partition,
            member,
            update.epoch,
        ),
    )
    return cursor.rowcount > 0


def flush(
    conn: sqlite3.Connection,
    group: str,
    member: str,
    offsets: Iterable[OffsetUpdate],
    retries_set: Iterable[tuple[int, int, int, int, float, int]],
    retries_clear: Iterable[tuple[int, int, int, int]],
) -> None:
    """Write progress and retry schedules, each only where ``member`` still holds the lease.

    ``retries_set`` rows: (topic_id, partition, epoch, offset, due, attempts);
    ``retries_clear`` rows: (topic_id, partition, epoch, offset).
    """
    for update in offsets:
        if write_position(conn, group, member, update) and update.ahead is not None:
            _ahead.store(conn, group, update.topic_id, update.partition, update.ahead)
    for topic_id, p, epoch, offset, due, attempts in retries_set:
        if _owns(conn, group, member, topic_id, p, epoch):
            conn.execute(
                "INSERT OR REPLACE INTO retries VALUES (?, ?, ?, ?, ?, ?)",
                (group, topic_id, p, offset, due, attempts),
            )
    for topic_id, p, epoch, offset in retries_clear:
        if _owns(conn, group, member, topic_id, p, epoch):
            conn.execute(
                "DELETE FROM retries WHERE grp = ? AND topic_id = ? AND partition = ? "
                "AND offset = ?",
                (group, topic_id, p, offset),
            )


def rebalance(
    conn: sqlite3.Connection,
    group: str,
    member: str,
    topics: Sequence[tuple[int, int]],
    known: dict[tuple[int, int], int],
    start_latest: bool,
    session_timeout: float,
    now: float,
) -> Rebalanced:
    """Heartbeat, expire dead members, release and claim partitions.

    Partition ``p`` of a topic belongs to the ``p % n``-th live member (by
    member id) among the ``n`` members subscribed to it. A member claims what
    is its own once free or its lease has expired. What is no longer its own it
    releases in two heartbeats: the first leaves it out of ``held`` (the member
    revokes its deliveries) without renewing the lease, the next one, no longer
    ``known``, frees it. Returns every held partition's epoch, full state for
    those newly held (or whose epoch changed, e.g. after a seek), the number of
    live members, whether the member waits for partitions still held by others,
    and whether it must heartbeat again to release some.
    """
    live = _heartbeat(conn, group, member, topics, now - session_timeout, now)
    live_ids = {m for m, _ in live}
    held: dict[tuple[int, int], int] = {}
    acquired: list[Acquired] = []
    waiting = releasing = False
    lease = now + session_timeout
    for topic_id, partitions in topics:
        members = [m for m, subscribed in live if topic_id in subscribed]
        current = {
            row[0]: (row[1], int(row[2]), float(row[3]))
            for row in conn.execute(
                "SELECT partition, member_id, epoch, lease_until FROM assignments "
                "WHERE grp = ? AND topic_id = ?",
                (group, topic_id),
            )
        }
        for p in range(partitions):
            key = (topic_id, p)
            holder = current.get(p, (None, 0, 0.0))
            desired = members[p % len(members)]
            if holder[0] == member and desired != member and key in known:
                releasing = True  # revoked now, freed by the next heartbeat
                continue
            epoch = _claim(conn, group, member, key, desired, holder, live_ids, lease, now)
            if epoch is None:
                waiting = waiting or desired == member  # its holder has not released it yet
                continue
            held[key] = epoch
            if known.get(key) != epoch:
                acquired.append(_state(conn, group, topic_id, p, epoch, start_latest))
    return Rebalanced(held, acquired, len(live), waiting, releasing)


def _heartbeat(
    conn: sqlite3.Connection,
    group: str,
    member: str,
    topics: Sequence[tuple[int, int]],
    alive_since: float,
    now: float,
) -> list[tuple[str, set[int]]]:
    """Record ``member``'s heartbeat, forget dead members; return the live ones' topics."""
    topic_ids = sorted({t for t, _ in topics})
    conn.execute(
        "INSERT OR REPLACE INTO members (grp, member_id, topics, heartbeat) VALUES (?, ?, ?, ?)",
        (group, member, _json.encode(topic_ids).decode(), now),
    )
    conn.execute("DELETE FROM members WHERE grp = ? AND heartbeat < ?", (group, alive_since))
    return [
        (m, set(msgspec.json.decode(t)))
        for m, t in conn.execute(
            "SELECT member_id, topics FROM members WHERE grp = ? ORDER BY member_id", (group,)
        )
    ]


def _claim(
    conn: sqlite3.Connection,
    group: str,
    member: str,
    key: tuple[int, int],
    desired: str,
    holder: tuple[str | None, int, float],
    live_ids: set[str],
    lease: float,
    now: float,
) -> int | None:
    """Renew, release or take one partition; its epoch if ``member`` holds it now."""
    topic_id, p = key
    owner, epoch, until = holder
    where = (group, topic_id, p)
    if owner == member and desired != member:
        conn.execute(
            "UPDATE assignments SET member_id = NULL, lease_until = 0 "
            "WHERE grp = ? AND topic_id = ? AND partition = ?",
            where,
        )
        return None
    if owner == member:
        conn.execute(
            "UPDATE assignments SET lease_until = ? "
            "WHERE grp = ? AND topic_id = ? AND partition = ?",
            (lease, *where),
        )
        return epoch
    if desired == member and (owner is None or until < now or owner not in live_ids):
        conn.execute(
            "INSERT OR REPLACE INTO assignments VALUES (?, ?, ?, ?, ?, ?)",
            (*where, member, epoch + 1, lease),
        )
        return epoch + 1
    return None


def _state(
    conn: sqlite3.Connection, group: str, topic_id: int, p: int, epoch: int, start_latest: bool
) -> Acquired:
    row = conn.execute(
        "SELECT committed, delivered FROM group_offsets "
        "WHERE grp = ? AND topic_id = ? AND partition = ?",
        (group, topic_id, p),
    ).fetchone()
    if row is None:
        start = 0
        if start_latest:
            start = int(
                conn.execute(
                    "SELECT next_offset FROM partition_heads WHERE topic_id = ? AND partition = ?",
                    (topic_id, p),
                ).fetchone()[0]
            )
        conn.execute(
            "INSERT INTO group_offsets (grp, topic_id, partition, committed, delivered) "
            "VALUES (?, ?, ?, ?, ?)",
            (group, topic_id, p, start, start - 1),
        )
        committed, delivered = start, start - 1
    else:
        committed, delivered = int(row[0]), int(row[1])
    retries = [
        (int(r[0]), float(r[1]), int(r[2]), r[3])
        for r in conn.execute(
            "SELECT r.offset, r.due, r.attempts, m.key FROM retries r LEFT JOIN messages m "
            "ON m.topic_id = r.topic_id AND m.partition = r.partition AND m.offset = r.offset "
            "WHERE r.grp = ? AND r.topic_id = ? AND r.partition = ? AND r.offset >= ?",
            (group, topic_id, p, committed),
        )
    ]
    ahead = _ahead.decode(_ahead.load(conn, group, topic_id, p), committed)
    return Acquired(topic_id, p, epoch, committed, delivered, retries, ahead)


def leave(
    conn: sqlite3.Connection, group: str, member: str, offsets: Iterable[OffsetUpdate]
) -> None:
    """Write final progress, then free the member's partitions for the others."""
    flush(conn, group, member, offsets, (), ())
    conn.execute(
        "UPDATE assignments SET member_id = NULL, lease_until = 0 WHERE grp = ? AND member_id = ?",
        (group, member),
    )
    conn.execute("DELETE FROM members WHERE grp = ? AND member_id = ?", (group, member))


_GROUP_TABLES = (
    "members",
    "assignments",
    "group_offsets",
    "retries",
    "processed",
    "settled_ahead",
)


def group_tables() -> tuple[str, ...]:
    """The tables holding rows of a consumer group (column ``grp``)."""
    return _GROUP_TABLES


def drop_group(conn: sqlite3.Connection, group: str) -> None:
    """Delete every row of ``group`` (a group-less reader that closed, a deleted group)."""
    for table in _GROUP_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE grp = ?", (group,))


def seek(
    conn: sqlite3.Connection, group: str, topic_id: int, partitions: int, position: Position
) -> None:
    """Move ``group`` on a topic to ``position`` in every partition and fence its owners."""
    for p in range(partitions):
        head = int(
            conn.execute(
                "SELECT next_offset FROM partition_heads WHERE topic_id = ? AND partition = ?",
                (topic_id, p),
            ).fetchone()[0]
        )
        if position == "beginning":
            target = 0
        elif position == "end":
            target = head
        elif isinstance(position, datetime):
            row = conn.execute(
                "SELECT MIN(offset) FROM messages WHERE topic_id = ? AND partition = ? "
                "AND published_at >= ?",
                (topic_id, p, position.timestamp()),
            ).fetchone()
            target = head if row[0] is None else int(row[0])
        else:
            assert isinstance(position, int)
            target = min(max(position, 0), head)
        conn.execute(
            "INSERT INTO group_offsets (grp, topic_id, partition, committed, delivered) "
            "VALUES (?, ?, ?, ?, -1) ON CONFLICT (grp, topic_id, partition) "
            "DO UPDATE SET committed = excluded.committed, delivered = -1",
            (group, topic_id, p, target),
        )
    conn.execute("DELETE FROM retries WHERE grp = ? AND topic_id = ?", (group, topic_id))
    conn.execute("DELETE FROM settled_ahead WHERE grp = ? AND topic_id = ?", (group, topic_id))
    conn.execute(
        "UPDATE assignments SET epoch = epoch + 1 WHERE grp = ? AND topic_id = ?",
        (group, topic_id),
    )
