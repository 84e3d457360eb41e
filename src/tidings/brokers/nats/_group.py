"""Which member of a group reads which partition: heartbeats and leases.

JetStream hands the messages of one consumer to whichever member pulls, so
per-key order across members needs partitions owned by one member at a time.
Members announce themselves every ``heartbeat`` on a core NATS subject
(``_tidings.hb.<group>.<stream>``); each member sees the same live set and
assigns partition ``p`` to ``live[p % len(live)]`` (members sorted by id).

Ownership is a lease in the KV bucket ``tidings_leases`` (key
``<group>.<stream>.<partition>``, value the member id), taken with
compare-and-set: a member reads a partition only while it holds the lease.
An owner that should give a partition up hands it over (see
:meth:`NatsSubscription.release`) and deletes the lease; the next owner then
creates it. A lease whose holder fell silent for ``session_timeout`` is taken
over by revision. A member that finds itself paused past the session, or its
lease taken, gives its partitions up at once (its late settlements are fenced).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from tidings.brokers.nats._delivery import Source
from tidings.brokers.nats._streams import token
from tidings.brokers.nats._subscription import NatsSubscription

__all__ = ["LEASE_BUCKET", "Coordinator", "lease_bucket", "lease_key"]

log = logging.getLogger("tidings.brokers.nats")
LEASE_BUCKET = "tidings_leases"
_VERIFY_EVERY = 3


async def lease_bucket(client: Client, replicas: int, create: bool = True) -> KeyValue | None:
    js = client.jetstream()
    try:
        return await js.key_value(LEASE_BUCKET)
    except BucketNotFoundError:
        if not create:
            return None
    try:
        return await js.create_key_value(bucket=LEASE_BUCKET, history=1, replicas=replicas)
    except Exception:  # created by another member meanwhile
        return await js.key_value(LEASE_BUCKET)


def lease_key(group: str, stream: str, partition: int) -> str:
    return f"{token(group)}.{stream}.{partition}"


class Coordinator:
    """Keeps one member's set of owned partitions in line with the group's live members."""

    def __init__(
        self,
        client: Client,
        leases: KeyValue,
        member: NatsSubscription,
        group: str,
        heartbeat: float,
        session_timeout: float,
    ) -> None:
        self.client = client
        self.leases = leases
        self.member = member
        self.group = group
        self.heartbeat = heartbeat
        self.session_timeout = session_timeout
        self.member_id = uuid.uuid4().hex[:12]
        self._me = self.member_id.encode()
        self.streams: dict[str, list[Source]] = defaultdict(list)
        for source in member.sources:
            self.streams[source.stream].append(source)
        #: Last time each other member was heard, per stream.
        self.seen: dict[str, dict[str, float]] = {s: {} for s in self.streams}
        self._subs: list[object] = []
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0
        self._paused = False
        self._beats: asyncio.Task[None] | None = None
        self._ticks = 0
        self._kick = asyncio.Event()

    def _subject(self, stream: str) -> str:
        return f"_tidings.hb.{token(self.group)}.{stream}"

    async def start(self) -> None:
        for stream in self.streams:
            self._subs.append(
                await self.client.subscribe(self._subject(stream), cb=self._make_listener(stream))
            )
        self._started = time.monotonic()
        await self._announce(b"+")
        await self.client.flush()
        await self.tick()
        self._task = asyncio.create_task(self._run(), name=f"tidings-nats-group:{self.group}")
        self._beats = asyncio.create_task(self._beat(), name=f"tidings-nats-beat:{self.group}")

    def _make_listener(self, stream: str) -> Callable[[Msg], Awaitable[None]]:
        seen = self.seen[stream]

        async def listen(msg: Msg) -> None:
            data = msg.data
            member = data[1:].decode(errors="replace")
            if member == self.member_id:
                return
            if data[:1] == b"-":
                seen.pop(member, None)
                if not self.member.closed:
                    self._wake_soon()
            else:
                fresh = member not in seen
                seen[member] = time.monotonic()
                if fresh:
                    self._wake_soon()

        return listen

    def _wake_soon(self) -> None:
        """Someone joined or left: rebalance without waiting for the next heartbeat."""
        if self._task is not None and not self._task.done():
            self._kick.set()

    async def _announce(self, sign: bytes) -> None:
        for stream in self.streams:
            await self.client.publish(self._subject(stream), sign + self._me)

    async def _beat(self) -> None:
        """Announce this member every heartbeat, whatever a rebalance step is waiting for."""
        last = time.monotonic()
        while not self.member.closed:
            await asyncio.sleep(self.heartbeat)
            now = time.monotonic()
            if now - last > self.session_timeout * 0.8:
                self._paused = True  # the others may have written this member off
                self._kick.set()
            last = now
            try:
                await self._announce(b"+")
            except Exception as exc:  # a reconnect in progress: next beat
                log.debug("group %s: heartbeat failed: %r", self.group, exc)

    async def _run(self) -> None:
        while not self.member.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.heartbeat)
            self._kick.clear()
            if self.member.closed:
                return
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a reconnect in progress: try again next beat
                log.debug("group %s: coordination step failed: %r", self.group, exc)

    def live(self, stream: str, now: float) -> list[str]:
        seen = self.seen[stream]
        for member, at in list(seen.items()):
            if now - at > self.session_timeout:
                del seen[member]
        return sorted([*seen, self.member_id])

    async def tick(self) -> None:
        now = time.monotonic()
        paused, self._paused = self._paused, False
        self._ticks += 1
        verify = self._ticks % _VERIFY_EVERY == 0
        for stream, sources in self.streams.items():
            live = self.live(stream, now)
            for source in sources:
                if self.member.closed:
                    return
                desired = live[source.partition % len(live)] == self.member_id
                if source.owned:
                    if paused or (verify and not await self._still_mine(source)):
                        log.warning(
                            "group %s: lost partition %d of %s (paused or lease taken)",
                            self.group,
                            source.partition,
                            source.topic,
                        )
                        await self.member.release(source, revoke=True)
                    elif not desired:
                        await self.member.release(source, revoke=True)
                        await self._drop(source)
                elif desired:
                    await self._acquire(source, now)

    async def _still_mine(self, source: Source) -> bool:
        try:
            entry = await self.leases.get(lease_key(self.group, source.stream, source.partition))
        except KeyNotFoundError:
            return False
        return entry.value == self._me and entry.revision == source.revision

    async def _acquire(self, source: Source, now: float) -> None:
        key = lease_key(self.group, source.stream, source.partition)
        try:
            revision = await self.leases.create(key, self._me)
        except KeyWrongLastSequenceError:
            try:
                entry = await self.leases.get(key)
            except KeyNotFoundError:
                return  # released meanwhile: next beat
            holder = (entry.value or b"").decode(errors="replace")
            if holder != self.member_id:
                alive = holder in self.seen[source.stream]
                if alive or now - self._started < self.session_timeout:
                    return  # its holder hands it over, or may still be alive
                log.info(
                    "group %s: taking partition %d of %s over from silent member %s",
                    self.group,
                    source.partition,
                    source.topic,
                    holder,
                )
            try:
                revision = await self.leases.update(key, self._me, last=entry.revision)
            except KeyWrongLastSequenceError:
                return
        self.member.own(source, revision)

    async def _drop(self, source: Source) -> None:
        key = lease_key(self.group, source.stream, source.partition)
        with contextlib.suppress(KeyWrongLastSequenceError, NotFoundError):
            await self.leases.delete(key, last=source.revision)
        source.revision = None

    async def stop(self) -> None:
        """Hand every partition back, delete the leases, tell the others."""
        for task in (self._task, self._beats):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._beats = None
        if self.client.is_closed:
            return
        owned = [s for sources in self.streams.values() for s in sources if s.owned]
        await self.member.hand_back()
        for source in owned:
            await self._drop(source)
        await self._announce(b"-")
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()  # type: ignore[attr-defined]
        await self.client.flush()
