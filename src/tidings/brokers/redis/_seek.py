"""Moving a group on one partition stream: ``XGROUP SETID`` to the entry before a position.

Ids are ``<ms>-<offset>``: a time is found natively (``<ms - 1>-<max>``); an
offset by bisecting on the time part (``XRANGE <ms>-0 + COUNT 1``), since the
offset grows with the time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from tidings.broker import Position
from tidings.brokers.redis._binding import split_id

__all__ = ["before_offset", "seek_stream"]

_MAX_SEQ = (1 << 64) - 1


async def seek_stream(client: Redis, stream: str, group: str, position: Position) -> None:
    if position == "beginning":
        last = "0"
    elif position == "end":
        last = "$"
    elif isinstance(position, datetime):
        ms = int(position.timestamp() * 1000)
        last = f"{ms - 1}-{_MAX_SEQ}" if ms > 0 else "0"
    else:
        last = await before_offset(client, stream, int(position))
    await client.xgroup_setid(stream, group, last)


_MAX_SEQ = 2**64 - 1  # the largest sequence part of a stream id


async def before_offset(client: Redis, stream: str, offset: int) -> str:
    """The id just before the first entry whose offset is ``offset`` or more.

    Ids are ``<ms>-<offset>``, several entries often sharing a millisecond: the
    bisection looks for the millisecond of entry ``offset - 1`` (the newest
    entry at or before a millisecond tells how far the stream had got by then).
    """
    if offset <= 0:
        return "0"
    newest: Any = await client.xrevrange(stream, count=1)
    if not newest or split_id(newest[0][0])[1] < offset:
        return "$"
    oldest: Any = await client.xrange(stream, count=1)
    if split_id(oldest[0][0])[1] >= offset:
        return "0"  # everything stored comes at or after it
    target = offset - 1
    low, high = split_id(oldest[0][0])[0], split_id(newest[0][0])[0]
    # The smallest ms by which the stream had reached offset ``target``.
    while low < high:
        middle = (low + high) // 2
        found: Any = await client.xrevrange(stream, max=f"{middle}-{_MAX_SEQ}", count=1)
        if found and split_id(found[0][0])[1] >= target:
            high = middle
        else:
            low = middle + 1
    return f"{low}-{target}"
