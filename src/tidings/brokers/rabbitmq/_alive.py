"""Whether an aio-pika connection still works.

aio-pika's ``Connection.is_closed`` only turns true once ``close()`` was called
on this side: a connection the server closed (``CONNECTION_FORCED``, a node
restart) or a dead socket leaves it false. Its ``connected`` event is cleared
then, and the aiormq connection underneath is closed.

:func:`close_connection` closes one and waits for aio-pika's own close
callback, a task it starts on the way, so that none is left for an event loop
that closes next (it would raise "Event loop is closed" from garbage
collection).
"""

from __future__ import annotations

import asyncio
import contextlib

from aio_pika.abc import AbstractConnection

__all__ = ["alive", "close_connection"]


def alive(connection: AbstractConnection | None) -> bool:
    if connection is None or connection.is_closed:
        return False
    connected = getattr(connection, "connected", None)
    if connected is not None and not connected.is_set():
        return False
    underlying = getattr(getattr(connection, "transport", None), "connection", None)
    return underlying is None or not underlying.is_closed


async def close_connection(connection: AbstractConnection) -> None:
    """Close ``connection`` (errors ignored) and wait up to 1 s for its close callback."""
    callback = getattr(getattr(connection, "transport", None), "close_callback", None)
    with contextlib.suppress(Exception):
        await connection.close()
    finished = getattr(callback, "finished", None)
    if isinstance(finished, asyncio.Event):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished.wait(), 1.0)
