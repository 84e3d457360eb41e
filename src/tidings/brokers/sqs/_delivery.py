"""An SQS delivery, and the batches its settlements travel in.

``ack`` deletes the message; ``nack(delay)`` sets its visibility timeout to the
delay (whole seconds, rounded up: never early; SQS allows up to 12 hours);
``extend`` sets it to the subscription's ``ack_wait`` again. A delivery is
fenced once its visibility timeout passed (another member may hold it now) or
its member gave it back: its settlements are then ignored.

Settlements are queued and sent ten at a time (``DeleteMessageBatch``,
``ChangeMessageVisibilityBatch``), at once when ten wait, else after a few
milliseconds; ``ack`` returns once its delete is queued, as an ack on other
brokers returns once it is written to the socket. A delete that fails leaves
the message to come again (at-least-once); closing the subscription sends
whatever is still queued.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

from tidings.brokers._settle import SettleOnce
from tidings.brokers.sqs._client import AWS_ERRORS

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import (
        ChangeMessageVisibilityBatchRequestEntryTypeDef,
        DeleteMessageBatchRequestEntryTypeDef,
    )

    from tidings.brokers.sqs._subscription import SqsMember

__all__ = ["MAX_VISIBILITY", "Settlements", "SqsDelivery", "visibility"]

log = logging.getLogger("tidings.brokers.sqs")

#: The longest visibility timeout SQS accepts (12 hours).
MAX_VISIBILITY = 43200
_LINGER = 0.005
_BATCH = 10


def visibility(seconds: float) -> int:
    """Whole seconds of a visibility timeout: rounded up, within SQS's bounds."""
    return min(max(math.ceil(seconds - 1e-9), 0), MAX_VISIBILITY)


class SqsDelivery(SettleOnce):
    """One receipt of an SQS message by a member."""

    __slots__ = (
        "_member",
        "attempt",
        "due",
        "group",
        "handed",
        "headers",
        "key",
        "lost",
        "message_id",
        "published_at",
        "queue",
        "receipt",
        "sequence",
        "topic",
        "value",
    )

    partition = 0
    offset = -1

    def __init__(
        self,
        member: SqsMember,
        queue: str,
        topic: str,
        received: Mapping[str, Any],
        value: bytes,
        key: str | None,
        headers: Mapping[str, str],
        attempt: int,
        published_at: float,
        due: float,
    ) -> None:
        super().__init__()
        self._member = member
        self.queue = queue
        self.topic = topic
        self.message_id: str = received["MessageId"]
        self.receipt: str = received["ReceiptHandle"]
        system = received.get("Attributes") or {}
        #: The FIFO message group (None on standard queues).
        self.sequence: str | None = system.get("MessageGroupId")
        self.value = value
        self.key = key
        self.headers = headers
        self.group = member.group or ""
        self.attempt = attempt
        self.published_at = published_at
        #: Monotonic time the visibility timeout ends (unless extended).
        self.due = due
        #: Given back by the member (closed, or moved behind a retry of its key).
        self.lost = False
        #: Handed to core by ``fetch`` (else still in the member's buffer).
        self.handed = False

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
        self._member.settlements(self.queue).delete(self.receipt)
        return None

    def _on_nack(self, delay: float) -> Awaitable[None] | None:
        self._member.nacked(self, delay)
        return None

    def _on_extend(self) -> Awaitable[None] | None:
        wait = self._member.ack_wait
        self.due = time.monotonic() + wait
        self._member.settlements(self.queue).change(self.receipt, visibility(wait))
        return None

    def __repr__(self) -> str:
        return f"<SqsDelivery {self.id} attempt={self.attempt}>"


class Settlements:
    """Deletes and visibility changes of one queue, sent in batches of ten."""

    def __init__(self, sqs: SQSClient, url: str) -> None:
        self.sqs = sqs
        self.url = url
        self._deletes: list[str] = []
        self._changes: list[tuple[str, int]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def delete(self, receipt: str) -> None:
        self._deletes.append(receipt)
        self._schedule(len(self._deletes))

    def change(self, receipt: str, timeout: int) -> None:
        self._changes.append((receipt, timeout))
        self._schedule(len(self._changes))

    def _schedule(self, waiting: int) -> None:
        if waiting >= _BATCH:
            self._send()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(_LINGER, self._send)

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deletes, self._deletes = self._deletes, []
        changes, self._changes = self._changes, []
        for start in range(0, len(deletes), _BATCH):
            self._spawn(self._delete(deletes[start : start + _BATCH]))
        for start in range(0, len(changes), _BATCH):
            self._spawn(self._change(changes[start : start + _BATCH]))

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _delete(self, receipts: list[str]) -> None:
        entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
            {"Id": str(n), "ReceiptHandle": r} for n, r in enumerate(receipts)
        ]
        try:
            done = await self.sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
        except AWS_ERRORS as exc:
            log.warning("deleting %d message(s) from %s failed: %r", len(entries), self.url, exc)
            return
        for failed in done.get("Failed", []):
            log.warning("deleting a message from %s failed: %s", self.url, failed.get("Message"))

    async def _change(self, changes: list[tuple[str, int]]) -> None:
        entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
            {"Id": str(n), "ReceiptHandle": r, "VisibilityTimeout": t}
            for n, (r, t) in enumerate(changes)
        ]
        try:
            done = await self.sqs.change_message_visibility_batch(
                QueueUrl=self.url, Entries=entries
            )
        except AWS_ERRORS as exc:
            log.warning("changing the visibility of %d message(s) failed: %r", len(entries), exc)
            return
        for failed in done.get("Failed", []):
            log.debug("changing a visibility in %s failed: %s", self.url, failed.get("Message"))

    async def flush(self) -> None:
        """Send what is queued and wait for every batch in flight."""
        self._send()
        while self._sending:
            await asyncio.gather(*list(self._sending), return_exceptions=True)
