"""Whether an aio-pika connection still works.

aio-pika's ``Connection.is_closed`` only turns true once ``close()`` was called
on this side: a connection the server closed (``CONNECTION_FORCED``, a node
restart) or a dead socket leaves it false. Its ``connected`` event is cleared
then, and the aiormq connection underneath is closed.
"""

from __future__ import annotations

from aio_pika.abc import AbstractConnection

__all__ = ["alive"]


def alive(connection: AbstractConnection | None) -> bool:
    if connection is None or connection.is_closed:
        return False
    connected = getattr(connection, "connected", None)
    if connected is not None and not connected.is_set():
        return False
    underlying = getattr(getattr(connection, "transport", None), "connection", None)
    return underlying is None or not underlying.is_closed
