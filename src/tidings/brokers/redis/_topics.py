"""A topic's settings: stored in the hash ``<prefix>:t:<topic>``, its name in ``<prefix>:topics``.

The first client to use a topic stores the partition count and ``maxlen`` of
its URL; every later client reads them, so all agree on the partitioning.
"""

from __future__ import annotations

from redis.asyncio import Redis

from tidings.brokers.redis._binding import Keys
from tidings.brokers.redis._url import RedisOptions

__all__ = ["Topic", "load_topic"]


class Topic:
    """A topic's settings, as stored in its hash."""

    __slots__ = ("maxlen", "name", "partitions", "retention_ms")

    def __init__(self, name: str, partitions: int, maxlen: int, retention_ms: int) -> None:
        self.name = name
        self.partitions = partitions
        self.maxlen = maxlen
        self.retention_ms = retention_ms


async def load_topic(
    client: Redis, keys: Keys, name: str, options: RedisOptions, create: bool
) -> Topic | None:
    """The settings of ``name`` (stored with ``options``' defaults first when ``create``)."""
    key = keys.topic(name)
    if create:
        async with client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "partitions", options.partitions)
            pipe.hsetnx(key, "maxlen", options.maxlen)
            pipe.sadd(keys.topics(), name)
            await pipe.execute()
    stored = await client.hgetall(key)
    if not stored:
        return None
    return Topic(
        name,
        int(stored.get(b"partitions", options.partitions)),
        int(stored.get(b"maxlen", 0)),
        int(stored.get(b"retention_ms", 0)),
    )
