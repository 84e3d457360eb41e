"""Reading a topic's history: its stream queues ``T.history.<p>``, over AMQP 0-9-1.

Every event published to a topic is also appended to its partition's stream
(RabbitMQ 3.9+), which keeps it for the topic's retention whether or not any
group consumed it. Inspection reads a stream with a consumer of its own that
starts at an offset (``x-stream-offset``); a stream consumer takes nothing
away, and the offset of each message is its ``x-stream-offset`` header.

AMQP 0-9-1 does not tell where a stream ends (``queue.declare`` counts 0
messages for a stream), so the end is found by reading: a consumer starting
at ``last`` receives the stream's newest chunk at once, and the newest offset
in it is the end. A stream that has never held anything sends nothing: the
probe waits ``patience`` for it (longer once the stream is known to hold
something, since a stream is never empty again; the management API's counts
tell that too). Reads then stop at that end, so they never wait on a quiet
stream.

Deleting one entry is not something a stream can do: inspection appends the
deleted ``(partition, offset)`` pairs to ``T.tombstones`` and leaves them out
of everything it reads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aio_pika.exceptions import AMQPError

__all__ = ["Bounds", "Entry", "StreamReader"]

#: Seconds a stream not known to hold anything is given to send its newest chunk,
#: after a round trip on the consumer's channel (which the chunk nearly always beats).
EMPTY_PATIENCE = 0.1
#: Seconds a stream known to hold something is given (it always answers).
PATIENCE = 5.0
#: Seconds without a message after which the newest chunk is taken as complete.
CHUNK_QUIET = 0.02
#: Messages in flight per stream consumer (a stream needs a prefetch).
_PREFETCH = 1000

_tombstones = msgspec.json.Decoder(list[tuple[int, int]])


@dataclass(frozen=True, slots=True)
class Entry:
    offset: int
    message: AbstractIncomingMessage


@dataclass(frozen=True, slots=True)
class Bounds:
    first: int
    """The oldest offset kept."""
    head: int
    """One past the newest offset (``first == head``: empty)."""


class StreamReader:
    """Reads streams on one connection, a channel per read at a time (channels are
    reused: opening and closing one per read churns channel numbers)."""

    def __init__(self, connection: AbstractConnection, concurrency: int = 16) -> None:
        self.connection = connection
        #: Streams seen holding something (a stream never becomes empty again).
        self.known: set[str] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self._idle: list[AbstractChannel] = []
        self._concurrency = concurrency
        #: Opening a channel waits while another one's passive declaration may fail: the
        #: server then closes that channel, and aiormq frees its number before its
        #: close-ok is queued, so a channel opened meanwhile may get the number and
        #: open it first ("second 'channel.open' seen" closes the whole connection).
        self._opening = asyncio.Lock()

    async def probe(self, name: str) -> tuple[AbstractChannel, AbstractQueue] | None:
        """A channel and queue ``name`` on it; None if there is no such queue."""
        async with self._opening:
            channel = await self.channel()
            try:
                return channel, await channel.declare_queue(name, passive=True)
            except AMQPError:  # NOT_FOUND: the server closed the channel
                await self.done(channel, False)
                return None

    async def channel(self) -> AbstractChannel:
        """An open channel of this reader's (hand it back with :meth:`done`)."""
        while self._idle:
            channel = self._idle.pop()
            if not channel.is_closed:
                return channel
        return await self.connection.channel(publisher_confirms=False)

    async def done(self, channel: AbstractChannel, reusable: bool) -> None:
        if reusable and not channel.is_closed and len(self._idle) < self._concurrency:
            self._idle.append(channel)
            return
        with contextlib.suppress(Exception):
            await channel.close()

    async def _consume(
        self,
        stream: str,
        start: int | str,
        *,
        count: int,
        end: int | None = None,
        patience: float = PATIENCE,
        quiet: float | None = None,
    ) -> list[Entry] | None:
        """Up to ``count`` messages from ``start``; None if ``stream`` does not exist.

        Stops at offset ``end - 1``, or when nothing came for ``patience`` seconds
        (``quiet`` once something came).
        """
        if count <= 0 or (end is not None and isinstance(start, int) and start >= end):
            return []
        async with self._slots:
            probed = await self.probe(stream)
            if probed is None:
                return None
            channel, queue = probed
            reusable = False
            try:
                await channel.set_qos(prefetch_count=min(max(count, 1), _PREFETCH))
                arrived: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

                async def receive(message: AbstractIncomingMessage) -> None:
                    arrived.put_nowait(message)

                tag = await queue.consume(
                    receive, no_ack=False, arguments={"x-stream-offset": start}
                )
                # A round trip: the server sends what it holds before answering it.
                await channel.declare_queue(stream, passive=True)
                found: list[Entry] = []
                wait = patience
                retried = False
                try:
                    while len(found) < count:
                        try:
                            message = await asyncio.wait_for(arrived.get(), wait)
                        except TimeoutError:
                            if found or retried or patience >= PATIENCE:
                                break
                            # Nothing yet from a stream not known to hold anything: one
                            # more round trip before calling it empty (a busy server).
                            retried = True
                            await channel.declare_queue(stream, passive=True)
                            continue
                        offset = _offset(message)
                        with contextlib.suppress(AMQPError, RuntimeError):
                            await message.ack()  # credit for the next ones; takes nothing
                        if isinstance(start, int) and offset < start:
                            continue  # the chunk holding ``start`` begins before it
                        found.append(Entry(offset, message))
                        if end is not None and offset >= end - 1:
                            break
                        if quiet is not None:
                            wait = quiet
                finally:
                    with contextlib.suppress(AMQPError, RuntimeError, OSError):
                        await queue.cancel(tag)
                        reusable = True
                if found:
                    self.known.add(stream)
                return found
            finally:
                await self.done(channel, reusable)

    async def bounds(self, stream: str) -> Bounds | None:
        """The offsets ``stream`` holds now; None if it does not exist."""
        patience = PATIENCE if stream in self.known else EMPTY_PATIENCE
        newest = await self._consume(
            stream, "last", count=1 << 30, patience=patience, quiet=CHUNK_QUIET
        )
        if newest is None:
            return None
        if not newest:
            return Bounds(0, 0)
        head = max(e.offset for e in newest) + 1
        oldest = await self._consume(stream, "first", count=1, patience=PATIENCE)
        first = oldest[0].offset if oldest else head
        return Bounds(first, head)

    async def read(self, stream: str, start: int, end: int, count: int) -> list[Entry]:
        """Up to ``count`` messages with offsets in ``[start, end)``, oldest first."""
        found = await self._consume(stream, max(start, 0), count=count, end=end)
        return [e for e in found or () if e.offset < end]

    async def tombstones(self, stream: str) -> set[tuple[int, int]]:
        """The ``(partition, offset)`` pairs recorded in the tombstone ``stream`` (none if
        it does not exist: nothing was ever deleted)."""
        bounds = await self.bounds(stream)
        if bounds is None or bounds.first == bounds.head:
            return set()
        gone: set[tuple[int, int]] = set()
        start = bounds.first
        while start < bounds.head:
            page = await self.read(stream, start, bounds.head, _PREFETCH)
            if not page:
                break
            for entry in page:
                with contextlib.suppress(msgspec.DecodeError):
                    gone.update(_tombstones.decode(entry.message.body))
            start = page[-1].offset + 1
        return gone


def tombstone_record(entries: Iterable[tuple[int, int]]) -> bytes:
    return msgspec.json.encode(sorted(entries))


def _offset(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get("x-stream-offset")
    return int(value) if isinstance(value, int) else -1
