from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from _services import free_port, port_open, service_missing

import tidings
from tidings.broker import Message, Releasable
from tidings.brokers.redis import RedisBroker
from tidings.errors import BrokerUnavailable
from tidings.testing.conformance import BrokerConformance, collect

SYSTEM = "redis://127.0.0.1:6379/0"
#: Fast membership, so rebalances in the suite take a second, not five.
FAST_GROUPS = "?heartbeat=0.25&session_timeout=1.5"


#: The tidings under test, also for subprocesses started in another directory.
SOURCE = str(Path(tidings.__file__).resolve().parents[1])


def _path() -> str:
    return os.pathsep.join(p for p in (SOURCE, os.environ.get("PYTHONPATH")) if p)


def system_url() -> str:
    if not port_open("127.0.0.1", 6379):
        service_missing("no Redis server on 127.0.0.1:6379")
    return SYSTEM


async def delete_keys(url: str, marker: str) -> None:
    """Delete every key (and topic-set entry) whose name holds ``marker``."""
    client = redis.asyncio.Redis.from_url(url.split("?", 1)[0])
    try:
        found = [key async for key in client.scan_iter(match=f"*{marker}*", count=1000)]
        if found:
            await client.delete(*found)
        topics = [t for t in await client.smembers("tidings:topics") if marker.encode() in t]
        if topics:
            await client.srem("tidings:topics", *topics)
    finally:
        await client.aclose()


class TestRedisBroker(BrokerConformance):
    rebalance_delay = 1.0

    @pytest.fixture
    async def broker_factory(self, names: Callable[[str], str]) -> AsyncIterator[Any]:
        url = system_url() + FAST_GROUPS
        made: list[RedisBroker] = []

        def make() -> RedisBroker:
            made.append(RedisBroker.from_url(url))
            return made[-1]

        yield make
        for broker in made:  # Apps given a broker object leave closing it to its owner
            await broker.close()
        await delete_keys(url, names("x").rsplit("-", 1)[1])


# -- adapter-specific ------------------------------------------------------------------


@pytest.fixture
def run() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
async def cleanup(run: str) -> AsyncIterator[None]:
    yield
    await delete_keys(system_url(), run)


async def test_a_dead_members_pending_entries_go_to_a_living_one(run: str, cleanup: None) -> None:
    """A member that stops heartbeating (killed: no clean leave) loses its partitions
    after the session; the survivor claims its pending entries, attempt counted."""
    url = system_url() + FAST_GROUPS
    topic, group = f"takeover-{run}", f"g-{run}"
    dead, alive = RedisBroker.from_url(url), RedisBroker.from_url(url)
    await dead.connect()
    await alive.connect()
    try:
        doomed = await dead.subscribe([topic], group)
        await dead.publish(topic, [Message(f"m{i}".encode(), key=f"k{i}") for i in range(8)])
        held = await collect(doomed, 8, ack=False, timeout=5)
        assert len(held) == 8
        # Simulate a kill -9: the heartbeat stops, nothing is handed back.
        coordinator = dead._members[doomed]
        assert coordinator._task is not None
        coordinator._task.cancel()
        survivor = await alive.subscribe([topic], group)
        started = time.monotonic()
        got = await collect(survivor, 8, timeout=10)
        assert sorted(d.value for d in got) == sorted(f"m{i}".encode() for i in range(8))
        assert all(d.attempt == 2 for d in got)
        assert time.monotonic() - started < 6
        await held[0].ack()  # the dead member's late ack is fenced: ignored
        client = alive.client
        assert client is not None
        pending = await client.xpending(alive.keys.stream(topic, held[0].partition), group)
        assert pending["pending"] == 0
    finally:
        await alive.close()
        await dead.close()


async def test_offsets_count_per_partition_and_ids_carry_them(run: str, cleanup: None) -> None:
    broker = RedisBroker.from_url(system_url() + "&partitions=1".replace("&", "?"))
    await broker.connect()
    try:
        topic = f"ids-{run}"
        await broker.publish(topic, [Message(b"a"), Message(b"b")])
        await broker.publish(topic, [Message(b"c")])
        sub = await broker.subscribe([topic], f"g-{run}")
        got = await collect(sub, 3, timeout=5)
        assert [(d.value, d.offset) for d in got] == [(b"a", 0), (b"b", 1), (b"c", 2)]
        assert got[0].published_at == pytest.approx(time.time(), abs=5)
    finally:
        await broker.close()


async def test_reading_after_an_offset_within_a_shared_millisecond(run: str, cleanup: None) -> None:
    """Found by a chaos run: entries sharing a millisecond were skipped by ``read(after=)``
    (the CLI's tail and the chaos checker page with it)."""
    broker = RedisBroker.from_url(system_url() + "?partitions=1")
    await broker.connect()
    try:
        topic = f"paging-{run}"
        for first in range(0, 600, 200):  # a few calls, each many entries per millisecond
            await broker.publish(
                topic, [Message(str(n).encode()) for n in range(first, first + 200)]
            )
        for after in (1, 2, 199, 200, 201, 399, 400, 599):
            stored = await broker.read(topic, after={0: after}, limit=1000)
            assert [m.offset for m in stored] == list(range(after, 600)), after
        assert await broker.read(topic, after={0: 600}) == []
    finally:
        await broker.close()


async def test_connect_raises_broker_unavailable_within_the_timeout() -> None:
    port = free_port()
    broker = RedisBroker.from_url(f"redis://u:pw@127.0.0.1:{port}/0?connect_timeout=0.5")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        await broker.connect()
    assert time.monotonic() - started < 3
    assert "u:***@127.0.0.1" in str(caught.value)
    assert "pw@" not in str(caught.value)


def test_url_options_are_validated() -> None:
    from tidings.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="unknown redis URL option"):
        RedisBroker.from_url("redis://127.0.0.1/0?partition=3")
    options = RedisBroker.from_url("rediss://:pw@example:6380/2?partitions=8").options
    assert (options.host, options.port, options.db, options.tls) == ("example", 6380, 2, True)
    assert "pw" not in repr(options)


async def test_close_leaves_no_lease_behind(run: str, cleanup: None) -> None:
    broker = RedisBroker.from_url(system_url() + FAST_GROUPS)
    await broker.connect()
    topic, group = f"leave-{run}", f"g-{run}"
    sub = await broker.subscribe([topic], group)
    await sub.close()
    client = broker.client
    assert client is not None
    assert await client.exists(broker.keys.lease(group, topic, 0)) == 0
    await broker.close()
    await asyncio.sleep(0)


def test_the_docs_page_example_runs(tmp_path: Path, run: str, cleanup: None) -> None:
    url = f"{system_url()}?prefix=docs{run}"
    page = Path(__file__).resolve().parents[2] / "docs" / "brokers" / "redis.md"
    blocks = page.read_text().split("```python\n")[1:]
    assert blocks, "the page has no python example"
    for number, block in enumerate(blocks):
        code = block.split("```", 1)[0].replace("redis://127.0.0.1:6379/0", url)
        script = tmp_path / f"example{number}.py"
        script.write_text(code)
        done = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=False,
            env={**os.environ, "PYTHONPATH": _path()},
        )
        assert done.returncode == 0, done.stderr
        assert "billing {'amount': 12}" in done.stdout


def _cli(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidings.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
        env={**os.environ, "PYTHONPATH": _path()},
    )


def test_demo_runs_headless_and_its_invariants_hold(
    tmp_path: Path, run: str, cleanup: None
) -> None:
    url = f"{system_url()}?prefix=demo{run}"  # a fresh prefix: the broker holds no shop events
    done = _cli("demo", "--broker", url, "--orders", "100", "--headless", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every invariant holds" in done.stdout


async def test_the_cli_reads_topics_and_groups(run: str, cleanup: None) -> None:
    url = f"{system_url()}?prefix=cli{run}"
    broker = RedisBroker.from_url(url)
    await broker.connect()
    try:
        await broker.publish("bars", [Message(b'{"n": 1}', key="k")])
        sub = await broker.subscribe(["bars"], "readers")
        assert len(await collect(sub, 1, ack=False, timeout=5)) == 1
        topics = await asyncio.to_thread(_cli, "topics", "--broker", url)
        assert "bars" in topics.stdout, topics.stderr
        groups = await asyncio.to_thread(_cli, "groups", "--broker", url)
        assert "readers" in groups.stdout, groups.stderr
    finally:
        await broker.close()


def test_an_unreachable_broker_is_one_line_naming_the_url_without_password() -> None:
    port = free_port()
    done = _cli("tail", "bars", "--broker", f"redis://:s3cret@127.0.0.1:{port}/0?connect_timeout=1")
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr
    assert "s3cret" not in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_member_that_leaves_holding_nothing_leaves_no_consumer(
    run: str, cleanup: None
) -> None:
    broker = RedisBroker.from_url(system_url() + FAST_GROUPS + "&partitions=1")
    await broker.connect()
    try:
        topic, group = f"prune-{run}", f"g-{run}"
        await broker.publish(topic, [Message(b"x")])
        sub = await broker.subscribe([topic], group)
        assert len(await collect(sub, 1, timeout=5)) == 1
        await sub.close()
        client = broker.client
        assert client is not None
        assert await client.xinfo_consumers(broker.keys.stream(topic, 0), group) == []
    finally:
        await broker.close()


async def test_a_released_delivery_comes_again_with_the_same_attempt(
    run: str, cleanup: None
) -> None:
    broker = RedisBroker.from_url(system_url() + FAST_GROUPS)
    await broker.connect()
    try:
        topic, group = f"release-{run}", f"g-{run}"
        first = await broker.subscribe([topic], group)
        await broker.publish(topic, [Message(b"x", key="k")])
        (d,) = await collect(first, 1, ack=False, timeout=5)
        assert isinstance(d, Releasable)
        await d.release()
        (again,) = await collect(first, 1, ack=False, timeout=5)
        assert again.attempt == d.attempt == 1
        await again.release()
        await first.close()  # the next owner claims it: still the first attempt
        second = await broker.subscribe([topic], group)
        (last,) = await collect(second, 1, timeout=5)
        assert (last.value, last.attempt) == (b"x", 1)
    finally:
        await broker.close()


async def test_a_group_is_deleted_only_without_live_members(run: str, cleanup: None) -> None:
    from tidings.errors import GroupInUseError

    url = system_url() + FAST_GROUPS
    broker = RedisBroker.from_url(url)
    await broker.connect()
    try:
        topic, group = f"del-{run}", f"g-{run}"
        await broker.publish(topic, [Message(f"m{i}".encode(), key=f"k{i}") for i in range(6)])
        member = await broker.subscribe([topic], group)
        await collect(member, 6, timeout=5)
        with pytest.raises(GroupInUseError, match="stop them first"):
            await broker.delete_group(group)
        await member.close()
        assert await broker.delete_group(group) is True
        assert group not in {g.name for g in await broker.list_groups()}
        assert await broker.delete_group(group) is False
        again = await broker.subscribe([topic], group)  # a new group of that name: afresh
        assert len(await collect(again, 6, timeout=5)) == 6
        await again.close()
    finally:
        await broker.close()
