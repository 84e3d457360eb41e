from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from _services import follow_two_events, free_port, port_open, run_python, service_missing

from tidings import App
from tidings.broker import Message
from tidings.brokers import from_url
from tidings.brokers.mqtt import MqttBroker
from tidings.errors import BrokerUnavailable
from tidings.testing.conformance import BrokerConformance, collect

HOST, PORT = "127.0.0.1", 1883


def system_url(options: str = "") -> str:
    if not port_open(HOST, PORT):
        service_missing(f"no MQTT broker (mosquitto) at {HOST}:{PORT}")
    return f"mqtt://{HOST}:{PORT}" + (f"?{options}" if options else "")


#: Tests of rules MQTT cannot keep with clean sessions: the broker keeps nothing for a
#: group while none of its members is connected (see docs/brokers/mqtt.md).
_NO_GROUP_WITHOUT_MEMBERS = (
    "test_group_less_reader_sees_what_is_published_while_open",
    "test_restart_resumes_from_committed_position",
    "test_unacked_message_survives_consumer_crash",
    "test_stop_timeout_leaves_the_event_for_redelivery",
)


def _no_group_without_members(self: Any, *args: Any, **kwargs: Any) -> None:
    pytest.skip(
        "MQTT keeps no messages for a group while none of its members is connected "
        "(a group starts when its first member subscribes)"
    )


class TestMqttBroker(BrokerConformance):
    locals().update(dict.fromkeys(_NO_GROUP_WITHOUT_MEMBERS, _no_group_without_members))

    @pytest.fixture
    def broker_factory(self) -> Callable[[], MqttBroker]:
        url = system_url()
        return lambda: MqttBroker.from_url(url)


@pytest.fixture
async def broker() -> AsyncIterator[MqttBroker]:
    opened = MqttBroker.from_url(system_url())
    await opened.connect()
    yield opened
    await opened.close()


def _unique(base: str) -> str:
    return f"mqtt-{base}-{uuid.uuid4().hex[:8]}"


async def test_a_shared_group_spreads_events_over_its_members(broker: MqttBroker) -> None:
    topic, group = _unique("spread"), _unique("g")
    first = await broker.subscribe([topic], group)
    second = await broker.subscribe([topic], group)
    await broker.publish(topic, [Message(f"m{i}".encode()) for i in range(40)])
    got_first = await collect(first, 40, timeout=1.0)
    got_second = await collect(second, 40, timeout=1.0)
    values = [d.value for d in got_first + got_second]
    assert sorted(values) == sorted(f"m{i}".encode() for i in range(40))
    assert got_first and got_second


async def test_every_group_gets_every_event(broker: MqttBroker) -> None:
    topic = _unique("fan")
    groups = [await broker.subscribe([topic], _unique("g")) for _ in range(2)]
    await broker.publish(topic, [Message(f"m{i}".encode()) for i in range(10)])
    for sub in groups:
        got = await collect(sub, 10, timeout=5.0)
        assert sorted(d.value for d in got) == sorted(f"m{i}".encode() for i in range(10))


async def test_wildcards_match_topics_and_keep_each_topic_name(broker: MqttBroker) -> None:
    base = _unique("rooms")
    sub = await broker.subscribe([f"{base}/+/temperature"], _unique("g"))
    await broker.publish(f"{base}/kitchen/temperature", [Message(b"21")])
    await broker.publish(f"{base}/kitchen/humidity", [Message(b"40")])
    (d,) = await collect(sub, 1, timeout=5.0)
    assert (d.topic, d.value) == (f"{base}/kitchen/temperature", b"21")
    assert await collect(sub, 1, timeout=0.3) == []


async def test_a_plain_mqtt_client_reads_binary_mode_as_cloudevents_attributes() -> None:
    url = system_url()
    topic = _unique("plain")
    app = App("plain", broker=url)
    async with aiomqtt.Client(HOST, PORT, protocol=aiomqtt.ProtocolVersion.V5) as plain:
        await plain.subscribe(topic, qos=1)
        async with app:
            event = await app.publish({"celsius": 21.5}, topic=topic, type="reading.taken")
        message = await asyncio.wait_for(anext(aiter(plain.messages)), 5.0)
    assert message.properties is not None
    attributes = dict(message.properties.UserProperty)
    assert attributes["specversion"] == "1.0"
    assert attributes["id"] == event.id
    assert attributes["type"] == "reading.taken"
    assert attributes["source"] == event.source
    assert message.properties.ContentType == "application/json"
    assert message.payload == b'{"celsius":21.5}'


async def test_connections_send_small_packets_at_once(broker: MqttBroker) -> None:
    # With Nagle's algorithm on, a PUBACK or publish behind an unacknowledged one waits ~40 ms.
    assert broker.client is not None
    sock = broker.client._client.socket()
    assert isinstance(sock, socket.socket)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def test_connect_raises_broker_unavailable_within_the_timeout() -> None:
    port = free_port()
    broker = from_url(f"mqtt://u:s3cret@127.0.0.1:{port}?connect_timeout=0.5")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        await broker.connect()
    assert time.monotonic() - started < 3
    assert f"u:***@127.0.0.1:{port}" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_the_sensors_example_runs_on_mosquitto(tmp_path: Path) -> None:
    url = system_url()
    done = run_python(
        "-m", "tidings.examples.sensors", "--broker", url, "--rounds", "8", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert f"45 readings from 5 devices on {url}" in done.stdout
    assert "ALERT sensor-00: 95.0 °C, above the limit of 60 °C" in done.stdout


def test_the_docs_page_example_runs(tmp_path: Path) -> None:
    url = system_url()
    page = Path(__file__).resolve().parents[2] / "docs" / "brokers" / "mqtt.md"
    blocks = page.read_text().split("```python\n")[1:]
    assert blocks, "the page has no python example"
    for number, block in enumerate(blocks):
        script = tmp_path / f"example{number}.py"
        script.write_text(block.split("```", 1)[0].replace("mqtt://127.0.0.1:1883", url))
        done = run_python(str(script), cwd=tmp_path)
        assert done.returncode == 0, done.stderr


def test_tail_follows_live_events_and_refuses_history(tmp_path: Path) -> None:
    url = system_url()
    topic = _unique("tail")
    refused = run_python("-m", "tidings.cli", "tail", topic, "--broker", url, cwd=tmp_path)
    assert refused.returncode == 2
    assert "keeps no history to read" in refused.stderr and "--follow" in refused.stderr
    assert follow_two_events(url, topic, tmp_path, timeout=30) == [0, 1]
