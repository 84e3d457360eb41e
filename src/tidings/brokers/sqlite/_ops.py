"""SQL operations of the embedded broker. Each runs inside a writer transaction.

They are plain functions of a connection (no event loop, no shared state),
so they are easy to read in one place and to reason about as transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from tidings.broker import Message
from tidings.brokers._partitioning import partition_for

__all__ = [
    "READER_PREFIX",
    "Acquired",
    "HandlingCommit",
    "OffsetUpdate",
    "Rebalanced",
    "append",
    "drop_dead_readers",
    "drop_group",
    "ensure_topic",
    "find_or_create_topic",
    "flush",
    "leave",
    "rebalance",
    "seek_targets",
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


@dataclass(frozen=True, slots=True)
class Acquired:
    """A partition a member now holds (new, or reset by a seek)."""

    topic_id: int
    partition: int
    epoch: int
    committed: int
    delivered: int
    retries: list[tuple[int, float, int, str | None]]  # (offset, due, attempts, key)


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
    rows = []
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
    insert = "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    update = "UPDATE partition_heads SET next_offset = ? WHERE topic_id = ? AND partition = ?"
    if len(rows) == 1:  # the common case of one follow-up: skip executemany's overhead
        conn.execute(insert, rows[0])
        ((p, head),) = heads.items()
        conn.execute(update, (head, topic_id, p))
    else:
        conn.executemany(insert, rows)
        conn.executemany(update, [(head, topic_id, p) for p, head in heads.items()])
    return heads


_OWNS = (
    "EXISTS (SELECT 1 FROM assignments a WHERE a.grp = ? AND a.topic_id = ? "
    "AND a.partition = ? AND a.member_id = ? AND a.epoch = ?)"
)


def _owns(
    conn: sqlite3.Connection, group: str, member: str, topic_id: int, partition: int, epoch: int
) -> bool:
    row = conn.execute(f"SELECT {_OWNS}", (group, topic_id, partition, member, epoch)).fetchone()
    return bool(row[0])


def _write_position(
    conn: sqlite3.Connection, group: str, member: str, update: OffsetUpdate
) -> bool:
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
        _write_position(conn, group, member, update)
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
    join order) among the ``n`` members subscribed to it. A member claims what
    is its own once free or its lease has expired. What is no longer its own it
    releases in two heartbeats: the first leaves it out of ``held`` (the member
    revokes its deliveries) without renewing the lease, the next one, no longer
    ``known``, frees it. Returns every held partition's epoch, full state for
    those newly held (or whose epoch changed, e.g. after a seek), the number of
    live members, whether the member waits for partitions still held by others,
    and whether it must heartbeat again to release some.
    """
    topic_ids = sorted({t for t, _ in topics})
    conn.execute(
        "INSERT OR REPLACE INTO members (grp, member_id, topics, heartbeat) VALUES (?, ?, ?, ?)",
        (group, member, _json.encode(topic_ids).decode(), now),
    )
    conn.execute(
        "DELETE FROM members WHERE grp = ? AND heartbeat < ?", (group, now - session_timeout)
    )
    live = conn.execute(
        "SELECT member_id, topics FROM members WHERE grp = ? ORDER BY member_id", (group,)
    ).fetchall()
    live_ids = {m for m, _ in live}
    subscribed = {m: set(msgspec.json.decode(t)) for m, t in live}
    held: dict[tuple[int, int], int] = {}
    acquired: list[Acquired] = []
    waiting = releasing = False
    lease = now + session_timeout
    for topic_id, partitions in topics:
        members = [m for m, _ in live if topic_id in subscribed[m]]
        current = {
            row[0]: (row[1], int(row[2]), float(row[3]))
            for row in conn.execute(
                "SELECT partition, member_id, epoch, lease_until FROM assignments "
                "WHERE grp = ? AND topic_id = ?",
                (group, topic_id),
            )
        }
        for p in range(partitions):
            desired = members[p % len(members)]
            owner, epoch, until = current.get(p, (None, 0, 0.0))
            key = (topic_id, p)
            if owner == member:
                if desired != member and key in known:
                    releasing = True  # revoked now, freed by the next heartbeat
                    continue
                if desired != member:
                    conn.execute(
                        "UPDATE assignments SET member_id = NULL, lease_until = 0 "
                        "WHERE grp = ? AND topic_id = ? AND partition = ?",
                        (group, topic_id, p),
                    )
                    continue
                conn.execute(
                    "UPDATE assignments SET lease_until = ? "
                    "WHERE grp = ? AND topic_id = ? AND partition = ?",
                    (lease, group, topic_id, p),
                )
            elif desired == member and (owner is None or until < now or owner not in live_ids):
                epoch += 1
                conn.execute(
                    "INSERT OR REPLACE INTO assignments VALUES (?, ?, ?, ?, ?, ?)",
                    (group, topic_id, p, member, epoch, lease),
                )
            else:
                if desired == member:
                    waiting = True  # its holder has not released it yet
                continue
            held[key] = epoch
            if known.get(key) != epoch:
                acquired.append(_state(conn, group, topic_id, p, epoch, start_latest))
    return Rebalanced(held, acquired, len(live), waiting, releasing)


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
    return Acquired(topic_id, p, epoch, committed, delivered, retries)


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


_GROUP_TABLES = ("members", "assignments", "group_offsets", "retries", "processed")


def drop_group(conn: sqlite3.Connection, group: str) -> None:
    """Delete every row of ``group`` (a group-less reader that closed)."""
    for table in _GROUP_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE grp = ?", (group,))


def drop_dead_readers(conn: sqlite3.Connection, alive_since: float) -> int:
    """Delete the groups of group-less readers whose process died; return how many."""
    dead = [
        row[0]
        for row in conn.execute(
            "SELECT grp FROM members WHERE substr(grp, 1, ?) = ? "
            "GROUP BY grp HAVING MAX(heartbeat) < ?",
            (len(READER_PREFIX), READER_PREFIX, alive_since),
        )
    ]
    for group in dead:
        drop_group(conn, group)
    return len(dead)


@dataclass(frozen=True, slots=True)
class HandlingCommit:
    """Exactly-once: one handling's follow-ups, dedup record and position, atomically.

    Calling it commits one handling and returns ``("fenced" | "duplicate" |
    "committed", heads written per topic)``. The writer hands a run of them to
    :meth:`run_many`, which commits them with a few set-wise statements instead
    of several statements each.
    """

    group: str
    member: str
    update: OffsetUpdate
    offset: int
    had_retry: bool
    dedup_key: str | None
    outputs: Sequence[tuple[int, int, Sequence[Message]]]
    now: float
    rotation: int

    def __call__(self, conn: sqlite3.Connection) -> tuple[str, dict[int, dict[int, int]]]:
        return HandlingCommit.run_many(conn, [self])[0]

    @staticmethod
    def run_many(
        conn: sqlite3.Connection, commits: Sequence[HandlingCommit]
    ) -> list[tuple[str, dict[int, dict[int, int]]]]:
        # 1. Position, fenced by lease epoch: one write per partition and epoch.
        positions: dict[tuple[str, str, int, int, int], OffsetUpdate] = {}
        for c in commits:
            u = c.update
            key = (c.group, c.member, u.topic_id, u.partition, u.epoch)
            seen = positions.get(key, u)
            positions[key] = OffsetUpdate(
                u.topic_id,
                u.partition,
                u.epoch,
                max(u.committed, seen.committed),
                max(u.delivered, seen.delivered),
            )
        owned = {
            key: _write_position(conn, key[0], key[1], update) for key, update in positions.items()
        }
        outcomes = [
            "committed"
            if owned[(c.group, c.member, c.update.topic_id, c.update.partition, c.update.epoch)]
            else "fenced"
            for c in commits
        ]
        live = [c for c, outcome in zip(commits, outcomes, strict=True) if outcome != "fenced"]
        conn.executemany(
            "DELETE FROM retries WHERE grp = ? AND topic_id = ? AND partition = ? AND offset = ?",
            [
                (c.group, c.update.topic_id, c.update.partition, c.offset)
                for c in live
                if c.had_retry
            ],
        )
        # 2. Dedup: records already stored, or earlier in this run, make a duplicate.
        keyed = [(c.group, c.dedup_key) for c in live if c.dedup_key is not None]
        stored: set[tuple[str, str]] = set()
        for group in {g for g, _ in keyed}:
            wanted = [k for g, k in keyed if g == group]
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                stored.update(
                    (group, row[0])
                    for row in conn.execute(
                        f"SELECT dedup_key FROM processed WHERE grp = ? AND dedup_key IN ({marks})",
                        (group, *chunk),
                    )
                )
        fresh_records = []
        for i, c in enumerate(commits):
            if outcomes[i] == "fenced" or c.dedup_key is None:
                continue
            record = (c.group, c.dedup_key)
            if record in stored:
                outcomes[i] = "duplicate"
            else:
                stored.add(record)
                fresh_records.append((c.group, c.dedup_key, c.now))
        conn.executemany(
            "INSERT INTO processed (grp, dedup_key, processed_at) VALUES (?, ?, ?)",
            fresh_records,
        )
        # 3. Follow-ups of the committed handlings, in order, one append per topic.
        by_topic: dict[int, tuple[int, list[Message]]] = {}
        for c, outcome in zip(commits, outcomes, strict=True):
            if outcome == "committed":
                for topic_id, partitions, messages in c.outputs:
                    by_topic.setdefault(topic_id, (partitions, []))[1].extend(messages)
        rotation = commits[0].rotation
        heads = {
            topic_id: append(conn, topic_id, partitions, messages, commits[0].now, rotation)
            for topic_id, (partitions, messages) in by_topic.items()
        }
        return [(outcome, heads if outcome == "committed" else {}) for outcome in outcomes]


def seek_targets(
    conn: sqlite3.Connection, group: str, topic_id: int, targets: dict[int, int]
) -> None:
    """Move ``group`` on a topic to ``targets`` (partition -> offset) and fence its owners."""
    for p, target in targets.items():
        conn.execute(
            "INSERT INTO group_offsets (grp, topic_id, partition, committed, delivered) "
            "VALUES (?, ?, ?, ?, -1) ON CONFLICT (grp, topic_id, partition) "
            "DO UPDATE SET committed = excluded.committed, delivered = -1",
            (group, topic_id, p, target),
        )
    conn.execute("DELETE FROM retries WHERE grp = ? AND topic_id = ?", (group, topic_id))
    conn.execute(
        "UPDATE assignments SET epoch = epoch + 1 WHERE grp = ? AND topic_id = ?",
        (group, topic_id),
    )


def ensure_topic(
    conn: sqlite3.Connection,
    name: str,
    partitions: int,
    retention_ms: int | None,
    retention_bytes: int | None,
    compact: bool,
    now: float,
) -> tuple[int, int]:
    """Create ``name`` or change its retention; the partition count is fixed at creation."""
    topic_id, existing = find_or_create_topic(conn, name, partitions, now)
    if existing != partitions:
        raise ValueError(
            f"topic {name!r} has {existing} partitions; the count cannot change "
            "(keys would move to other partitions)"
        )
    conn.execute(
        "UPDATE topics SET retention_ms = ?, retention_bytes = ?, compact = ? WHERE id = ?",
        (retention_ms, retention_bytes, int(compact), topic_id),
    )
    return topic_id, existing


def apply_retention(conn: sqlite3.Connection, now: float, dedup_window: float) -> int:
    """Delete what each topic's retention no longer keeps; return how many messages went.

    By age: messages older than ``retention_ms``. By size: per partition, the
    oldest messages beyond ``retention_bytes`` of values. Compaction: all but
    the newest message of each key (keyless messages are kept). Exactly-once
    dedup records older than ``dedup_window`` seconds go too.
    """
    conn.execute("DELETE FROM processed WHERE processed_at < ?", (now - dedup_window,))
    removed = 0
    topics = conn.execute(
        "SELECT id, partitions, retention_ms, retention_bytes, compact FROM topics "
        "WHERE retention_ms IS NOT NULL OR retention_bytes IS NOT NULL OR compact != 0"
    ).fetchall()
    for topic_id, partitions, retention_ms, retention_bytes, compact in topics:
        if retention_ms is not None:
            removed += conn.execute(
                "DELETE FROM messages WHERE topic_id = ? AND published_at < ?",
                (topic_id, now - retention_ms / 1000.0),
            ).rowcount
        if retention_bytes is not None:
            for p in range(partitions):
                row = conn.execute(
                    "SELECT offset FROM (SELECT offset, SUM(LENGTH(value)) OVER "
                    "(ORDER BY offset DESC) AS kept FROM messages "
                    "WHERE topic_id = ? AND partition = ?) WHERE kept > ? "
                    "ORDER BY offset DESC LIMIT 1",
                    (topic_id, p, retention_bytes),
                ).fetchone()
                if row is not None:
                    removed += conn.execute(
                        "DELETE FROM messages WHERE topic_id = ? AND partition = ? AND offset <= ?",
                        (topic_id, p, row[0]),
                    ).rowcount
        if compact:
            removed += conn.execute(
                "DELETE FROM messages WHERE topic_id = ? AND key IS NOT NULL AND offset < "
                "(SELECT MAX(newer.offset) FROM messages AS newer WHERE newer.topic_id = "
                "messages.topic_id AND newer.partition = messages.partition "
                "AND newer.key = messages.key)",
                (topic_id,),
            ).rowcount
    return removed
