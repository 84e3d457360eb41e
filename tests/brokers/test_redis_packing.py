"""The Redis adapter packs commands with hiredis: the same bytes and errors as redis-py."""

from __future__ import annotations

import pytest

pytest.importorskip("redis")

import redis.exceptions
from redis.asyncio.connection import Connection

from tidings.brokers.redis._connection import HiredisConnection, connection_class

COMMANDS = [
    ("XADD", "t:0", "1-0", "id", "é", "v", b"\x00\xff{}"),
    ("EVALSHA", "abc", 1, "k", 0, 10_000, -3, 2.5, 0.1, 1e20),
    ("CLIENT SETNAME", "tidings"),
    ("PING",),
    ("SET", "k", memoryview(b"view")),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: str(a[0]))
def test_packing_gives_redis_pys_bytes(args: tuple[object, ...]) -> None:
    ours = b"".join(HiredisConnection().pack_command(*args))
    theirs = b"".join(bytes(part) for part in Connection().pack_command(*args))
    assert ours == theirs


def test_a_value_redis_py_refuses_is_its_data_error() -> None:
    with pytest.raises(redis.exceptions.DataError):
        HiredisConnection().pack_command("SET", "k", True)


def test_tls_gets_an_ssl_connection() -> None:
    from redis.asyncio.connection import SSLConnection

    assert issubclass(connection_class(tls=True), SSLConnection)
    assert not issubclass(connection_class(tls=False), SSLConnection)
