"""What the embedded-broker benchmarks share: events, rows, scratch databases, meters.

Every case writes the same events: small dict payloads over 256 keys (enough
distinct keys that ``concurrency=64`` under per-key ordering can run 64
handlers at once), encoded as CloudEvents structured JSON exactly as
``App.publish`` encodes them. The raw-``sqlite3`` baselines insert the very
rows the broker's ``append`` writes, into the broker's own schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import functools
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

__all__ = [
    "BATCH",
    "EVENT_TYPE",
    "GROUP",
    "KEYS",
    "OUT_TOPIC",
    "TOPIC",
    "Meter",
    "Progress",
    "Run",
    "Tick",
    "TickSeen",
    "broker_rows",
    "create_topic",
    "encoded_messages",
    "event_factory",
    "model_payload",
    "payload",
    "percentile",
    "prepublish",
    "raw_connect",
    "scratch_db",
    "url",
]

TOPIC = "bench.ticks"
OUT_TOPIC = "bench.seen"
GROUP = "bench"
EVENT_TYPE = "Tick"
KEYS = tuple(f"device-{i:03d}" for i in range(256))
#: Rows per transaction of the batched cases (raw executemany and broker publish).
BATCH = 1_000
INSERT = "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


@dataclass
class Run:
    """One timed run of a case."""

    seconds: float
    #: CPU seconds of the measured process(es), all threads.
    cpu_seconds: float
    #: Transactions (fsyncs, with durability full) during the run.
    commits: int | None = None
    #: Wall seconds the broker's writer thread spent inside transactions ...
    writer_seconds: float | None = None
    #: ... and its CPU seconds meanwhile (the rest: fsync, waiting for the GIL).
    writer_cpu_seconds: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    #: Peak RSS of the case's child processes, when it has any.
    child_rss_mib: float | None = None
    #: Events handled by each consumer process (group cases).
    shares: list[int] | None = None
    note: str = ""


@dataclass
class TickSeen:
    """The follow-up event of the exactly-once cases."""

    n: int


class Tick(BaseModel):
    """The pydantic form of :func:`payload` (the ``-pydantic`` cases): what users write."""

    n: int
    sku: str
    quantity: int
    price: float


def payload(i: int) -> dict[str, Any]:
    return {"n": i, "sku": "SKU-00042", "quantity": 3, "price": 19.99}


def model_payload(i: int) -> Tick:
    return Tick(n=i, sku="SKU-00042", quantity=3, price=19.99)


def url(path: str, **options: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"durability": "full", **options}.items())
    return f"sqlite:///{path}?{query}"


@functools.cache
def event_factory() -> Any:
    """An App used only for ``App.event`` and its codec: it never connects."""
    from tidings import App

    return App("bench", broker="memory://")


@functools.cache
def encoded_messages(n: int) -> Sequence[Any]:
    """``n`` messages as ``App.publish`` would hand them to the broker (cached per ``n``)."""
    from tidings import Message

    app = event_factory()
    out = []
    for i in range(n):
        event = app.event(payload(i), type=EVENT_TYPE, key=KEYS[i % len(KEYS)])
        out.append(Message(app.codec.encode_structured(event), {}, event.key))
    return tuple(out)


def broker_rows(messages: Sequence[Any], topic_id: int, partitions: int) -> list[tuple[Any, ...]]:
    """The ``messages`` rows the broker's append writes: same partition, offsets and columns."""
    from tidings.brokers._partitioning import partition_for

    heads: dict[int, int] = {}
    now = time.time()
    rows = []
    for i, message in enumerate(messages):
        p = partition_for(message.key, partitions, i)
        offset = heads.get(p, 0)
        heads[p] = offset + 1
        rows.append((topic_id, p, offset, message.key, message.value, None, now, None))
    return rows


@contextlib.contextmanager
def scratch_db() -> Iterator[str]:
    """A database path in a fresh temporary directory, removed afterwards."""
    directory = tempfile.mkdtemp(prefix="tidings-bench-")
    try:
        yield os.path.join(directory, "bench.db")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def create_topic(path: str, topic: str = TOPIC) -> tuple[int, int]:
    """Create the broker's schema and ``topic`` through the broker; ``(topic_id, partitions)``."""
    from tidings.brokers.sqlite import SqliteBroker

    async def create() -> tuple[int, int]:
        broker = SqliteBroker(path)
        await broker.connect()
        try:
            return await broker.topic(topic)
        finally:
            await broker.close()

    return asyncio.run(create())


def prepublish(path: str, messages: Sequence[Any]) -> None:
    """Publish ``messages`` to the topic (untimed set-up), 1,000 per transaction."""
    from tidings.brokers.sqlite import SqliteBroker

    async def publish() -> None:
        broker = SqliteBroker(path, durability="normal")
        await broker.connect()
        try:
            for first in range(0, len(messages), BATCH):
                await broker.publish(TOPIC, messages[first : first + BATCH])
        finally:
            await broker.close()

    asyncio.run(publish())


def raw_connect(path: str, synchronous: str) -> sqlite3.Connection:
    """A plain stdlib connection: autocommit, WAL, ``synchronous`` = FULL or NORMAL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


class Progress:
    """A read-only view of a group's position: committed offsets against the heads."""

    def __init__(self, path: str, group: str = GROUP, topic: str = TOPIC) -> None:
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        self._group = group
        self._topic = topic

    def committed(self) -> int:
        row = self._conn.execute(
            "SELECT COALESCE(SUM(o.committed), 0) FROM group_offsets o "
            "JOIN topics t ON t.id = o.topic_id WHERE o.grp = ? AND t.name = ?",
            (self._group, self._topic),
        ).fetchone()
        return int(row[0])

    def holders(self) -> int:
        """Members of the group holding at least one partition."""
        row = self._conn.execute(
            "SELECT COUNT(DISTINCT member_id) FROM assignments WHERE grp = ?", (self._group,)
        ).fetchone()
        return int(row[0])

    def stored(self, topic: str) -> int:
        row = self._conn.execute(
            "SELECT COUNT(*) FROM messages m JOIN topics t ON t.id = m.topic_id WHERE t.name = ?",
            (topic,),
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        self._conn.close()


class Meter:
    """Times the measured part of a run: wall and CPU time, and the broker's writer thread.

    ``start()`` begins a run's timed part and ``stop()`` ends it. Meanwhile
    the writer's transactions are timed (wall and thread CPU seconds inside
    them, and operations), and with ``profiling`` on, the event loop thread and the
    writer's transactions are profiled with cProfile. Benchmark-only
    instrumentation: it wraps the writer's (private) commit method in this
    process; without that method there are no writer numbers.
    """

    def __init__(self) -> None:
        self.writer_seconds = 0.0
        self.writer_cpu_seconds = 0.0
        self.operations = 0
        self.available = False
        self.profiling = False
        self.main_profile = cProfile.Profile()
        self.writer_profile = cProfile.Profile()
        self._timing = False
        self._start = self._cpu = 0.0

    def install(self) -> Meter:
        from tidings.brokers.sqlite import _writer

        original = getattr(_writer.Writer, "_commit", None)
        if original is None:
            return self
        meter = self
        clock, thread_clock = time.perf_counter, time.thread_time

        def timed_commit(writer: Any, conn: sqlite3.Connection, batch: list[Any]) -> None:
            if not meter._timing:
                original(writer, conn, batch)
                return
            start, cpu = clock(), thread_clock()
            try:
                if meter.profiling:
                    meter.writer_profile.runcall(original, writer, conn, batch)
                else:
                    original(writer, conn, batch)
            finally:
                meter.writer_seconds += clock() - start
                meter.writer_cpu_seconds += thread_clock() - cpu
                meter.operations += len(batch)

        _writer.Writer._commit = timed_commit  # type: ignore[method-assign,assignment]
        self.available = True
        return self

    def start(self) -> None:
        self.writer_seconds = 0.0
        self.writer_cpu_seconds = 0.0
        self.operations = 0
        self._timing = True
        if self.profiling:
            self.main_profile.enable()
        self._cpu = time.process_time()
        self._start = time.perf_counter()

    def stop(self, commits: int | None = None) -> Run:
        """End the timed part; ``commits``: the writer's transactions meanwhile, if any."""
        seconds = time.perf_counter() - self._start
        cpu = time.process_time() - self._cpu
        if self.profiling:
            self.main_profile.disable()
        self._timing = False
        if not self.available or commits is None:
            return Run(seconds, cpu, commits=commits)
        return Run(
            seconds,
            cpu,
            commits=commits,
            writer_seconds=self.writer_seconds,
            writer_cpu_seconds=self.writer_cpu_seconds,
        )


def percentile(sorted_values: Sequence[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[index])
