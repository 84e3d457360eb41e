"""The schema registry: every schema version of each event type, and its compatibility mode.

:class:`SchemaRegistry` is the contract; :class:`StoredRegistry` implements it
once over a :class:`SchemaStore`, the small storage port each backend fills:

- :class:`MemoryStore`: in this process only (tests, one-process apps);
- :class:`~tidings.schemas.directory.DirectoryStore`: a directory of JSON
  files (``TIDINGS_SCHEMAS=path`` for the CLI), one per type and version;
- the embedded broker's own database file: ``SqliteBroker.schema_store()``
  (any broker implementing :class:`SchemaStorage`).

The rules, the same for every backend:

- versions count 1, 2, 3 per event type, in registration order. The stored
  document's ``x-tidings-version`` and ``$id`` are set to the registry's
  version, so ``dataschema_uri(type, n)`` names exactly what version ``n`` holds;
- registering a schema equal to one already registered (ignoring those two
  keywords) returns that version and stores nothing: registering is idempotent;
- a new schema is checked against the previous versions under the type's mode
  (``BACKWARD`` until :meth:`~SchemaRegistry.set_mode` says otherwise) and
  refused with :class:`~tidings.schemas.compat.SchemaCompatibilityError`,
  which names every breaking field;
- two registrations racing for the same version: one wins, the other checks
  again against the winner (:meth:`SchemaStore.add_schema` is insert-if-absent).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from tidings.errors import SchemaError
from tidings.schemas._generate import VERSION_KEYWORD, dataschema_uri
from tidings.schemas.compat import Compatibility, SchemaCompatibilityError, check, parse_mode
from tidings.schemas.rules import Breaking

__all__ = [
    "MemoryStore",
    "SchemaRegistry",
    "SchemaStorage",
    "SchemaStore",
    "StoredRegistry",
    "memory_registry",
]

Schema = Mapping[str, Any]
#: Keywords the registry sets itself; ignored when comparing schemas.
_STAMPED = ("$id", VERSION_KEYWORD)
_ATTEMPTS = 10


@runtime_checkable
class SchemaStore(Protocol):
    """Where a registry keeps its schemas: documents as JSON text, and one mode per type.

    Every method is safe to call from several tasks, and (for the file-based
    stores) from several processes on the same storage.
    """

    async def stored_schemas(self, event_type: str) -> list[str]:
        """The JSON texts of ``event_type``'s versions, version 1 first ([] if none)."""
        ...

    async def add_schema(self, event_type: str, version: int, text: str) -> bool:
        """Store ``text`` as ``version`` unless that version exists; False if it does."""
        ...

    async def schema_types(self) -> list[str]:
        """Every event type with at least one version, sorted."""
        ...

    async def schema_mode(self, event_type: str) -> str | None:
        """The mode set for ``event_type``, or None."""
        ...

    async def set_schema_mode(self, event_type: str, mode: str) -> None:
        """Set (replace) the mode of ``event_type``."""
        ...


@runtime_checkable
class SchemaStorage(Protocol):
    """A broker that can keep the schema registry in its own storage (the embedded one)."""

    def schema_store(self) -> SchemaStore:
        """The registry's storage; usable while the broker is connected."""
        ...


class SchemaRegistry(Protocol):
    """Schema versions per event type, each new one checked against the previous ones."""

    async def register(
        self, event_type: str, schema: Schema, mode: Compatibility | str | None = None
    ) -> int:
        """Store ``schema`` as the next version of ``event_type``; return its version.

        An equal schema already registered returns its version. ``mode``
        (default: the type's mode) decides which previous versions it must stay
        compatible with; raises SchemaCompatibilityError naming the breaking fields.
        """
        ...

    async def check(
        self, event_type: str, schema: Schema, mode: Compatibility | str | None = None
    ) -> list[Breaking]:
        """What registering ``schema`` would break ([]: compatible, or already registered)."""
        ...

    async def find(self, event_type: str, schema: Schema) -> int | None:
        """The version holding a schema equal to ``schema``, or None."""
        ...

    async def get(self, event_type: str, version: int | None = None) -> dict[str, Any]:
        """Version ``version`` (default: the latest); raises SchemaError if there is none."""
        ...

    async def versions(self, event_type: str) -> list[int]:
        """The versions of ``event_type``, oldest first ([] for an unknown type)."""
        ...

    async def types(self) -> list[str]:
        """Every event type with a registered schema, sorted."""
        ...

    async def mode(self, event_type: str) -> Compatibility:
        """The compatibility mode of ``event_type`` (``BACKWARD`` unless set)."""
        ...

    async def set_mode(self, event_type: str, mode: Compatibility | str) -> None:
        """Set the compatibility mode later registrations of ``event_type`` are checked with."""
        ...


class StoredRegistry:
    """:class:`SchemaRegistry` over a :class:`SchemaStore`.

    >>> import asyncio
    >>> registry = StoredRegistry(MemoryStore())
    >>> schema = {"type": "object", "properties": {"id": {"type": "string"}}}
    >>> asyncio.run(registry.register("com.example.thing", schema))
    1
    """

    def __init__(self, store: SchemaStore) -> None:
        self.store = store

    async def register(
        self, event_type: str, schema: Schema, mode: Compatibility | str | None = None
    ) -> int:
        for _ in range(_ATTEMPTS):
            previous = await self._documents(event_type)
            found = version_of(previous, schema)
            if found is not None:
                return found
            chosen = await self._mode(event_type, mode)
            breaking = check(schema, previous, chosen) if previous else []
            if breaking:
                raise SchemaCompatibilityError(breaking, chosen, event_type)
            version = len(previous) + 1
            text = json.dumps(stamped(schema, event_type, version), indent=2, sort_keys=True)
            if await self.store.add_schema(event_type, version, text):
                return version
        raise SchemaError(
            f"could not register a schema for {event_type!r}: other registrations kept "
            "taking the next version; try again"
        )

    async def check(
        self, event_type: str, schema: Schema, mode: Compatibility | str | None = None
    ) -> list[Breaking]:
        previous = await self._documents(event_type)
        if not previous or version_of(previous, schema) is not None:
            return []
        return check(schema, previous, await self._mode(event_type, mode))

    async def find(self, event_type: str, schema: Schema) -> int | None:
        return version_of(await self._documents(event_type), schema)

    async def get(self, event_type: str, version: int | None = None) -> dict[str, Any]:
        documents = await self._documents(event_type)
        if not documents:
            raise SchemaError(f"no schema registered for event type {event_type!r}")
        if version is None:
            return documents[-1]
        if not 1 <= version <= len(documents):
            raise SchemaError(
                f"event type {event_type!r} has no schema version {version} "
                f"(versions 1 to {len(documents)})"
            )
        return documents[version - 1]

    async def versions(self, event_type: str) -> list[int]:
        return list(range(1, len(await self.store.stored_schemas(event_type)) + 1))

    async def types(self) -> list[str]:
        return await self.store.schema_types()

    async def mode(self, event_type: str) -> Compatibility:
        stored = await self.store.schema_mode(event_type)
        return Compatibility.BACKWARD if stored is None else parse_mode(stored)

    async def set_mode(self, event_type: str, mode: Compatibility | str) -> None:
        await self.store.set_schema_mode(event_type, parse_mode(mode).value)

    async def _mode(self, event_type: str, mode: Compatibility | str | None) -> Compatibility:
        return await self.mode(event_type) if mode is None else parse_mode(mode)

    async def _documents(self, event_type: str) -> list[dict[str, Any]]:
        documents = []
        for text in await self.store.stored_schemas(event_type):
            document = json.loads(text)
            if not isinstance(document, dict):
                raise SchemaError(f"a stored schema of {event_type!r} is not a JSON object")
            documents.append(document)
        return documents


def memory_registry() -> StoredRegistry:
    """A registry in this process's memory (tests, a single process)."""
    return StoredRegistry(MemoryStore())


class MemoryStore:
    """A :class:`SchemaStore` in this process's memory."""

    def __init__(self) -> None:
        self._schemas: dict[str, list[str]] = {}
        self._modes: dict[str, str] = {}

    async def stored_schemas(self, event_type: str) -> list[str]:
        return list(self._schemas.get(event_type, ()))

    async def add_schema(self, event_type: str, version: int, text: str) -> bool:
        texts = self._schemas.setdefault(event_type, [])
        if len(texts) != version - 1:
            return False
        texts.append(text)
        return True

    async def schema_types(self) -> list[str]:
        return sorted(name for name, texts in self._schemas.items() if texts)

    async def schema_mode(self, event_type: str) -> str | None:
        return self._modes.get(event_type)

    async def set_schema_mode(self, event_type: str, mode: str) -> None:
        self._modes[event_type] = mode


def stamped(schema: Schema, event_type: str, version: int) -> dict[str, Any]:
    """``schema`` with ``$id`` and ``x-tidings-version`` naming registry version ``version``."""
    return {**schema, "$id": dataschema_uri(event_type, version), VERSION_KEYWORD: version}


def version_of(documents: Sequence[Mapping[str, Any]], schema: Schema) -> int | None:
    """The version (1-based place in ``documents``) of the one equal to ``schema``, ignoring
    what the registry stamps (``$id``, ``x-tidings-version``); None if none is."""
    wanted = _canonical(schema)
    for index, document in enumerate(documents):
        if _canonical(document) == wanted:
            return index + 1
    return None


def _canonical(schema: Schema) -> str:
    return json.dumps(
        {k: v for k, v in schema.items() if k not in _STAMPED}, sort_keys=True, default=str
    )
