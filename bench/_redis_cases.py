"""The cases of ``bench_redis.py``: each returns (events, seconds) on a running redis-server.

Every consume case reads its own topic, filled beforehand (untimed) by the tidings
publisher (CloudEvents structured mode, JSON in the field ``v``, 4 partition
streams, 64 keys); the raw cases read the same streams. FastStream reads one
stream that its own publisher filled (its own format). A consume case ends when
its handler has seen every event and the group has nothing pending at the server
(:func:`_acked`): every ack reached Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio
import redis.exceptions

from tidings import App
from tidings.broker import Message
from tidings.brokers.redis._binding import Keys, entry_fields
from tidings.brokers.redis._scripts import PUBLISH

__all__ = ["CASES", "READ_COUNT", "Case"]

Case = Callable[[str, int], Awaitable[tuple[int, float]]]
_CHUNK = 1000
#: Entries one raw XREADGROUP asks for (FastStream's max_records too).
READ_COUNT = 100
_PARTITIONS = 4
_KEYS = Keys("tidings")


def _topic(label: str) -> str:
    return f"bench-{label}-{uuid.uuid4().hex[:6]}"


def _streams(topic: str) -> list[str]:
    return [_KEYS.stream(topic, p) for p in range(_PARTITIONS)]


def _client(url: str) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(url.split("?", 1)[0])


async def _fill(url: str, topic: str, n: int) -> None:
    app = App("bench-fill", broker=url)
    async with app:
        for start in range(0, n, _CHUNK):
            events = [
                app.event({"i": i}, type="Tick", key=f"k{i % 64}")
                for i in range(start, min(start + _CHUNK, n))
            ]
            await app.publish_batch(events, topic=topic)


async def _drop(url: str, *keys: str) -> None:
    client = _client(url)
    try:
        await client.delete(*keys)
    finally:
        await client.aclose()


async def _acked(url: str, streams: list[str], group: str) -> None:
    """Wait until ``group`` has nothing pending on ``streams`` (every ack reached Redis)."""
    client = _client(url)
    try:
        while True:
            pending = 0
            for stream in streams:
                summary: Any = await client.xpending(stream, group)
                pending += summary["pending"]
            if not pending:
                return
            await asyncio.sleep(0.002)
    finally:
        await client.aclose()


async def _until(done: asyncio.Event, timeout: float = 600.0) -> None:
    await asyncio.wait_for(done.wait(), timeout)


# -- tidings --------------------------------------------------------------------------


async def _tidings_publish(url: str, n: int, batch: bool) -> tuple[int, float]:
    topic = _topic("pub")
    app = App("bench-pub", broker=url)
    async with app:
        events = [app.event({"i": i}, type="Tick", key=f"k{i % 64}") for i in range(n)]
        await app.publish({"i": -1}, topic=topic, type="Tick")  # stores the topic
        started = time.perf_counter()
        if batch:
            for start in range(0, n, _CHUNK):
                await app.publish_batch(events[start : start + _CHUNK], topic=topic)
        else:
            for event in events:
                await app.publish(event, topic=topic)
        elapsed = time.perf_counter() - started
    await _drop(url, *_streams(topic))
    return n, elapsed


async def tidings_publish_one(url: str, n: int) -> tuple[int, float]:
    return await _tidings_publish(url, n, batch=False)


async def tidings_publish_batch(url: str, n: int) -> tuple[int, float]:
    return await _tidings_publish(url, n, batch=True)


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
    await _acked(url, _streams(topic), "bench")
    elapsed = time.perf_counter() - started
    await app.stop()
    await app.broker.close()
    await _drop(url, *_streams(topic))
    return n, elapsed


async def tidings_consume_event(url: str, n: int) -> tuple[int, float]:
    return await _tidings_consume(url, n, batch=False)


async def tidings_consume_batch(url: str, n: int) -> tuple[int, float]:
    return await _tidings_consume(url, n, batch=True)


# -- raw redis-py ----------------------------------------------------------------------


def _same_entries(n: int) -> list[tuple[str, dict[bytes | str, bytes | str]]]:
    """What tidings writes per event (the encoded event in ``v``, the key in ``k``)."""
    app = App("bench-raw", broker="redis://127.0.0.1:1")
    codec = app.codec
    out = []
    for i in range(n):
        event = app.event({"i": i}, type="Tick", key=f"k{i % 64}")
        body, headers = codec.encode(event)
        fields = entry_fields(Message(body, key=event.key, headers=headers))[1:]
        out.append((f"{i % _PARTITIONS}", dict(zip(fields[::2], fields[1::2], strict=True))))
    return out


async def _raw_publish(
    url: str, n: int, pipelined: bool, script: bool = False
) -> tuple[int, float]:
    topic = _topic("rawpub")
    streams = _streams(topic)
    entries = [(streams[int(p)], fields) for p, fields in _same_entries(n)]
    client = _client(url)
    started = time.perf_counter()
    if script:
        # tidings' own publish script, called as bare redis-py would: what the
        # server-side offset assignment costs before any tidings code runs.
        publish = client.register_script(PUBLISH)
        for stream, fields in entries:
            flat = [part for pair in fields.items() for part in pair]
            await publish(keys=[stream], args=[0, 0, len(flat), *flat])
    elif pipelined:
        for start in range(0, n, _CHUNK):
            async with client.pipeline(transaction=False) as pipe:
                for stream, fields in entries[start : start + _CHUNK]:
                    pipe.xadd(stream, fields)
                await pipe.execute()
    else:
        for stream, fields in entries:
            await client.xadd(stream, fields)
    elapsed = time.perf_counter() - started
    await client.delete(*streams)
    await client.aclose()
    return n, elapsed


async def raw_xadd_one(url: str, n: int) -> tuple[int, float]:
    return await _raw_publish(url, n, pipelined=False)


async def raw_script_one(url: str, n: int) -> tuple[int, float]:
    return await _raw_publish(url, n, pipelined=False, script=True)


async def raw_xadd_pipelined(url: str, n: int) -> tuple[int, float]:
    return await _raw_publish(url, n, pipelined=True)


async def _raw_consume(url: str, n: int, ack_each: bool) -> tuple[int, float]:
    topic = _topic("rawread")
    await _fill(url, topic, n)
    streams = _streams(topic)
    client = _client(url)
    for stream in streams:
        await client.xgroup_create(stream, "raw", "0")
    started = time.perf_counter()
    seen = 0
    while seen < n:
        reply: Any = await client.xreadgroup(
            "raw", "c1", dict.fromkeys(streams, ">"), count=READ_COUNT, block=100
        )
        for stream, entries in reply or []:
            ids = [stream_id for stream_id, _ in entries]
            seen += len(ids)
            if ack_each:
                for stream_id in ids:
                    await client.xack(stream, "raw", stream_id)
            else:
                await client.xack(stream, "raw", *ids)
    elapsed = time.perf_counter() - started
    await client.delete(*streams)
    await client.aclose()
    return n, elapsed


async def raw_read_ack_each(url: str, n: int) -> tuple[int, float]:
    return await _raw_consume(url, n, ack_each=True)


async def raw_read_ack_batch(url: str, n: int) -> tuple[int, float]:
    return await _raw_consume(url, n, ack_each=False)


# -- FastStream -------------------------------------------------------------------------


async def faststream_publish(url: str, n: int) -> tuple[int, float]:
    """FastStream's publisher, one event at a time, into one stream."""
    from faststream.redis import RedisBroker

    stream = _topic("fspub")
    broker = RedisBroker(url.split("?", 1)[0], logger=None)
    await broker.connect()
    started = time.perf_counter()
    for i in range(n):
        await broker.publish({"i": i}, stream=stream)
    elapsed = time.perf_counter() - started
    await broker.stop()
    await _drop(url, stream)
    return n, elapsed


async def faststream_consume(url: str, n: int) -> tuple[int, float]:
    """A FastStream stream subscriber in a consumer group (acks each message after the handler)."""
    from faststream.redis import RedisBroker, StreamSub

    stream = _topic("fsread")
    broker = RedisBroker(url.split("?", 1)[0], logger=None)
    await broker.connect()
    client = _client(url)
    for start in range(0, n, _CHUNK):  # untimed: FastStream's own format
        async with client.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + _CHUNK, n)):
                await broker.publish({"i": i}, stream=stream, pipeline=pipe)
            await pipe.execute()
    with contextlib.suppress(redis.exceptions.ResponseError):
        await client.xgroup_create(stream, "fs", "0")
    await client.aclose()
    done = asyncio.Event()
    seen = 0

    @broker.subscriber(stream=StreamSub(stream, group="fs", consumer="c1", max_records=READ_COUNT))
    async def handle(body: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        if seen >= n:
            done.set()

    started = time.perf_counter()
    await broker.start()
    await _until(done)
    await _acked(url, [stream], "fs")
    elapsed = time.perf_counter() - started
    await broker.stop()
    await _drop(url, stream)
    return n, elapsed


CASES: dict[str, Case] = {
    "tidings publish, one at a time": tidings_publish_one,
    "tidings publish_batch (1000)": tidings_publish_batch,
    "tidings consume, per-event handler": tidings_consume_event,
    "tidings consume, batch handler (ordering none)": tidings_consume_batch,
    "raw XADD, one at a time": raw_xadd_one,
    "raw EVALSHA of the publish script, one at a time": raw_script_one,
    "raw XADD, pipelined (1000)": raw_xadd_pipelined,
    "raw XREADGROUP + XACK each": raw_read_ack_each,
    "raw XREADGROUP + XACK per batch": raw_read_ack_batch,
    "FastStream publish, one at a time": faststream_publish,
    "FastStream stream subscriber (group)": faststream_consume,
}
