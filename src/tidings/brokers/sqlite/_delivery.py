"""A message handed to a member of the embedded broker, settled once."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from tidings.brokers._settle import OffsetDelivery
from tidings.brokers.sqlite._partition import Partition

if TYPE_CHECKING:
    from tidings.brokers.sqlite._member import SqliteSubscription

__all__ = ["SqliteDelivery"]

_EMPTY: Mapping[str, str] = {}
_headers = msgspec.json.Decoder(dict[str, str])


class SqliteDelivery(OffsetDelivery):
    """A :class:`~tidings.broker.Delivery` of the embedded broker.

    ``id`` is ``"<topic>:<partition>:<offset>"``: offsets are never reused, so
    every redelivery of a message (to this member or another) has the same id.
    ``position`` is ``"<partition>@<offset>"``.
    """

    __slots__ = ("_epoch", "_member", "_part")

    def __init__(
        self, member: SqliteSubscription, part: Partition, row: Sequence[Any], attempt: int
    ) -> None:
        self.settled = False
        self._member = member
        self._part = part
        self._epoch = part.epoch
        self.topic = part.topic
        self.partition = part.index
        self.offset = int(row[0])
        self.key: str | None = row[1]
        self.value = bytes(row[2])
        self.headers = _headers.decode(row[3]) if row[3] else _EMPTY
        self.published_at = float(row[4])
        self.group = member.group
        self.attempt = attempt

    def fenced(self) -> bool:
        member = self._member
        return (
            member.closed
            or member.owned.get((self._part.topic_id, self.partition)) is not self._part
            or self._part.epoch != self._epoch
        )

    def _on_ack(self) -> None:
        self._member.record_ack(self)

    def _on_nack(self, delay: float) -> None:
        self._member.schedule_redelivery(self, delay)

    def begin(self) -> Awaitable[None] | None:
        """About to be handled (``CountsAttempts``): a redelivery's attempt is written first."""
        if (self.attempt == 1 and self.offset not in self._part.retry_rows) or self.fenced():
            return None  # a first delivery: the handed-out mark written at fetch covers it
        return self._member.record_start(self)

    async def release(self) -> None:
        """Give back unhandled: redelivered with the same attempt (``Releasable``)."""
        if not self.settled and not self.fenced():
            self.settled = True
            self._member.release(self)

    def _on_extend(self) -> None:
        # Nothing to extend: leases are per partition, not per delivery, and the
        # member's heartbeats renew them for as long as it lives.
        return None

    def __repr__(self) -> str:
        return (
            f"<SqliteDelivery {self.topic}[{self.position}] "
            f"group={self.group} attempt={self.attempt}>"
        )
