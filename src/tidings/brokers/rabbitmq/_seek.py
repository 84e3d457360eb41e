"""Moving a group (replay): its partition queues refilled from the topic's history.

A group reads quorum queues, which hold what it has not handled yet; the
topic's history streams hold everything for the retention. Seeking a group
to a position empties each of its partition queues (``queue.purge``: what is
waiting, not what a member holds unacknowledged) and its retries waiting in
delay queues this client knows, then copies the partition's history from the
position to its end into the queue, in order, with publisher confirms. Each
copy keeps the event's ``message_id`` (its delivery id) and counts attempts
from 1 again.

An offset is a partition stream's offset (each partition counts from 0); a
time is the first event published at or after it (found by bisection on the
``tidings-time`` header, which grows with the offset). Events published while
a seek copies may reach the queue before older copies of the same key: seek
a group while its topic is quiet for a per-key order across the move.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import AMQPError

from tidings.broker import Position
from tidings.brokers.rabbitmq._binding import copy, read
from tidings.brokers.rabbitmq._history import Bounds, StreamReader
from tidings.brokers.rabbitmq._topology import history_queue, partition_queue

__all__ = ["refill", "start_offset"]

_PAGE = 1000


async def start_offset(
    streams: StreamReader, topic: str, partition: int, bounds: Bounds, position: Position
) -> int:
    """The first offset of ``partition`` at ``position``."""
    if position == "beginning":
        return bounds.first
    if position == "end":
        return bounds.head
    if isinstance(position, datetime):
        return await _since(streams, history_queue(topic, partition), bounds, position.timestamp())
    return min(max(int(position), bounds.first), bounds.head)


async def _since(streams: StreamReader, stream: str, bounds: Bounds, when: float) -> int:
    low, high = bounds.first, bounds.head  # the answer is in [low, high]
    while low < high:
        middle = (low + high) // 2
        found = await streams.read(stream, middle, bounds.head, 1)
        if found and read(found[0].message)[3] < when:
            low = found[0].offset + 1
        else:
            high = middle  # (offsets from middle to the one found hold nothing)
    return low


async def refill(
    channel: AbstractChannel,
    streams: StreamReader,
    topic: str,
    group: str,
    partition: int,
    start: int,
    bounds: Bounds,
    delays: set[str],
) -> int:
    """Empty the group's queue of ``partition`` and copy the history from ``start``;
    return how many events were copied."""
    queue = partition_queue(topic, group, partition)
    await (await channel.get_queue(queue, ensure=False)).purge()
    for delay in [d for d in delays if d.startswith(f"{queue}.delay.")]:
        try:
            await (await channel.get_queue(delay, ensure=False)).purge()
        except AMQPError:  # expired meanwhile (closes the channel: the caller reopens)
            delays.discard(delay)
            raise
    stream = history_queue(topic, partition)
    copied = 0
    offset = start
    while offset < bounds.head:
        page = await streams.read(stream, offset, bounds.head, _PAGE)
        if not page:
            break
        exchange = channel.default_exchange
        # One channel sends in call order: the copies keep the history's order.
        await asyncio.gather(*(exchange.publish(copy(e.message, 0), queue) for e in page))
        copied += len(page)
        offset = page[-1].offset + 1
    return copied
