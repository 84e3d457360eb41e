"""The cases of ``bench_mqtt.py``: each returns (events, seconds) on a running mosquitto.

Every event is the same CloudEvent (binary mode: attributes in user properties,
JSON payload, 64 keys); the raw cases publish what tidings would put on the
wire, built beforehand. MQTT keeps nothing for a subscriber that is not there,
so a consume case subscribes first and holds back while the events are
published (untimed): tidings with a handler that waits on a gate (the broker
sends at most ``receive_maximum`` = :data:`WINDOW` unacked messages, the rest
stay queued at the broker), the raw client by leaving an offline persistent
session behind. The clock starts at the release (opening the gate,
reconnecting) and stops when the handler has seen every event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tidings import App
from tidings.broker import Message
from tidings.brokers.mqtt import _binding
from tidings.brokers.mqtt._client import no_delay

__all__ = ["CASES", "CHUNK", "WINDOW", "Case"]

Case = Callable[[str, int], Awaitable[tuple[int, float]]]
#: Events per publish_batch call, and raw publishes in flight at once.
CHUNK = 1000
#: Receive Maximum of the tidings consumers: unacked messages at the client when the clock starts.
WINDOW = 1000


def _topic(label: str) -> str:
    return f"bench/{label}-{uuid.uuid4().hex[:6]}"


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 1883


def _client(url: str, identifier: str | None = None, persistent: bool = False) -> aiomqtt.Client:
    host, port = _address(url)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if persistent:
        properties.SessionExpiryInterval = 600
    client = aiomqtt.Client(
        host,
        port,
        identifier=identifier or f"bench-{uuid.uuid4().hex[:12]}",
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=not persistent,
        properties=properties,
        max_queued_incoming_messages=0,
        max_queued_outgoing_messages=0,
    )
    client.pending_calls_threshold = 1 << 62  # no warning per publish with many in flight
    return client


@contextlib.asynccontextmanager
async def _connected(
    url: str, identifier: str | None = None, persistent: bool = False
) -> AsyncIterator[aiomqtt.Client]:
    """A connected raw client, with Nagle's algorithm off as tidings has it (same TCP)."""
    async with _client(url, identifier, persistent) as client:
        no_delay(client)
        yield client


async def _fill(url: str, topic: str, n: int) -> None:
    app = App("bench-fill", broker=url)
    async with app:
        for start in range(0, n, CHUNK):
            events = [
                app.event({"i": i}, type="Tick", key=f"k{i % 64}")
                for i in range(start, min(start + CHUNK, n))
            ]
            await app.publish_batch(events, topic=topic)


async def _until(done: asyncio.Event, timeout: float = 600.0) -> None:
    await asyncio.wait_for(done.wait(), timeout)


# -- tidings --------------------------------------------------------------------------


async def _tidings_publish(url: str, n: int, batch: bool) -> tuple[int, float]:
    topic = _topic("pub")
    app = App("bench-pub", broker=url)
    async with app:
        events = [app.event({"i": i}, type="Tick", key=f"k{i % 64}") for i in range(n)]
        started = time.perf_counter()
        if batch:
            for start in range(0, n, CHUNK):
                await app.publish_batch(events[start : start + CHUNK], topic=topic)
        else:
            for event in events:
                await app.publish(event, topic=topic)
        elapsed = time.perf_counter() - started
    return n, elapsed


async def tidings_publish_one(url: str, n: int) -> tuple[int, float]:
    return await _tidings_publish(url, n, batch=False)


async def tidings_publish_batch(url: str, n: int) -> tuple[int, float]:
    return await _tidings_publish(url, n, batch=True)


async def _tidings_consume(url: str, n: int, batch: bool) -> tuple[int, float]:
    topic = _topic("batch" if batch else "event")
    app = App("bench-consume", broker=f"{url}?receive_maximum={WINDOW}")
    gate = asyncio.Event()
    done = asyncio.Event()
    seen = 0

    if batch:

        async def handle_batch(items: list[dict[str, Any]]) -> None:
            nonlocal seen
            if not gate.is_set():
                await gate.wait()
            seen += len(items)
            if seen >= n:
                done.set()

        # Per-key order would cap a batch at one event per key (64 here).
        app.add_subscription(
            handle_batch, topic, group="bench", batch_size=500, prefetch=WINDOW, ordering="none"
        )
    else:

        async def handle(data: dict[str, Any]) -> None:
            nonlocal seen
            if not gate.is_set():
                await gate.wait()
            seen += 1
            if seen >= n:
                done.set()

        app.add_subscription(handle, topic, group="bench")
    await app.start()
    await _fill(url, topic, n)
    started = time.perf_counter()
    gate.set()
    await _until(done)
    elapsed = time.perf_counter() - started
    await app.stop()
    await app.broker.close()
    return n, elapsed


async def tidings_consume_event(url: str, n: int) -> tuple[int, float]:
    return await _tidings_consume(url, n, batch=False)


async def tidings_consume_batch(url: str, n: int) -> tuple[int, float]:
    return await _tidings_consume(url, n, batch=True)


# -- raw aiomqtt ------------------------------------------------------------------------


def _same_publishes(n: int) -> list[tuple[bytes, Properties]]:
    """What tidings publishes per event: the encoded data and the user properties (built here,
    untimed; the raw cases pay only paho's packing)."""
    app = App("bench-raw", broker="mqtt://127.0.0.1:1")
    codec = app.codec
    out = []
    for i in range(n):
        event = app.event({"i": i}, type="Tick", key=f"k{i % 64}")
        body, headers = codec.encode(event)
        ours = _binding.write(Message(body, key=event.key, headers=headers), uuid.uuid4().hex)
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ContentType = ours.ContentType  # paho's own class, as a raw client has it
        properties.UserProperty = ours.UserProperty
        out.append((body, properties))
    return out


async def _raw_publish(url: str, n: int, concurrent: bool) -> tuple[int, float]:
    topic = _topic("rawpub")
    publishes = _same_publishes(n)
    async with _connected(url) as client:
        started = time.perf_counter()
        if concurrent:
            for start in range(0, n, CHUNK):
                await asyncio.gather(
                    *(
                        client.publish(topic, body, qos=1, properties=properties)
                        for body, properties in publishes[start : start + CHUNK]
                    )
                )
        else:
            for body, properties in publishes:
                await client.publish(topic, body, qos=1, properties=properties)
        elapsed = time.perf_counter() - started
    return n, elapsed


async def raw_publish_one(url: str, n: int) -> tuple[int, float]:
    return await _raw_publish(url, n, concurrent=False)


async def raw_publish_concurrent(url: str, n: int) -> tuple[int, float]:
    return await _raw_publish(url, n, concurrent=True)


async def raw_consume(url: str, n: int) -> tuple[int, float]:
    """A shared subscription at QoS 1, paho's automatic PUBACK, ``client.messages``."""
    topic = _topic("rawread")
    identifier = f"bench-raw-{uuid.uuid4().hex[:12]}"
    async with _connected(url, identifier, persistent=True) as client:
        await client.subscribe(f"$share/raw/{topic}", qos=1)
    await _fill(url, topic, n)  # queued for the offline session
    seen = 0
    started = time.perf_counter()
    async with _connected(url, identifier, persistent=True) as client:
        async for message in client.messages:
            if message.payload is not None:
                seen += 1
            if seen >= n:
                break
        elapsed = time.perf_counter() - started
    return n, elapsed


CASES: dict[str, Case] = {
    "tidings publish, one at a time": tidings_publish_one,
    f"tidings publish_batch ({CHUNK})": tidings_publish_batch,
    "tidings consume, per-event handler (group)": tidings_consume_event,
    "tidings consume, batch handler (ordering none)": tidings_consume_batch,
    "raw publish QoS 1, one at a time": raw_publish_one,
    f"raw publish QoS 1, {CHUNK} in flight": raw_publish_concurrent,
    "raw consume QoS 1 (shared, auto ack)": raw_consume,
}
