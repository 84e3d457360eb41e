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


async def before_offset(client: Redis, stream: str, offset: int) -> str:
    """The id just before the first entry whose offset is ``offset`` or more."""
    if offset <= 0:
        return "0"
    newest: Any = await client.xrevrange(stream, count=1)
    if not newest or split_id(newest[0][0])[1] < offset:
        return "$"
    oldest: Any = await client.xrange(stream, count=1)
    low, high = split_id(oldest[0][0])[0], split_id(newest[0][0])[0]
    # The smallest ms whose first entry at or after <ms>-0 has an offset >= ``offset``.
    while low < high:
        middle = (low + high) // 2
        found: Any = await client.xrange(stream, min=f"{middle}-0", count=1)
        if found and split_id(found[0][0])[1] >= offset:
            high = middle
        else:
            low = middle + 1
    return f"{low}-{offset - 1}"
