"""The embedded broker under faults: each test fails on the code before its fix."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tidings import (
    App,
    Context,
    Event,
    Reject,
    RetryPolicy,
    StorageError,
    SubscriptionFailedError,
)
from tidings.broker import Message, SubscribeOptions
from tidings.brokers.sqlite import SqliteBroker
from tidings.cli import main
from tidings.testing.conformance import collect
from tidings.testing.semantics import eventually


async def _lag(broker: SqliteBroker, group: str) -> int:
    (info,) = [g for g in await broker.list_groups() if g.name == group]
    return info.lag


async def test_positions_are_kept_when_a_progress_write_fails(tmp_path: Path) -> None:
    """Acked progress whose write failed (a lock held too long) is written later.

    Before the fix, the failed flush dropped the dirty partitions: the acked
    events stayed as lag for good (and would be redelivered after a crash).
    """
    path = tmp_path / "faults.db"
    broker = SqliteBroker(str(path), partitions=1, busy_timeout=0.05, heartbeat_interval=0.2)
    await broker.connect()
    try:
        await broker.publish("t", [Message(b"m%d" % i, {}, "k") for i in range(10)])
        sub = await broker.subscribe(["t"], "g", SubscribeOptions(start="earliest"))
        got = await collect(sub, 5, ack=False)
        assert len(got) == 5
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            for delivery in got:
                await delivery.ack()
            await asyncio.sleep(0.6)  # the flush and a heartbeat fail meanwhile
        finally:
            blocker.execute("COMMIT")
            blocker.close()
        lags = []
        for _ in range(50):  # a heartbeat (0.2 s) writes what the failed flush carried
            lags.append(await _lag(broker, "g"))
            if lags[-1] == 5:
                break
            await asyncio.sleep(0.1)
        assert lags[-1] == 5, lags  # the five acked events are not lag
    finally:
        await broker.close()


def test_operations_on_a_corrupted_database_print_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before the fix, ``tidings tail`` printed a 65-line sqlite3 traceback."""
    path = tmp_path / "corrupt.db"

    async def fill() -> None:
        broker = SqliteBroker(str(path), partitions=1)
        await broker.connect()
        for batch in range(10):
            body = b'{"specversion":"1.0","id":"%d","source":"/s","type":"T","data":"%s"}'
            await broker.publish(
                "t", [Message(body % (batch * 100 + i, b"x" * 200), {}, None) for i in range(100)]
            )
        await broker.close()

    asyncio.run(fill())
    size = path.stat().st_size
    with path.open("r+b") as file:  # scribble over data pages, not the header
        for offset in range(4096 * 3, size - 4096, 4096 * 4):
            file.seek(offset + 100)
            file.write(bytes(range(256)) * 8)
    for command in (["tail", "t", "--from-beginning"], ["topics"]):
        with pytest.raises(SystemExit) as exited:
            main([*command, "--broker", f"sqlite:///{path}"])
        out, err = capsys.readouterr()
        assert exited.value.code == 1, (command, out, err)
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        assert "malformed" in lines[0]


async def test_a_retry_removed_by_compaction_frees_its_key(tmp_path: Path) -> None:
    """A nacked event that compaction removes before its redelivery no longer holds its key.

    Before the fix, the broker settled the missing offset but never told the
    consumer, which kept waiting for the redelivery: the key was stuck for good.
    """
    url = f"sqlite:///{tmp_path / 'compact.db'}?partitions=1&retention_interval=0.1"
    admin = SqliteBroker.from_url(url)
    await admin.connect()
    await admin.ensure_topic("t", compact=True)
    await admin.close()
    app = App("svc", broker=url)
    handled: list[int] = []
    failed = asyncio.Event()

    @app.subscribe(
        "t", group="g", retry=RetryPolicy(max_attempts=5, initial_delay=1.5, jitter="none")
    )
    async def handle(event: Event) -> None:
        handled.append(event.data["n"])
        if event.data["n"] == 1:
            failed.set()
            raise RuntimeError("fails once, then compaction removes it")

    async with app:
        await app.publish({"n": 1}, topic="t", key="k", type="T")
        await asyncio.wait_for(failed.wait(), 10)
        await app.publish({"n": 2}, topic="t", key="k", type="T")  # compaction drops n=1
        for _ in range(100):
            if 2 in handled:
                break
            await asyncio.sleep(0.05)
    assert handled[0] == 1 and 2 in handled, handled


async def test_a_deleted_database_file_fails_loudly(tmp_path: Path) -> None:
    """Deleting the files under running apps stops them instead of losing events.

    Before the fix, publishes kept being acknowledged into the unlinked file
    (lost for everyone else) and consumers went on as if nothing happened.
    """
    path = tmp_path / "vanishing.db"
    app = App("svc", broker=f"sqlite:///{path}?heartbeat=0.1")
    handled: list[int] = []

    @app.subscribe("t", group="g")
    async def handle(event: Event) -> None:
        handled.append(event.data["n"])

    serving = asyncio.create_task(app.serve())
    try:
        await app.publish({"n": 1}, topic="t", type="T")
        for _ in range(100):
            if handled:
                break
            await asyncio.sleep(0.05)
        assert handled == [1]
        for suffix in ("", "-wal", "-shm"):
            os.unlink(f"{path}{suffix}")
        with pytest.raises(StorageError, match="deleted or replaced"):
            await app.publish({"n": 2}, topic="t", type="T")
        with pytest.raises(SubscriptionFailedError):
            await asyncio.wait_for(serving, 10)
    finally:
        if not serving.done():
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
    assert handled == [1]


async def test_a_failed_dead_letter_write_is_retried_not_stalled(tmp_path: Path) -> None:
    """A dead-letter write that fails (the database locked too long) does not stall.

    The probe found the event neither acked nor nacked and the subscription
    stopped for good while the app kept its partitions. Since the core refit,
    supervision restarts the subscription; this checks the whole path on sqlite:
    the restarted member gets the partition back (after the session timeout,
    since the failed leave could not be written), dead-letters the event and
    goes on.
    """
    path = tmp_path / "dlq.db"
    app = App("svc", broker=f"sqlite:///{path}?busy_timeout=0.05&partitions=1&session_timeout=2")
    handled: list[int] = []
    first_failure = asyncio.Event()

    @app.subscribe("t", group="g", concurrency=1)
    async def handle(event: Event) -> None:
        if event.data["n"] == 1:
            first_failure.set()
            await asyncio.sleep(0.2)  # the lock below is taken meanwhile
            raise Reject("poison")
        handled.append(event.data["n"])

    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        async with app:
            await app.publish({"n": 1}, topic="t", type="T")
            await app.publish({"n": 2}, topic="t", type="T")
            await asyncio.wait_for(first_failure.wait(), 10)
            blocker.execute("BEGIN EXCLUSIVE")  # the dead-letter write fails
            await asyncio.sleep(1.0)
            blocker.execute("COMMIT")
            for _ in range(200):
                if handled:
                    break
                await asyncio.sleep(0.05)
            assert handled == [2]
            letters = await app.broker.read("t.dlq")  # type: ignore[attr-defined]
            assert [letter.message.value for letter in letters] != []
    finally:
        blocker.close()


def _attempts_app(url: str, seen: list[tuple[int, int]], started: asyncio.Event) -> App:
    app = App("svc", broker=url)

    @app.subscribe("t", group="g", concurrency=1, prefetch=50)
    async def handle(event: Event, ctx: Context) -> None:
        seen.append((event.data["n"], ctx.attempt))
        if event.data["n"] == 0:
            started.set()
            await asyncio.sleep(0.3)

    return app


async def test_events_never_handed_to_a_handler_keep_their_attempt(tmp_path: Path) -> None:
    """Prefetched events a graceful stop leaves unhandled come back as attempt 1.

    Before the fix they came back as attempt 2 (fetched counted as handled), so
    with max_attempts=2 a single failure dead-lettered them.
    """
    url = f"sqlite:///{tmp_path / 'attempts.db'}?partitions=1"
    seen: list[tuple[int, int]] = []
    started = asyncio.Event()
    producer = App("producer", broker=url)
    await producer.publish_batch(
        [producer.event({"n": n}, type="T", key="k") for n in range(10)], topic="t"
    )
    await producer.stop()
    first = _attempts_app(url, seen, started)
    async with first:  # fetches all ten; the stop comes while the first one runs
        await asyncio.wait_for(started.wait(), 10)
    assert seen[0] == (0, 1)
    handled_first = {n for n, _ in seen}
    second = _attempts_app(url, seen, asyncio.Event())
    async with second:
        for _ in range(200):
            if {n for n, _ in seen} == set(range(10)):
                break
            await asyncio.sleep(0.05)
    assert {n for n, _ in seen} == set(range(10))
    assert len(seen) == 10, seen  # nothing handled twice by a graceful stop
    assert all(attempt == 1 for _, attempt in seen), (handled_first, seen)


_KILLER = """
import asyncio, os, sys
from tidings import App, Event, RetryPolicy

app = App("killer", broker=sys.argv[1])

@app.subscribe("t", group="g", retry=RetryPolicy(max_attempts=3))
async def handle(event: Event) -> None:
    print(f"{event.data['n']} {event.id}", flush=True)
    if event.data["n"] == 0:
        os._exit(7)  # the poison event kills its process
    if event.data["n"] == 1:
        stop.set()

stop = asyncio.Event()

async def main() -> None:
    await app.serve(stop)

asyncio.run(main())
"""


def test_an_event_that_kills_its_process_is_dead_lettered_after_max_attempts(
    tmp_path: Path,
) -> None:
    """Attempts are written before the handler runs, so a crash counts as one.

    Before the fix, a handler killing its process saw attempt 1 every time:
    the event was redelivered forever and its partition never advanced.
    """
    url = f"sqlite:///{tmp_path / 'killer.db'}?partitions=1&session_timeout=1&heartbeat=0.2"
    script = tmp_path / "killer.py"
    script.write_text(_KILLER, encoding="utf-8")

    async def publish() -> None:
        app = App("producer", broker=url)
        await app.publish({"n": 0}, topic="t", type="T")
        await app.publish({"n": 1}, topic="t", type="T")
        await app.stop()

    asyncio.run(publish())
    exits = []
    for _ in range(6):
        done = subprocess.run(
            [sys.executable, str(script), url], capture_output=True, text=True, timeout=60
        )
        exits.append(done.returncode)
        if done.returncode == 0:
            break
    assert exits == [7, 7, 7, 0], exits

    async def letters() -> list[Message]:
        broker = SqliteBroker.from_url(url)
        await broker.connect()
        try:
            return [stored.message for stored in await broker.read("t.dlq")]
        finally:
            await broker.close()

    found = asyncio.run(letters())
    assert len(found) == 1, "\n".join(str((m.headers, m.value)) for m in found)
    (letter,) = found
    assert letter.headers["tidings-error-type"] == "tidings.errors.AttemptsExhausted"
    assert b'"data":{"n":0}' in letter.value


async def test_a_graceful_stop_re_handles_nothing_it_acked(tmp_path: Path) -> None:
    """Events acked beyond an unsettled one are not handled again after a restart.

    Before the fix, events waiting behind a busy key pinned the group position,
    and everything acked after them was handled a second time.
    """
    url = f"sqlite:///{tmp_path / 'rehandle.db'}?partitions=1"
    producer = App("producer", broker=url)
    events = [producer.event({"n": 0, "k": "slow"}, type="T", key="slow")]
    events += [producer.event({"n": n, "k": "slow"}, type="T", key="slow") for n in (1, 2)]
    events += [producer.event({"n": n, "k": f"k{n}"}, type="T", key=f"k{n}") for n in range(3, 40)]
    await producer.publish_batch(events, topic="t")
    await producer.stop()
    handled: list[int] = []

    def build() -> App:
        app = App("svc", broker=url)

        @app.subscribe("t", group="g", concurrency=4, prefetch=100)
        async def handle(event: Event) -> None:
            handled.append(event.data["n"])
            if event.data["n"] == 0:
                await asyncio.sleep(0.5)  # 1 and 2 wait behind it; the rest are acked

        return app

    first = build()
    async with first:
        for _ in range(100):
            if len(handled) >= 38:
                break
            await asyncio.sleep(0.02)
        assert 1 not in handled  # the stop comes while n=0 still runs
    second = build()
    async with second:
        for _ in range(100):
            if len(set(handled)) == 40:
                break
            await asyncio.sleep(0.05)
    assert sorted(handled) == list(range(40)), sorted(handled)


async def test_paged_reads_miss_and_repeat_nothing(tmp_path: Path) -> None:
    """Reading page by page (as ``tidings tail`` does) returns every message once.

    Concurrent writers take the publish time before the write lock, so within a
    partition it need not rise with the offset. Before the fix, a page was
    sorted by time and cut, leaving holes that a reader resuming after the
    last offset it saw per partition skipped (and overlaps it read twice).
    """
    path = tmp_path / "paging.db"
    broker = SqliteBroker(str(path), partitions=3)
    await broker.connect()
    try:
        await broker.publish("t", [Message(b"m%d" % i, {}, f"k{i % 5}") for i in range(300)])
        with sqlite3.connect(path) as conn:  # times out of offset order, as under contention
            conn.execute("UPDATE messages SET published_at = 1000 + ((offset * 37) % 101)")
        seen: list[tuple[int, int]] = []
        after: dict[int, int] = {0: 0, 1: 0, 2: 0}
        while True:
            page = await broker.read("t", after=after, limit=7)
            if not page:
                break
            for stored in page:
                seen.append((stored.partition, stored.offset))
                after[stored.partition] = stored.offset + 1
        assert len(seen) == 300 and len(set(seen)) == 300
        newest = await broker.read("t", last=10)
        assert len(newest) == 10
        for p in range(3):  # the newest of each partition are a suffix of it
            offsets = [s.offset for s in newest if s.partition == p]
            assert offsets == sorted(offsets)
    finally:
        await broker.close()


_OWNER = """
import asyncio, os, signal, sys
from tidings.broker import Message
from tidings.brokers.sqlite import SqliteBroker

async def stage(url: str, name: str) -> None:
    broker = SqliteBroker.from_url(url)
    await broker.connect()
    if name == "A":
        await broker.publish("t", [Message(f"e{i}".encode(), key="k") for i in range(3)])
    subscription = await broker.subscribe(["t"], "g")
    got = await subscription.fetch(10, 5.0)
    print(" ".join(f"{d.value.decode()}:{d.attempt}" for d in got), flush=True)
    if name == "A":  # a graceful stop before any started: all released
        for delivery in got:
            await delivery.release()
        await subscription.close()
        await broker.close()
    elif name == "B":  # starts e0, then dies
        written = got[0].begin()
        if written is not None:
            await written
        os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(stage(sys.argv[1], sys.argv[2]))
"""


def test_inherited_redeliveries_keep_their_key_order(tmp_path: Path) -> None:
    """Rows of one key with different due times are handed out in offset order.

    Before the fix, a released event (due when released) came back before an
    earlier event of its key whose start was recorded later.
    """
    script = tmp_path / "owner.py"
    script.write_text(_OWNER, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'order.db'}?partitions=1&session_timeout=1&heartbeat=0.2"
    printed = []
    for name in ("A", "B", "C"):
        done = subprocess.run(
            [sys.executable, str(script), url, name], capture_output=True, text=True, timeout=60
        )
        printed.append(done.stdout.strip())
    assert printed == ["e0:1 e1:1 e2:1", "e0:1 e1:1 e2:1", "e0:2 e1:1 e2:1"], printed


async def test_a_position_inside_its_settled_ahead_ranges_moves_past_them(
    tmp_path: Path,
) -> None:
    """A kill -9 can leave the position written by an exactly-once commit at an offset
    that an earlier flush stored as settled ahead; the next owner skipped that offset as
    settled and never moved the position past it (the group stalled, silently)."""
    from tidings.brokers.sqlite import _ahead

    db = tmp_path / "ahead.db"
    url = f"sqlite:///{db}"
    setup = SqliteBroker.from_url(url)
    await setup.connect()
    await setup.ensure_topic("t", partitions=1)
    await setup.close()
    first = App("first", broker=url)
    seen: list[int] = []

    @first.subscribe("t", group="g")
    async def handle_first(data: dict[str, int]) -> None:
        seen.append(data["n"])

    await first.publish_batch([first.event({"n": n}, type="N") for n in range(10)], topic="t")
    async with first:
        await eventually(lambda: len(seen) == 10, 10.0, "the first run")
    with sqlite3.connect(db) as conn:  # what the kill left behind
        (topic_id,) = conn.execute("SELECT id FROM topics WHERE name = 't'").fetchone()
        conn.execute(
            "UPDATE group_offsets SET committed = 3 WHERE grp = 'g' AND topic_id = ?", (topic_id,)
        )
        _ahead.store(conn, "g", topic_id, 0, _ahead.encode({3, 4, 5}))
    again: list[int] = []
    second = App("second", broker=url)

    @second.subscribe("t", group="g")
    async def handle_second(data: dict[str, int]) -> None:
        again.append(data["n"])

    async with second:
        await eventually(lambda: len(again) >= 4, 10.0, "the events after the stored ones")
        await eventually(lambda: second.idle, 10.0, "an idle app")
    assert again == [6, 7, 8, 9]
    with sqlite3.connect(db) as conn:
        (committed,) = conn.execute(
            "SELECT committed FROM group_offsets WHERE grp = 'g' AND topic_id = ?", (topic_id,)
        ).fetchone()
    assert committed == 10
