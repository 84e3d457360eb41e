"""Where saga instances live: the :class:`SagaStore` port and its in-memory store.

A store keeps one row per saga instance, named by the saga's name and the
instance's id (its correlation key): an opaque JSON document, whether the
saga completed, and a version. :meth:`SagaStore.save` is a compare-and-set on
that version (optimistic concurrency): two handlings of one saga that raced
cannot both win; the loser raises :class:`~tidings.errors.ConcurrencyError`
and its event is retried against the winner's state.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tidings.errors import ConcurrencyError

__all__ = ["MemorySagaStore", "SagaStore", "StoredSaga", "conflict"]


@dataclass(frozen=True)
class StoredSaga:
    """One saga instance as stored: its document, whether it completed, its version (>= 1)."""

    document: str
    completed: bool
    version: int


@runtime_checkable
class SagaStore(Protocol):
    """Persists saga instances. Safe to call from concurrent tasks.

    * :meth:`load` returns the instance, or None if it was never saved;
    * :meth:`save` writes it if its stored version is still ``expected``
      (0: it must not exist yet) and returns the new version, ``expected + 1``;
      otherwise it changes nothing and raises :class:`ConcurrencyError`.
    """

    async def load(self, saga: str, saga_id: str) -> StoredSaga | None: ...

    async def save(
        self, saga: str, saga_id: str, document: str, completed: bool, expected: int
    ) -> int: ...

    async def close(self) -> None:
        """Release what the store opened itself (connections)."""


def conflict(saga: str, saga_id: str, expected: int) -> ConcurrencyError:
    """The error of a save that lost a race: the instance is no longer at ``expected``."""
    return ConcurrencyError(
        f"saga {saga!r} instance {saga_id!r} changed since version {expected} was read "
        "(another handling saved it first); handle the event again on the new state"
    )


class MemorySagaStore:
    """Saga instances in a dict: for tests and ``memory://`` apps; gone with the process."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], StoredSaga] = {}
        self._lock = asyncio.Lock()

    async def load(self, saga: str, saga_id: str) -> StoredSaga | None:
        return self._rows.get((saga, saga_id))

    async def save(
        self, saga: str, saga_id: str, document: str, completed: bool, expected: int
    ) -> int:
        async with self._lock:
            current = self._rows.get((saga, saga_id))
            if (current.version if current is not None else 0) != expected:
                raise conflict(saga, saga_id, expected)
            self._rows[(saga, saga_id)] = StoredSaga(document, completed, expected + 1)
            return expected + 1

    async def close(self) -> None:
        """Nothing to release."""
