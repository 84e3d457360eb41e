"""The STOMP adapter under faults, with real processes: workers killed with SIGKILL,
connections closed by the server (``DELETE /api/connections/<name>``, as an operator or
a failing network would), a server that never confirms, one that cannot be reached.

Each test runs in a vhost of its own on the system RabbitMQ (never restarted here).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from _services import (
    free_port,
    handled,
    kill_workers_mid_flow,
    publish_confirmed,
    run_python,
    start_faults_worker,
    stop_process,
    until,
)
from test_rabbitmq_cli import management
from test_stomp import stomp_vhost

from tidings import App
from tidings.broker import Message
from tidings.brokers import from_url
from tidings.brokers.stomp import StompBroker
from tidings.errors import BrokerUnavailable, PublishError
from tidings.testing.conformance import collect

vhost = pytest.fixture(stomp_vhost)


def _where(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


def connections(where: str) -> list[str]:
    """Names of the server's STOMP connections on vhost ``where``."""
    found = management("GET", "/api/connections/?columns=name,vhost,protocol")
    return [
        c["name"]
        for c in found
        if c.get("vhost") == where and str(c.get("protocol", "")).startswith("STOMP")
    ]


def cut(where: str) -> int:
    """Close every STOMP connection on ``where`` from the server side; return how many."""
    names = connections(where)
    for name in names:
        management("DELETE", f"/api/connections/{quote(name, safe='')}")
    return len(names)


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for worker in started:
        stop_process(worker)


async def _warm_up(producer: App, topic: str, log: Path) -> None:
    """Publish until the workers handled one event: their group's queue is bound only
    once the first of them subscribed (an event published before is dropped)."""
    deadline = time.monotonic() + 30
    while -1 not in handled(log):
        assert time.monotonic() < deadline, "workers never started"
        await producer.publish({"seq": -1}, topic=topic, type="Warmup", key="w")
        await until(lambda: -1 in handled(log), 0.5)


async def test_workers_killed_with_sigkill_lose_no_confirmed_event(
    vhost: str, tmp_path: Path
) -> None:
    topic, log, count = "faults.kill", tmp_path / "handled.log", 2000
    handlings = await kill_workers_mid_flow(
        vhost,
        topic,
        log,
        lambda producer: _warm_up(producer, topic, log),
        count=count,
        batch=100,
        kills=(700, 1400),
        pause=0.02,  # a flow over seconds, so kills land mid-stream
        timeout=60,
    )
    again = [attempt for attempt, _ in handlings if attempt > 1]
    assert again or len(handlings) > count, "a kill landed while a worker held events"


async def test_connections_cut_by_the_server_lose_no_confirmed_event_and_come_back(
    vhost: str, workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Every connection on the vhost (two workers' and the producer's) is closed by the
    server twice while events flow: every confirmed event is handled, the workers go on
    by themselves (their Apps subscribe again) and the producer publishes on."""
    where = _where(vhost)
    topic, log, count = "faults.cut", tmp_path / "handled.log", 1500
    workers += [start_faults_worker(vhost, topic, log) for _ in range(2)]
    producer = App("producer", broker=vhost)
    marks: dict[int, int] = {}
    async with producer:
        await _warm_up(producer, topic, log)
        assert await until(lambda: len(connections(where)) >= 3, 15)

        async def on_batch(published: int) -> None:
            await asyncio.sleep(0.05)
            if published in (500, 1000):
                assert await until(lambda: len(connections(where)) >= 3, 30), "not back"
                assert await asyncio.to_thread(cut, where) >= 3
                marks[published] = sum(len(found) for found in handled(log).values())

        await publish_confirmed(producer, topic, count, 100, on_batch)
    done = await until(lambda: set(range(count)) <= set(handled(log)), 60)
    missing = sorted(set(range(count)) - set(handled(log)))
    assert done, f"{len(missing)} confirmed events never handled, e.g. {missing[:5]}"
    assert all(w.poll() is None for w in workers), "a worker died instead of reconnecting"
    assert sum(len(found) for found in handled(log).values()) > marks[1000]


async def test_a_publish_in_flight_when_the_connection_dies_is_confirmed_or_raises(
    vhost: str,
) -> None:
    where = _where(vhost)
    broker = StompBroker.from_url(vhost)
    reader = StompBroker.from_url(vhost)
    await broker.connect()
    await reader.connect()
    try:
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

        assert broker.connection is not None
        mine = f":{broker.connection.local_port} ->"

        def listed() -> list[str]:
            return [n for n in connections(where) if mine in n]

        assert await until(lambda: bool(listed()), 15), "the server never listed it"
        (name,) = listed()
        tasks = [asyncio.create_task(one(n)) for n in range(400)]
        await asyncio.sleep(0.01)
        await asyncio.to_thread(management, "DELETE", f"/api/connections/{quote(name, safe='')}")
        await asyncio.gather(*tasks)
        assert len(outcome) == 400
        await broker.publish("racing", [Message(b"after")])  # connects again by itself
        confirmed = {body for body, how in outcome.items() if how == "confirmed"}
        want = confirmed | {b"first", b"after"}
        got: set[bytes] = set()
        deadline = time.monotonic() + 20
        while not want <= got and time.monotonic() < deadline:
            got.update(d.value for d in await collect(sub, 500, timeout=1.0))
        assert want <= got, f"confirmed yet lost: {sorted(want - got)[:5]}"
    finally:
        await broker.close()
        await reader.close()


# -- servers that do not answer ----------------------------------------------------------


@pytest.fixture
async def mute_server() -> AsyncIterator[int]:
    """A TCP server on a free port that answers CONNECT with CONNECTED, then nothing: no
    receipt ever comes (as from a broker that never confirms)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\0")
            writer.write(b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\0")
            while await reader.read(65536):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_a_publish_without_a_receipt_in_time_raises_publish_error(
    mute_server: int,
) -> None:
    broker = from_url(f"stomp://u:s3cret@127.0.0.1:{mute_server}/?publish_timeout=0.3")
    await broker.connect()
    try:
        started = time.monotonic()
        with pytest.raises(PublishError, match=r"no receipt within 0\.3s") as caught:
            await broker.publish("anything", [Message(b"x")])
        assert time.monotonic() - started < 2
        assert "s3cret" not in str(caught.value)
    finally:
        await broker.close()


async def test_a_server_that_stops_heart_beating_is_taken_as_gone() -> None:
    """A peer that answered CONNECTED promising heart-beats, then fell silent (a cable
    pulled: no FIN, no RST), is dropped after twice its period; the next publish
    connects again."""
    writers: list[asyncio.StreamWriter] = []

    async def silent_after_hello(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        writers.append(w)
        try:
            await reader.readuntil(b"\0")
            w.write(b"CONNECTED\nversion:1.2\nheart-beat:200,200\n\n\0")
            while await reader.read(65536):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    server = await asyncio.start_server(silent_after_hello, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    broker = StompBroker.from_url(f"stomp://127.0.0.1:{port}/?heartbeat=0.2&publish_timeout=0.3")
    try:
        await broker.connect()
        first = broker.connection
        assert first is not None and first.alive
        assert await until(lambda: not first.alive, 3.0)
        assert "silent" in str(first.error)
        with pytest.raises(PublishError):  # connected again, but this server confirms nothing
            await broker.publish("anything", [Message(b"x")])
        assert broker.connection is not first and len(writers) == 2
    finally:
        await broker.close()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_server_that_never_says_connected_is_unavailable_within_the_timeout() -> None:
    done = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await done.wait()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        broker = from_url(f"stomp://u:s3cret@127.0.0.1:{port}/?connect_timeout=0.5")
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable) as caught:
            await broker.connect()
        assert time.monotonic() - started < 2
        assert f"u:***@127.0.0.1:{port}" in str(caught.value)
        assert "s3cret" not in str(caught.value)
    finally:
        done.set()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_an_unreachable_port_is_unavailable_naming_the_url_without_password() -> None:
    port = free_port()
    broker = from_url(f"stomp://u:s3cret@127.0.0.1:{port}/?connect_timeout=0.5")
    with pytest.raises(BrokerUnavailable) as caught:
        await broker.connect()
    assert f"u:***@127.0.0.1:{port}" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_the_cli_says_so_in_one_line(tmp_path: Path) -> None:
    port = free_port()
    url = f"stomp://guest:s3cret@127.0.0.1:{port}/?connect_timeout=1"
    done = run_python("-m", "tidings.cli", "tail", "bars", "--follow", "--broker", url)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr
    assert "s3cret" not in done.stderr and "Traceback" not in done.stderr
