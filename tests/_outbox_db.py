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
from typing import Any

sys.path.insert(0, str(Path(__file__).parent / "brokers"))

from _services import (
    free_port,
    port_open,
    service_missing,
    start_python,
    stop_process,
    until,
)

__all__ = [
    "POSTGRES_URL",
    "REDIS_URL",
    "database_of_kind",
    "free_port",
    "installed_pool",
    "postgres_schema",
    "require_redis",
    "schema_url",
    "service_missing",
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


@contextlib.asynccontextmanager
async def database_of_kind(kind: str, schema: str) -> AsyncIterator[Any]:
    """``schema``'s database as one kind of object a Relay or an Inbox takes.

    ``url``, ``asyncpg-pool``, ``psycopg-pool``, ``sqlalchemy-asyncpg`` and
    ``sqlalchemy-psycopg`` (an ``AsyncEngine``), ``sqlalchemy-sessions`` (an
    ``async_sessionmaker`` on psycopg).
    """
    url = schema_url(schema)
    if kind == "url":
        yield url
    elif kind == "asyncpg-pool":
        import asyncpg

        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        yield pool
        await pool.close()
    elif kind == "psycopg-pool":
        import psycopg_pool

        async with psycopg_pool.AsyncConnectionPool(url, min_size=1, max_size=4) as pool:
            yield pool
    else:
        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

        driver = "asyncpg" if kind == "sqlalchemy-asyncpg" else "psycopg"
        settings = (
            {"server_settings": {"search_path": schema}}
            if driver == "asyncpg"
            else {"options": f"-csearch_path={schema}"}
        )
        engine = create_async_engine(
            POSTGRES_URL.replace("postgresql://", f"postgresql+{driver}://"),
            connect_args=settings,
        )
        yield async_sessionmaker(engine) if kind == "sqlalchemy-sessions" else engine
        await engine.dispose()


@contextlib.asynccontextmanager
async def installed_pool(schema: str, *setup: str) -> AsyncIterator[Any]:
    """An asyncpg pool on ``schema``, with the outbox tables installed and ``setup`` run."""
    import asyncpg

    from tidings.outbox import install

    pool = await asyncpg.create_pool(schema_url(schema), min_size=1, max_size=4)
    try:
        await install(pool)
        for statement in setup:
            await pool.execute(statement)
        yield pool
    finally:
        await pool.close()
