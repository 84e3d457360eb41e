"""Group commit: one thread, one connection, many operations per transaction.

Operations submitted while a transaction is being written queue up and go
into the next one together, so N concurrent publishers cost one fsync, not
N. Each operation runs inside its own savepoint: one that raises is rolled
back alone and gets its exception; the others commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tidings.errors import BrokerClosedError, PublishError, StorageError

__all__ = ["Writer", "wal_stamp"]

T = TypeVar("T")
_Op = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]
_MAX_BATCH = 2000


def wal_stamp(path: str) -> tuple[int, int] | None:
    """The (mtime in ns, size) of a WAL file, or None if there is none."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


def file_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path`` now, or None if there is none."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)


def _runs(batch: list[_Op]) -> list[list[_Op]]:
    """Split a batch into runs; consecutive operations of a type with ``run_many``
    (e.g. exactly-once commits) form one run, applied with set-wise statements."""
    runs: list[list[_Op]] = []
    for item in batch:
        kind = type(item[0])
        if runs and hasattr(kind, "run_many") and type(runs[-1][0][0]) is kind:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _settle(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in results:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class Writer:
    """Runs write operations on a dedicated connection, batching them into transactions."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        wal_path: str | None = None,
        name: str = "tidings-sqlite-writer",
        db_path: str | None = None,
        busy_timeout: float = 30.0,
    ) -> None:
        self.conn = conn
        self._wal_path = wal_path
        self._db_path = db_path
        self._busy_timeout = busy_timeout
        self._identity = file_identity(db_path) if db_path is not None else None
        #: Set once the database file at the path is no longer the one open (it was
        #: deleted or replaced): every write fails with it from then on.
        self.lost: StorageError | None = None
        #: The WAL file's (mtime, size) right after this writer's last commit: a
        #: watcher seeing exactly this stamp knows the change was its own.
        self.wal_stamp: tuple[int, int] | None = None
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._closed = False
        self.commits = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, operation: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue ``operation`` for the next transaction; the future resolves after COMMIT."""
        if self._closed:
            raise BrokerClosedError("the embedded broker is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((operation, future, loop))
        return future

    def close(self) -> None:
        """Finish queued operations, then stop the thread (blocking)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        conn = self.conn
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < _MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._commit(conn, batch)

    def _apply(
        self, conn: sqlite3.Connection, run: list[_Op], alone: bool
    ) -> list[tuple[bool, Any]]:
        """Apply a run of operations, each in its own savepoint (or merged, see _runs)."""
        if alone:
            return [(True, run[0][0](conn))]
        run_many = getattr(type(run[0][0]), "run_many", None)
        if run_many is not None and len(run) > 1:
            conn.execute("SAVEPOINT run")
            try:
                values = run_many(conn, [operation for operation, _, _ in run])
            except Exception:
                conn.execute("ROLLBACK TO run")  # one of them is bad: apply them one by one
            else:
                conn.execute("RELEASE run")
                return [(True, value) for value in values]
            conn.execute("RELEASE run")
        outcomes: list[tuple[bool, Any]] = []
        for operation, _, _ in run:
            conn.execute("SAVEPOINT op")
            try:
                value = operation(conn)
            except Exception as exc:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                outcomes.append((False, exc))
            else:
                conn.execute("RELEASE op")
                outcomes.append((True, value))
        return outcomes

    def _begin(self, conn: sqlite3.Connection) -> None:
        """Take the write lock, waiting for other processes in short steps.

        SQLite's own busy handler sleeps 1, 2, 5, 10... ms between tries, so
        writers of several processes would spend most of their time asleep
        while the lock is free; 0.1 to 2 ms steps keep them taking turns.
        """
        delay = 0.0001
        deadline = None
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorname", "") not in ("SQLITE_BUSY", "SQLITE_LOCKED"):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._busy_timeout
                if now >= deadline:
                    raise
                time.sleep(min(delay, deadline - now))
                delay = min(delay * 2, 0.002)

    def _check_file(self) -> None:
        """Notice a database file deleted or replaced under us (one ``stat``)."""
        if self._db_path is None or self.lost is not None:
            return
        if file_identity(self._db_path) != self._identity:
            self.lost = StorageError(
                f"the database file {self._db_path} was deleted or replaced while open; "
                "refusing to write to a file nobody else can see (restart to open the "
                "file now at that path)"
            )

    def _commit(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        self._check_file()
        try:
            if self.lost is not None:
                raise self.lost
            self._begin(conn)
            try:
                for run in _runs(batch):
                    outcomes.extend(self._apply(conn, run, alone=len(batch) == 1))
                conn.execute("COMMIT")
                self.commits += 1
                if self._wal_path is not None:
                    self.wal_stamp = wal_stamp(self._wal_path)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:
            error = (
                exc
                if not isinstance(exc, sqlite3.Error)
                else PublishError(f"the embedded broker could not commit: {exc}")
            )
            if error is not exc:
                error.__cause__ = exc
            outcomes = [(False, error)] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, future, loop), (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, ok, value))
        for loop, results in by_loop.items():
            # A closed loop raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, results)
