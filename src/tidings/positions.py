"""Where to start reading a stored partition: its head, or the first event after a time.

Found with a few indexed reads (galloping, then bisecting), never by reading
the partition through; used by the CLI (``tail``, ``dlq``) and the gateway's streams.
:func:`stored` reads a whole topic, page by page, up to a snapshot of :func:`heads`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping

from tidings.inspection import Inspectable, StoredMessage

__all__ = ["boundary", "head", "heads", "since", "stored"]


async def boundary(
    broker: Inspectable, topic: str, partition: int, before: Callable[[StoredMessage], bool]
) -> int:
    """The offset to read ``partition`` from to skip the messages ``before`` accepts.

    ``before`` must accept a leading run of the stored messages and nothing
    after it (a time cut-off does, for times that grow with the offset).
    """

    async def first_from(offset: int) -> StoredMessage | None:
        found = await broker.read(topic, after={partition: offset}, limit=1)
        return found[0] if found else None

    found = await first_from(0)
    if found is None or not before(found):
        return 0
    low = found.offset + 1  # the message before low is skipped
    step = 1
    high = low
    while (found := await first_from(high)) is not None and before(found):
        low = found.offset + 1
        high = low + step
        step *= 2
    while low < high:  # nothing at or after high is skipped
        middle = (low + high) // 2
        found = await first_from(middle)
        if found is None or not before(found):
            high = middle
        else:
            low = found.offset + 1
    return low


async def head(broker: Inspectable, topic: str, partition: int) -> int:
    """One past the newest stored offset of ``partition`` (0 when it is empty)."""
    return await boundary(broker, topic, partition, lambda _: True)


async def since(broker: Inspectable, topic: str, partition: int, published_at: float) -> int:
    """The first offset of ``partition`` published at or after ``published_at``."""
    return await boundary(broker, topic, partition, lambda m: m.published_at < published_at)


async def heads(broker: Inspectable, topic: str, partitions: int) -> dict[int, int]:
    """Per partition, one past the newest stored offset (0 for an empty partition)."""
    return {p: await head(broker, topic, p) for p in range(partitions)}


async def stored(
    broker: Inspectable,
    topic: str,
    partitions: int,
    *,
    until: Mapping[int, int] | None = None,
    page: int = 1000,
) -> AsyncGenerator[StoredMessage, None]:
    """Every stored message of ``topic`` in publish order, read a page at a time.

    ``until``: per partition, the offset to stop before (a snapshot of
    :func:`heads`), so messages published meanwhile are left out.
    """
    positions = dict.fromkeys(range(partitions), 0)
    while positions:
        found = await broker.read(topic, after=positions, limit=page)
        if not found:
            return
        for message in found:
            if until is not None and message.offset >= until.get(message.partition, 0):
                positions.pop(message.partition, None)
                continue
            if message.partition in positions:
                positions[message.partition] = message.offset + 1
                yield message
