"""The Kafka adapter against a Kafka-protocol server (tansu): the shared suites, then its own."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from kafka_server import TEST_OPTIONS, Tansu, started_tansu, tansu  # noqa: F401 - fixture

import tidings
from tidings import App, Event, Reject
from tidings.broker import Broker, Message
from tidings.brokers.kafka import KafkaBroker, KafkaConfig
from tidings.errors import ConfigurationError
from tidings.testing.conformance import BrokerConformance
from tidings.testing.semantics import eventually

#: This tree's sources, first on the path of every process the tests start.
SRC = os.pathsep.join([str(Path(tidings.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])


class TestKafkaBroker(BrokerConformance):
    patience = 10.0
    rebalance_delay = 0.5

    @pytest.fixture
    async def broker_factory(self, tansu: Tansu) -> AsyncIterator[Callable[[], Broker]]:  # noqa: F811
        url = tansu.url(TEST_OPTIONS)
        made: list[KafkaBroker] = []

        def make() -> Broker:
            made.append(KafkaBroker.from_url(url))
            return made[-1]

        yield make
        # Apps given a broker object do not close it; network clients must be closed.
        for broker in made:
            await broker.close()


# -- Kafka's own: other clients' records, the CLI, the demo, the URL -----------------------


def _cli(
    *args: str, cwd: Path | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidings.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", "TIDINGS_BROKER": "", "PYTHONPATH": SRC},
        check=False,
    )


async def _raw_publish(
    bootstrap: str, topic: str, records: list[tuple[bytes, list[tuple[str, bytes]]]]
) -> None:
    """Write records the way another Kafka client would (aiokafka, no tidings)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value, headers in records:
            await producer.send_and_wait(topic, value, key=b"bar-1", headers=headers)
    finally:
        await producer.stop()


_BINARY = (
    b'{"price": 1}',
    [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"bin-1"),
        ("ce_source", b"/other"),
        ("ce_type", b"BarOpened"),
        ("content-type", b"application/json"),
    ],
)
_STRUCTURED = (
    json.dumps(
        {
            "specversion": "1.0",
            "id": "struct-1",
            "source": "/other",
            "type": "BarClosed",
            "datacontenttype": "application/json",
            "data": {"price": 2},
        }
    ).encode(),
    [("content-type", b"application/cloudevents+json")],
)


async def test_handlers_receive_what_other_clients_wrote_in_both_modes(
    tansu: Tansu,  # noqa: F811
) -> None:
    topic = f"bars-{uuid.uuid4().hex[:8]}"
    app = App("bars", broker=tansu.url(TEST_OPTIONS))
    seen: list[tuple[str, str, Any]] = []

    @app.subscribe(topic, group="bars")
    async def handle(event: Event) -> None:
        seen.append((event.id, event.type, event.data))

    async with app:
        await _raw_publish(tansu.bootstrap, topic, [_BINARY, _STRUCTURED])
        await eventually(lambda: len(seen) == 2, 15, "both records")
    assert seen == [("bin-1", "BarOpened", {"price": 1}), ("struct-1", "BarClosed", {"price": 2})]


def test_tail_prints_what_other_clients_wrote_in_both_modes(tansu: Tansu) -> None:  # noqa: F811
    topic = f"bars-{uuid.uuid4().hex[:8]}"
    asyncio.run(_raw_publish(tansu.bootstrap, topic, [_BINARY, _STRUCTURED]))
    result = _cli("tail", topic, "--from-beginning", "--json", "--broker", tansu.url())
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["id"], e["type"], e["data"]) for e in events] == [
        ("bin-1", "BarOpened", {"price": 1}),
        ("struct-1", "BarClosed", {"price": 2}),
    ]


async def test_idempotence_is_on_by_default_and_a_refusal_says_what_to_do(
    tansu: Tansu,  # noqa: F811
) -> None:
    broker = KafkaBroker.from_url(f"kafka://{tansu.bootstrap}")
    assert broker.config.idempotence and broker.config.acks == "all"
    with pytest.raises(ConfigurationError, match="idempotence=false"):
        await broker.connect()  # tansu grants no producer ids
    await broker.close()


def test_url_options_are_typed_and_the_password_never_shows() -> None:
    config = KafkaConfig.from_url(
        "kafka://alice:s3cret@a:9092,b:9093?tls=true&sasl_mechanism=SCRAM-SHA-512"
        "&client_id=shop&connect_timeout=2.5&binding=structured"
    )
    assert config.bootstrap == ("a:9092", "b:9093")
    assert config.security_protocol == "SASL_SSL"
    assert config.connect_timeout == 2.5
    assert "s3cret" not in repr(config) and "s3cret" not in config.url
    with pytest.raises(ConfigurationError, match="unknown kafka URL option"):
        KafkaConfig.from_url("kafka://a:1?colour=red")
    with pytest.raises(ConfigurationError, match="not host:port"):
        KafkaConfig.from_url("kafka://a")
    assert KafkaBroker(config).default_codec().mode == "structured"
    binary = KafkaBroker.from_url("kafka://a:1").default_codec()
    assert (binary.mode, binary.header_prefix) == ("binary", "ce_")


async def test_a_key_lands_where_kafkas_default_partitioner_puts_it(tansu: Tansu) -> None:  # noqa: F811
    from aiokafka.partitioner import DefaultPartitioner

    broker = KafkaBroker.from_url(tansu.url())
    await broker.connect()
    try:
        topic = f"keys-{uuid.uuid4().hex[:8]}"
        keys = [f"customer-{i}" for i in range(20)]
        await broker.publish(topic, [Message(b"x", key=k) for k in keys])
        stored = await broker.read(topic)
        partitioner = DefaultPartitioner()
        partitions = list(range(4))
        for record in stored:
            key = record.message.key
            assert key is not None
            assert record.partition == partitioner(key.encode(), partitions, partitions)
    finally:
        await broker.close()


def test_demo_runs_the_shop_and_its_invariants_hold(tmp_path: Path) -> None:
    with started_tansu() as server:  # its own: the demo's topics stay out of the others' way
        result = _cli(
            "demo", "--broker", server.url(TEST_OPTIONS), "--orders", "100", "--headless",
            cwd=tmp_path, timeout=150,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_docs_page_examples_run(tansu: Tansu, tmp_path: Path) -> None:  # noqa: F811
    page = Path(__file__).parents[2] / "docs" / "brokers" / "kafka.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    assert blocks, "the page has a Python example"
    for number, block in enumerate(blocks):
        code = block.replace("kafka://localhost:9092", tansu.url(TEST_OPTIONS))
        script = tmp_path / f"example_{number}.py"
        script.write_text(code)
        result = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
            env={**os.environ, "PYTHONPATH": SRC},
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_topics_groups_replay_and_dead_letters_from_the_cli(tansu: Tansu) -> None:  # noqa: F811
    topic, group = f"cli-{uuid.uuid4().hex[:8]}", f"cli-g-{uuid.uuid4().hex[:8]}"
    url = tansu.url(TEST_OPTIONS)
    handled: list[int] = []

    async def consume() -> None:
        app = App("cli-replay", broker=url)

        @app.subscribe(topic, group=group)
        async def handle(data: dict[str, Any]) -> None:
            if data["n"] == 0:
                raise Reject("poison")
            handled.append(data["n"])

        async with app:
            for n in range(3):
                await app.publish({"n": n}, topic=topic, type="T", key=f"k{n}")
            await eventually(lambda: len(handled) == 2, 15, "two handled")
            await eventually(lambda: app.idle, 15, "idle")
            await asyncio.sleep(0.5)  # one commit interval and more

    asyncio.run(consume())
    topics = _cli("topics", "--broker", url)
    assert topics.returncode == 0 and topic in topics.stdout, topics.stderr
    listed = _cli("dlq", "list", topic, "--json", "--broker", url)
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 1
    replayed = _cli(
        "replay", "--group", group, "--topic", topic, "--from-beginning", "--broker", url
    )
    assert replayed.returncode == 0, replayed.stderr
    groups = _cli("groups", "--json", "--broker", url)
    assert groups.returncode == 0, groups.stderr
    (info,) = [g for g in map(json.loads, groups.stdout.splitlines()) if g.get("name") == group]
    assert info["lag"] == 3
    redriven = _cli("dlq", "redrive", topic, "--broker", url)
    assert redriven.returncode == 0, redriven.stderr
    after = _cli("dlq", "list", topic, "--json", "--broker", url)
    assert after.returncode == 0 and after.stdout.strip() == "", after.stdout + after.stderr


async def test_unusable_tls_files_are_a_configuration_error() -> None:
    broker = KafkaBroker.from_url("kafka://127.0.0.1:1?tls=true&ca_file=/nonexistent/ca.pem")
    with pytest.raises(ConfigurationError, match="TLS"):
        await broker.connect()
    await broker.close()


async def test_a_member_whose_stop_is_given_up_closes_its_connections(
    tansu: Tansu,  # noqa: F811
) -> None:
    """aiokafka closes a consumer's sockets only once a rebalance in progress has ended;
    a stop given up past its timeout must still close them (they leaked under load)."""
    import aiokafka

    from tidings.brokers.kafka._client import stop_consumer

    topic, group = f"stop-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    broker = KafkaBroker.from_url(tansu.url(TEST_OPTIONS))
    await broker.connect()
    await broker.ensure_topic(topic, partitions=2)
    await broker.close()
    consumer = aiokafka.AIOKafkaConsumer(
        group_id=group, bootstrap_servers=tansu.bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    consumer.subscribe([topic])
    await eventually(lambda: bool(consumer.assignment()), 10.0, "an assignment")
    connections = list(consumer._client._conns.values())
    assert connections
    await stop_consumer(consumer, 1e-4, "a member")  # far too short for a leave
    assert not any(conn.connected() for conn in connections)
    assert not any(conn.connected() for conn in consumer._client._conns.values())


async def test_ensure_topic_updates_an_existing_topics_settings(
    tansu: Tansu,  # noqa: F811
) -> None:
    """The second ensure_topic of a topic asks Kafka to alter its settings. tansu has no
    AlterConfigs, so here the refusal must come as a ConfigurationError naming the topic
    (it was an ImportError of the wrong aiokafka module); the partition count is checked
    before, by tidings itself."""
    topic = f"settings-{uuid.uuid4().hex[:8]}"
    broker = KafkaBroker.from_url(tansu.url(TEST_OPTIONS))
    await broker.connect()
    try:
        await broker.ensure_topic(topic, partitions=2)
        with pytest.raises(ConfigurationError, match=f"settings of topic '{topic}'"):
            await broker.ensure_topic(topic, retention=3600.0)
        with pytest.raises(ConfigurationError, match="partition count"):
            await broker.ensure_topic(topic, partitions=3)
    finally:
        await broker.close()


async def test_group_members_say_which_app_host_and_process_they_are(tansu: Tansu) -> None:  # noqa: F811
    import socket

    topic = f"members-{uuid.uuid4().hex[:8]}"
    app = App("billing", broker=tansu.url(TEST_OPTIONS))
    handled: list[object] = []

    @app.subscribe(topic, group=f"g-{topic}")
    async def bill(data: dict[str, object]) -> None:
        handled.append(data)

    async with app:
        await app.publish({"n": 1}, topic=topic, type="Invoice")
        groups: list[Any] = []
        for _ in range(200):
            groups = [g for g in await app.broker.list_groups() if g.name == f"g-{topic}"]  # type: ignore[attr-defined]
            if handled and groups and groups[0].members:
                break
            await asyncio.sleep(0.05)
    (member,) = groups[0].members
    assert member.startswith(f"billing@{socket.gethostname()}:{os.getpid()}-")
