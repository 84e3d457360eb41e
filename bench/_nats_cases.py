"""The cases of ``bench_nats.py``: each returns (events, seconds) on a running nats-server.

Every consume case reads its own stream, filled beforehand (untimed) by the
tidings publisher with CloudEvents in binary mode (``ce-`` headers, JSON data),
so every client reads the same messages. A case ends when its handler has seen
every event, every ack is settled (tidings: after the handler returns) and has
reached the server (:func:`_acks_reached`, the same for every client).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.js import api

from tidings import App
from tidings.brokers.nats import NatsBroker
from tidings.brokers.nats._streams import stream_name

__all__ = ["CASES", "Case"]

Case = Callable[[str, int], Awaitable[tuple[int, float]]]
_CHUNK = 1000


def _topic(label: str) -> str:
    return f"bench-{label}-{uuid.uuid4().hex[:6]}"


async def _fill(url: str, topic: str, n: int) -> None:
    app = App("bench-fill", broker=url)
    async with app:
        for start in range(0, n, _CHUNK):
            events = [
                app.event({"i": i}, type="Tick", key=f"k{i % 64}")
                for i in range(start, min(start + _CHUNK, n))
            ]
            await app.publish_batch(events, topic=topic)


async def _drop(url: str, topic: str) -> None:
    client = await nats.connect(url)
    try:
        await client.jsm().delete_stream(stream_name(topic))
    finally:
        await client.close()


async def _until(done: asyncio.Event, timeout: float = 600.0) -> None:
    await asyncio.wait_for(done.wait(), timeout)


async def _acks_reached(client: Any) -> None:
    """Every ack published so far has reached the server (for every case alike).

    nats-py writes a flush's PING at once, but publishes from its outbound buffer
    (its flusher task): wait until that buffer is written, then for the PONG.
    """
    while client.pending_data_size:  # noqa: ASYNC110 - nats-py signals no such event
        await asyncio.sleep(0)
    await client.flush()


# -- tidings --------------------------------------------------------------------------


async def tidings_publish(url: str, n: int) -> tuple[int, float]:
    topic = _topic("pub")
    app = App("bench-pub", broker=url)
    async with app:
        batches = [
            [
                app.event({"i": i}, type="Tick", key=f"k{i % 64}")
                for i in range(start, min(start + _CHUNK, n))
            ]
            for start in range(0, n, _CHUNK)
        ]
        await app.publish_batch(batches[0][:1], topic=topic)  # creates the stream
        started = time.perf_counter()
        for events in batches:
            await app.publish_batch(events, topic=topic)
        elapsed = time.perf_counter() - started
    await _drop(url, topic)
    return n, elapsed


async def _tidings_consume(url: str, n: int, batch: bool) -> tuple[int, float]:
    topic = _topic("batch" if batch else "event")
    await _fill(url, topic, n)
    app = App("bench-consume", broker=url)
    done = asyncio.Event()
    seen = 0

    if batch:

        async def handle_batch(items: list[dict[str, Any]]) -> None:
            nonlocal seen
            seen += len(items)
            if seen >= n:
                done.set()

        # Per-key order would cap a batch at one event per key (64 here).
        app.add_subscription(
            handle_batch, topic, group="bench", batch_size=500, prefetch=1000, ordering="none"
        )
    else:

        async def handle(data: dict[str, Any]) -> None:
            nonlocal seen
            seen += 1
            if seen >= n:
                done.set()

        app.add_subscription(handle, topic, group="bench")
    started = time.perf_counter()
    await app.start()
    await _until(done)
    # The handler saw the last event; its ack (after the handler returns) counts too.
    while sum(s.handled for s in app.stats().values()) < n:  # noqa: ASYNC110 - no event
        await asyncio.sleep(0)
    broker = app.broker
    assert isinstance(broker, NatsBroker) and broker.client is not None
    await _acks_reached(broker.client)
    elapsed = time.perf_counter() - started
    await app.stop()
    await broker.close()
    await _drop(url, topic)
    return n, elapsed


async def tidings_consume_event(url: str, n: int) -> tuple[int, float]:
    return await _tidings_consume(url, n, batch=False)


async def tidings_consume_batch(url: str, n: int) -> tuple[int, float]:
    return await _tidings_consume(url, n, batch=True)


# -- the raw nats-py client ---------------------------------------------------------------


def _same_messages(n: int, topic: str) -> list[tuple[str, bytes, dict[str, str]]]:
    """What tidings publishes: binary CloudEvents, the event id as Nats-Msg-Id, the key."""
    app = App("bench-raw")
    codec = NatsBroker.from_url("nats://127.0.0.1:1").default_codec()
    out = []
    for i in range(n):
        event = app.event({"i": i}, type="Tick", key=f"k{i % 64}")
        body, headers = codec.encode(event)
        headers["Nats-Msg-Id"] = event.id
        headers["Tidings-Key"] = f"k{i % 64}"
        out.append((f"{topic}.{i % 4}", body, headers))
    return out


async def raw_publish_one(url: str, n: int) -> tuple[int, float]:
    """js.publish, awaiting each acknowledgement (the same messages tidings publishes)."""
    topic = _topic("rawpub1")
    messages = _same_messages(n, topic)
    client = await nats.connect(url)
    js = client.jetstream()
    await js.add_stream(name=stream_name(topic), subjects=[f"{topic}.*"])
    started = time.perf_counter()
    for subject, body, headers in messages:
        await js.publish(subject, body, headers=headers)
    elapsed = time.perf_counter() - started
    await client.jsm().delete_stream(stream_name(topic))
    await client.close()
    return n, elapsed


async def raw_publish_async(url: str, n: int) -> tuple[int, float]:
    """js.publish_async with up to 4000 acknowledgements pending (the same messages)."""
    topic = _topic("rawpub")
    messages = _same_messages(n, topic)
    client = await nats.connect(url)
    js = client.jetstream(publish_async_max_pending=4000)
    await js.add_stream(name=stream_name(topic), subjects=[f"{topic}.*"])
    started = time.perf_counter()
    for subject, body, headers in messages:
        await js.publish_async(subject, body, headers=headers)
    await js.publish_async_completed()
    elapsed = time.perf_counter() - started
    await client.jsm().delete_stream(stream_name(topic))
    await client.close()
    return n, elapsed


async def raw_pull_ack_each(url: str, n: int) -> tuple[int, float]:
    """The one-at-a-time path: pull fetch(100), handle and ack each message."""
    topic = _topic("rawpull")
    await _fill(url, topic, n)
    client = await nats.connect(url)
    js = client.jetstream()
    started = time.perf_counter()
    sub = await js.pull_subscribe(f"{topic}.*", durable="raw", stream=stream_name(topic))
    seen = 0
    while seen < n:
        for msg in await sub.fetch(100, timeout=5):
            seen += 1
            await msg.ack()
    await _acks_reached(client)
    elapsed = time.perf_counter() - started
    await client.close()
    await _drop(url, topic)
    return n, elapsed


async def raw_push_batched_acks(url: str, n: int) -> tuple[int, float]:
    """The batched path: a push consumer acking every 500th message (ack policy all)."""
    topic = _topic("rawpush")
    await _fill(url, topic, n)
    client = await nats.connect(url)
    js = client.jetstream()
    done = asyncio.Event()
    seen = 0

    async def on_message(msg: Any) -> None:
        nonlocal seen
        seen += 1
        if seen % 500 == 0 or seen >= n:
            await msg.ack()
        if seen >= n:
            done.set()

    started = time.perf_counter()
    await js.subscribe(
        f"{topic}.*",
        durable="rawpush",
        stream=stream_name(topic),
        cb=on_message,
        manual_ack=True,
        config=api.ConsumerConfig(ack_policy=api.AckPolicy.ALL, max_ack_pending=20_000),
    )
    await _until(done)
    await _acks_reached(client)
    elapsed = time.perf_counter() - started
    await client.close()
    await _drop(url, topic)
    return n, elapsed


# -- FastStream ------------------------------------------------------------------------


async def _faststream(url: str, n: int, pull: bool) -> tuple[int, float]:
    from faststream.nats import JStream, NatsBroker, PullSub

    topic = _topic("fspull" if pull else "fspush")
    await _fill(url, topic, n)
    broker = NatsBroker(url, logger=None)
    done = asyncio.Event()
    seen = 0

    extra: dict[str, Any] = {"pull_sub": PullSub(batch_size=100)} if pull else {}

    @broker.subscriber(
        f"{topic}.*",
        stream=JStream(stream_name(topic), declare=False),
        durable="fs",
        **extra,
    )
    async def handle(body: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        if seen >= n:
            done.set()

    started = time.perf_counter()
    await broker.start()
    await _until(done)
    elapsed = time.perf_counter() - started
    await broker.stop()
    await _drop(url, topic)
    return n, elapsed


async def faststream_pull(url: str, n: int) -> tuple[int, float]:
    return await _faststream(url, n, pull=True)


async def faststream_push(url: str, n: int) -> tuple[int, float]:
    return await _faststream(url, n, pull=False)


CASES: dict[str, Case] = {
    "tidings publish (batches of 1000)": tidings_publish,
    "tidings consume, per-event handler": tidings_consume_event,
    "tidings consume, batch handler (ordering none)": tidings_consume_batch,
    "raw nats-py publish, one at a time": raw_publish_one,
    "raw nats-py publish_async": raw_publish_async,
    "raw nats-py pull fetch + ack each": raw_pull_ack_each,
    "raw nats-py push, batched acks": raw_push_batched_acks,
    "FastStream JetStream pull": faststream_pull,
    "FastStream JetStream push": faststream_push,
}
