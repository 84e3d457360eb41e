"""Sagas (process managers): state per correlation key, moved by events, sending commands.

Declare a :class:`Saga` with a state type and a step per event type
(``@saga.starts``, ``@saga.on``, ``@saga.on_timeout``); a step gets the
state, the payload and a :class:`SagaContext` (emit, timeout, compensate,
complete). :meth:`Saga.install` runs it in an App on a :class:`SagaStore`:
:class:`SqlSagaStore` (PostgreSQL or SQLite) or :class:`MemorySagaStore`.
See ``docs/sagas.md``.
"""

from __future__ import annotations

from tidings.sagas.context import Output, SagaContext
from tidings.sagas.definition import Saga, Step
from tidings.sagas.runner import SAGA_ID, SagaRunner, SagaSnapshot
from tidings.sagas.schema import SAGA_TABLE, statements
from tidings.sagas.sql import SqlSagaStore
from tidings.sagas.store import MemorySagaStore, SagaStore, StoredSaga

__all__ = [
    "SAGA_ID",
    "SAGA_TABLE",
    "MemorySagaStore",
    "Output",
    "Saga",
    "SagaContext",
    "SagaRunner",
    "SagaSnapshot",
    "SagaStore",
    "SqlSagaStore",
    "Step",
    "StoredSaga",
    "statements",
]
