"""Publishing: messages -> Kafka records, one at a time or in record batches per partition.

A single message goes through aiokafka's ``send``. Several messages are put
into one record batch per partition (Kafka's default partitioner, murmur2,
picks each keyed message's partition, as ``send`` would; messages without a
key share one partition per call, like Kafka's sticky partitioner), which
costs a fraction of a ``send`` per message. Either way the call returns once
every record is acknowledged with the producer's ``acks``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from tidings.broker import Message
from tidings.brokers.kafka._binding import STRUCTURED_CONTENT_TYPE

__all__ = ["RecordProducer"]


class RecordProducer:
    def __init__(self, producer: Any, structured: bool) -> None:
        from aiokafka.partitioner import DefaultPartitioner

        self._producer = producer
        self._structured = structured
        self._partitioner = DefaultPartitioner()

    def _headers(self, message: Message) -> list[tuple[str, bytes]]:
        headers = message.headers
        if self._structured and "content-type" not in headers:
            # The binding's mark of a structured record, for other Kafka clients.
            headers = {**headers, "content-type": STRUCTURED_CONTENT_TYPE}
        return [(name, value.encode()) for name, value in headers.items()]

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Send ``messages`` in order; raise the client's error if any was not acknowledged."""
        futures: list[asyncio.Future[Any]] = []
        try:
            if len(messages) == 1:
                (message,) = messages
                key = message.key
                futures.append(
                    await self._producer.send(
                        topic,
                        message.value,
                        key=None if key is None else key.encode(),
                        headers=self._headers(message),
                    )
                )
            else:
                await self._send_batches(topic, messages, futures)
            for future in futures:
                await future
        except BaseException:
            for future in futures:
                if not future.done():
                    future.cancel()
                elif not future.cancelled():
                    future.exception()
            raise

    async def _send_batches(
        self, topic: str, messages: Sequence[Message], futures: list[asyncio.Future[Any]]
    ) -> None:
        producer = self._producer
        partitions = sorted(await producer.partitions_for(topic))
        partition_of = self._partitioner
        unkeyed = random.choice(partitions)
        builders: dict[int, Any] = {}
        for message in messages:
            key = message.key
            raw_key = None if key is None else key.encode()
            partition = (
                unkeyed if raw_key is None else partition_of(raw_key, partitions, partitions)
            )
            headers = self._headers(message)
            builder = builders.get(partition)
            if builder is None:
                builder = builders[partition] = producer.create_batch()
            if builder.append(key=raw_key, value=message.value, timestamp=None, headers=headers):
                continue
            # The batch is full: send it and start the next one of this partition.
            futures.append(await producer.send_batch(builder, topic, partition=partition))
            builder = builders[partition] = producer.create_batch()
            builder.append(key=raw_key, value=message.value, timestamp=None, headers=headers)
        for partition, builder in builders.items():
            futures.append(await producer.send_batch(builder, topic, partition=partition))
