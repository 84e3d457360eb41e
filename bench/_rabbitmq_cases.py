"""The cases of ``bench_rabbitmq.py``: each returns (events, seconds) on a running RabbitMQ.

Every case declares what tidings declares for a topic (a durable topic
exchange whose alternate exchange leads to a quorum queue ``<topic>.unrouted``)
and, for the consume cases, the group ``bench``'s 4 partition queues (durable
quorum queues with single active consumer, bound ``<p>.#``). Every message is
persistent and every publish waits for its publisher confirm (``mandatory``,
as tidings publishes). The raw cases publish exactly what tidings publishes
(binary CloudEvents: ``cloudEvents_`` headers, the key in ``tidings-key``, a
``message_id``, a timestamp, routing key ``<partition>.<type>``).

Every consume case except FastStream's reads its 4 partition queues, filled
beforehand (untimed) by the tidings publisher; FastStream reads one quorum
queue its own publisher filled (its own format, persistent, confirmed). A
consume case ends when the handler has seen every event and its last ack was
written to the socket (aiormq awaits that drain; the raw consumers add a round
trip on each channel); afterwards (untimed) the consumers' channels are closed,
which would put back anything not acked, and the queues must be empty (else a
warning).

Names are ``bench-<run>-<case>-...``; every case deletes the exchanges and
queues it declared.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from tidings import App
from tidings.broker import Message
from tidings.brokers._partitioning import partition_for
from tidings.brokers.rabbitmq import RabbitBroker
from tidings.brokers.rabbitmq._binding import routing_key, write
from tidings.brokers.rabbitmq._topology import (
    PARTITION,
    QUORUM,
    declare_partition,
    declare_topic,
    groups_exchange,
    history_queue,
    members_queue,
    partition_queue,
    tombstones_queue,
    unrouted,
)
from tidings.brokers.rabbitmq._url import RabbitOptions

__all__ = ["BATCH", "CASES", "CHUNK", "PREFETCH", "Case"]

Case = Callable[[str, int], Awaitable[tuple[int, float]]]
#: Events per publish_batch / per batch of raw publishes awaited together.
CHUNK = 1000
#: Per-event consumers: tidings' default prefetch (per partition channel in tidings and raw).
PREFETCH = 256
#: Batch consumers: tidings' batch_size, and raw acks (multiple=True) per this many.
BATCH = 500
#: Batch consumers' prefetch (tidings' subscription option; raw per channel).
BATCH_PREFETCH = 1000
_PARTITIONS = 4
_GROUP = "bench"
_RUN = uuid.uuid4().hex[:6]


def _topic(label: str) -> str:
    return f"bench-{_RUN}-{label}-{uuid.uuid4().hex[:4]}"


def _bare(url: str) -> str:
    return url.split("?", 1)[0]


async def _declare(url: str, topic: str, group: bool) -> None:
    """The topic's exchanges and ``unrouted`` queue, and the group's partition queues."""
    options = RabbitOptions.from_url(url)  # the same history streams tidings keeps
    connection = await aio_pika.connect(_bare(url))
    async with connection:
        channel = await connection.channel()
        await declare_topic(
            channel, topic, _PARTITIONS, options.retention, options.retention_bytes, options.history
        )
        if group:
            for p in range(_PARTITIONS):
                await declare_partition(channel, topic, _GROUP, p)


async def _drop(url: str, topic: str | None = None, queues: Sequence[str] = ()) -> None:
    """Delete ``topic``'s exchanges and queues (the group's too), and ``queues``."""
    names = list(queues)
    exchanges: list[str] = []
    if topic is not None:
        names += [unrouted(topic), members_queue(topic, _GROUP)]
        names += [partition_queue(topic, _GROUP, p) for p in range(_PARTITIONS)]
        # The history streams hold file handles on the server: never leave them behind.
        names += [history_queue(topic, p) for p in range(_PARTITIONS)]
        names.append(tombstones_queue(topic))
        exchanges += [topic, unrouted(topic), groups_exchange(topic)]
    connection = await aio_pika.connect(_bare(url))
    async with connection:
        for name in names:
            channel = await connection.channel()  # a failed delete closes its channel
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
            with contextlib.suppress(Exception):
                await channel.close()
        for name in exchanges:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(name)
            with contextlib.suppress(Exception):
                await channel.close()


async def _left(url: str, queues: Sequence[str], arguments: Any) -> int:
    """Messages still ready in ``queues`` (after their consumers' channels closed)."""
    connection = await aio_pika.connect(_bare(url))
    async with connection:
        channel = await connection.channel()
        total = 0
        for name in queues:
            queue = await channel.declare_queue(name, durable=True, arguments=arguments)
            total += int(queue.declaration_result.message_count or 0)
        return total


async def _all_acked(url: str, queues: Sequence[str], arguments: Any = PARTITION) -> None:
    """Nothing left in ``queues`` once their consumers are gone: every ack reached RabbitMQ
    (else a warning: the run goes on)."""
    left = 0
    for _ in range(20):  # a closed channel's unacked messages return asynchronously
        await asyncio.sleep(0.05)
        left = await _left(url, queues, arguments)
        if left:
            break
    if left:
        print(
            f"  warning: {left} messages came back to {queues[0]}... after the consumers "
            "closed (an ack lost, or not processed by RabbitMQ before the close)",
            file=sys.stderr,
        )


def _partitions(topic: str) -> list[str]:
    return [partition_queue(topic, _GROUP, p) for p in range(_PARTITIONS)]


async def _fill(url: str, topic: str, n: int) -> None:
    """The topic and its group's queues, then ``n`` events from the tidings publisher."""
    await _declare(url, topic, group=True)
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
        await app.publish({"i": -1}, topic=topic, type="Tick")  # declares the topic
        started = time.perf_counter()
        if batch:
            for start in range(0, n, CHUNK):
                await app.publish_batch(events[start : start + CHUNK], topic=topic)
        else:
            for event in events:
                await app.publish(event, topic=topic)
        elapsed = time.perf_counter() - started
    await _drop(url, topic)
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
            handle_batch,
            topic,
            group=_GROUP,
            batch_size=BATCH,
            prefetch=BATCH_PREFETCH,
            ordering="none",
        )
    else:

        async def handle(data: dict[str, Any]) -> None:
            nonlocal seen
            seen += 1
            if seen >= n:
                done.set()

        app.add_subscription(handle, topic, group=_GROUP)
    started = time.perf_counter()
    await app.start()
    await _until(done)
    # The handler saw the last event; its ack (after the handler returns) counts too.
    while sum(s.handled for s in app.stats().values()) < n:  # noqa: ASYNC110 - no event
        await asyncio.sleep(0)
    elapsed = time.perf_counter() - started
    await app.stop()
    await app.broker.close()
    await _all_acked(url, _partitions(topic))
    await _drop(url, topic)
    return n, elapsed


async def tidings_consume_event(url: str, n: int) -> tuple[int, float]:
    return await _tidings_consume(url, n, batch=False)


async def tidings_consume_batch(url: str, n: int) -> tuple[int, float]:
    return await _tidings_consume(url, n, batch=True)


# -- raw aio-pika ----------------------------------------------------------------------


def _same_messages(n: int) -> list[tuple[str, bytes, dict[str, Any], str | None, str]]:
    """What tidings publishes per event: (routing key, body, headers, content type, id)."""
    app = App("bench-raw")
    codec = RabbitBroker.from_url("amqp://127.0.0.1:1").default_codec()
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        event = app.event({"i": i}, type="Tick", key=f"k{i % 64}")
        body, headers = codec.encode(event)
        message = Message(body, headers, event.key)
        amqp = write(message, now, structured=False)
        assert event.key is not None and amqp.message_id is not None
        key = routing_key(partition_for(event.key, _PARTITIONS), message)
        out.append((key, amqp.body, dict(amqp.headers), amqp.content_type, amqp.message_id))
    return out


async def _raw_channel(url: str) -> tuple[aio_pika.abc.AbstractConnection, AbstractChannel]:
    connection = await aio_pika.connect(_bare(url))
    return connection, await connection.channel(publisher_confirms=True, on_return_raises=True)


async def _raw_publish(url: str, n: int, batched: bool) -> tuple[int, float]:
    topic = _topic("rawpub")
    messages = _same_messages(n)
    await _declare(url, topic, group=False)
    connection, channel = await _raw_channel(url)
    exchange = await channel.get_exchange(topic, ensure=False)
    persistent = aio_pika.DeliveryMode.PERSISTENT

    def amqp(
        body: bytes, headers: dict[str, Any], content: str | None, mid: str, now: datetime
    ) -> aio_pika.Message:
        return aio_pika.Message(
            body,
            headers=headers,
            content_type=content,
            delivery_mode=persistent,
            message_id=mid,
            timestamp=now,
        )

    started = time.perf_counter()
    if batched:
        for start in range(0, n, CHUNK):
            now = datetime.now(UTC)
            await asyncio.gather(
                *(
                    exchange.publish(amqp(body, headers, content, mid, now), key, mandatory=True)
                    for key, body, headers, content, mid in messages[start : start + CHUNK]
                )
            )
    else:
        for key, body, headers, content, mid in messages:
            now = datetime.now(UTC)
            await exchange.publish(amqp(body, headers, content, mid, now), key, mandatory=True)
    elapsed = time.perf_counter() - started
    await connection.close()
    await _drop(url, topic)
    return n, elapsed


async def raw_publish_one(url: str, n: int) -> tuple[int, float]:
    return await _raw_publish(url, n, batched=False)


async def raw_publish_batched(url: str, n: int) -> tuple[int, float]:
    return await _raw_publish(url, n, batched=True)


async def _raw_consume(url: str, n: int, ack_each: bool) -> tuple[int, float]:
    """One channel per partition queue (as tidings), a callback consumer on each."""
    topic = _topic("rawread")
    await _fill(url, topic, n)
    connection = await aio_pika.connect(_bare(url))
    done = asyncio.Event()
    seen = 0
    channels: list[AbstractChannel] = []
    last: dict[int, AbstractIncomingMessage] = {}  # batched: the newest unacked, by channel

    async def ack_each_message(message: AbstractIncomingMessage) -> None:
        nonlocal seen
        await message.ack()
        seen += 1
        if seen >= n:
            done.set()

    def batched(index: int) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        count = 0

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal seen, count
            seen += 1
            count += 1
            final = seen == n  # decided before any await: another callback may run then
            if count >= BATCH:
                count = 0
                last.pop(index, None)
                await message.ack(multiple=True)
            else:
                last[index] = message
            if final:
                held = list(last.values())  # what no full batch acked yet
                last.clear()
                for newest in held:
                    await newest.ack(multiple=True)
                done.set()

        return on_message

    prefetch = PREFETCH if ack_each else BATCH_PREFETCH
    started = time.perf_counter()
    for index, name in enumerate(_partitions(topic)):
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.declare_queue(name, durable=True, arguments=PARTITION)
        await queue.consume(ack_each_message if ack_each else batched(index), no_ack=False)
        channels.append(channel)
    await _until(done)
    for channel in channels:  # a round trip after the acks: the channel took them
        await channel.set_qos(prefetch_count=prefetch)
    elapsed = time.perf_counter() - started
    await connection.close()
    await _all_acked(url, _partitions(topic))
    await _drop(url, topic)
    return n, elapsed


async def raw_consume_ack_each(url: str, n: int) -> tuple[int, float]:
    return await _raw_consume(url, n, ack_each=True)


async def raw_consume_ack_batched(url: str, n: int) -> tuple[int, float]:
    return await _raw_consume(url, n, ack_each=False)


# -- FastStream -------------------------------------------------------------------------


def _faststream(url: str) -> Any:
    from faststream.rabbit import RabbitBroker as FastBroker
    from faststream.rabbit.schemas import Channel

    return FastBroker(_bare(url), logger=None, default_channel=Channel(prefetch_count=PREFETCH))


def _fs_queue(name: str) -> Any:
    from faststream.rabbit import QueueType, RabbitQueue

    return RabbitQueue(name, queue_type=QueueType.QUORUM, durable=True)


async def faststream_publish(url: str, n: int) -> tuple[int, float]:
    """FastStream's publisher, one persistent event at a time, into a quorum queue."""
    name = _topic("fspub")
    broker = _faststream(url)
    await broker.connect()
    await broker.declare_queue(_fs_queue(name))
    started = time.perf_counter()
    for i in range(n):
        await broker.publish({"i": i}, queue=name, persist=True)
    elapsed = time.perf_counter() - started
    await broker.stop()
    await _drop(url, queues=[name])
    return n, elapsed


async def faststream_consume(url: str, n: int) -> tuple[int, float]:
    """A FastStream subscriber on a quorum queue (it acks each message after the handler)."""
    name = _topic("fsread")
    broker = _faststream(url)
    await broker.connect()
    await broker.declare_queue(_fs_queue(name))
    for start in range(0, n, CHUNK):  # untimed: FastStream's own format
        await asyncio.gather(
            *(
                broker.publish({"i": i}, queue=name, persist=True)
                for i in range(start, min(start + CHUNK, n))
            )
        )
    done = asyncio.Event()
    seen = 0

    @broker.subscriber(_fs_queue(name))
    async def handle(body: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        if seen >= n:
            done.set()

    started = time.perf_counter()
    await broker.start()
    await _until(done)
    await asyncio.sleep(0)  # FastStream acks after the handler returns
    elapsed = time.perf_counter() - started
    await broker.stop()
    await _all_acked(url, [name], QUORUM)
    await _drop(url, queues=[name])
    return n, elapsed


CASES: dict[str, Case] = {
    "tidings publish, one at a time": tidings_publish_one,
    f"tidings publish_batch ({CHUNK})": tidings_publish_batch,
    "tidings consume, per-event handler": tidings_consume_event,
    "tidings consume, batch handler (ordering none)": tidings_consume_batch,
    "raw aio-pika publish + confirm, one at a time": raw_publish_one,
    f"raw aio-pika publish, confirms per batch ({CHUNK})": raw_publish_batched,
    "raw aio-pika consume, ack each": raw_consume_ack_each,
    f"raw aio-pika consume, ack multiple per {BATCH}": raw_consume_ack_batched,
    "FastStream publish, one at a time": faststream_publish,
    "FastStream subscriber (quorum queue)": faststream_consume,
}
