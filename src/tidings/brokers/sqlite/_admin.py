"""Inspection and administration of the embedded broker (for the CLI).

The read-only queries run on the reader's connection; ``delete``, ``move`` and
``delete_group`` run inside a writer transaction.
"""

from __future__ import annotations

import heapq
import itertools
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from tidings.broker import Message
from tidings.brokers.sqlite._ops import READER_PREFIX, append, drop_group, group_tables
from tidings.errors import GroupInUseError
from tidings.inspection import GroupInfo, PartitionLag, StoredMessage, TopicInfo

__all__ = ["delete", "delete_group", "list_groups", "list_topics", "move", "read"]

_headers = msgspec.json.Decoder(dict[str, str])


def list_topics(conn: sqlite3.Connection) -> list[TopicInfo]:
    since = time.time() - 60.0
    out = []
    for topic_id, name, partitions, retention_ms, retention_bytes, compact in conn.execute(
        "SELECT id, name, partitions, retention_ms, retention_bytes, compact FROM topics "
        "ORDER BY name"
    ).fetchall():
        events, size = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(value)), 0) FROM messages WHERE topic_id = ?",
            (topic_id,),
        ).fetchone()
        recent = conn.execute(
            "SELECT COUNT(*) FROM messages WHERE topic_id = ? AND published_at >= ?",
            (topic_id, since),
        ).fetchone()[0]
        out.append(
            TopicInfo(
                name=name,
                partitions=partitions,
                events=events,
                bytes=size,
                retention_seconds=None if retention_ms is None else retention_ms / 1000.0,
                retention_bytes=retention_bytes,
                compact=bool(compact),
                rate=recent / 60.0,
            )
        )
    return out


def list_groups(conn: sqlite3.Connection, session_timeout: float) -> list[GroupInfo]:
    """Consumer groups with members and lag; group-less readers are not groups."""
    alive_since = time.time() - session_timeout
    members: dict[str, list[str]] = {}
    for group, member in conn.execute(
        "SELECT grp, member_id FROM members WHERE heartbeat >= ? ORDER BY grp, member_id",
        (alive_since,),
    ):
        members.setdefault(group, []).append(member)
    lags: dict[str, list[PartitionLag]] = {}
    for group, name, partition, committed, head, owner, lease in conn.execute(
        "SELECT o.grp, t.name, o.partition, o.committed, h.next_offset, a.member_id, "
        "a.lease_until FROM group_offsets o JOIN topics t ON t.id = o.topic_id "
        "JOIN partition_heads h ON h.topic_id = o.topic_id AND h.partition = o.partition "
        "LEFT JOIN assignments a ON a.grp = o.grp AND a.topic_id = o.topic_id "
        "AND a.partition = o.partition ORDER BY o.grp, t.name, o.partition"
    ):
        live_owner = owner if owner is not None and (lease or 0) >= time.time() else None
        lags.setdefault(group, []).append(
            PartitionLag(name, partition, committed, head, live_owner)
        )
    return [
        GroupInfo(name, members.get(name, []), lags.get(name, []))
        for name in sorted(set(members) | set(lags))
        if not name.startswith(READER_PREFIX)
    ]


def read(
    conn: sqlite3.Connection,
    topic: str,
    after: Mapping[int, int] | None,
    last: int | None,
    limit: int,
) -> list[StoredMessage]:
    row = conn.execute("SELECT id, partitions FROM topics WHERE name = ?", (topic,)).fetchone()
    if row is None:
        return []
    topic_id, partitions = row
    columns = "partition, offset, key, value, headers, published_at, deliver_at"
    if last is not None:
        newest = min(last, limit)
        tails = [
            conn.execute(
                f"SELECT {columns} FROM messages WHERE topic_id = ? AND partition = ? "
                "ORDER BY offset DESC LIMIT ?",
                (topic_id, p, newest),
            ).fetchall()
            for p in range(partitions)
        ]
        rows = _merge_heads(tails, newest, newest_first=True)
        rows.reverse()
    else:
        starts = dict(after) if after else dict.fromkeys(range(partitions), 0)
        heads = [
            conn.execute(
                f"SELECT {columns} FROM messages WHERE topic_id = ? AND partition = ? "
                "AND offset >= ? ORDER BY offset LIMIT ?",
                (topic_id, p, offset, limit),
            ).fetchall()
            for p, offset in sorted(starts.items())
        ]
        rows = _merge_heads(heads, limit, newest_first=False)
    return [
        StoredMessage(
            topic,
            partition,
            offset,
            published_at,
            Message(bytes(value), _headers.decode(headers) if headers else {}, key, deliver_at),
        )
        for partition, offset, key, value, headers, published_at, deliver_at in rows
    ]


def delete(conn: sqlite3.Connection, topic_id: int, entries: Sequence[tuple[int, int]]) -> int:
    """Remove messages (partition, offset); return how many were there."""
    return sum(
        conn.execute(
            "DELETE FROM messages WHERE topic_id = ? AND partition = ? AND offset = ?",
            (topic_id, p, offset),
        ).rowcount
        for p, offset in entries
    )


def move(
    conn: sqlite3.Connection,
    source_id: int,
    entries: Sequence[tuple[int, int, tuple[int, int], Message]],
    now: float,
    rotation: int,
) -> tuple[int, dict[int, dict[int, int]]]:
    """Append each (partition, offset, (target topic_id, partitions), message) and remove
    the original, where it still exists. Returns how many moved and the heads written."""
    moved = 0
    heads: dict[int, dict[int, int]] = {}
    for i, (p, offset, (topic_id, partitions), message) in enumerate(entries):
        deleted = conn.execute(
            "DELETE FROM messages WHERE topic_id = ? AND partition = ? AND offset = ?",
            (source_id, p, offset),
        ).rowcount
        if deleted:
            written = append(conn, topic_id, partitions, [message], now, rotation + i)
            heads.setdefault(topic_id, {}).update(written)
            moved += 1
    return moved, heads


def delete_group(conn: sqlite3.Connection, group: str, session_timeout: float) -> bool:
    """Delete every row of ``group``; False if it has none (or names a group-less reader).

    Refuses (GroupInUseError, nothing deleted) while a member heartbeats.
    """
    if group.startswith(READER_PREFIX):
        return False
    live = [
        member
        for (member,) in conn.execute(
            "SELECT member_id FROM members WHERE grp = ? AND heartbeat >= ? ORDER BY member_id",
            (group, time.time() - session_timeout),
        )
    ]
    if live:
        raise GroupInUseError(
            f"consumer group {group!r} has {len(live)} live member(s) ({', '.join(live)}); "
            "stop them first"
        )
    found = any(
        conn.execute(f"SELECT 1 FROM {table} WHERE grp = ? LIMIT 1", (group,)).fetchone()
        for table in group_tables()
    )
    if found:
        drop_group(conn, group)
    return found


def _merge_heads(runs: list[list[Any]], limit: int, newest_first: bool) -> list[Any]:
    """Interleave per-partition runs by publish time, always taking a run's head.

    Within a partition, publish times need not rise with offsets (writers take
    the time before the lock), so sorting a page by time and cutting it would
    leave holes in a partition: taking heads keeps each partition's part of a
    page a prefix of its run, so a reader resuming after it misses nothing.
    """
    sign = -1.0 if newest_first else 1.0
    merged = heapq.merge(
        *(((sign * r[5], sign * r[0], sign * r[1], r) for r in run) for run in runs)
    )
    return [item[3] for item in itertools.islice(merged, limit)]
