"""A RabbitMQ delivery and the partition queue it came from.

``ack`` is queued and sent as one ``basic.ack`` with ``multiple`` per
partition for every settled tag below the lowest unsettled one; ``nack()`` is
``basic.nack`` with requeue (the quorum queue counts it in
``x-delivery-count`` and hands it out again before later messages);
``nack(delay)`` goes through the member (a copy to a delay queue, then an
ack). ``extend`` does nothing: RabbitMQ keeps an unacked message with its
consumer until the channel closes (or the server's ``consumer_timeout``, 30
minutes by default, closes it). A delivery is fenced once its partition moved
on (given up by this member, or the member closed): its channel is gone and
the message will come again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from tidings.brokers._settle import SettleOnce
from tidings.brokers.rabbitmq._topology import partition_queue

if TYPE_CHECKING:
    from tidings.brokers.rabbitmq._subscription import RabbitMember

__all__ = ["Partition", "RabbitDelivery"]


class Partition:
    """One partition queue of a group, as a member sees it."""

    __slots__ = (
        "acks",
        "channel",
        "epoch",
        "index",
        "lock",
        "nacked",
        "owned",
        "queue",
        "retrying",
        "returned",
        "topic",
        "unacked",
    )

    def __init__(self, topic: str, group: str, index: int) -> None:
        self.topic = topic
        self.index = index
        self.queue = partition_queue(topic, group, index)
        self.lock = f"{self.queue}.lock"
        #: This member's channel on the partition queue, while it owns it.
        self.channel: AbstractChannel | None = None
        self.epoch = 0
        self.owned = False
        #: Received on this member's channel and not settled, by delivery tag.
        self.unacked: dict[int, RabbitDelivery] = {}
        #: Acked by core, not yet on the wire: sent as one ``multiple`` ack of the settled
        #: tags below the lowest unsettled one (see ``RabbitMember.flush``).
        self.acks: dict[int, RabbitDelivery] = {}
        #: Nacked with a delay and not back yet, by message id.
        self.nacked: dict[str, RabbitDelivery] = {}
        #: Key -> (the delay queue its latest retry waits in, when that retry is due, its
        #: message id).
        self.retrying: dict[str, tuple[str, float, str]] = {}
        #: Delivery tags of retries that came back from a delay queue to this member.
        self.returned: set[int] = set()

    def fence(self) -> None:
        """Every delivery handed out so far can no longer be settled by this member."""
        self.epoch += 1
        self.unacked = {}
        self.acks = {}
        self.nacked = {}
        self.retrying = {}
        self.returned = set()


class RabbitDelivery(SettleOnce):
    __slots__ = (
        "_epoch",
        "_member",
        "_part",
        "attempt",
        "group",
        "handed",
        "headers",
        "incoming",
        "key",
        "offset",
        "partition",
        "published_at",
        "topic",
        "value",
    )

    def __init__(
        self,
        member: RabbitMember | None,
        part: Partition | None,
        incoming: AbstractIncomingMessage,
        topic: str,
        partition: int,
        key: str | None,
        headers: Mapping[str, str],
        group: str,
        attempt: int,
        published_at: float,
    ) -> None:
        super().__init__()
        self._member = member
        self._part = part
        self._epoch = part.epoch if part is not None else 0
        self.incoming = incoming
        self.topic = topic
        self.partition = partition
        self.offset = -1
        self.key = key
        self.value = incoming.body
        self.headers = headers
        self.group = group
        self.attempt = attempt
        self.published_at = published_at
        #: Handed to core by ``fetch`` (else still in the member's buffer).
        self.handed = False

    @property
    def id(self) -> str:
        return f"{self.topic}:{self.incoming.message_id}"

    @property
    def position(self) -> str:
        return f"{self.partition}/{self.incoming.message_id}"

    def fenced(self) -> bool:
        return self._part is not None and self._epoch != self._part.epoch

    def _on_ack(self) -> Awaitable[None] | None:
        if self._member is None or self._part is None:
            return None  # a group-less reader's delivery: nothing to settle
        self._member.settle_ack(self._part, self)  # queued: sent by the member's flusher
        return None

    def _on_nack(self, delay: float) -> Awaitable[None] | None:
        if self._member is None or self._part is None:
            return None
        return self._member.settle_nack(self._part, self, delay)
