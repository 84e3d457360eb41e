"""The cases of ``bench_stomp.py``: each returns (events, seconds) on a running RabbitMQ
with its STOMP plugin.

Every event is the same CloudEvent (binary mode: ``cloudEvents_`` headers, JSON
payload, 64 keys). The raw cases send exactly the frames tidings sends (the same
headers, built beforehand), with a receipt each, through stomp.py (the most used
Python STOMP client: a receiver thread per connection, listener callbacks) and
through this adapter's own framing without tidings on top (``StompConnection``).
Consume cases read a group's durable quorum queue filled beforehand (untimed),
``ack:client-individual`` with ``prefetch-count`` 256, one ``ACK`` per event; the
clock stops at the last event handled.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import stomp

from tidings import App
from tidings.broker import Message
from tidings.brokers.stomp import StompBroker
from tidings.brokers.stomp._binding import write
from tidings.brokers.stomp._frames import StompConnection

__all__ = ["CASES", "CHUNK", "Case"]

Case = Callable[[str, int], Awaitable[tuple[int, float]]]
#: Events per batch (tidings publish_batch, receipts awaited per batch in the raw cases).
CHUNK = 1000
PREFETCH = 256


def _name(label: str) -> str:
    return f"bench-{label}-{uuid.uuid4().hex[:6]}"


def _frames(url: str, n: int) -> list[tuple[dict[str, str], bytes]]:
    """``n`` events as tidings sends them on ``url``: (SEND headers without destination
    and receipt, body)."""
    app = App("bench", broker=url)
    codec = StompBroker.from_url(url).default_codec()
    out = []
    for i in range(n):
        event = app.event({"n": i, "note": "bench"}, type="Bench", key=f"k{i % 64}")
        value, headers = codec.encode(event)
        out.append((write(Message(value, headers, event.key), structured=False), value))
    return out


def _stomp_py(url: str, listener: stomp.ConnectionListener | None = None) -> Any:
    options = StompBroker.from_url(url).options
    connection = stomp.Connection12(
        [(options.host, options.port)], vhost=options.vhost, heartbeats=(0, 0)
    )
    if listener is not None:
        connection.set_listener("bench", listener)
    connection.connect(options.username, options.password, wait=True)
    return connection


def _group_headers(topic: str, queue: str) -> dict[str, str]:
    return {
        "durable": "true",
        "auto-delete": "false",
        "x-queue-name": queue,
        "x-queue-type": "quorum",
        "prefetch-count": str(PREFETCH),
    }


# -- publishing -------------------------------------------------------------------------


class _Receipts(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.count = 0
        self.want = 0
        self.reached = threading.Event()

    def on_receipt(self, frame: Any) -> None:
        self.count += 1
        if self.count >= self.want:
            self.reached.set()

    def wait_for(self, total: int) -> None:
        self.want = total
        if self.count < total:
            self.reached.clear()
            if self.count < total:
                self.reached.wait(60)


def _stomp_py_publish(url: str, n: int, batch: int) -> tuple[int, float]:
    frames = _frames(url, n)
    receipts = _Receipts()
    connection = _stomp_py(url, receipts)
    destination = f"/topic/{_name('raw-pub')}"
    try:
        started = time.perf_counter()
        for start in range(0, n, batch):
            for number, (headers, body) in enumerate(frames[start : start + batch], start):
                connection.send(destination, body, headers={**headers, "receipt": f"r{number}"})
            receipts.wait_for(min(start + batch, n))
        return n, time.perf_counter() - started
    finally:
        connection.disconnect()


async def stomp_py_publish_each(url: str, n: int) -> tuple[int, float]:
    return await asyncio.to_thread(_stomp_py_publish, url, n, 1)


async def stomp_py_publish_batch(url: str, n: int) -> tuple[int, float]:
    return await asyncio.to_thread(_stomp_py_publish, url, n, CHUNK)


async def _own(url: str) -> StompConnection:
    options = StompBroker.from_url(url).options
    return await StompConnection.open(
        options.host,
        options.port,
        login=options.username,
        passcode=options.password,
        vhost=options.vhost,
        heartbeat=options.heartbeat,
        timeout=options.connect_timeout,
    )


async def frames_publish_batch(url: str, n: int) -> tuple[int, float]:
    frames = _frames(url, n)
    connection = await _own(url)
    destination = f"/topic/{_name('frames-pub')}"
    try:
        started = time.perf_counter()
        for start in range(0, n, CHUNK):
            batch = [
                ({**headers, "destination": destination}, body)
                for headers, body in frames[start : start + CHUNK]
            ]
            await connection.send_many("SEND", batch)
        return n, time.perf_counter() - started
    finally:
        await connection.close()


async def tidings_publish_each(url: str, n: int) -> tuple[int, float]:
    app = App("bench", broker=url)
    topic = _name("pub")
    async with app:
        events = [
            app.event({"n": i, "note": "bench"}, type="Bench", key=f"k{i % 64}") for i in range(n)
        ]
        started = time.perf_counter()
        for event in events:
            await app.publish(event, topic=topic)
        return n, time.perf_counter() - started


async def tidings_publish_batch(url: str, n: int) -> tuple[int, float]:
    app = App("bench", broker=url)
    topic = _name("pub")
    async with app:
        events = [
            app.event({"n": i, "note": "bench"}, type="Bench", key=f"k{i % 64}") for i in range(n)
        ]
        started = time.perf_counter()
        for start in range(0, n, CHUNK):
            await app.publish_batch(events[start : start + CHUNK], topic=topic)
        return n, time.perf_counter() - started


# -- consuming --------------------------------------------------------------------------


async def _filled(url: str, n: int, group: str) -> str:
    """A topic whose group ``group`` has ``n`` events waiting in its queue (untimed)."""
    topic = _name("con")
    broker = StompBroker.from_url(url)
    await broker.connect()
    try:
        member = await broker.subscribe([topic], group)
        await member.close()  # the group's queue stays, bound to the topic
        frames = _frames(url, n)
        connection = broker.connection
        assert connection is not None
        for start in range(0, n, CHUNK):
            batch = [
                ({**headers, "destination": f"/topic/{topic}"}, body)
                for headers, body in frames[start : start + CHUNK]
            ]
            await connection.send_many("SEND", batch)
    finally:
        await broker.close()
    return topic


class _Acking(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0
        self.connection: Any = None
        self.done = threading.Event()

    def on_message(self, frame: Any) -> None:
        self.connection.ack(frame.headers["ack"])
        self.seen += 1
        if self.seen >= self.n:
            self.done.set()


def _stomp_py_consume(url: str, n: int, topic: str, queue: str) -> tuple[int, float]:
    listener = _Acking(n)
    connection = _stomp_py(url, listener)
    listener.connection = connection
    try:
        started = time.perf_counter()
        connection.subscribe(
            f"/topic/{topic}",
            "bench",
            ack="client-individual",
            headers=_group_headers(topic, queue),
        )
        listener.done.wait(300)
        return listener.seen, time.perf_counter() - started
    finally:
        connection.disconnect()


async def stomp_py_consume(url: str, n: int) -> tuple[int, float]:
    topic = await _filled(url, n, "bench")
    return await asyncio.to_thread(_stomp_py_consume, url, n, topic, f"{topic}.bench")


async def frames_consume(url: str, n: int) -> tuple[int, float]:
    topic = await _filled(url, n, "bench")
    connection = await _own(url)
    seen = 0
    done = asyncio.Event()

    def receive(frame: Any) -> None:
        nonlocal seen
        connection.write("ACK", {"id": frame.headers["ack"]})
        seen += 1
        if seen >= n:
            done.set()

    connection.handlers["bench"] = receive
    try:
        started = time.perf_counter()
        headers = {
            "id": "bench",
            "destination": f"/topic/{topic}",
            "ack": "client-individual",
            **_group_headers(topic, f"{topic}.bench"),
        }
        connection.write("SUBSCRIBE", headers)
        await asyncio.wait_for(done.wait(), 300)
        return seen, time.perf_counter() - started
    finally:
        await connection.close()


async def tidings_consume(url: str, n: int) -> tuple[int, float]:
    topic = await _filled(url, n, "bench")
    app = App("bench", broker=url)
    seen = 0
    done = asyncio.Event()

    @app.subscribe(topic, group="bench", prefetch=PREFETCH)
    async def handle(data: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        if seen >= n:
            done.set()

    started = time.perf_counter()
    async with app:
        await asyncio.wait_for(done.wait(), 300)
        elapsed = time.perf_counter() - started
    return seen, elapsed


CASES: dict[str, Case] = {
    "raw stomp.py publish, receipt awaited per event": stomp_py_publish_each,
    "tidings publish, one at a time": tidings_publish_each,
    f"raw stomp.py publish, receipts awaited per {CHUNK}": stomp_py_publish_batch,
    f"raw frames (own framing) publish, receipts awaited per {CHUNK}": frames_publish_batch,
    f"tidings publish_batch ({CHUNK})": tidings_publish_batch,
    "raw stomp.py consume, ACK each": stomp_py_consume,
    "raw frames (own framing) consume, ACK each": frames_consume,
    "tidings consume, per-event handler": tidings_consume,
}
