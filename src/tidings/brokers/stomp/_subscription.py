"""A group member (or a group-less reader) on its own STOMP connection, and its deliveries.

A member subscribes to ``/topic/<topic>`` for each of its topics with
``ack:client-individual`` and a ``prefetch-count``. For a group, the
subscription names a durable queue (``x-queue-name: <topic>.<group>``,
``durable``, not ``auto-delete``, a quorum queue by default): RabbitMQ declares
it and binds it to ``amq.topic`` with the topic as routing key, so every group
gets every event and the members of one group compete for its queue. Closing
unsubscribes without ``durable:true``, which keeps the queue. A group-less
reader's subscription has a queue of its own that goes with it.

Settling: ``ack`` is an ``ACK`` frame; ``nack()`` a ``NACK`` (RabbitMQ puts the
message back, a quorum queue counting it in ``x-delivery-count``);
``nack(delay)`` sends a copy (with the attempts made, ``tidings-tries``) to the
delay queue ``<topic>.<group>.delay.<ms>``, whose message TTL dead-letters it
back into the group's queue, waits for the copy's receipt and then acks: the
queue keeps flowing meanwhile. Every frame goes out on the member's connection
in order, so an ack never overtakes the copy it follows.

A retry goes back to the end of the queue: the copy from a delay queue, and a
``NACK``ed message too on a quorum queue (RabbitMQ 3.10; a classic queue puts
it back in its place). The App holds the later events of its key meanwhile.
What a member loses it reports through ``on_revoke``: a retry that did not come
back to it within ``retry_grace`` seconds of its due time was taken by another
member (competing consumers share the queue), or waits behind more events of
its key than the prefetch lets this member hold; either way the App stops
holding that key for it. (The report comes from a timer, not from ``fetch``:
the App does not fetch while its prefetch is full.) A lost connection makes
``fetch`` raise :class:`~tidings.errors.BrokerUnavailable` (the App subscribes
again); the server puts back what the connection held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence

from tidings.broker import Delivery, RevokeHandler
from tidings.brokers._rabbitmq_delays import delay_arguments, delay_bucket, delay_queue
from tidings.brokers._settle import SettleOnce
from tidings.brokers.stomp._binding import TRIES, identity, read
from tidings.brokers.stomp._frames import Frame, StompConnection, StompError
from tidings.errors import BrokerUnavailable

__all__ = ["StompDelivery", "StompMember", "destination", "group_queue"]

log = logging.getLogger("tidings.brokers.stomp")

#: Milliseconds an unused delay queue lives after its last use.
_DELAY_EXPIRES_MS = 10 * 60 * 1000


def destination(topic: str) -> str:
    return f"/topic/{topic}"


def group_queue(topic: str, group: str) -> str:
    return f"{topic}.{group}"


class StompDelivery(SettleOnce):
    """One handing of a message to a member."""

    __slots__ = (
        "_member",
        "ack_id",
        "attempt",
        "connection",
        "group",
        "handed",
        "headers",
        "ident",
        "key",
        "published_at",
        "raw",
        "topic",
        "value",
    )

    partition = 0
    offset = -1

    def __init__(
        self,
        member: StompMember,
        connection: StompConnection,
        topic: str,
        frame: Frame,
        key: str | None,
        headers: Mapping[str, str],
        attempt: int,
        published_at: float,
    ) -> None:
        super().__init__()
        self._member = member
        self.connection = connection
        self.topic = topic
        self.raw = frame.headers
        self.ack_id = frame.headers.get("ack", "")
        self.ident = identity(frame.headers)
        self.value = frame.body
        self.key = key
        self.headers = headers
        self.group = member.group or ""
        self.attempt = attempt
        self.published_at = published_at
        #: Handed to core by ``fetch`` (else still in the member's buffer).
        self.handed = False

    @property
    def id(self) -> str:
        return f"{self.topic}:{self.ident}"

    @property
    def position(self) -> str:
        return self.ident

    def fenced(self) -> bool:
        # The connection it came on is gone: the server put the message back.
        return self.connection.closed.is_set()

    def _on_ack(self) -> Awaitable[None] | None:
        self._member.settle_ack(self)
        return None

    def _on_nack(self, delay: float) -> Awaitable[None] | None:
        return self._member.settle_nack(self, delay)

    def __repr__(self) -> str:
        return f"<StompDelivery {self.id} attempt={self.attempt}>"


class StompMember:
    """A :class:`~tidings.broker.Subscription` on one STOMP connection."""

    def __init__(
        self,
        connection: StompConnection,
        topics: Sequence[str],
        group: str | None,
        prefetch: int,
        queue_type: str,
        retry_grace: float,
        on_revoke: RevokeHandler | None,
        closer: Callable[[StompMember], Awaitable[None]],
    ) -> None:
        self.connection = connection
        self.topics = list(topics)
        self.group = group
        self.prefetch = prefetch
        self.queue_type = queue_type
        self.retry_grace = retry_grace
        self.on_revoke = on_revoke
        self._closer = closer
        self.buffer: deque[StompDelivery] = deque()
        self.wake = asyncio.Event()
        self.closed = False
        #: Delay queues this member sent retries to (tests delete them).
        self.delay_queues: set[str] = set()
        #: Nacked and not back yet: identity -> (the delivery, the timer reporting it lost).
        self.away: dict[str, tuple[StompDelivery, asyncio.TimerHandle]] = {}
        self._subscriptions: dict[str, str] = {}
        connection.on_lost = self.wake.set

    async def start(self, timeout: float) -> None:
        """Subscribe to every topic; return once the server confirmed each (the group's
        queue exists and is bound from then on)."""
        receipts = []
        for n, topic in enumerate(self.topics):
            sub_id = f"s{n}"
            headers = {
                "id": sub_id,
                "destination": destination(topic),
                "ack": "client-individual",
                "prefetch-count": str(self.prefetch),
            }
            if self.group is not None:
                headers.update(
                    {
                        "durable": "true",
                        "auto-delete": "false",
                        "x-queue-name": group_queue(topic, self.group),
                        "x-queue-type": self.queue_type,
                    }
                )

            def receive(frame: Frame, topic: str = topic) -> None:
                self._receive(topic, frame)

            self.connection.handlers[sub_id] = receive
            self._subscriptions[sub_id] = topic
            receipts.append(self.connection.send("SUBSCRIBE", headers))
        async with asyncio.timeout(timeout):
            await asyncio.gather(*receipts)

    def _receive(self, topic: str, frame: Frame) -> None:
        if self.closed:
            return  # not acked: the server puts it back when the connection closes
        key, headers, attempt, published = read(frame.headers)
        delivery = StompDelivery(
            self, self.connection, topic, frame, key, headers, attempt, published
        )
        if self.away:
            back = self.away.pop(delivery.ident, None)
            if back is not None:
                back[1].cancel()
        self.buffer.append(delivery)
        self.wake.set()

    # -- fetching -----------------------------------------------------------------

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        deadline = time.monotonic() + timeout
        while not self.closed:
            if not self.connection.alive:
                raise BrokerUnavailable(
                    f"the STOMP connection of {self._who()} was lost: {self.connection.error}"
                )
            out: list[Delivery] = []
            buffer = self.buffer
            while buffer and len(out) < max_count:
                delivery = buffer.popleft()
                delivery.handed = True
                out.append(delivery)
            if out:
                return out
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), min(remaining, 1.0))
        return []

    def _who(self) -> str:
        return f"group {self.group!r}" if self.group is not None else "a group-less reader"

    def _given_up(self, ident: str) -> None:
        """A retry did not come back in time: the App stops holding its key (from a timer:
        the App may hold as many events as it may take, and fetch nothing meanwhile)."""
        found = self.away.pop(ident, None)
        if found is not None and self.on_revoke is not None and not self.closed:
            self.on_revoke([found[0]])

    # -- settling -----------------------------------------------------------------

    def settle_ack(self, delivery: StompDelivery) -> None:
        with contextlib.suppress(StompError):
            delivery.connection.write("ACK", {"id": delivery.ack_id})

    async def settle_nack(self, delivery: StompDelivery, delay: float) -> None:
        connection = delivery.connection
        if self.group is None:
            # A reader's queue is its own: nothing to give back to a group.
            self.settle_ack(delivery)
            return
        try:
            if delay <= 0:
                connection.write("NACK", {"id": delivery.ack_id})
            else:
                self.delay_queues.add(await self._delay_copy(delivery, delay))
                connection.write("ACK", {"id": delivery.ack_id})
        except (StompError, TimeoutError) as exc:
            # Not settled: it comes again when this member's connection closes.
            log.warning("%s: nack of %s failed: %r", self.group, delivery.id, exc)
            return
        if delivery.handed and delivery.key is not None:
            timer = asyncio.get_running_loop().call_later(
                max(delay, 0.0) + self.retry_grace, self._given_up, delivery.ident
            )
            self.away[delivery.ident] = (delivery, timer)

    async def _delay_copy(self, delivery: StompDelivery, delay: float) -> str:
        """Send ``delivery`` to its group's delay queue for ``delay``; return the queue."""
        assert self.group is not None
        home = group_queue(delivery.topic, self.group)
        ms = delay_bucket(delay)
        queue = delay_queue(home, ms)
        arguments = delay_arguments(home, ms, _DELAY_EXPIRES_MS)
        headers = {
            name: value
            for name, value in delivery.raw.items()
            if not name.startswith("x-")
            and name
            not in ("subscription", "destination", "message-id", "redelivered", "ack", "receipt")
            and name != "content-length"
        }
        headers.update(
            {
                "destination": f"/queue/{queue}",
                "persistent": "true",
                TRIES: str(delivery.attempt),
                # The server declares the delay queue with these (headers of a SEND to it).
                **{name: str(value) for name, value in arguments.items()},
            }
        )
        async with asyncio.timeout(max(10.0, delay)):
            await delivery.connection.send("SEND", headers, delivery.value)
        return queue

    # -- closing ------------------------------------------------------------------

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.wake.set()
        await self._closer(self)

    async def stop(self) -> None:
        """Unsubscribe (a group's queue stays) and disconnect; the server puts back what
        was not acked."""
        self.closed = True
        self.wake.set()
        self.buffer.clear()
        for _, timer in self.away.values():
            timer.cancel()
        self.away.clear()
        connection = self.connection
        if connection.alive:
            receipts = []
            for sub_id in self._subscriptions:
                with contextlib.suppress(StompError):
                    receipts.append(connection.send("UNSUBSCRIBE", {"id": sub_id}))
            with contextlib.suppress(StompError, TimeoutError):
                async with asyncio.timeout(2.0):
                    await asyncio.gather(*receipts)
        await connection.close()
