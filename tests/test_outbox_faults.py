"""The outbox relay under SIGKILL, with real processes, PostgreSQL and Redis.

Relays run as separate processes (``_outbox_worker.py relay``) publishing to a
Redis stream of a fresh name; this process writes the outbox rows meanwhile
and reads the stream at the end.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from _outbox_db import (
    REDIS_URL,
    free_port,
    installed_pool,
    postgres_schema,
    require_redis,
    schema_url,
    service_missing,
    start_python,
    stop_process,
    until,
    until_async,
)
from tidings import App, Event
from tidings.outbox import Outbox

WORKER = str(Path(__file__).parent / "_outbox_worker.py")
KEYS = 16


@pytest.fixture
async def database() -> AsyncIterator[tuple[str, Any]]:
    require_redis()
    async with postgres_schema() as schema, installed_pool(schema) as pool:
        yield schema_url(schema), pool


def start_relay(url: str, name: str, **env: str) -> subprocess.Popen[bytes]:
    return start_python(
        WORKER,
        "relay",
        env={"OUTBOX_DB": url, "OUTBOX_BROKER": REDIS_URL, "OUTBOX_NAME": name, **env},
    )


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(10)


async def write(pool: Any, topic: str, start: int, count: int) -> None:
    """``count`` events ``{"seq": i}`` over 16 keys, in transactions of 25."""
    app = App("writer", broker="memory://")
    outbox = Outbox()
    for first in range(start, start + count, 25):
        events = [
            app.event({"seq": i}, type="Item", key=f"k{i % KEYS}")
            for i in range(first, min(first + 25, start + count))
        ]
        async with pool.acquire() as connection, connection.transaction():
            await outbox.add_many(connection, [(topic, e, None) for e in events])


async def all_sent(pool: Any, timeout: float) -> bool:
    async def none_unsent() -> bool:
        query = "SELECT count(*) FROM tidings_outbox WHERE sent_at IS NULL"
        return bool(await pool.fetchval(query) == 0)

    return await until_async(none_unsent, timeout)


async def read_stream(topic: str, expected: int) -> list[Event]:
    """Every message of ``topic``, duplicates included, in stream order."""
    received: list[Event] = []
    app = App("checker", broker=REDIS_URL)

    @app.subscribe(topic, group=f"check-{uuid.uuid4().hex[:8]}", start="earliest")
    async def collect(event: Event) -> None:
        received.append(event)

    async with app:
        assert await until(lambda: len(received) >= expected, 30), (len(received), expected)
        await asyncio.sleep(1.0)  # and nothing more arrives
    return received


def check_order_and_completeness(events: list[Event], count: int) -> None:
    """Each seq arrived; per key, first arrivals are in seq order (republished ones may repeat)."""
    first: dict[str | None, list[int]] = defaultdict(list)
    seen: set[int] = set()
    for event in events:
        seq = event.data["seq"]
        if seq not in seen:
            seen.add(seq)
            first[event.key].append(seq)
    assert seen == set(range(count))
    for key, seqs in first.items():
        assert seqs == sorted(seqs), f"key {key} out of order"


async def test_relay_killed_mid_stream_publishes_every_row_in_key_order(
    database: tuple[str, Any],
) -> None:
    url, pool = database
    topic = f"outbox-faults-{uuid.uuid4().hex[:8]}"
    count = 1500
    rng = random.Random(7)
    # The first relay dies between publishing its third batch and marking it sent.
    relay = start_relay(url, "relay", KILL_AFTER_PUBLISH="3")
    try:
        writer = asyncio.create_task(write(pool, topic, 0, count))
        assert await until(lambda: relay.poll() is not None, 30), "did not kill itself"
        for _ in range(3):  # then restarted and SIGKILLed at random moments, mid-stream
            relay = start_relay(url, "relay")
            await asyncio.sleep(rng.uniform(0.5, 1.5))
            kill(relay)
        await writer
        relay = start_relay(url, "relay")
        assert await all_sent(pool, 60), "rows left unsent"
    finally:
        stop_process(relay)
    events = await read_stream(topic, count)
    check_order_and_completeness(events, count)
    assert len(events) > count, "the batch published before the kill was published again"


async def test_two_relay_processes_publish_each_row_once(database: tuple[str, Any]) -> None:
    url, pool = database
    topic = f"outbox-pair-{uuid.uuid4().hex[:8]}"
    count = 2000
    relays = [start_relay(url, name, OUTBOX_TTL="1") for name in ("left", "right")]
    try:

        async def owners() -> Counter[str]:
            rows = await pool.fetch(
                "SELECT owner FROM tidings_outbox_leases WHERE expires_at > now()"
            )
            return Counter(row["owner"] for row in rows)

        async def balanced() -> bool:
            return await owners() == Counter({"left": 8, "right": 8})

        assert await until_async(balanced, 20), await owners()
        await write(pool, topic, 0, count)
        assert await all_sent(pool, 60), "rows left unsent"
        assert await owners() == Counter({"left": 8, "right": 8})
    finally:
        for relay in relays:
            stop_process(relay)
    events = await read_stream(topic, count)
    assert Counter(e.id for e in events).most_common(1)[0][1] == 1, "published twice"
    assert len(events) == count
    check_order_and_completeness(events, count)


def start_redis(binary: str, port: int, directory: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def test_rows_wait_while_the_broker_is_down_then_go_out(
    database: tuple[str, Any], tmp_path: Path
) -> None:
    """A relay whose broker cannot be reached keeps its rows unsent, and retries."""
    binary = shutil.which("redis-server")
    if binary is None:
        service_missing("no redis-server on PATH")
    url, pool = database
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    topic = f"outbox-down-{uuid.uuid4().hex[:8]}"
    await write(pool, topic, 0, 100)
    relay = start_python(
        WORKER, "relay", env={"OUTBOX_DB": url, "OUTBOX_BROKER": broker, "OUTBOX_NAME": "r"}
    )
    server: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.sleep(2.0)
        assert relay.poll() is None, "the relay gave up"
        unsent = "SELECT count(*) FROM tidings_outbox WHERE sent_at IS NULL"
        assert await pool.fetchval(unsent) == 100
        server = start_redis(binary, port, tmp_path)
        assert await all_sent(pool, 60), "rows left unsent"
        checker = App("checker", broker=broker)
        received: list[Event] = []

        @checker.subscribe(topic, group="check", start="earliest")
        async def collect(event: Event) -> None:
            received.append(event)

        async with checker:
            assert await until(lambda: len(received) >= 100, 30), len(received)
        check_order_and_completeness(received, 100)
    finally:
        stop_process(relay)
        if server is not None:
            server.terminate()
            server.wait(10)
