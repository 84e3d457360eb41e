"""A group-less reader: ``XREAD`` from the streams' ends at opening, nothing to settle."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis.exceptions
from redis.asyncio import Redis

from tidings.broker import Delivery
from tidings.brokers._settle import OffsetDelivery
from tidings.brokers.redis._binding import parse_entry, split_id
from tidings.errors import BrokerUnavailable

__all__ = ["RedisReader"]

_MAX_BLOCK = 0.1


class ReaderDelivery(OffsetDelivery):
    __slots__ = ()

    def __init__(
        self,
        topic: str,
        partition: int,
        stream_id: bytes,
        key: str | None,
        value: bytes,
        headers: Mapping[str, str],
    ) -> None:
        super().__init__()
        ms, offset = split_id(stream_id)
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.group = ""
        self.attempt = 1
        self.published_at = ms / 1000

    def _on_ack(self) -> None:
        return None

    def _on_nack(self, delay: float) -> None:
        return None


class RedisReader:
    """A :class:`~tidings.broker.Subscription` without a group."""

    def __init__(self, client: Redis, streams: Mapping[str, tuple[str, int]]) -> None:
        self.client = client
        #: Stream key -> (topic, partition).
        self.streams = dict(streams)
        self.positions: dict[str, bytes | str] = {}
        self.closed = False

    async def start(self) -> None:
        """Start after the newest entry of every stream."""
        async with self.client.pipeline(transaction=False) as pipe:
            for stream in self.streams:
                pipe.xrevrange(stream, count=1)
            replies = await pipe.execute()
        for stream, newest in zip(self.streams, replies, strict=True):
            self.positions[stream] = newest[0][0] if newest else "0-0"

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        try:
            return await self._fetch(max_count, timeout)
        except (OSError, redis.exceptions.RedisError) as exc:
            if self.closed:
                return []
            raise BrokerUnavailable(f"reading from Redis failed: {exc!r}") from exc

    async def _fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        deadline = time.monotonic() + timeout
        while not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            wait = min(remaining, _MAX_BLOCK)
            positions: dict[Any, Any] = dict(self.positions)
            reply: Any = await self.client.xread(
                positions, count=max_count, block=max(int(wait * 1000), 1)
            )
            out: list[Delivery] = []
            for stream, entries in reply or []:
                name = stream.decode() if isinstance(stream, bytes) else stream
                topic, partition = self.streams[name]
                for stream_id, fields in entries:
                    if len(out) >= max_count:
                        break
                    value, key, headers = parse_entry(fields)
                    out.append(ReaderDelivery(topic, partition, stream_id, key, value, headers))
                    self.positions[name] = stream_id
            if out and not self.closed:
                return out
        return []

    async def close(self) -> None:
        self.closed = True
