"""Connections cut by the server (``DELETE /api/connections/<name>``, as an operator or a
failing network would): nothing confirmed is lost, and clients connect again by themselves.

Each test runs in a vhost of its own on the system RabbitMQ (the management API
is needed to close connections and is what ``.ci/run`` enables).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from _services import publish_confirmed, start_python, stop_process, until
from test_rabbitmq_cli import management, vhost

from tidings import App
from tidings.broker import Message
from tidings.brokers.rabbitmq import RabbitBroker
from tidings.errors import PublishError
from tidings.testing.conformance import collect

__all__ = ["vhost"]


def connections(pid: int, where: str) -> list[dict[str, Any]]:
    """The server's connections of process ``pid`` on vhost ``where``."""
    found = management("GET", "/api/connections/?columns=name,vhost,client_properties")
    mine = []
    for connection in found:
        name = (connection.get("client_properties") or {}).get("connection_name", "")
        if connection.get("vhost") == where and name.split(" ")[:2] == ["tidings", str(pid)]:
            mine.append(connection)
    return mine


def cut(pid: int, where: str) -> int:
    """Close every connection of ``pid`` from the server side; return how many."""
    found = connections(pid, where)
    for connection in found:
        management("DELETE", f"/api/connections/{quote(connection['name'], safe='')}")
    return len(found)


def _vhost_name(url: str) -> str:
    return url.split("?", 1)[0].rsplit("/", 1)[1]


def _worker(url: str, topic: str, group: str, log: Path) -> Any:
    env = {"RABBITMQ_FAULTS_TOPIC": topic, "RABBITMQ_FAULTS_GROUP": group}
    env["RABBITMQ_FAULTS_LOG"] = str(log)
    args = ("-m", "tidings.cli", "run", "_rabbitmq_worker:app", "--broker", url)
    return start_python(*args, "--log-level", "error", env=env)


def _handlings(log: Path) -> list[tuple[int, int, str]]:
    found = []
    if log.exists():
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                found.append((int(parts[0]), int(parts[1]), parts[2]))
    return found


@pytest.fixture
def workers() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for worker in started:
        stop_process(worker)


async def test_connections_cut_mid_flow_lose_no_confirmed_event_and_come_back(
    vhost: str,
    workers: list[Any],
    tmp_path: Path,
) -> None:
    """Two workers and a producer; the server closes every connection of one worker
    twice, and the producer's once, while events flow. Every confirmed event is
    handled, the cut worker handles events again (it re-joined by itself), and the
    producer keeps publishing on the same App."""
    where = _vhost_name(vhost)
    topic, group, log, count = "items", "workers", tmp_path / "log", 1500
    workers += [_worker(vhost, topic, group, log) for _ in range(2)]
    victim = workers[0].pid
    producer = App("producer", broker=vhost)
    marks: dict[str, int] = {}
    async with producer:
        await producer.publish({"seq": -1}, topic=topic, type="Warmup", key="w")
        assert await until(lambda: bool(_handlings(log)), 30), "workers never started"
        assert await until(lambda: len(connections(victim, where)) >= 2, 15)

        async def on_batch(published: int) -> None:
            await asyncio.sleep(0.05)  # a flow over seconds, so cuts land mid-stream
            if published in (500, 1000):
                # The worker is connected again (the second time) before it is cut.
                assert await until(lambda: len(connections(victim, where)) >= 2, 30)
                assert await asyncio.to_thread(cut, victim, where) >= 2
                marks[f"cut{published}"] = len(_handlings(log))
            if published == 800:
                assert await asyncio.to_thread(cut, os.getpid(), where) >= 1

        await publish_confirmed(producer, topic, count, 100, on_batch)

    def handled() -> set[int]:
        return {seq for seq, _, _ in _handlings(log)}

    done = await until(lambda: set(range(count)) <= handled(), 90)
    missing = sorted(set(range(count)) - handled())
    assert done, f"{len(missing)} confirmed events never handled, e.g. {missing[:5]}"
    after_last_cut = _handlings(log)[marks["cut1000"] :]
    assert any(pid == str(victim) for _, _, pid in after_last_cut), "the cut worker never came back"
    assert all(w.poll() is None for w in workers), "a worker died instead of reconnecting"


async def test_a_publish_in_flight_when_the_connection_dies_is_confirmed_or_raises(
    vhost: str,
) -> None:
    """Publishes racing a cut connection each end confirmed or raising PublishError; every
    confirmed one is stored, and the same broker publishes again afterwards."""
    where = _vhost_name(vhost)
    broker = RabbitBroker.from_url(vhost)
    reader = RabbitBroker.from_url(vhost)
    await broker.connect()
    try:
        assert await until(lambda: len(connections(os.getpid(), where)) == 1, 15)
        own = connections(os.getpid(), where)  # the publishing connection
        await reader.connect()
        sub = await reader.subscribe(["racing"], "audit")
        await broker.publish("racing", [Message(b"first")])
        outcome: dict[bytes, str] = {}

        async def one(n: int) -> None:
            body = f"m{n}".encode()
            try:
                await broker.publish("racing", [Message(body, key=f"k{n % 8}")])
                outcome[body] = "confirmed"
            except PublishError:
                outcome[body] = "raised"

        tasks = [asyncio.create_task(one(n)) for n in range(400)]
        await asyncio.sleep(0.02)
        for connection in own:
            await asyncio.to_thread(
                management, "DELETE", f"/api/connections/{quote(connection['name'], safe='')}"
            )
        await asyncio.gather(*tasks)
        assert set(outcome.values()) <= {"confirmed", "raised"}
        assert len(outcome) == 400
        await broker.publish("racing", [Message(b"after")])  # connects again by itself
        confirmed = {body for body, how in outcome.items() if how == "confirmed"}
        want = confirmed | {b"first", b"after"}
        got: set[bytes] = set()
        deadline = asyncio.get_running_loop().time() + 20
        while not want <= got and asyncio.get_running_loop().time() < deadline:
            got.update(d.value for d in await collect(sub, 500, timeout=1.0))
        assert want <= got, f"confirmed yet lost: {sorted(want - got)[:5]}"
    finally:
        await broker.close()
        await reader.close()
