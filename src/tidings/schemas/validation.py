"""Validating event data against a registered JSON Schema, with a report naming the fields.

Schemas are compiled once (``jsonschema-rs``, in Rust: a small payload checks in
well under a microsecond) and kept per document. A failure raises
:class:`~tidings.errors.SchemaError` whose message lists each problem as
``<field path>: <what is wrong>``, the path in dotted form (``items.0.qty``;
``(root)`` for the object itself), and whose ``problems`` keep them as pairs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tidings.errors import ConfigurationError, SchemaError

__all__ = ["SchemaViolation", "compiled", "validate"]

#: At most this many problems are listed in one error.
_SHOWN = 10


class SchemaViolation(SchemaError):
    """Event data that does not match its registered schema (``problems``: path, message)."""

    def __init__(self, what: str, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        listed = "; ".join(f"{path}: {message}" for path, message in problems[:_SHOWN])
        more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
        super().__init__(f"{what} does not match its schema: {listed}{more}")


_compiled: dict[str, Any] = {}


def compiled(schema: Mapping[str, Any]) -> Any:
    """The compiled validator of ``schema`` (cached by its canonical JSON text)."""
    try:
        import jsonschema_rs
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "validating event data needs jsonschema-rs: pip install 'tidings[schemas]'"
        ) from None
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    validator = _compiled.get(text)
    if validator is None:
        try:
            validator = jsonschema_rs.validator_for(dict(schema))
        except Exception as exc:  # jsonschema-rs raises ValidationError/ValueError kinds
            raise SchemaError(f"not a usable JSON Schema: {exc}") from exc
        if len(_compiled) >= 1024:
            _compiled.clear()
        _compiled[text] = validator
    return validator


def validate(validator: Any, data: Any, what: str) -> None:
    """Raise :class:`SchemaViolation` (``what`` names the event) unless ``data`` is valid."""
    if validator.is_valid(data):
        return
    problems = [
        (".".join(str(part) for part in error.instance_path) or "(root)", error.message)
        for error in validator.iter_errors(data)
    ]
    raise SchemaViolation(what, problems)
