"""The exchanges and queues of a topic and its groups: their names and declarations.

For a topic ``T``, group ``G`` and partition ``p``:

* ``T``: a durable topic exchange; its alternate exchange is ``T.unrouted``.
* ``T.unrouted``: a durable fanout exchange and a quorum queue of that name. An
  event no group queue takes (no group yet, or no group's binding matched)
  waits there; the first group that joins with ``start="earliest"`` moves it
  into its own queues.
* ``T.G.p``: a durable quorum queue with single active consumer, bound with
  ``p.#``: the group's partition ``p``.
* ``T.G.p.lock``: an exclusive queue, held by the member that owns partition
  ``p`` (RabbitMQ deletes it when that member's connection goes).
* ``T.G.members``: an auto-delete queue every member consumes; its consumer
  count is the group's size.
* ``T.G.p.delay.<ms>``: a durable queue whose messages expire after ``ms`` and
  are dead-lettered back to ``T.G.p``: retries waiting for their time.
"""

from __future__ import annotations

import math

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from pamqp.common import FieldTable

__all__ = [
    "PARTITION",
    "QUORUM",
    "declare_delay",
    "declare_partition",
    "declare_topic",
    "delay_bucket",
    "partition_queue",
]

QUORUM: FieldTable = {"x-queue-type": "quorum"}
#: A partition queue: one consumer of the group at a time, even if two thought they owned it.
PARTITION: FieldTable = {**QUORUM, "x-single-active-consumer": True}
#: An unused delay queue is deleted this long after its delay has passed.
_DELAY_EXPIRES_MS = 300_000


def partition_queue(topic: str, group: str, partition: int) -> str:
    return f"{topic}.{group}.{partition}"


def unrouted(topic: str) -> str:
    return f"{topic}.unrouted"


def members_queue(topic: str, group: str) -> str:
    return f"{topic}.{group}.members"


async def declare_topic(channel: AbstractChannel, topic: str) -> AbstractExchange:
    """Declare ``topic``'s exchange, with its alternate exchange and queue."""
    spare = await channel.declare_exchange(
        unrouted(topic), aio_pika.ExchangeType.FANOUT, durable=True
    )
    queue = await channel.declare_queue(unrouted(topic), durable=True, arguments=QUORUM)
    await queue.bind(spare, "")
    return await channel.declare_exchange(
        topic,
        aio_pika.ExchangeType.TOPIC,
        durable=True,
        arguments={"alternate-exchange": unrouted(topic)},
    )


async def declare_partition(
    channel: AbstractChannel, exchange: AbstractExchange, topic: str, group: str, partition: int
) -> AbstractQueue:
    queue = await channel.declare_queue(
        partition_queue(topic, group, partition),
        durable=True,
        arguments=PARTITION,
    )
    await queue.bind(exchange, f"{partition}.#")
    return queue


def delay_bucket(delay: float) -> int:
    """``delay`` in milliseconds, rounded up to two significant digits (fewer queues)."""
    ms = max(math.ceil(delay * 1000), 1)
    if ms < 100:
        return ms
    step = 10 ** (len(str(ms)) - 2)
    return int(math.ceil(ms / step) * step)


async def declare_delay(channel: AbstractChannel, queue: str, ms: int) -> str:
    """Declare (and keep alive) the delay queue of ``queue`` for ``ms``; return its name."""
    name = f"{queue}.delay.{ms}"
    await channel.declare_queue(
        name,
        durable=True,
        arguments={
            "x-message-ttl": ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue,
            "x-expires": ms + _DELAY_EXPIRES_MS,
        },
    )
    return name
