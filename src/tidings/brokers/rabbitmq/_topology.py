"""The exchanges and queues of a topic and its groups: their names and declarations.

For a topic ``T``, group ``G`` and partition ``p``:

* ``T``: a durable topic exchange, where events are published (and where any
  AMQP client binds its own queues). It routes every event to the topic's
  history streams and, through an exchange-to-exchange binding, to ``T.groups``.
* ``T.history.p``: a durable stream queue bound with ``p.#``: partition ``p``'s
  history (see :mod:`._history`), kept for ``retention`` (the URL's option),
  read by inspection and never consumed by a group. Request-reply inboxes
  (``tidings.replies.*``) keep none.
* ``T.tombstones``: a stream of ``(partition, offset)`` records: the history
  entries inspection deleted (a stream cannot delete one entry); declared by
  the first deletion.
* ``T.groups``: a durable topic exchange bound to ``T`` with ``#``; the group
  queues are bound to it. Its alternate exchange is ``T.unrouted``.
* ``T.unrouted``: a durable fanout exchange and a quorum queue of that name. An
  event no group queue takes (no group yet, or no group's binding matched)
  waits there; the first group that joins with ``start="earliest"`` moves it
  into its own queues.
* ``T.G.p``: a durable quorum queue with single active consumer, bound to
  ``T.groups`` with ``p.#``: the group's partition ``p``.
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

from tidings.brokers._rabbitmq_delays import delay_arguments, delay_queue

__all__ = [
    "PARTITION",
    "QUORUM",
    "RESERVED_GROUPS",
    "declare_delay",
    "declare_partition",
    "declare_topic",
    "groups_exchange",
    "history_queue",
    "partition_queue",
    "tombstones_queue",
]

QUORUM: FieldTable = {"x-queue-type": "quorum"}
#: A partition queue: one consumer of the group at a time, even if two thought they owned it.
PARTITION: FieldTable = {**QUORUM, "x-single-active-consumer": True}
#: An unused delay queue is deleted this long after its delay has passed.
_DELAY_EXPIRES_MS = 300_000


#: Group names whose queues would be the topic's own.
RESERVED_GROUPS = frozenset({"history"})


def partition_queue(topic: str, group: str, partition: int) -> str:
    return f"{topic}.{group}.{partition}"


def history_queue(topic: str, partition: int) -> str:
    return f"{topic}.history.{partition}"


def tombstones_queue(topic: str) -> str:
    return f"{topic}.tombstones"


def groups_exchange(topic: str) -> str:
    return f"{topic}.groups"


#: Topics without history: request-reply inboxes (answers nobody reads twice).
_NO_HISTORY = ("tidings.replies.",)


def keeps_history(topic: str) -> bool:
    return not topic.startswith(_NO_HISTORY)


def stream_arguments(retention: float, retention_bytes: int | None) -> FieldTable:
    """A stream queue's arguments: ``retention`` seconds (0: no age limit) and bytes."""
    arguments: FieldTable = {"x-queue-type": "stream"}
    if retention > 0:
        arguments["x-max-age"] = f"{max(math.ceil(retention), 1)}s"
    if retention_bytes is not None:
        arguments["x-max-length-bytes"] = retention_bytes
        # Retention drops whole segments: keep them small enough to honour the limit.
        arguments["x-stream-max-segment-size-bytes"] = max(
            min(retention_bytes // 4, 500_000_000), 1_000
        )
    return arguments


def unrouted(topic: str) -> str:
    return f"{topic}.unrouted"


def members_queue(topic: str, group: str) -> str:
    return f"{topic}.{group}.members"


async def declare_topic(
    channel: AbstractChannel,
    topic: str,
    partitions: int,
    retention: float,
    retention_bytes: int | None,
    history: bool = True,
) -> AbstractExchange:
    """Declare ``topic``'s exchanges, history streams (with ``history``) and unrouted queue."""
    spare = await channel.declare_exchange(
        unrouted(topic), aio_pika.ExchangeType.FANOUT, durable=True
    )
    queue = await channel.declare_queue(unrouted(topic), durable=True, arguments=QUORUM)
    await queue.bind(spare, "")
    groups = await channel.declare_exchange(
        groups_exchange(topic),
        aio_pika.ExchangeType.TOPIC,
        durable=True,
        arguments={"alternate-exchange": unrouted(topic)},
    )
    exchange = await channel.declare_exchange(topic, aio_pika.ExchangeType.TOPIC, durable=True)
    await groups.bind(exchange, "#")
    if not history or not keeps_history(topic):
        return exchange
    streams = stream_arguments(retention, retention_bytes)
    for partition in range(partitions):
        stream = await channel.declare_queue(
            history_queue(topic, partition), durable=True, arguments=streams
        )
        await stream.bind(exchange, f"{partition}.#")
    return exchange


async def declare_partition(
    channel: AbstractChannel, topic: str, group: str, partition: int
) -> AbstractQueue:
    queue = await channel.declare_queue(
        partition_queue(topic, group, partition),
        durable=True,
        arguments=PARTITION,
    )
    await queue.bind(groups_exchange(topic), f"{partition}.#")
    return queue


async def declare_delay(channel: AbstractChannel, queue: str, ms: int) -> str:
    """Declare (and keep alive) the delay queue of ``queue`` for ``ms``; return its name."""
    name = delay_queue(queue, ms)
    arguments: FieldTable = {**delay_arguments(queue, ms, _DELAY_EXPIRES_MS)}
    await channel.declare_queue(name, durable=True, arguments=arguments)
    return name
