"""Schemas and contracts: JSON Schema for payload types, and compatibility checks.

:func:`schema_for` describes a payload type (pydantic model, dataclass or
msgspec Struct) as JSON Schema draft 2020-12; :func:`check` says what a new
schema breaks for consumers or producers of previous versions.
"""

from __future__ import annotations

from tidings.schemas._generate import DIALECT, VERSION_KEYWORD, dataschema_uri, schema_for
from tidings.schemas.compat import (
    Compatibility,
    SchemaCompatibilityError,
    check,
    ensure_compatible,
)
from tidings.schemas.rules import Breaking, Direction, Rule

__all__ = [
    "DIALECT",
    "VERSION_KEYWORD",
    "Breaking",
    "Compatibility",
    "Direction",
    "Rule",
    "SchemaCompatibilityError",
    "check",
    "dataschema_uri",
    "ensure_compatible",
    "schema_for",
]
