"""What the outbox and inbox tests share: a PostgreSQL schema of their own, a Redis check.

Each test creates a schema on the PostgreSQL at ``TIDINGS_POSTGRES_URL``
(default 127.0.0.1:5432, database ``test``, trust auth) and drops it at the
end; connections reach it through ``search_path``. A missing server skips the
test, or fails it under ``TIDINGS_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "brokers"))

from _services import port_open, service_missing, start_python, stop_process, until

__all__ = [
    "POSTGRES_URL",
    "REDIS_URL",
    "postgres_schema",
    "require_redis",
    "schema_url",
    "start_python",
    "stop_process",
    "until",
    "until_async",
]

POSTGRES_URL = os.environ.get("TIDINGS_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = "redis://127.0.0.1:6379/0"


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A new schema; yields its name, drops it (and everything in it) afterwards."""
    import asyncpg

    try:
        admin = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        service_missing(f"no PostgreSQL at {POSTGRES_URL}: {exc!r}")
    schema = f"tidings_test_{uuid.uuid4().hex[:12]}"
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


def schema_url(schema: str) -> str:
    """The PostgreSQL URL whose connections see ``schema`` first (asyncpg and psycopg)."""
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


def require_redis() -> None:
    if not port_open("127.0.0.1", 6379):
        service_missing("no Redis on 127.0.0.1:6379")


async def until_async(condition: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    """Like ``until``, for a condition that must be awaited (a query)."""
    deadline = time.monotonic() + timeout
    while True:
        if await condition():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
