from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tidings import App, ConfigurationError, Context, Message, RetryPolicy
from tidings.brokers import from_url
from tidings.brokers.sqlite import SqliteBroker
from tidings.errors import GroupInUseError
from tidings.testing.conformance import collect


def url(path: Path, **options: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"heartbeat": 0.2, **options}.items())
    return f"sqlite:///{path}?{query}"


async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_url_forms() -> None:
    relative = from_url("sqlite:///./data/tidings.db?durability=normal&partitions=8")
    assert isinstance(relative, SqliteBroker)
    assert relative.path == "./data/tidings.db"
    assert relative.durability == "normal"
    assert relative.default_partitions == 8
    absolute = from_url("sqlite:////var/lib/tidings.db")
    assert isinstance(absolute, SqliteBroker)
    assert absolute.path == "/var/lib/tidings.db"
    for bad in ("sqlite://host/x.db", "sqlite:///x.db?durability=fast", "sqlite:///x.db?nope=1"):
        with pytest.raises(ConfigurationError):
            from_url(bad)


async def test_events_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    producer = App("producer", broker=url(db))
    published = [await producer.publish({"n": i}, topic="t", type="T", key="k") for i in range(5)]
    await producer.stop()

    consumer = App("consumer", broker=url(db))
    got: list[int] = []

    @consumer.subscribe("t", group="g")
    async def handle(data: dict[str, Any]) -> None:
        got.append(data["n"])

    async with consumer:
        await wait_for(lambda: len(got) == 5)
    assert got == [0, 1, 2, 3, 4]
    assert len(published) == 5


async def test_group_resumes_after_restart_and_new_group_replays(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    seen: list[tuple[str, int]] = []

    def make(group: str) -> App:
        app = App(f"c-{group}", broker=url(db))

        @app.subscribe("t", group=group)
        async def handle(data: dict[str, Any]) -> None:
            seen.append((group, data["n"]))

        return app

    first = make("g")
    async with first:
        for i in range(3):
            await first.publish({"n": i}, topic="t", type="T", key="k")
        await wait_for(lambda: len(seen) == 3)
    second = make("g")
    async with second:
        await second.publish({"n": 3}, topic="t", type="T", key="k")
        await wait_for(lambda: len(seen) == 4)
        await asyncio.sleep(0.2)
    assert seen == [("g", 0), ("g", 1), ("g", 2), ("g", 3)]
    replay = make("audit")
    async with replay:
        await wait_for(lambda: len(seen) == 8)
    assert [n for g, n in seen if g == "audit"] == [0, 1, 2, 3]


async def test_scheduled_retry_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    attempts: list[tuple[int, float]] = []

    def make() -> App:
        app = App("svc", broker=url(db))
        policy = RetryPolicy(initial_delay=1.0, jitter="none")

        @app.subscribe("t", group="g", retry=policy)
        async def handle(data: dict[str, Any], ctx: Context) -> None:
            attempts.append((ctx.attempt, time.time()))
            if ctx.attempt == 1:
                raise RuntimeError("later")

        return app

    first = make()
    async with first:
        await first.publish({"n": 1}, topic="t", type="T")
        await wait_for(lambda: len(attempts) == 1)
        await asyncio.sleep(0.1)
    second = make()
    async with second:
        await wait_for(lambda: len(attempts) == 2, timeout=5)
    (_, failed_at), (attempt, retried_at) = attempts
    assert attempt == 2, "the attempt count survives the restart"
    assert retried_at - failed_at >= 0.95, "the retry waits for its time, across a restart"


async def test_delayed_event_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    producer = App("p", broker=url(db))
    sent = time.time()
    await producer.publish({"n": 1}, topic="t", type="T", delay=0.8)
    await producer.stop()
    consumer = App("c", broker=url(db))
    got: list[float] = []

    @consumer.subscribe("t", group="g")
    async def handle(data: dict[str, Any]) -> None:
        got.append(time.time())

    async with consumer:
        await wait_for(lambda: bool(got))
    assert got[0] >= sent + 0.75


async def test_dead_letters_are_stored_with_their_record(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    app = App("svc", broker=url(db))

    @app.subscribe("orders", group="g", retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    async def handle(data: dict[str, Any]) -> None:
        raise ValueError("bad order")

    reader = SqliteBroker(str(db))
    await reader.connect()
    dlq = await reader.subscribe(["orders.dlq"], "reader")
    async with app:
        await app.publish({"n": 1}, topic="orders", type="Order")
        (letter,) = await collect(dlq, 1, timeout=10)
    await reader.close()
    assert letter.headers["tidings-error-type"] == "builtins.ValueError"
    assert letter.headers["tidings-attempts"] == "2"


async def test_durability_modes_set_synchronous(tmp_path: Path) -> None:
    for mode, expected in (("full", 2), ("normal", 1)):
        broker = SqliteBroker(str(tmp_path / f"{mode}.db"), durability=mode)  # type: ignore[arg-type]
        await broker.connect()
        level = broker.writer.conn.execute("PRAGMA synchronous").fetchone()[0]
        journal = broker.writer.conn.execute("PRAGMA journal_mode").fetchone()[0]
        await broker.close()
        assert (level, journal) == (expected, "wal")


async def test_concurrent_publishes_are_group_committed(tmp_path: Path) -> None:
    broker = SqliteBroker(str(tmp_path / "g.db"))
    await broker.connect()
    await broker.publish("t", [Message(b"warm-up")])
    before = broker.writer.commits
    await asyncio.gather(*(broker.publish("t", [Message(b"x", key=str(i))]) for i in range(200)))
    commits = broker.writer.commits - before
    await broker.close()
    assert commits < 100, f"200 concurrent publishes took {commits} commits"


async def test_merged_single_publishes_keep_partitions_offsets_and_order(tmp_path: Path) -> None:
    """Single publishes queued together are written in one statement per topic; each
    message still lands on its key's partition, once, at the next offset."""
    from tidings.brokers._partitioning import partition_for

    broker = SqliteBroker(str(tmp_path / "m.db"), partitions=4)
    await broker.connect()
    try:
        for name in ("a", "b"):
            await broker.publish(name, [Message(b"warm-up", key="w")])
        sends = [
            broker.publish("a" if i % 3 else "b", [Message(str(i).encode(), key=f"k{i % 7}")])
            for i in range(300)
        ]
        await asyncio.gather(*sends)
        rows = broker.writer.conn.execute(
            "SELECT t.name, m.partition, m.offset, m.key, m.value FROM messages m "
            "JOIN topics t ON t.id = m.topic_id WHERE m.value != x'7761726d2d7570' "
            "ORDER BY t.name, m.partition, m.offset"
        ).fetchall()
        heads = dict(
            broker.writer.conn.execute(
                "SELECT t.name || ':' || h.partition, h.next_offset FROM partition_heads h "
                "JOIN topics t ON t.id = h.topic_id"
            ).fetchall()
        )
    finally:
        await broker.close()
    assert sorted(int(value) for *_, value in rows) == list(range(300))
    by_partition: dict[tuple[str, int], list[int]] = {}
    for name, partition, offset, key, _ in rows:
        assert partition == partition_for(key, 4, 0), (name, key, partition)
        by_partition.setdefault((name, partition), []).append(offset)
    for (name, partition), offsets in by_partition.items():
        first = offsets[0]
        assert offsets == list(range(first, first + len(offsets))), (name, partition)
        assert heads[f"{name}:{partition}"] == offsets[-1] + 1
    # Per key, the publish order of one task is kept: values of a key only grow.
    for key in {row[3] for row in rows}:
        for name in ("a", "b"):
            values = [int(v) for n, _, _, k, v in rows if k == key and n == name]
            assert values == sorted(values)


async def test_a_failing_publish_in_a_merged_run_fails_alone(tmp_path: Path) -> None:
    from tidings.brokers.sqlite import _ops

    broker = SqliteBroker(str(tmp_path / "f.db"))
    await broker.connect()
    try:
        await broker.publish("t", [Message(b"warm-up")])
        # Keep the writer busy so that what follows queues up and is merged into one run.
        busy = broker.writer.submit(lambda conn: time.sleep(0.3))
        # A topic id with no partition rows: its append fails inside the writer.
        bad = broker.writer.submit(_ops.Append(999_999, 4, [Message(b"bad")], time.time(), 0))
        good = [broker.publish("t", [Message(str(i).encode())]) for i in range(20)]
        commits = broker.writer.commits
        results = await asyncio.gather(bad, *good, return_exceptions=True)
        await busy
        merged = broker.writer.commits - commits
        stored = broker.writer.conn.execute(
            "SELECT COUNT(*) FROM messages WHERE value != x'7761726d2d7570'"
        ).fetchone()[0]
    finally:
        await broker.close()
    assert isinstance(results[0], TypeError)
    assert results[1:] == [None] * 20
    assert stored == 20
    assert merged <= 2, "the failing append and the others went into one transaction"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "content", [b"not a database at all", b"SQLite format 3\x00" + b"\x01" * 200]
)
async def test_foreign_or_corrupt_files_are_refused_untouched(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "weird.db"
    path.write_bytes(content)
    before = digest(path)
    app = App("x", broker=url(path))
    with pytest.raises(ConfigurationError):
        await app.publish({"n": 1}, topic="t", type="T")
    assert digest(path) == before


async def test_another_applications_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "theirs.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    before = digest(path)
    broker = SqliteBroker(str(path))
    with pytest.raises(ConfigurationError, match="another application"):
        await broker.connect()
    await broker.close()
    assert digest(path) == before


async def test_retention_by_age_size_and_compaction(tmp_path: Path) -> None:
    broker = SqliteBroker(str(tmp_path / "r.db"))
    await broker.connect()
    await broker.ensure_topic("old", partitions=1, retention=0.2)
    await broker.ensure_topic("big", partitions=1, retention_bytes=30)
    await broker.ensure_topic("latest", partitions=1, compact=True)
    await broker.publish("old", [Message(b"a"), Message(b"b")])
    await asyncio.sleep(0.3)
    await broker.publish("old", [Message(b"c")])
    await broker.publish("big", [Message(b"x" * 10) for _ in range(6)])
    await broker.publish(
        "latest", [Message(f"{k}{i}".encode(), key=k) for i in range(3) for k in "ab"]
    )
    await broker.publish("latest", [Message(b"keyless")])
    removed = await broker.apply_retention()
    assert removed == 2 + 3 + 4
    sub = await broker.subscribe(["old", "big", "latest"], "g")
    got = await collect(sub, 7, timeout=5)
    by_topic: dict[str, list[bytes]] = {}
    for d in got:
        by_topic.setdefault(d.topic, []).append(d.value)
    assert by_topic == {
        "old": [b"c"],
        "big": [b"x" * 10] * 3,
        "latest": [b"a2", b"b2", b"keyless"],
    }
    await asyncio.sleep(0.1)
    await sub.close()
    committed = broker.writer.conn.execute(
        "SELECT t.name, o.committed FROM group_offsets o JOIN topics t ON t.id = o.topic_id"
    ).fetchall()
    assert sorted(committed) == [("big", 6), ("latest", 7), ("old", 3)], "gaps count as settled"
    with pytest.raises(ConfigurationError, match="partitions"):
        await broker.ensure_topic("old", partitions=3)
    await broker.close()


async def test_ensure_topic_keeps_the_partition_count_it_is_not_given(tmp_path: Path) -> None:
    path = str(tmp_path / "p.db")
    creator, other = SqliteBroker(path), SqliteBroker(path, partitions=2)
    await creator.connect()
    await other.connect()
    await creator.ensure_topic("wide", partitions=8)
    await other.ensure_topic("wide", retention=60)  # another client, another default
    (info,) = await other.list_topics()
    assert (info.partitions, info.retention_seconds) == (8, 60.0)
    await other.ensure_topic("new")
    _, partitions = await creator.topic("new")
    assert partitions == 2, "a new topic gets the default of the client that created it"
    await creator.close()
    await other.close()


async def test_inspection_topics_groups_read_delete_move(tmp_path: Path) -> None:
    from tidings.inspection import Inspectable

    broker = SqliteBroker(str(tmp_path / "i.db"))
    await broker.connect()
    assert isinstance(broker, Inspectable)
    await broker.ensure_topic("orders", partitions=2, retention=3600)
    await broker.publish("orders", [Message(f"m{i}".encode(), key=f"k{i}") for i in range(6)])
    sub = await broker.subscribe(["orders"], "billing")
    got = await collect(sub, 2, timeout=5, ack=True)
    await sub.flush()
    (topic,) = await broker.list_topics()
    assert (topic.name, topic.partitions, topic.events, topic.retention_seconds) == (
        "orders",
        2,
        6,
        3600.0,
    )
    assert topic.rate == pytest.approx(6 / 60)
    (group,) = await broker.list_groups()
    assert group.name == "billing" and group.members == [sub.member_id]
    assert group.lag == 6 - len(got)
    everything = await broker.read("orders")
    assert sorted(m.message.value for m in everything) == [f"m{i}".encode() for i in range(6)]
    newest = await broker.read("orders", last=2)
    assert [m.offset for m in newest] == [m.offset for m in everything[-2:]]
    first = everything[0]
    later = await broker.read("orders", after={first.partition: first.offset + 1})
    assert all(m.partition == first.partition and m.offset > first.offset for m in later)
    assert await broker.delete("orders", [(first.partition, first.offset)]) == 1
    second = everything[1]
    moved = await broker.move(
        "orders", [(second.partition, second.offset, "archive", second.message)]
    )
    assert moved == 1
    assert [m.message.value for m in await broker.read("archive")] == [second.message.value]
    assert len(await broker.read("orders")) == 4
    assert await broker.read("missing") == []
    await broker.close()


async def test_dedup_records_expire_after_the_window(tmp_path: Path) -> None:
    broker = SqliteBroker(str(tmp_path / "d.db"), dedup_window=0.2)
    await broker.connect()
    sub = await broker.subscribe(["t"], "g")
    await broker.publish("t", [Message(b"a"), Message(b"b")])
    first, second = await collect(sub, 2, ack=False, timeout=5)
    assert await broker.commit(first, [], "event-1") is True
    assert await broker.is_processed(second, "event-1") is True
    await asyncio.sleep(0.3)
    await broker.apply_retention()
    assert await broker.is_processed(second, "event-1") is False
    await broker.close()


def _posix_locks_held(path: str) -> int:
    inode = os.stat(path).st_ino
    held = 0
    with open("/proc/locks") as locks:
        for line in locks:
            fields = line.split()
            if fields[1] == "->":  # a blocked request: not held
                continue
            pid, device_inode = int(fields[4]), fields[5]
            if pid == os.getpid() and int(device_inode.rsplit(":", 1)[1]) == inode:
                held += 1
    return held


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs Linux /proc/locks")
async def test_opening_keeps_sqlites_file_locks(tmp_path: Path) -> None:
    """Regression: sniffing the file header from Python closed a handle on the database,
    which drops every POSIX lock of the process there, SQLite's included; another
    process closing its client then took itself for the last one and removed the WAL
    this process was still writing to (events lost)."""
    path = str(tmp_path / "shared.db")
    first = SqliteBroker(path)
    await first.connect()
    await first.publish("t", [Message(b"x")])
    assert _posix_locks_held(path) >= 1
    second = SqliteBroker(path)  # opening the existing file must not drop the locks
    await second.connect()
    assert _posix_locks_held(path) >= 1
    await second.close()
    await first.close()


async def test_exactly_once_commits_merged_in_one_transaction(tmp_path: Path) -> None:
    from tidings.brokers.sqlite import _ops
    from tidings.brokers.sqlite._commit import HandlingCommit

    broker = SqliteBroker(str(tmp_path / "eo.db"), partitions=1)
    await broker.connect()
    sub = await broker.subscribe(["in"], "g")
    await broker.publish("in", [Message(f"m{i}".encode()) for i in range(4)])
    deliveries = await collect(sub, 4, ack=False, timeout=5)
    out_id, out_partitions = await broker.topic("out")
    (part,) = sub.owned.values()

    def commit(offset: int, key: str, epoch: int) -> HandlingCommit:
        update = _ops.OffsetUpdate(part.topic_id, 0, epoch, offset + 1, 3)
        outputs = [(out_id, out_partitions, [Message(f"out-{offset}".encode())])]
        return HandlingCommit("g", sub.member_id, update, offset, False, key, outputs, 0.0, 0)

    commits = [
        commit(0, "a", part.epoch),
        commit(1, "a", part.epoch),  # the same event again in the same run: a duplicate
        commit(2, "b", part.epoch + 7),  # a stale lease: fenced, nothing written
        commit(3, "c", part.epoch),
    ]
    results = await broker.writer.submit(lambda conn: HandlingCommit.run_many(conn, commits))
    assert [outcome for outcome, _ in results] == ["committed", "duplicate", "fenced", "committed"]
    stored = [m.message.value for m in await broker.read("out")]
    assert stored == [b"out-0", b"out-3"]
    keys = broker.writer.conn.execute("SELECT dedup_key FROM processed ORDER BY 1").fetchall()
    assert keys == [("a",), ("c",)]
    (committed,) = broker.writer.conn.execute("SELECT committed FROM group_offsets").fetchone()
    assert committed == 4
    for d in deliveries:
        await d.ack()
    await broker.close()


async def test_publish_batch_over_several_topics_is_one_transaction(tmp_path: Path) -> None:
    from tidings import Outgoing
    from tidings.middleware import PublishFn

    app = App("batch", broker=url(tmp_path / "b.db"))
    seen: list[str] = []

    def record(next_publish: PublishFn) -> PublishFn:
        async def publish(outgoing: Outgoing) -> None:
            seen.append(outgoing.topic)
            await next_publish(outgoing)

        return publish

    app.add_publish_middleware(record)
    await app.publish({"warm": 1}, topic="a", type="T")
    await app.publish({"warm": 1}, topic="b", type="T")
    broker = app.broker
    assert isinstance(broker, SqliteBroker)
    before = broker.writer.commits
    events = [app.event({"n": i}, type="T") for i in range(4)]
    await app.publish_batch(events[:2], topic="a")
    after_one_topic = broker.writer.commits
    app.route("A", "a")
    app.route("B", "b")
    mixed = [app.event({"n": i}, type="A" if i % 2 else "B") for i in range(6)]
    await app.publish_batch(mixed)
    assert after_one_topic - before == 1
    assert broker.writer.commits - after_one_topic == 1, "two topics, one transaction"
    assert sorted(seen[-2:]) == ["a", "b"], "publish middleware still sees each topic"
    assert len(await broker.read("a")) == 1 + 2 + 3
    assert len(await broker.read("b")) == 1 + 3
    await app.stop()


async def fetch_timed(sub: Any, count: int, timeout: float = 10.0) -> list[tuple[Any, float]]:
    """Fetch ``count`` deliveries, acking each, with the time each arrived."""
    out: list[tuple[Any, float]] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        for delivery in await sub.fetch(count - len(out), 0.5):
            out.append((delivery, time.time()))
            await delivery.ack()
    return out


def members_of(path: str) -> tuple[SqliteBroker, SqliteBroker]:
    options: dict[str, Any] = {"partitions": 1, "session_timeout": 3.0, "heartbeat_interval": 0.2}
    return SqliteBroker(path, **options), SqliteBroker(path, **options)


async def test_delivery_id_is_stable_across_redeliveries(tmp_path: Path) -> None:
    broker = SqliteBroker(str(tmp_path / "id.db"), partitions=1)
    await broker.connect()
    sub = await broker.subscribe(["t"], "g")
    await broker.publish("t", [Message(b"a"), Message(b"b")])
    first, second = await collect(sub, 2, ack=False, timeout=5)
    assert (first.id, first.position) == ("t:0:0", "0@0")
    assert second.id != first.id
    await first.extend()  # leases are per partition: nothing to do, never an error
    await first.nack()
    (again,) = await collect(sub, 1, timeout=5)
    assert (again.id, again.attempt) == (first.id, 2)
    await second.ack()
    await broker.close()


async def test_inherited_retry_keeps_later_events_of_its_key_behind_it(tmp_path: Path) -> None:
    """Regression: a member inheriting a partition loaded a nacked event's retry but
    delivered later events of its key at once, before the retry was due."""
    first, second = members_of(str(tmp_path / "order.db"))
    await first.connect()
    await second.connect()
    a = await first.subscribe(["t"], "g")
    b = await second.subscribe(["t"], "g")  # joins second: waits for the partition
    await first.publish("t", [Message(b"e1", key="k"), Message(b"e2", key="k")])
    e1, e2 = await collect(a, 2, ack=False, timeout=5)
    assert (e1.value, e2.value) == (b"e1", b"e2")
    nacked = time.time()
    await e1.nack(delay=1.0)
    await a.close()  # e2 was never settled: it moves to b as well
    got = await fetch_timed(b, 2)
    assert [d.value for d, _ in got] == [b"e1", b"e2"], "order per key across the move"
    assert got[0][1] >= nacked + 0.95, "the retry waited for its time"
    assert [d.attempt for d, _ in got] == [2, 2]
    await first.close()
    await second.close()


async def test_revoked_deliveries_are_handed_to_on_revoke_before_the_move(tmp_path: Path) -> None:
    path = str(tmp_path / "revoke.db")
    options: dict[str, Any] = {"partitions": 2, "session_timeout": 3.0, "heartbeat_interval": 0.2}
    first, second = SqliteBroker(path, **options), SqliteBroker(path, **options)
    await first.connect()
    await second.connect()
    events: list[str] = []
    revoked: list[Any] = []

    def on_revoke(deliveries: Any) -> None:
        events.append("revoked")
        revoked.extend(deliveries)

    a = await first.subscribe(["t"], "g", on_revoke=on_revoke)
    await first.publish("t", [Message(f"m{i}".encode()) for i in range(6)])  # keyless: spread
    held = await collect(a, 6, ack=False, timeout=5)
    assert {d.partition for d in held} == {0, 1}
    # One nacked in each partition (which one b gets depends on member ids): the one
    # on the partition that moves waits for its redelivery, so it is revoked as well.
    nacks = {d.partition: d for d in held}
    for delivery in nacks.values():
        await delivery.nack(delay=0.3)
    b = await second.subscribe(["t"], "g")
    moved = []
    deadline = time.monotonic() + 10
    while len(moved) < 3 and time.monotonic() < deadline:
        batch = await b.fetch(10, 0.5)
        if batch:
            events.append("received")
        moved.extend(batch)
    (lost_partition,) = {d.partition for d in moved}
    expected = sorted(d.value for d in held if d.partition == lost_partition)
    assert sorted(d.value for d in revoked) == expected
    assert nacks[lost_partition] in revoked
    assert all(d.settled for d in revoked)
    assert events[0] == "revoked", "revoked before the new owner received them"
    assert all(d.attempt == 2 for d in moved)
    for d in revoked:
        await d.ack()  # fenced: ignored, never an error
    for d in held:
        await d.ack()
    for d in moved:
        await d.ack()
    await first.close()
    await second.close()


async def test_group_less_reader_sees_new_events_and_leaves_nothing(tmp_path: Path) -> None:
    broker = SqliteBroker(str(tmp_path / "reader.db"), partitions=2, heartbeat_interval=0.2)
    await broker.connect()
    await broker.publish("t", [Message(b"before")])
    member = await broker.subscribe(["t"], "g")
    reader = await broker.subscribe(["t"], None)
    assert len(member.owned) == 2, "the reader takes no partition from the group"
    await broker.publish("t", [Message(b"after", key="k")])
    (seen,) = await collect(reader, 1, timeout=5)
    assert seen.value == b"after"
    assert sorted(d.value for d in await collect(member, 2, timeout=5)) == [b"after", b"before"]
    assert [g.name for g in await broker.list_groups()] == ["g"]
    await reader.close()
    conn = broker.writer.conn
    for table in ("members", "assignments", "group_offsets", "retries"):
        rows = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE grp != 'g'").fetchone()[0]
        assert rows == 0, f"{table} keeps rows of the closed reader"
    with pytest.raises(ConfigurationError, match="reserved"):
        await broker.subscribe(["t"], "~reader-mine")
    await broker.close()


async def test_retention_pass_drops_rows_of_dead_readers(tmp_path: Path) -> None:
    broker = SqliteBroker(str(tmp_path / "dead.db"), session_timeout=1.0)
    await broker.connect()
    rows = [
        "INSERT INTO members VALUES ('~reader-x', 'x', '[]', 1.0)",
        "INSERT INTO group_offsets VALUES ('~reader-x', 1, 0, 0, -1)",
        "INSERT INTO members VALUES ('alive', 'y', '[]', 1.0)",
    ]
    await broker.writer.submit(lambda conn: [conn.execute(row) for row in rows])
    await broker.apply_retention()
    groups = broker.writer.conn.execute(
        "SELECT grp FROM members UNION SELECT grp FROM group_offsets"
    ).fetchall()
    assert groups == [("alive",)], "a dead member of a real group is its group's business"
    await broker.close()


async def test_missing_storage_names_the_file_until_it_exists(tmp_path: Path) -> None:
    from tidings.inspection import LocalStorage

    path = tmp_path / "later.db"
    broker = SqliteBroker(str(path))
    assert isinstance(broker, LocalStorage)
    assert broker.missing_storage() == str(path)
    await broker.connect()
    assert broker.missing_storage() is None
    await broker.close()


async def test_brokers_on_one_file_in_one_process_wake_each_others_readers(
    tmp_path: Path,
) -> None:
    """A publish through one broker wakes the readers of another on the same file at once,
    not when the other's file watcher notices the commit (which is stopped here)."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    writer, reader = SqliteBroker.from_url(url), SqliteBroker.from_url(url)
    await writer.connect()
    await reader.connect()
    try:
        sub = await reader.subscribe(["t"], "g")
        assert reader._watcher is not None
        await reader._watcher.stop()
        await writer.publish("t", [Message(b"hello")])
        (d,) = await collect(sub, 1, timeout=5.0)
        assert d.value == b"hello"
    finally:
        await writer.close()
        await reader.close()


async def test_delete_group_refuses_live_members_and_names_no_reader(tmp_path: Path) -> None:
    broker = SqliteBroker(str(tmp_path / "g.db"))
    await broker.connect()
    try:
        await broker.publish("t", [Message(b"1")])
        member = await broker.subscribe(["t"], "g")
        reader = await broker.subscribe(["t"], None)
        with pytest.raises(GroupInUseError, match="'g' has 1 live member"):
            await broker.delete_group("g")
        assert not await broker.delete_group(reader.group)  # a reader is not a group
        assert not await broker.delete_group("nope")
        await member.close()
        assert await broker.delete_group("g")
        assert not await broker.delete_group("g")
        assert [g.name for g in await broker.list_groups()] == []
        await reader.close()
    finally:
        await broker.close()
