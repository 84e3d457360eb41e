"""The in-process cases of the embedded-broker benchmark: raw baselines, publishing, consuming.

Each function runs one timed run in a fresh scratch database and returns a
:class:`Run`. Set-up (encoding the events, publishing what a consumer case
reads) happens before ``meter.start()``; the timed part ends with
``meter.stop()``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from _sqlite_data import (
    BATCH,
    EVENT_TYPE,
    GROUP,
    INSERT,
    KEYS,
    OUT_TOPIC,
    TOPIC,
    Meter,
    Progress,
    Run,
    Tick,
    TickSeen,
    broker_rows,
    create_topic,
    encoded_messages,
    event_factory,
    model_payload,
    payload,
    prepublish,
    raw_connect,
    scratch_db,
    url,
)

__all__ = [
    "app_batch",
    "broker_batch",
    "concurrent_publishers",
    "consume",
    "raw_consume",
    "raw_exactly_once",
    "raw_inserts",
]

#: Give up on a run that has not finished after this long (a hang, not a slow run).
RUN_TIMEOUT = 300.0


# -- raw sqlite3 baselines ------------------------------------------------------------


def raw_inserts(n: int, synchronous: str, per_transaction: int, meter: Meter) -> Run:
    """The broker's rows for ``n`` events, ``per_transaction`` rows per transaction."""
    messages = encoded_messages(n)
    with scratch_db() as path:
        topic_id, partitions = create_topic(path)
        rows = broker_rows(messages, topic_id, partitions)
        conn = raw_connect(path, synchronous)
        try:
            meter.start()
            if per_transaction == 1:
                for row in rows:
                    conn.execute("BEGIN")
                    conn.execute(INSERT, row)
                    conn.execute("COMMIT")
            else:
                for first in range(0, n, per_transaction):
                    conn.execute("BEGIN")
                    conn.executemany(INSERT, rows[first : first + per_transaction])
                    conn.execute("COMMIT")
            run = meter.stop(None)
        finally:
            conn.close()
    run.commits = -(-n // per_transaction)
    return run


def _start_group(conn: sqlite3.Connection, group: str, topic_id: int, partitions: int) -> None:
    conn.executemany(
        "INSERT INTO group_offsets (grp, topic_id, partition, committed) VALUES (?, ?, ?, 0)",
        [(group, topic_id, p) for p in range(partitions)],
    )


def raw_consume(n: int, meter: Meter) -> Run:
    """Read the topic back in 1,000-row pages per partition, committing an offset per page."""
    messages = encoded_messages(n)
    with scratch_db() as path:
        prepublish(path, messages)
        conn = raw_connect(path, "FULL")
        try:
            topic_id, partitions = conn.execute(
                "SELECT id, partitions FROM topics WHERE name = ?", (TOPIC,)
            ).fetchone()
            _start_group(conn, "raw", topic_id, partitions)
            select = (
                "SELECT offset, key, value, headers, published_at, deliver_at FROM messages "
                "WHERE topic_id = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?"
            )
            update = (
                "UPDATE group_offsets SET committed = ? "
                "WHERE grp = 'raw' AND topic_id = ? AND partition = ?"
            )
            meter.start()
            read = commits = 0
            for p in range(partitions):
                cursor = 0
                while rows := conn.execute(select, (topic_id, p, cursor, BATCH)).fetchall():
                    read += len(rows)
                    cursor = rows[-1][0] + 1
                    conn.execute("BEGIN")
                    conn.execute(update, (cursor, topic_id, p))
                    conn.execute("COMMIT")
                    commits += 1
            run = meter.stop(None)
        finally:
            conn.close()
    if read != n:
        raise RuntimeError(f"raw consume read {read} of {n} rows")
    run.commits = commits
    return run


def raw_exactly_once(n: int, per_transaction: int, meter: Meter) -> Run:
    """Per handling: move the offset, insert the dedup record and the follow-up, bump its head."""
    messages = encoded_messages(n)
    app = event_factory()
    follow_ups = [
        app.codec.encode_structured(
            app.event(payload(i), type=EVENT_TYPE, key=KEYS[i % len(KEYS)]).derive(
                TickSeen(i), source=app.source
            )
        )
        for i in range(n)
    ]
    with scratch_db() as path:
        topic_id, partitions = create_topic(path)
        out_id, out_partitions = create_topic(path, OUT_TOPIC)
        rows = broker_rows(messages, topic_id, partitions)
        conn = raw_connect(path, "FULL")
        try:
            _start_group(conn, GROUP, topic_id, partitions)
            now = time.time()
            out_heads = dict.fromkeys(range(out_partitions), 0)
            meter.start()
            for first in range(0, n, per_transaction):
                conn.execute("BEGIN IMMEDIATE")
                for i in range(first, min(first + per_transaction, n)):
                    _, p, offset, key, _, _, _, _ = rows[i]
                    conn.execute(
                        "UPDATE group_offsets SET committed = ? "
                        "WHERE grp = ? AND topic_id = ? AND partition = ?",
                        (offset + 1, GROUP, topic_id, p),
                    )
                    conn.execute(
                        "INSERT INTO processed (grp, dedup_key, processed_at) VALUES (?, ?, ?)",
                        (GROUP, f"/bench\n{i}", now),
                    )
                    out_offset = out_heads[p]
                    out_heads[p] = out_offset + 1
                    conn.execute(
                        INSERT, (out_id, p, out_offset, key, follow_ups[i], None, now, None)
                    )
                    conn.execute(
                        "UPDATE partition_heads SET next_offset = ? "
                        "WHERE topic_id = ? AND partition = ?",
                        (out_offset + 1, out_id, p),
                    )
                conn.execute("COMMIT")
            run = meter.stop(None)
        finally:
            conn.close()
    run.commits = -(-n // per_transaction)
    return run


# -- publishing ------------------------------------------------------------------------


def broker_batch(n: int, meter: Meter) -> Run:
    """``SqliteBroker.publish`` of 1,000 pre-encoded messages per call."""
    from tidings.brokers.sqlite import SqliteBroker

    messages = encoded_messages(n)

    async def run() -> Run:
        with scratch_db() as path:
            broker = SqliteBroker(path, durability="full")
            await broker.connect()
            try:
                await broker.topic(TOPIC)
                commits = broker.writer.commits
                meter.start()
                for first in range(0, n, BATCH):
                    await broker.publish(TOPIC, messages[first : first + BATCH])
                return meter.stop(broker.writer.commits - commits)
            finally:
                await broker.close()

    return asyncio.run(run())


def _writer_of(app: Any) -> Any:
    from tidings.brokers.sqlite import SqliteBroker

    if not isinstance(app.broker, SqliteBroker):
        raise TypeError(f"expected the embedded broker, got {app.broker!r}")
    return app.broker.writer


async def _publish_batches(app: Any, n: int) -> None:
    """``app.publish_batch`` of 1,000 events per call, events created and encoded as it goes."""
    event, publish_batch = app.event, app.publish_batch
    payloads = [payload(i) for i in range(n)]
    keys = [KEYS[i % len(KEYS)] for i in range(n)]
    for first in range(0, n, BATCH):
        batch = [
            event(payloads[i], type=EVENT_TYPE, key=keys[i])
            for i in range(first, min(first + BATCH, n))
        ]
        await publish_batch(batch, topic=TOPIC)


def app_batch(n: int, meter: Meter) -> Run:
    from tidings import App

    async def run() -> Run:
        with scratch_db() as path:
            app = App("bench-producer", broker=url(path))
            try:
                await app.publish(payload(-1), topic=TOPIC, type=EVENT_TYPE, key=KEYS[0])
                writer = _writer_of(app)
                commits = writer.commits
                meter.start()
                await _publish_batches(app, n)
                return meter.stop(writer.commits - commits)
            finally:
                await app.stop()

    return asyncio.run(run())


def concurrent_publishers(n: int, publishers: int, meter: Meter, *, model: bool = False) -> Run:
    """``publishers`` tasks, each awaiting ``app.publish`` of one event at a time
    (``model``: pydantic payloads, created as they are published)."""
    from tidings import App

    async def run() -> Run:
        with scratch_db() as path:
            app = App("bench-producer", broker=url(path))
            try:
                await app.publish(payload(-1), topic=TOPIC, type=EVENT_TYPE, key=KEYS[0])
                writer = _writer_of(app)
                publish = app.publish
                make = model_payload if model else payload
                keys = [KEYS[i % len(KEYS)] for i in range(n)]

                async def publisher(first: int) -> None:
                    for i in range(first, n, publishers):
                        await publish(make(i), topic=TOPIC, type=EVENT_TYPE, key=keys[i])

                commits = writer.commits
                meter.start()
                await asyncio.gather(*(publisher(w) for w in range(publishers)))
                return meter.stop(writer.commits - commits)
            finally:
                await app.stop()

    return asyncio.run(run())


# -- consuming -------------------------------------------------------------------------


def _handler(n: int, exactly_once: bool, done: asyncio.Event, model: bool) -> Callable[..., Any]:
    handled = 0

    def seen() -> None:
        nonlocal handled
        handled += 1
        if handled == n:
            done.set()

    if exactly_once and model:

        async def on_tick_model(data: Tick) -> TickSeen:
            seen()
            return TickSeen(data.n)

        return on_tick_model

    if exactly_once:

        async def on_tick(data: dict[str, Any]) -> TickSeen:
            seen()
            return TickSeen(data["n"])

        return on_tick

    if model:

        async def on_tick_model_only(data: Tick) -> None:
            seen()

        return on_tick_model_only

    async def on_tick_only(data: dict[str, Any]) -> None:
        seen()

    return on_tick_only


def consume(
    n: int,
    meter: Meter,
    *,
    delivery: str = "at_least_once",
    concurrency: int = 1,
    overlap: bool = False,
    model: bool = False,
) -> Run:
    """One consumer App handles ``n`` events; the clock stops once it has stopped.

    ``app.stop()`` returns after the last handling is settled and the group's
    position is written, so the time covers publish -> handled -> acked
    durably. Without ``overlap`` the events are published before the clock
    starts; with it, a task of the same App publishes them (``publish_batch``,
    1,000 per call) while the consumer runs.
    """
    from tidings import App

    exactly_once = delivery == "exactly_once"

    async def run(path: str) -> Run:
        app = App("bench-consumer", broker=url(path))
        app.route(TickSeen, OUT_TOPIC)
        done = asyncio.Event()
        app.add_subscription(
            _handler(n, exactly_once, done, model),
            TOPIC,
            group=GROUP,
            delivery=delivery,  # type: ignore[arg-type]
            concurrency=concurrency,
            name="bench-consumer.on_tick",
        )
        meter.start()
        await app.start()
        writer = _writer_of(app)
        try:
            if overlap:
                await asyncio.wait_for(_publish_batches(app, n), RUN_TIMEOUT)
            await asyncio.wait_for(done.wait(), RUN_TIMEOUT)
        finally:
            await app.stop()
        run = meter.stop(writer.commits)
        (stats,) = app.stats().values()
        if stats.handled != n:
            raise RuntimeError(f"handled {stats.handled} of {n} events ({stats})")
        return run

    with scratch_db() as path:
        if not overlap:
            prepublish(path, encoded_messages(n))
        result = asyncio.run(run(path))
        progress = Progress(path)
        try:
            committed = progress.committed()
            outputs = progress.stored(OUT_TOPIC) if exactly_once else n
        finally:
            progress.close()
    if committed != n or outputs != n:
        raise RuntimeError(f"after stop: group committed {committed}, follow-ups {outputs}, of {n}")
    return result
