"""Schemas and contracts: JSON Schema for payload types, and compatibility checks.

:func:`schema_for` describes a payload type (pydantic model, dataclass or
msgspec Struct) as JSON Schema draft 2020-12; :func:`check` says what a new
schema breaks for consumers or producers of previous versions; a
:class:`SchemaRegistry` keeps the versions of each event type and refuses an
incompatible one.
"""

from __future__ import annotations

from tidings.schemas._generate import DIALECT, VERSION_KEYWORD, dataschema_uri, schema_for
from tidings.schemas.compat import (
    Compatibility,
    SchemaCompatibilityError,
    check,
    ensure_compatible,
    parse_mode,
)
from tidings.schemas.contracts import (
    REGISTRY_ENVVAR,
    REGISTRY_URL_ENVVAR,
    Schemas,
    app_payload_types,
    registry_for,
)
from tidings.schemas.directory import DirectoryStore, directory_registry
from tidings.schemas.registry import (
    MemoryStore,
    SchemaRegistry,
    SchemaStorage,
    SchemaStore,
    StoredRegistry,
    memory_registry,
)
from tidings.schemas.rules import Breaking, Direction, Rule
from tidings.schemas.upcast import Upcaster, Upcasters
from tidings.schemas.validation import SchemaViolation

__all__ = [
    "DIALECT",
    "REGISTRY_ENVVAR",
    "REGISTRY_URL_ENVVAR",
    "VERSION_KEYWORD",
    "Breaking",
    "Compatibility",
    "Direction",
    "DirectoryStore",
    "MemoryStore",
    "Rule",
    "SchemaCompatibilityError",
    "SchemaRegistry",
    "SchemaStorage",
    "SchemaStore",
    "SchemaViolation",
    "Schemas",
    "StoredRegistry",
    "Upcaster",
    "Upcasters",
    "app_payload_types",
    "check",
    "dataschema_uri",
    "directory_registry",
    "ensure_compatible",
    "memory_registry",
    "parse_mode",
    "registry_for",
    "schema_for",
]
