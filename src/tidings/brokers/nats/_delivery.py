"""A JetStream delivery and the pull source it came from.

Settling publishes JetStream's ack protocol to the message's reply subject:
``+ACK``, ``-NAK`` (with ``{"delay": ns}`` for a delayed redelivery) and
``+WPI`` (work in progress: the ack wait starts again). It is queued at once,
without a coroutine (:meth:`FastHeaderClient.publish_soon`): the settlements
of a batch leave in one write, in the order they were made. A delivery is fenced
once its source's epoch moved on (its partition went to another member, the
group was moved by a seek, or the member closed).
"""

from __future__ import annotations

from collections.abc import Mapping

from tidings.brokers._settle import OffsetDelivery
from tidings.brokers.nats._client import FastHeaderClient

__all__ = ["NatsDelivery", "Source"]

_ACK = b"+ACK"
_NAK = b"-NAK"
_PROGRESS = b"+WPI"


class Source:
    """One durable pull consumer a member reads (a partition of a topic), or a reader's."""

    __slots__ = (
        "acks",
        "backlog",
        "consumer",
        "deadline",
        "epoch",
        "held",
        "index",
        "nacked",
        "outstanding",
        "owned",
        "partition",
        "releasing",
        "revision",
        "stream",
        "topic",
    )

    def __init__(
        self, index: int, topic: str, stream: str, consumer: str, partition: int, acks: bool
    ) -> None:
        self.index = index
        self.topic = topic
        self.stream = stream
        self.consumer = consumer
        #: The partition (-1: a reader's source over every partition of the topic).
        self.partition = partition
        #: False for a group-less reader (its consumer acks nothing).
        self.acks = acks
        self.epoch = 0
        self.owned = not acks
        self.releasing = False
        #: The lease's KV revision while owned.
        self.revision: int | None = None
        #: Messages asked for in the pull request in flight, and when it ends.
        self.outstanding = 0
        self.deadline = 0.0
        #: Messages the consumer had left to deliver, as of the last delivery (None: unknown).
        self.backlog: int | None = None
        #: Handed to core and not settled, by stream sequence.
        self.held: dict[int, NatsDelivery] = {}
        #: Nacked and not redelivered yet, by stream sequence.
        self.nacked: dict[int, NatsDelivery] = {}

    def fence(self) -> None:
        """Every delivery handed out so far can no longer be settled by this member."""
        self.epoch += 1
        self.held = {}
        self.nacked = {}


class NatsDelivery(OffsetDelivery):
    __slots__ = ("_client", "_epoch", "_reply", "_source")

    def __init__(
        self,
        client: FastHeaderClient,
        source: Source,
        reply: bytes,
        partition: int,
        offset: int,
        key: str | None,
        value: bytes,
        headers: Mapping[str, str],
        group: str,
        attempt: int,
        published_at: float,
    ) -> None:
        super().__init__()
        self._client = client
        self._source = source
        self._epoch = source.epoch
        self._reply = reply
        self.topic = source.topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.group = group
        self.attempt = attempt
        self.published_at = published_at

    @property
    def sequence(self) -> int:
        """The stream sequence (``offset`` counts from 0, sequences from 1)."""
        return self.offset + 1

    @property
    def reply(self) -> str:
        return self._reply.decode()

    def fenced(self) -> bool:
        return self._epoch != self._source.epoch

    def _on_ack(self) -> None:
        source = self._source
        if source.acks:
            source.held.pop(self.offset + 1, None)
            self._client.publish_soon(self._reply, _ACK)

    def _on_nack(self, delay: float) -> None:
        source = self._source
        if not source.acks:
            return
        sequence = self.offset + 1
        source.held.pop(sequence, None)
        source.nacked[sequence] = self
        if delay > 0:
            self._client.publish_soon(self._reply, b'-NAK {"delay": %d}' % int(delay * 1e9))
        else:
            self._client.publish_soon(self._reply, _NAK)

    def _on_extend(self) -> None:
        if self._source.acks:
            self._client.publish_soon(self._reply, _PROGRESS)

    def give_back(self) -> None:
        """Nak regardless of settlement (a revocation or a close hands it to the next owner)."""
        self.settled = True
        self._client.publish_soon(self._reply, _NAK)
