"""A Pub/Sub delivery, and the batches its settlements travel in.

``ack`` acknowledges the message. ``nack(delay)`` either sets its ack deadline
to the delay (whole seconds, rounded up: never early), after which Pub/Sub
delivers it again, or, on a subscription with message ordering, keeps it here
(see :mod:`._subscription`). ``extend`` sets the deadline to the
subscription's ``ack_wait`` again (10-600 s, Pub/Sub's bounds). A delivery is
fenced once its ack deadline passed (another member may hold it now) or its
member gave it back: its settlements are then ignored.

Settlements are queued and sent together (``Acknowledge`` and
``ModifyAckDeadline`` take many ack ids), at once when a thousand wait, else
after a few milliseconds; ``ack`` returns once its ack is queued, as an ack on
other brokers returns once it is written to the socket. An ack that fails
leaves the message to come again (at-least-once); closing the subscription
sends whatever is still queued.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING

from google.pubsub_v1.services.subscriber import SubscriberAsyncClient

from tidings.brokers._settle import SettleOnce
from tidings.brokers.pubsub._client import GOOGLE_ERRORS

if TYPE_CHECKING:
    from tidings.brokers.pubsub._subscription import PubSubMember

__all__ = ["PubSubDelivery", "Settlements"]

log = logging.getLogger("tidings.brokers.pubsub")

_LINGER = 0.005
#: Ack ids per request (each is ~200 bytes; a request holds at most 512 KiB).
_BATCH = 1000


class PubSubDelivery(SettleOnce):
    """One handing of a Pub/Sub message to a member."""

    __slots__ = (
        "_member",
        "ack_id",
        "attempt",
        "due",
        "group",
        "handed",
        "headers",
        "key",
        "lost",
        "message_id",
        "published_at",
        "subscription",
        "topic",
        "value",
    )

    partition = 0
    offset = -1

    def __init__(
        self,
        member: PubSubMember,
        subscription: str,
        topic: str,
        ack_id: str,
        message_id: str,
        value: bytes,
        key: str | None,
        headers: Mapping[str, str],
        attempt: int,
        published_at: float,
        due: float,
    ) -> None:
        super().__init__()
        self._member = member
        self.subscription = subscription
        self.topic = topic
        self.ack_id = ack_id
        self.message_id = message_id
        self.value = value
        self.key = key
        self.headers = headers
        self.group = member.group or ""
        self.attempt = attempt
        self.published_at = published_at
        #: Monotonic time the ack deadline ends (unless extended).
        self.due = due
        #: Given back, or handed again (kept here behind a retry of its key).
        self.lost = False
        #: Handed to core by ``fetch`` (else still with the member).
        self.handed = False

    def again(self, attempt: int) -> PubSubDelivery:
        """The same receipt of the message, to be handed once more as ``attempt``."""
        self.lost = True
        return PubSubDelivery(
            self._member,
            self.subscription,
            self.topic,
            self.ack_id,
            self.message_id,
            self.value,
            self.key,
            self.headers,
            attempt,
            self.published_at,
            self.due,
        )

    @property
    def id(self) -> str:
        return f"{self.topic}:{self.message_id}"

    @property
    def position(self) -> str:
        return self.message_id

    def fenced(self) -> bool:
        return self.lost or time.monotonic() >= self.due

    def _on_ack(self) -> Awaitable[None] | None:
        self._member.settled(self)
        self._member.settlements(self.subscription).ack(self.ack_id)
        return None

    def _on_nack(self, delay: float) -> Awaitable[None] | None:
        self._member.nacked(self, delay)
        return None

    def _on_extend(self) -> Awaitable[None] | None:
        self._member.keep(self)
        return None

    def __repr__(self) -> str:
        return f"<PubSubDelivery {self.id} attempt={self.attempt}>"


def whole_seconds(seconds: float) -> int:
    """A deadline in whole seconds, rounded up (a redelivery is never early)."""
    return max(math.ceil(seconds - 1e-9), 0)


class Settlements:
    """Acks and deadline changes of one subscription, sent in batches."""

    def __init__(self, subscriber: SubscriberAsyncClient, name: str) -> None:
        self.subscriber = subscriber
        self.name = name
        self._acks: list[str] = []
        #: Deadline (seconds) -> ack ids to set to it.
        self._changes: dict[int, list[str]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def ack(self, ack_id: str) -> None:
        self._acks.append(ack_id)
        self._schedule(len(self._acks))

    def change(self, ack_id: str, seconds: int) -> None:
        waiting = self._changes.setdefault(seconds, [])
        waiting.append(ack_id)
        self._schedule(len(waiting))

    def _schedule(self, waiting: int) -> None:
        if waiting >= _BATCH:
            self._send()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(_LINGER, self._send)

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        acks, self._acks = self._acks, []
        changes, self._changes = self._changes, {}
        for start in range(0, len(acks), _BATCH):
            self._spawn(self._ack(acks[start : start + _BATCH]))
        for seconds, ack_ids in changes.items():
            for start in range(0, len(ack_ids), _BATCH):
                self._spawn(self._change(ack_ids[start : start + _BATCH], seconds))

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _ack(self, ack_ids: list[str]) -> None:
        try:
            await self.subscriber.acknowledge(
                request={"subscription": self.name, "ack_ids": ack_ids}, timeout=30
            )
        except GOOGLE_ERRORS as exc:
            log.warning("acking %d message(s) of %s failed: %r", len(ack_ids), self.name, exc)

    async def _change(self, ack_ids: list[str], seconds: int) -> None:
        try:
            await self.subscriber.modify_ack_deadline(
                request={
                    "subscription": self.name,
                    "ack_ids": ack_ids,
                    "ack_deadline_seconds": seconds,
                },
                timeout=30,
            )
        except GOOGLE_ERRORS as exc:
            log.debug("changing %d ack deadline(s) of %s failed: %r", len(ack_ids), self.name, exc)

    async def flush(self) -> None:
        """Send what is queued and wait for every batch in flight."""
        self._send()
        while self._sending:
            await asyncio.gather(*list(self._sending), return_exceptions=True)
