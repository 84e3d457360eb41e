"""Settle-once deliveries: the part of ``ack``/``nack``/``extend`` every adapter shares.

A subclass says whether it is fenced (its member lost it) and what acking,
nacking and extending do; this base makes the first settlement the only one,
ignores settlements of fenced deliveries, and never extends a settled one.
The hooks may be plain functions (in-process brokers: no extra coroutine on
the hot path) or return an awaitable (network brokers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping

__all__ = ["OffsetDelivery", "SettleOnce"]


class SettleOnce:
    """Base of a broker's :class:`~tidings.broker.Delivery`."""

    __slots__ = ("settled",)

    def __init__(self) -> None:
        self.settled = False

    def fenced(self) -> bool:
        """True once this member may no longer settle the delivery."""
        return False

    def _on_ack(self) -> Awaitable[None] | None:
        raise NotImplementedError

    def _on_nack(self, delay: float) -> Awaitable[None] | None:
        raise NotImplementedError

    def _on_extend(self) -> Awaitable[None] | None:
        return None

    async def ack(self) -> None:
        if self.settled:
            return
        self.settled = True
        if not self.fenced():
            pending = self._on_ack()
            if pending is not None:
                await pending

    async def nack(self, delay: float = 0.0) -> None:
        if self.settled:
            return
        self.settled = True
        if not self.fenced():
            pending = self._on_nack(max(delay, 0.0))
            if pending is not None:
                await pending

    async def extend(self) -> None:
        if self.settled or self.fenced():
            return
        pending = self._on_extend()
        if pending is not None:
            await pending


class OffsetDelivery(SettleOnce):
    """A delivery of a log broker, addressed by topic, partition and offset.

    ``id`` is ``"<topic>:<partition>:<offset>"``: offsets are never reused, so
    every redelivery of a message (to this member or another) has the same id.
    ``position`` is ``"<partition>@<offset>"``. Both are built on demand: core
    asks for them only on the rare paths (retries, dead letters, revocation).
    """

    # The fields of the Delivery protocol that every log broker's delivery carries.
    __slots__ = (
        "attempt",
        "group",
        "headers",
        "key",
        "offset",
        "partition",
        "published_at",
        "topic",
        "value",
    )

    attempt: int
    group: str
    headers: Mapping[str, str]
    key: str | None
    offset: int
    partition: int
    published_at: float
    topic: str
    value: bytes

    @property
    def id(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def position(self) -> str:
        return f"{self.partition}@{self.offset}"
