"""A group-less reader: an exclusive, server-named queue bound to every event.

It takes nothing from any group (a queue of its own), sees what is published
while it is open, and RabbitMQ deletes its queue when it closes. Its
deliveries are consumed without acks: settling them does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from tidings.broker import Delivery
from tidings.brokers.rabbitmq._binding import read
from tidings.brokers.rabbitmq._delivery import RabbitDelivery
from tidings.errors import BrokerUnavailable

__all__ = ["RabbitReader"]


class RabbitReader:
    """A :class:`~tidings.broker.Subscription` with ``group=None``."""

    def __init__(self, channel: AbstractChannel) -> None:
        self.channel = channel
        self.buffer: deque[RabbitDelivery] = deque()
        self.wake = asyncio.Event()
        self.closed = False

    async def start(self, topics: Sequence[str]) -> None:
        queue = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        for topic in topics:
            await queue.bind(topic, "#")
        await queue.consume(self._receive, no_ack=True)

    async def _receive(self, incoming: AbstractIncomingMessage) -> None:
        key, headers, attempt, published = read(incoming)
        first = (incoming.routing_key or "").split(".", 1)[0]
        partition = int(first) if first.isdigit() else 0  # published by another client
        topic = incoming.exchange or ""
        self.buffer.append(
            RabbitDelivery(
                None, None, incoming, topic, partition, key, headers, "", attempt, published
            )
        )
        self.wake.set()

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        deadline = time.monotonic() + timeout
        while not self.closed:
            if self.channel.is_closed and not self.buffer:
                # Its queue went with the connection: the App's supervision subscribes again.
                raise BrokerUnavailable("the connection of a group-less reader was lost")
            if self.buffer:
                count = min(max_count, len(self.buffer))
                return [self.buffer.popleft() for _ in range(count)]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), min(remaining, 1.0))
        return []

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.wake.set()
        with contextlib.suppress(Exception):
            await self.channel.close()
