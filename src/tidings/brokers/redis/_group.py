"""Which member of a group reads which partition: heartbeats and leases.

Redis hands a stream's entries to whichever consumer of a group reads first, so
per-key order across members needs partitions owned by one member at a time.
Each member writes its heartbeat (Unix ms) into the sorted set
``<prefix>:members:<group>:<topic>`` every ``heartbeat``; members heard within
``session_timeout`` are live, and each assigns partition ``p`` to
``live[p % len(live)]`` (members sorted by id).

Ownership is a lease: the key ``<prefix>:lease:<group>:<topic>:<p>``, set with
``SET NX PX session_timeout`` to a token unique to this taking, renewed each
heartbeat only while it still holds that token. A member that should give a
partition up deletes its lease (the next owner takes it on its next beat); a
dead member's lease expires after the session. Settlements check the token at
the server (:mod:`._scripts`), so a paused member cannot ack what it lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import defaultdict

from redis.asyncio import Redis

from tidings.brokers.redis._binding import Keys
from tidings.brokers.redis._delivery import Source
from tidings.brokers.redis._subscription import RedisSubscription

__all__ = ["Coordinator"]

log = logging.getLogger("tidings.brokers.redis")


class Coordinator:
    """Keeps one member's owned partitions in line with the group's live members."""

    def __init__(
        self,
        client: Redis,
        keys: Keys,
        member: RedisSubscription,
        heartbeat: float,
        session_timeout: float,
    ) -> None:
        self.client = client
        self.keys = keys
        self.member = member
        self.heartbeat = heartbeat
        self.session_timeout = session_timeout
        self.topics: dict[str, list[Source]] = defaultdict(list)
        for source in member.sources:
            self.topics[source.topic].append(source)
        self._task: asyncio.Task[None] | None = None
        self._last_tick = time.monotonic()

    async def start(self) -> None:
        await self.tick()
        self._task = asyncio.create_task(
            self._run(), name=f"tidings-redis-group:{self.member.group}"
        )

    async def _run(self) -> None:
        while not self.member.closed:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a reconnect in progress: try again next beat
                log.warning("group %s: coordination step failed: %r", self.member.group, exc)

    async def tick(self) -> None:
        now = time.monotonic()
        paused = now - self._last_tick > self.session_timeout * 0.8
        self._last_tick = now
        member = self.member
        session_ms = int(self.session_timeout * 1000)
        for topic, sources in self.topics.items():
            members = self.keys.members(member.group, topic)
            now_ms = int(time.time() * 1000)
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.zadd(members, {member.consumer: now_ms})
                pipe.zremrangebyscore(members, "-inf", now_ms - session_ms)
                pipe.zrange(members, 0, -1)
                pipe.pexpire(members, session_ms * 4)
                replies = await pipe.execute()
            live = sorted(m.decode() for m in replies[2])
            for source in sources:
                if member.closed:
                    return
                desired = live[source.partition % len(live)] == member.consumer
                if source.owned:
                    renewed = not paused and await member.scripts.renew(
                        keys=[source.lease], args=[source.token, session_ms]
                    )
                    if not renewed:
                        log.warning(
                            "group %s: lost partition %d of %s (paused or lease expired)",
                            member.group,
                            source.partition,
                            topic,
                        )
                        await member.release(source, revoke=True)
                    elif not desired:
                        await member.release(source, revoke=True)
                    else:
                        await member.sweep(source, self.session_timeout)
                elif desired:
                    token = f"{member.consumer}/{secrets.token_hex(4)}"
                    if await self.client.set(source.lease, token, nx=True, px=session_ms):
                        await member.own(source, token)

    async def stop(self) -> None:
        """Hand every partition back and leave the group's member list."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for source in self.member.sources:
            await self.member.release(source, revoke=False)
            with contextlib.suppress(Exception):
                await self.member.prune(source, leaving=True)
        for topic in self.topics:
            await self.client.zrem(
                self.keys.members(self.member.group, topic), self.member.consumer
            )
