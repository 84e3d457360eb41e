"""MQTT under faults: a cut connection, a member killed with -9, a session taken over.

Against the system Mosquitto (127.0.0.1:1883); every test uses its own topic,
group and member names. A connection is cut by shutting its socket down under
the client, as a dead network path or a broker closing it would.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from _services import (
    handled,
    kill_workers_mid_flow,
    port_open,
    service_missing,
    start_faults_worker,
)
from _services import until as _until

from tidings import App
from tidings.broker import Message
from tidings.brokers.mqtt import MqttBroker
from tidings.brokers.mqtt._client import disconnected
from tidings.errors import BrokerUnavailable, ConfigurationError
from tidings.testing.conformance import collect

HOST, PORT = "127.0.0.1", 1883


def _url(options: str = "") -> str:
    if not port_open(HOST, PORT):
        service_missing(f"no MQTT broker (mosquitto) at {HOST}:{PORT}")
    return f"mqtt://{HOST}:{PORT}" + (f"?{options}" if options else "")


def _unique(base: str) -> str:
    return f"mqttf-{base}-{uuid.uuid4().hex[:8]}"


def _cut(client: Any) -> None:
    """Shut the connection's socket down under the client."""
    sock = client._client.socket()
    sock.shutdown(socket.SHUT_RDWR)


def _member_of(app: App) -> Any:
    broker = app.broker
    assert isinstance(broker, MqttBroker)
    [subscription] = broker._subscriptions
    return subscription


async def _cut_a_member_mid_flow(options: str) -> tuple[list[int], int]:
    """Publish 300 events; cut the member's connection after ~60 handlings; publish 100
    more once it is back. The handled sequence numbers, and how many were published."""
    topic, group = _unique("cut"), _unique("g")
    consumer = App("mqtt-cut", broker=_url(options))
    handled: list[int] = []

    @consumer.subscribe(topic, group=group, concurrency=4)
    async def handle(data: dict[str, int]) -> None:
        await asyncio.sleep(0.002)
        handled.append(data["seq"])

    producer = App("mqtt-cut-producer", broker=_url())
    async with consumer, producer:
        for seq in range(300):
            await producer.publish({"seq": seq}, topic=topic, type="Item", key=f"k{seq % 8}")
        assert await _until(lambda: len(handled) >= 60, 10), "the member never started"
        member = _member_of(consumer)
        epoch = member.epoch
        _cut(member.client)
        assert await _until(lambda: member.epoch > epoch, 5), "the cut was never noticed"
        assert await _until(lambda: not disconnected(member.client).done(), 10), "no reconnect"
        for seq in range(300, 400):
            await producer.publish({"seq": seq}, topic=topic, type="Item", key=f"k{seq % 8}")
        await _until(lambda: set(range(400)) <= set(handled), 20)
    return handled, 400


async def test_a_member_with_a_kept_session_loses_nothing_when_its_connection_is_cut() -> None:
    handled, count = await _cut_a_member_mid_flow(
        f"session_expiry=60&member={uuid.uuid4().hex[:8]}"
    )
    missing = sorted(set(range(count)) - set(handled))
    assert not missing, f"{len(missing)} events never handled, e.g. {missing[:5]}"


async def test_a_clean_session_member_reconnects_and_goes_on_after_a_cut() -> None:
    handled, count = await _cut_a_member_mid_flow("")
    # What the broker had sent but the member had not read is dropped with a clean
    # session (documented); everything published after the reconnect arrives.
    missing = sorted(set(range(300, count)) - set(handled))
    assert not missing, f"{len(missing)} events after the reconnect never handled"


async def test_a_publisher_whose_connection_dropped_connects_again() -> None:
    topic = _unique("pub")
    broker = MqttBroker.from_url(_url())
    await broker.connect()
    reader = MqttBroker.from_url(_url())
    await reader.connect()
    try:
        subscription = await reader.subscribe([topic], None)
        assert broker.client is not None
        _cut(broker.client)
        assert await _until(lambda: disconnected(broker.client).done(), 5)  # type: ignore[arg-type]
        await broker.publish(topic, [Message(b"after the cut")])
        [got] = await collect(subscription, 1, timeout=5.0)
        assert got.value == b"after the cut"
    finally:
        await broker.close()
        await reader.close()


async def test_two_processes_under_one_member_name_are_told_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic, group, member = _unique("twice"), _unique("g"), uuid.uuid4().hex[:8]
    url = _url(f"session_expiry=60&member={member}")
    first, second = MqttBroker.from_url(url), MqttBroker.from_url(url)
    await first.connect()
    await second.connect()
    try:
        await first.subscribe([topic], group)

        async def join_again_and_again() -> None:
            # The second's subscribe can itself be cut by the first taking the session
            # back; an App's supervision would join again, and so does this loop.
            while "same member name" not in caplog.text:
                try:
                    await second.subscribe([topic], group)
                    return
                except BrokerUnavailable:
                    await asyncio.sleep(0.1)

        joining = asyncio.ensure_future(join_again_and_again())
        told = await _until(lambda: "same member name" in caplog.text, 60)
        joining.cancel()
        await asyncio.gather(joining, return_exceptions=True)
        assert told, "the members dropped each other without a word"
    finally:
        await first.close()
        await second.close()


async def test_a_kept_session_needs_a_member_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIDINGS_MEMBER", raising=False)
    broker = MqttBroker.from_url(_url("session_expiry=60"))
    await broker.connect()
    try:
        with pytest.raises(ConfigurationError, match="member=NAME"):
            await broker.subscribe([_unique("t")], "g")
    finally:
        await broker.close()


async def _both_started(producer: App, topic: str, log: Path) -> bool:
    """Publish warm-up events until both members handled one (MQTT keeps nothing for a
    group before its members subscribe)."""
    for i in range(300):
        await producer.publish({"seq": -1}, topic=topic, type="Warmup", key=f"w{i % 8}")
        if len({pid for _, pid in handled(log).get(-1, [])}) >= 2:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_members_killed_with_sigkill_and_restarted_lose_no_published_event(
    tmp_path: Path,
) -> None:
    """Two `tidings run` members with kept sessions; each is killed with -9 mid-stream and
    started again under its name: the broker hands it what it held and what came meanwhile."""
    topic, log, count = _unique("kill"), tmp_path / "handled.log", 2000
    url = _url("session_expiry=120")
    prefix = uuid.uuid4().hex[:8]
    names = [f"{prefix}-a", f"{prefix}-b"]

    async def started(producer: App) -> None:
        assert await _both_started(producer, topic, log), "the members never started"

    # Each member is killed once and started again under its name (slot 0, then slot 1).
    await kill_workers_mid_flow(
        _url(),
        topic,
        log,
        started,
        count=count,
        batch=100,
        kills=(700, 1400),
        pause=0.02,  # a flow over seconds, so kills land mid-stream
        timeout=60,
        start_worker=lambda slot: start_faults_worker(url, topic, log, TIDINGS_MEMBER=names[slot]),
    )


@pytest.mark.parametrize(
    "options", ["session_expiry=-1", "session_expiry=soon", "member=a/b", "member="]
)
def test_bad_kept_session_options_are_configuration_errors(options: str) -> None:
    with pytest.raises(ConfigurationError):
        MqttBroker.from_url(f"mqtt://127.0.0.1:1883?{options}")
