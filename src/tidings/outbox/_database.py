"""The database the relay and the inbox open transactions on themselves.

Given as a URL (``postgresql://...`` opens an asyncpg pool, ``sqlite:///path``
a stdlib connection), or as the application's own pool or engine: an asyncpg
``Pool``, a psycopg ``AsyncConnectionPool``, a SQLAlchemy ``AsyncEngine`` or
``async_sessionmaker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sqlite3
import sys
from collections.abc import AsyncIterator
from typing import Any

from tidings.errors import ConfigurationError
from tidings.outbox._sql import (
    Dialect,
    Sql,
    _Asyncpg,
    _Psycopg,
    _SqlAlchemy,
    _sqlalchemy_dialect,
    _Sqlite,
)

__all__ = ["Database", "database_for"]


class Database:
    """Opens transactions: ``async with db.transaction() as sql`` commits on a clean exit."""

    dialect: Dialect

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Sql]:
        raise NotImplementedError  # pragma: no cover

    async def close(self) -> None:
        """Close what this object opened itself (nothing when it was given a pool)."""


class _AsyncpgPool(Database):
    dialect: Dialect = "postgresql"

    def __init__(self, pool: Any = None, url: str | None = None) -> None:
        self.pool = pool
        self.url = url
        self._lock = asyncio.Lock()

    async def _pool(self) -> Any:
        if self.pool is None:
            async with self._lock:
                if self.pool is None:
                    try:
                        asyncpg = importlib.import_module("asyncpg")
                    except ImportError as exc:
                        raise ConfigurationError(
                            "a postgresql:// URL needs asyncpg: pip install 'tidings[postgres]'"
                        ) from exc
                    self.pool = await asyncpg.create_pool(self.url, min_size=1, max_size=10)
        return self.pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Sql]:
        pool = await self._pool()
        async with pool.acquire() as connection, connection.transaction():
            yield _Asyncpg(connection)

    async def close(self) -> None:
        if self.url is not None and self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()


class _PsycopgPool(Database):
    dialect: Dialect = "postgresql"

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Sql]:
        async with self.pool.connection() as connection, connection.transaction():
            yield _Psycopg(connection)


class _SqlAlchemyEngine(Database):
    def __init__(self, engine: Any, sessions: Any = None) -> None:
        self.engine = engine
        self.sessions = sessions
        self.dialect = _sqlalchemy_dialect(engine)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Sql]:
        if self.sessions is not None:
            async with self.sessions() as session, session.begin():
                yield _SqlAlchemy(session, self.dialect)
        else:
            async with self.engine.begin() as connection:
                yield _SqlAlchemy(connection, self.dialect)


class _SqliteFile(Database):
    """One stdlib connection, used by one transaction at a time, off the event loop."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA busy_timeout = 10000")
            connection.execute("PRAGMA journal_mode = WAL")
            self._connection = connection
        return self._connection

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Sql]:
        async with self._lock:
            connection = await asyncio.to_thread(self._open)
            await asyncio.to_thread(connection.execute, "BEGIN IMMEDIATE")
            try:
                yield _Sqlite(connection, threaded=True)
            except BaseException:
                await asyncio.to_thread(connection.rollback)
                raise
            await asyncio.to_thread(connection.commit)

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            async with self._lock:
                connection.close()


def database_for(target: Any) -> Database:
    """The :class:`Database` for a URL, pool or engine; a clear error for anything else."""
    if isinstance(target, Database):
        return target
    if isinstance(target, str):
        if target.startswith(("postgresql://", "postgres://")):
            return _AsyncpgPool(url=target)
        if target.startswith("sqlite:///"):
            return _SqliteFile(target.removeprefix("sqlite:///"))
        raise ConfigurationError(
            "an outbox database URL starts with postgresql:// or sqlite:///"
            f" (got {target.split(':', 1)[0]!r})"
        )
    if type(target).__module__.startswith("asyncpg.") and hasattr(target, "acquire"):
        return _AsyncpgPool(pool=target)
    psycopg_pool = sys.modules.get("psycopg_pool")
    if psycopg_pool is not None and isinstance(target, psycopg_pool.AsyncConnectionPool):
        return _PsycopgPool(target)
    sqlalchemy = sys.modules.get("sqlalchemy.ext.asyncio")
    if sqlalchemy is not None:
        if isinstance(target, sqlalchemy.AsyncEngine):
            return _SqlAlchemyEngine(target)
        if isinstance(target, sqlalchemy.async_sessionmaker):
            engine = target.kw.get("bind")
            if engine is None:
                raise ConfigurationError("the async_sessionmaker needs bind=<AsyncEngine>")
            return _SqlAlchemyEngine(engine, sessions=target)
    raise ConfigurationError(
        f"cannot open transactions on {type(target).__qualname__}: pass a postgresql:// or "
        "sqlite:/// URL, an asyncpg Pool, a psycopg AsyncConnectionPool, or a SQLAlchemy "
        "AsyncEngine or async_sessionmaker"
    )
