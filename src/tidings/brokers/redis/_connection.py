"""redis-py connections that pack commands with hiredis, in C.

redis-py's asyncio connection packs every command in Python, a handful of calls
per argument. A publish in binary mode has a score of arguments (two per
CloudEvents attribute), so packing was a large part of a single publish's
client time (``bench/run.py --suite redis``). hiredis, which redis-py already
uses to parse replies, packs the same bytes in one call. A command name with a
space in it (``CLIENT SETNAME``) and anything hiredis refuses go the usual way,
so the bytes on the wire and the errors stay redis-py's.
"""

from __future__ import annotations

from typing import Any

from hiredis import pack_command as _pack
from redis.asyncio.connection import Connection, SSLConnection

__all__ = ["connection_class"]


class _HiredisPacking:
    """Mixed into a redis-py connection class: ``pack_command`` through hiredis."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str) and " " not in first:
            try:
                return [_pack(args)]
            except TypeError:
                pass  # redis-py's own packing raises its DataError for the same value
        packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]
        return packed


class HiredisConnection(_HiredisPacking, Connection):
    pass


class HiredisSSLConnection(_HiredisPacking, SSLConnection):
    pass


def connection_class(tls: bool) -> type[Connection]:
    """The connection class for a client, with or without TLS."""
    return HiredisSSLConnection if tls else HiredisConnection
