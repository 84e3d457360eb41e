"""One small face over the database drivers the outbox and the inbox accept.

A connection given by the user (asyncpg, psycopg 3 async, SQLAlchemy 2
``AsyncSession``/``AsyncConnection``, or stdlib ``sqlite3``) is wrapped in a
:class:`Sql` that runs statements written with ``{}`` placeholders in the
driver's own parameter style. Drivers are recognised by the modules already
imported, so nothing here imports a driver the application does not use.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any, Literal

from tidings.errors import ConfigurationError

__all__ = ["Dialect", "Sql", "sql_for"]

Dialect = Literal["postgresql", "sqlite"]
Params = Sequence[Any]


class Sql:
    """Runs statements on one connection, inside the transaction its owner opened."""

    dialect: Dialect
    #: The connection as the user knows it (what a handler receives).
    connection: Any

    def marker(self, index: int) -> str:  # pragma: no cover - every driver overrides it
        raise NotImplementedError

    def render(self, statement: str) -> str:
        """``statement`` with its ``{}`` placeholders in this driver's style."""
        count = statement.count("{}")
        return statement.format(*(self.marker(i) for i in range(1, count + 1)))

    async def execute(self, statement: str, params: Params = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        raise NotImplementedError  # pragma: no cover

    async def execute_many(self, statement: str, rows: Sequence[Params]) -> None:
        raise NotImplementedError  # pragma: no cover

    async def fetch(self, statement: str, params: Params = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError  # pragma: no cover


class _Asyncpg(Sql):
    dialect: Dialect = "postgresql"

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def marker(self, index: int) -> str:
        return f"${index}"

    async def execute(self, statement: str, params: Params = ()) -> int:
        status: str = await self.connection.execute(self.render(statement), *params)
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def execute_many(self, statement: str, rows: Sequence[Params]) -> None:
        await self.connection.executemany(self.render(statement), rows)

    async def fetch(self, statement: str, params: Params = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self.connection.fetch(self.render(statement), *params)]


class _Psycopg(Sql):
    dialect: Dialect = "postgresql"

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def marker(self, index: int) -> str:
        return "%s"

    async def execute(self, statement: str, params: Params = ()) -> int:
        cursor = await self.connection.execute(self.render(statement), tuple(params))
        return max(int(cursor.rowcount), 0)

    async def execute_many(self, statement: str, rows: Sequence[Params]) -> None:
        async with self.connection.cursor() as cursor:
            await cursor.executemany(self.render(statement), [tuple(r) for r in rows])

    async def fetch(self, statement: str, params: Params = ()) -> list[tuple[Any, ...]]:
        cursor = await self.connection.execute(self.render(statement), tuple(params))
        return [tuple(r) for r in await cursor.fetchall()]


class _SqlAlchemy(Sql):
    def __init__(self, connection: Any, dialect: Dialect) -> None:
        from sqlalchemy import text

        self.connection = connection
        self.dialect = dialect
        self._text = text

    def marker(self, index: int) -> str:
        return f":p{index}"

    @staticmethod
    def _named(params: Params) -> dict[str, Any]:
        return {f"p{i}": value for i, value in enumerate(params, 1)}

    async def execute(self, statement: str, params: Params = ()) -> int:
        result = await self.connection.execute(
            self._text(self.render(statement)), self._named(params)
        )
        return max(int(result.rowcount), 0)

    async def execute_many(self, statement: str, rows: Sequence[Params]) -> None:
        await self.connection.execute(
            self._text(self.render(statement)), [self._named(r) for r in rows]
        )

    async def fetch(self, statement: str, params: Params = ()) -> list[tuple[Any, ...]]:
        result = await self.connection.execute(
            self._text(self.render(statement)), self._named(params)
        )
        return [tuple(r) for r in result.all()]


class _Sqlite(Sql):
    """A stdlib ``sqlite3`` connection; ``threaded`` runs each call in a worker thread."""

    dialect: Dialect = "sqlite"

    def __init__(self, connection: sqlite3.Connection, threaded: bool = False) -> None:
        self.connection = connection
        self.threaded = threaded

    def marker(self, index: int) -> str:
        return "?"

    async def _run(self, call: Any, *args: Any) -> Any:
        if self.threaded:
            return await asyncio.to_thread(call, *args)
        return call(*args)

    def _execute(self, statement: str, params: Params) -> int:
        cursor = self.connection.execute(self.render(statement), tuple(params))
        return int(cursor.rowcount)

    def _fetch(self, statement: str, params: Params) -> list[tuple[Any, ...]]:
        cursor = self.connection.execute(self.render(statement), tuple(params))
        return [tuple(row) for row in cursor.fetchall()]

    async def execute(self, statement: str, params: Params = ()) -> int:
        return max(int(await self._run(self._execute, statement, params)), 0)

    async def execute_many(self, statement: str, rows: Sequence[Params]) -> None:
        await self._run(self.connection.executemany, self.render(statement), rows)

    async def fetch(self, statement: str, params: Params = ()) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = await self._run(self._fetch, statement, params)
        return rows


def _sqlalchemy_dialect(connection: Any) -> Dialect:
    bind = connection.get_bind() if hasattr(connection, "get_bind") else connection
    name = bind.dialect.name
    if name not in ("postgresql", "sqlite"):
        raise ConfigurationError(
            f"the outbox supports PostgreSQL and SQLite; this SQLAlchemy connection is {name!r}"
        )
    dialect: Dialect = name
    return dialect


def sql_for(connection: Any) -> Sql:
    """Wrap a user's connection; a clear error names what is accepted otherwise."""
    if isinstance(connection, Sql):
        return connection
    if isinstance(connection, sqlite3.Connection):
        return _Sqlite(connection)
    module = type(connection).__module__
    if module.startswith("asyncpg."):
        return _Asyncpg(connection)
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(connection, psycopg.AsyncConnection):
        return _Psycopg(connection)
    sqlalchemy = sys.modules.get("sqlalchemy.ext.asyncio")
    if sqlalchemy is not None and isinstance(
        connection, sqlalchemy.AsyncSession | sqlalchemy.AsyncConnection
    ):
        return _SqlAlchemy(connection, _sqlalchemy_dialect(connection))
    raise ConfigurationError(
        f"cannot write to the outbox through {type(connection).__qualname__}: pass an asyncpg "
        "connection, a psycopg AsyncConnection, a SQLAlchemy AsyncSession or AsyncConnection, "
        "or a sqlite3.Connection (inside the transaction of your own writes)"
    )
