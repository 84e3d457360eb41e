"""JSON Schema (draft 2020-12) for a payload type, and its ``dataschema`` URI.

pydantic models use ``model_json_schema()`` (validation mode: the schema says
what a reader accepts); dataclasses and msgspec Structs use
``msgspec.json.schema``. Either way the result is one self-contained
document: the payload's own object at the root, nested types in ``$defs``
referenced as ``#/$defs/<Name>`` (kept, not inlined, so recursive types
work; the compatibility check follows them), and these keywords added:

- ``$schema``: the draft 2020-12 dialect;
- ``$id``: :func:`dataschema_uri` of the event type and version, the value a
  CloudEvent's ``dataschema`` attribute names;
- ``title``: the event type (``payload_info(cls).name``);
- ``x-tidings-version``: the event version (``__event_version__``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import msgspec

from tidings.errors import SchemaError
from tidings.payload import is_pydantic_model, payload_info

__all__ = ["DIALECT", "VERSION_KEYWORD", "dataschema_uri", "schema_for"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
VERSION_KEYWORD = "x-tidings-version"

# Characters kept as they are in the type name; anything else (':' included,
# so the version stays the last ':'-separated part) is percent-encoded.
_SAFE = "-._~!$&'()*+,;=@"


def dataschema_uri(event_type: str, version: int) -> str:
    """The stable URI naming the schema of ``event_type`` at ``version``.

    >>> dataschema_uri("com.example.order.placed", 2)
    'urn:tidings:schema:com.example.order.placed:2'
    """
    return f"urn:tidings:schema:{quote(event_type, safe=_SAFE)}:{version}"


def schema_for(payload_type: type[Any]) -> dict[str, Any]:
    """The JSON Schema of a payload type: a pydantic model, dataclass or msgspec Struct.

    Raises SchemaError for a type neither pydantic nor msgspec can describe.
    """
    info = payload_info(payload_type)
    body = _root_inlined(_generated(payload_type))
    for key in ("$schema", "$id", "title", VERSION_KEYWORD):
        body.pop(key, None)
    return {
        "$schema": DIALECT,
        "$id": dataschema_uri(info.name, info.version),
        "title": info.name,
        VERSION_KEYWORD: info.version,
        **body,
    }


def _generated(payload_type: type[Any]) -> dict[str, Any]:
    if is_pydantic_model(payload_type):
        schema: dict[str, Any] = payload_type.model_json_schema()
        return schema
    try:
        return msgspec.json.schema(payload_type)
    except (TypeError, ValueError, NameError) as exc:  # NameError: an unresolved annotation
        raise SchemaError(
            f"cannot generate a JSON Schema for {payload_type.__qualname__}: {exc}; "
            "a payload type must be a pydantic model, a dataclass or a msgspec Struct"
        ) from exc


def _root_inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """msgspec puts the root object in ``$defs`` behind a ``$ref``: bring it up."""
    ref = schema.get("$ref")
    defs = dict(schema.get("$defs", {}))
    if not isinstance(ref, str) or set(schema) - {"$ref", "$defs"}:
        return dict(schema)
    name = ref.removeprefix("#/$defs/")
    root = dict(defs[name])
    others = {key: value for key, value in defs.items() if key != name}
    if json.dumps(f"#/$defs/{name}") not in json.dumps([root, others]):
        defs = others  # only the root referred to it
    if defs:
        root["$defs"] = defs
    return root
