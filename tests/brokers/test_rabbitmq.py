from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from _services import (
    free_port,
    port_open,
    run_python,
    service_missing,
    start_python,
    stop_process,
    until,
)

from tidings.broker import Message
from tidings.brokers import from_url
from tidings.brokers.rabbitmq import RabbitBroker
from tidings.brokers.rabbitmq._subscription import RabbitMember
from tidings.errors import BrokerUnavailable, ConfigurationError, PublishError
from tidings.testing.conformance import BrokerConformance, collect

HOST, PORT = "127.0.0.1", 5672
SYSTEM = f"amqp://guest:guest@{HOST}:{PORT}/"

#: Fast group checks, so rebalances in the suite take a fraction of a second.
FAST_GROUPS = "?heartbeat=0.25"


def system_url(options: str = FAST_GROUPS) -> str:
    if not port_open(HOST, PORT):
        service_missing(f"no RabbitMQ server at {HOST}:{PORT}")
    return SYSTEM + options


async def delete_names(
    marker: str, topics: set[str], groups: set[str], delays: Iterable[str] = ()
) -> None:
    """Delete the exchanges and queues of ``topics`` and ``groups`` (every name holds
    ``marker``), and the ``delays`` queues: RabbitMQ cannot list them without its
    management plugin."""
    connection = await aio_pika.connect(SYSTEM)
    try:
        for name in delays:
            channel = await connection.channel()
            await channel.queue_delete(name)
            await channel.close()
        for topic in topics:
            if marker not in topic:
                continue
            names = [f"{topic}.unrouted", f"{topic}.tombstones"]
            names += [f"{topic}.history.{p}" for p in range(4)]
            for group in groups:
                names.append(f"{topic}.{group}.members")
                names += [f"{topic}.{group}.{p}" for p in range(4)]
            for name in names:
                channel = await connection.channel()
                await channel.queue_delete(name)
                await channel.close()
            for exchange in (topic, f"{topic}.groups", f"{topic}.unrouted"):
                channel = await connection.channel()
                await channel.exchange_delete(exchange)
                await channel.close()
    finally:
        await connection.close()


class Recording(RabbitBroker):
    """A broker that remembers the topics and groups it touched, for cleaning up."""

    touched: tuple[set[str], set[str]]

    async def exchange(self, topic: str) -> Any:
        self.touched[0].add(topic)
        return await super().exchange(topic)

    async def subscribe(self, topics: Any, group: Any, *args: Any, **kwargs: Any) -> Any:
        if group is not None:
            self.touched[1].add(group)
        return await super().subscribe(topics, group, *args, **kwargs)


class TestRabbitBroker(BrokerConformance):
    rebalance_delay = 1.0

    @pytest.fixture
    async def broker_factory(self, names: Callable[[str], str]) -> AsyncIterator[Any]:
        url = system_url()
        touched: tuple[set[str], set[str]] = (set(), set())
        made: list[RabbitBroker] = []

        def make() -> RabbitBroker:
            broker = Recording.from_url(url)
            assert isinstance(broker, Recording)
            broker.touched = touched
            made.append(broker)
            return broker

        yield make
        for broker in made:  # Apps given a broker object leave closing it to its owner
            await broker.close()
        marker = names("x").rsplit("-", 1)[1]
        touched[0].update({f"{t}.dlq" for t in touched[0]})
        delays = {name for broker in made for name in broker.delay_queues}
        await delete_names(marker, touched[0], touched[1], delays)


# -- adapter-specific ------------------------------------------------------------------


@pytest.fixture
async def broker() -> AsyncIterator[RabbitBroker]:
    opened = Recording.from_url(system_url())
    assert isinstance(opened, Recording)
    opened.touched = (set(), set())
    await opened.connect()
    yield opened
    await opened.close()
    await delete_names("rmq-", *opened.touched, opened.delay_queues)


def _unique(base: str) -> str:
    return f"rmq-{base}-{uuid.uuid4().hex[:8]}"


async def test_every_group_gets_every_event_and_members_compete(broker: RabbitBroker) -> None:
    topic = _unique("fan")
    one, other = _unique("g"), _unique("g")
    first = await broker.subscribe([topic], one)
    second = await broker.subscribe([topic], one)
    alone = await broker.subscribe([topic], other)
    await asyncio.sleep(1.0)  # members share the group's partitions on their next check
    await broker.publish(topic, [Message(f"m{i}".encode(), key=f"k{i}") for i in range(40)])
    got = await collect(alone, 40, timeout=5.0)
    assert sorted(d.value for d in got) == sorted(f"m{i}".encode() for i in range(40))
    shared = await collect(first, 40, timeout=2.0) + await collect(second, 40, timeout=2.0)
    assert sorted(d.value for d in shared) == sorted(f"m{i}".encode() for i in range(40))


async def test_events_published_before_any_group_go_to_the_first_group(
    broker: RabbitBroker,
) -> None:
    topic = _unique("early")
    await broker.publish(topic, [Message(f"m{i}".encode(), key="k") for i in range(5)])
    first = await broker.subscribe([topic], _unique("g"))
    got = await collect(first, 5, timeout=5.0)
    assert [d.value for d in got] == [f"m{i}".encode() for i in range(5)]
    later = await broker.subscribe([topic], _unique("g"))
    assert await collect(later, 5, timeout=0.5) == []


async def test_a_plain_amqp_client_reads_cloudevents_application_properties(
    broker: RabbitBroker,
) -> None:
    from tidings import App

    topic = _unique("plain")
    connection = await aio_pika.connect(SYSTEM)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await broker.exchange(topic)
        await queue.bind(topic, "*.order.#")  # a binding that selects by CloudEvents type
        app = App("plain", broker=broker)
        async with app:
            await app.publish({"n": 1}, topic=topic, type="invoice.sent")
            event = await app.publish({"n": 2}, topic=topic, type="order.placed", key="o1")
        message = await queue.get(timeout=5)
        assert message.headers["cloudEvents_id"] == event.id
        assert message.headers["cloudEvents_type"] == "order.placed"
        assert message.content_type == "application/json"
        assert message.body == b'{"n":2}'
        assert await queue.get(fail=False) is None
    finally:
        await connection.close()


async def test_connect_raises_broker_unavailable_within_the_timeout() -> None:
    port = free_port()
    broker = from_url(f"amqp://u:s3cret@127.0.0.1:{port}/?connect_timeout=0.5")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        await broker.connect()
    assert time.monotonic() - started < 3
    assert f"u:***@127.0.0.1:{port}" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_url_options_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="unknown amqp URL option"):
        RabbitBroker.from_url("amqp://127.0.0.1/?partition=3")
    options = RabbitBroker.from_url("amqps://u:pw@example/%2Fshop?partitions=8").options
    assert (options.host, options.port, options.vhost, options.tls) == (
        "example",
        5671,
        "/shop",
        True,
    )
    assert (options.username, options.partitions) == ("u", 8)
    assert "pw" not in repr(options)
    assert RabbitBroker.from_url("amqp://h").options.vhost == "/"


def test_the_docs_page_example_runs(tmp_path: Path) -> None:
    url = system_url("")
    page = Path(__file__).resolve().parents[2] / "docs" / "brokers" / "rabbitmq.md"
    blocks = page.read_text().split("```python\n")[1:]
    assert blocks, "the page has no python example"
    for number, block in enumerate(blocks):
        run = uuid.uuid4().hex[:8]
        code = block.split("```", 1)[0].replace("amqp://guest:guest@127.0.0.1:5672/", url)
        code = code.replace('"billing"', f'"billing-{run}"')
        code = code.replace('"invoices"', f'"invoices-{run}"')
        script = tmp_path / f"example{number}.py"
        script.write_text(code)
        done = run_python(str(script), cwd=tmp_path)
        asyncio.run(delete_names(run, {f"invoices-{run}"}, {f"billing-{run}"}))
        assert done.returncode == 0, done.stderr
        assert "billing" in done.stdout


def test_an_unreachable_broker_is_one_line_naming_the_url_without_password() -> None:
    port = free_port()
    done = run_python(
        "-m",
        "tidings.cli",
        "tail",
        "bars",
        "--broker",
        f"amqp://guest:s3cret@127.0.0.1:{port}/?connect_timeout=1",
    )
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr
    assert "s3cret" not in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_member_that_dies_loses_its_partitions_to_the_others(
    broker: RabbitBroker,
) -> None:
    """A killed member (its connection gone, nothing given back cleanly): the survivor
    takes its partitions on its next check and gets what it held, attempt counted."""
    topic, group = _unique("takeover"), _unique("g")
    dead = await broker.subscribe([topic], group)
    await broker.publish(topic, [Message(f"m{i}".encode(), key=f"k{i}") for i in range(8)])
    held = await collect(dead, 8, ack=False, timeout=5.0)
    assert len(held) == 8
    survivor = await broker.subscribe([topic], group)
    assert isinstance(dead, RabbitMember)
    assert dead._task is not None
    dead._task.cancel()
    await dead.connection.close()  # as a kill -9 would: the server sees the socket go
    started = time.monotonic()
    got = await collect(survivor, 8, timeout=5.0)
    assert sorted(d.value for d in got) == sorted(f"m{i}".encode() for i in range(8))
    assert all(d.attempt == 2 for d in got)
    assert time.monotonic() - started < 3
    await held[0].ack()  # a late ack of the dead member: never an error


async def test_a_publish_after_its_exchange_was_deleted_fails_then_the_next_works(
    broker: RabbitBroker,
) -> None:
    topic = _unique("gone")
    sub = await broker.subscribe([topic], _unique("g"))
    await broker.publish(topic, [Message(b"a")])
    connection = await aio_pika.connect(SYSTEM)
    channel = await connection.channel()
    await channel.exchange_delete(topic)
    await connection.close()
    with pytest.raises(PublishError):
        await broker.publish(topic, [Message(b"lost")])
    # The exchange is declared again with its bindings to the history and to the
    # groups' exchange (which kept the group's bindings): the group carries on.
    await broker.publish(topic, [Message(b"b")])
    assert [d.value for d in await collect(sub, 2, timeout=5.0)] == [b"a", b"b"]
    assert [m.message.value for m in await broker.read(topic)] == [b"a", b"b"]


# -- faults: real worker processes killed with SIGKILL ------------------------------------


def _worker(url: str, topic: str, group: str, log: Path) -> subprocess.Popen[bytes]:
    env = {"RABBITMQ_FAULTS_TOPIC": topic, "RABBITMQ_FAULTS_GROUP": group}
    env["RABBITMQ_FAULTS_LOG"] = str(log)
    args = ("-m", "tidings.cli", "run", "_rabbitmq_worker:app", "--broker", url)
    return start_python(*args, "--log-level", "error", env=env)


def _handlings(log: Path) -> list[tuple[int, int, str]]:
    """(seq, attempt, pid) of each finished handling."""
    found = []
    if log.exists():
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:  # a line cut by a kill has fewer
                found.append((int(parts[0]), int(parts[1]), parts[2]))
    return found


async def test_workers_killed_with_sigkill_lose_no_published_event(tmp_path: Path) -> None:
    from tidings import App

    url = system_url()
    run = uuid.uuid4().hex[:8]
    topic, group, log, count = f"rmq-kill-{run}", f"workers-{run}", tmp_path / "log", 1500
    workers = [_worker(url, topic, group, log) for _ in range(2)]
    producer = App("producer", broker=url)
    try:
        async with producer:
            await producer.publish({"seq": -1}, topic=topic, type="Warmup", key="w")
            assert await until(lambda: bool(_handlings(log)), 30), "workers never started"
            for start in range(0, count, 100):
                events = [
                    producer.event({"seq": i}, type="Item", key=f"k{i % 32}")
                    for i in range(start, start + 100)
                ]
                await producer.publish_batch(events, topic=topic)
                await asyncio.sleep(0.05)  # a flow over seconds, so kills land mid-stream
                if start in (500, 1000):
                    victim = workers.pop(0)
                    os.kill(victim.pid, signal.SIGKILL)
                    victim.wait(5)
                    workers.append(_worker(url, topic, group, log))

        def handled() -> set[int]:
            return {seq for seq, _, _ in _handlings(log)}

        done = await until(lambda: set(range(count)) <= handled(), 60)
        missing = sorted(set(range(count)) - handled())
        assert done, f"{len(missing)} published events never handled, e.g. {missing[:5]}"
        assert len({pid for _, _, pid in _handlings(log)}) >= 3
    finally:
        for worker in workers:
            stop_process(worker)
        await delete_names(run, {topic, f"{topic}.dlq"}, {group})


async def test_an_app_handles_an_event_sent_by_a_plain_amqp_client(broker: RabbitBroker) -> None:
    """The binding's ``cloudEvents:`` spelling, written by another client, reads as an event."""
    from tidings import App, Context

    topic, group = _unique("foreign"), _unique("g")
    broker.touched[1].add(group)  # type: ignore[attr-defined]
    got: list[tuple[str, str, Any]] = []
    app = App("reader", broker=broker)

    @app.subscribe(topic, group=group)
    async def handle(data: dict[str, Any], ctx: Context) -> None:
        got.append((ctx.event.id, ctx.event.type, data))

    async with app:
        connection = await aio_pika.connect(SYSTEM)
        try:
            channel = await connection.channel()
            message = aio_pika.Message(
                b'{"sku": "A1"}',
                content_type="application/json",
                headers={
                    "cloudEvents:specversion": "1.0",
                    "cloudEvents:id": "e-1",
                    "cloudEvents:source": "/legacy",
                    "cloudEvents:type": "stock.counted",
                },
            )
            exchange = await channel.get_exchange(topic)
            await exchange.publish(message, routing_key="0.stock.counted")
        finally:
            await connection.close()
        await until(lambda: bool(got), 5.0)
    assert got == [("e-1", "stock.counted", {"sku": "A1"})]


def test_history_and_inspection_options_are_parsed() -> None:
    options = RabbitBroker.from_url(
        "amqp://u:pw@h/?retention=3600&retention_bytes=1000000&history=false"
    ).options
    assert (options.retention, options.retention_bytes, options.history) == (3600, 1000000, False)
    assert options.management == "http://h:15672"
    assert RabbitBroker.from_url("amqps://h").options.management == "https://h:15671"
    assert RabbitBroker.from_url("amqp://h/?management=http://m:1/").options.management == (
        "http://m:1/"
    )
    for bad in ("history=maybe", "retention=-1", "management=ftp://m"):
        with pytest.raises(ConfigurationError):
            RabbitBroker.from_url(f"amqp://h/?{bad}")


async def test_without_history_topics_keep_no_streams_and_declare_no_replay() -> None:
    from tidings.brokers.rabbitmq._topology import history_queue

    broker = Recording.from_url(system_url(FAST_GROUPS + "&history=false"))
    assert isinstance(broker, Recording)
    broker.touched = (set(), set())
    await broker.connect()
    topic = _unique("plain")
    try:
        assert not broker.capabilities.replay
        sub = await broker.subscribe([topic], _unique("g"))
        await broker.publish(topic, [Message(b"x", key="k")])
        assert [d.value for d in await collect(sub, 1, timeout=5.0)] == [b"x"]
        connection = await aio_pika.connect(SYSTEM)
        try:
            channel = await connection.channel()
            with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
                await channel.declare_queue(history_queue(topic, 0), passive=True)
        finally:
            await connection.close()
        with pytest.raises(ConfigurationError, match="history=false"):
            await broker.list_topics()
        with pytest.raises(ConfigurationError):
            await broker.seek(topic, "g", "beginning")
    finally:
        await broker.close()
        await delete_names("rmq-", *broker.touched, broker.delay_queues)


async def test_inspection_reads_history_no_group_took_and_hides_tombstoned_events(
    broker: RabbitBroker,
) -> None:
    """History is kept whether or not a group exists; a deleted entry disappears from
    reads and counts, and `last` counts around it."""
    topic = _unique("history")
    await broker.publish(topic, [Message(f"m{i}".encode(), key="k") for i in range(5)])
    stored = await broker.read(topic)
    assert [m.message.value for m in stored] == [f"m{i}".encode() for i in range(5)]
    assert [m.offset for m in stored] == [0, 1, 2, 3, 4]
    assert all(m.message.key == "k" for m in stored)
    assert stored[0].published_at <= stored[-1].published_at
    assert await broker.delete(topic, [(stored[4].partition, 4)]) == 1
    assert await broker.delete(topic, [(stored[4].partition, 4)]) == 0  # already gone
    assert [m.message.value for m in await broker.read(topic, last=2)] == [b"m2", b"m3"]
    (info,) = [t for t in await broker.list_topics() if t.name == topic]
    assert info.events == 4
    assert info.retention_seconds == 7 * 86400
    # The first group takes what no group took (from T.unrouted), the history kept it too.
    sub = await broker.subscribe([topic], _unique("g"))
    assert len(await collect(sub, 5, timeout=5.0)) == 5
