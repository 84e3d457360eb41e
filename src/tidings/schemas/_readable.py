"""The primitive of the compatibility check: is data written with W readable by R?

``readable(reader, writer)`` lists what a document valid under the writer
schema may hold that the reader schema rejects. It walks both schemas side
by side, following each one's local ``$ref``s (``#/...`` JSON pointers into
its own document); a pair of ``$ref``s already being compared higher up is
not walked again, so recursive types end.

``new_is_reader`` only names the findings (see :class:`~tidings.schemas.rules.Rule`):
the test is the same either way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tidings.errors import SchemaError
from tidings.schemas.rules import Breaking, Direction, Rule

__all__ = ["readable"]

Obj = Mapping[str, Any]
Schema = Obj | bool

ROOT = "<root>"
# (inclusive keyword, exclusive keyword or "") of lower and upper bounds
_LOWER = (
    ("minimum", "exclusiveMinimum"),
    ("minLength", ""),
    ("minItems", ""),
    ("minProperties", ""),
)
_UPPER = (
    ("maximum", "exclusiveMaximum"),
    ("maxLength", ""),
    ("maxItems", ""),
    ("maxProperties", ""),
)


def readable(
    reader: Schema, writer: Schema, *, new_is_reader: bool, version: int | None = None
) -> list[Breaking]:
    """What data written with ``writer`` may hold that ``reader`` cannot read."""
    walk = _Walk(reader, writer, new_is_reader, version)
    walk.compare(reader, writer, ROOT)
    return walk.found


def _join(path: str, name: str) -> str:
    return name if path == ROOT else f"{path}.{name}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _enum(schema: Mapping[str, Any]) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    values = schema.get("enum")
    return list(values) if isinstance(values, list) else None


def _branches(schema: Mapping[str, Any]) -> list[Schema] | None:
    for keyword in ("anyOf", "oneOf"):
        if isinstance(schema.get(keyword), list):
            return list(schema[keyword])
    return None


def _covers(reader: frozenset[str] | None, writer: frozenset[str] | None) -> bool:
    if reader is None:
        return True
    if writer is None:
        return False
    return all(t in reader or (t == "integer" and "number" in reader) for t in writer)


def _show(types: frozenset[str] | None) -> str:
    return "any" if types is None else " | ".join(sorted(types)) or "nothing"


def _bound(schema: Mapping[str, Any], inclusive: str, exclusive: str) -> tuple[float, bool] | None:
    """A bound as (value, strict); of two bounds the tighter one."""
    found = [(schema[inclusive], False)] if isinstance(schema.get(inclusive), int | float) else []
    if exclusive and isinstance(schema.get(exclusive), int | float):
        found.append((schema[exclusive], True))
    if not found:
        return None
    return max(found) if inclusive.startswith("min") else min(found, key=lambda b: (b[0], -b[1]))


class _Walk:
    def __init__(self, reader: Schema, writer: Schema, new_is_reader: bool, version: int | None):
        self.roots = (reader, writer)
        self.new_is_reader = new_is_reader
        self.direction: Direction = "backward" if new_is_reader else "forward"
        self.version = version
        self.found: list[Breaking] = []
        self.walking: set[tuple[object, object]] = set()

    def add(self, path: str, backward: Rule, forward: Rule, detail: str) -> None:
        rule = backward if self.new_is_reader else forward
        self.found.append(Breaking(path, rule, detail, self.direction, self.version))

    def old_new(self, reader: Any, writer: Any) -> tuple[Any, Any]:
        return (writer, reader) if self.new_is_reader else (reader, writer)

    # -- $ref and allOf -------------------------------------------------------

    def resolve(self, schema: Schema, side: int) -> Schema:
        seen: set[str] = set()
        while isinstance(schema, Mapping) and ("$ref" in schema or "allOf" in schema):
            merged = {k: v for k, v in schema.items() if k not in ("$ref", "allOf")}
            for part in schema.get("allOf", []):
                resolved = self.resolve(part, side)
                if isinstance(resolved, Mapping):
                    merged = {**resolved, **merged}
            ref = schema.get("$ref")
            if isinstance(ref, str):
                if ref in seen:
                    raise SchemaError(f"$ref {ref!r} refers to itself")
                seen.add(ref)
                merged = {**self.pointer(ref, side), **merged}
            schema = merged
        return schema

    def pointer(self, ref: str, side: int) -> Mapping[str, Any]:
        if not ref.startswith("#"):
            raise SchemaError(f"cannot follow $ref {ref!r}: only local '#/...' references")
        node: Any = self.roots[side]
        for part in filter(None, ref[1:].split("/")):
            key = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or key not in node:
                raise SchemaError(f"$ref {ref!r} points at nothing")
            node = node[key]
        return node if isinstance(node, Mapping) else {} if node else {"not": {}}

    def types(self, schema: Schema, side: int) -> frozenset[str] | None:
        """The JSON types a schema admits; None for any."""
        schema = self.resolve(schema, side)
        if isinstance(schema, bool):
            return None if schema else frozenset()
        if "not" in schema and not schema["not"]:
            return frozenset()
        branches = _branches(schema)
        if branches is not None:
            parts = [self.types(branch, side) for branch in branches]
            if any(part is None for part in parts):
                return None
            return frozenset().union(*(part for part in parts if part is not None))
        declared = schema.get("type")
        if isinstance(declared, str):
            return frozenset([declared])
        if isinstance(declared, list):
            return frozenset(declared)
        values = _enum(schema)
        return None if values is None else frozenset(_json_type(v) for v in values)

    # -- the walk -------------------------------------------------------------

    def compare(self, reader: Schema, writer: Schema, path: str) -> None:
        key = (_ref_or_id(reader), _ref_or_id(writer))
        if key in self.walking:
            return
        self.walking.add(key)
        try:
            self._compare(self.resolve(reader, 0), self.resolve(writer, 1), path)
        finally:
            self.walking.discard(key)

    def _compare(self, reader: Schema, writer: Schema, path: str) -> None:
        r_types, w_types = self.types(reader, 0), self.types(writer, 1)
        if not _covers(r_types, w_types):
            old, new = self.old_new(r_types, w_types)
            if _covers(old, new):
                rule, verb = Rule.TYPE_NARROWED, "narrowed"
            elif _covers(new, old):
                rule, verb = Rule.TYPE_WIDENED, "widened"
            else:
                rule, verb = Rule.TYPE_CHANGED, "changed"
            self.found.append(
                Breaking(
                    path,
                    rule,
                    f"type {verb} from {_show(old)} to {_show(new)}",
                    self.direction,
                    self.version,
                )
            )
            return
        if isinstance(reader, bool) or isinstance(writer, bool):
            return  # reader true reads anything; writer false writes nothing
        w_branches, r_branches = _branches(writer), _branches(reader)
        if w_branches is not None:
            for branch in w_branches:
                self.compare(reader, branch, path)
        elif r_branches is not None:
            self.compare_with_some(r_branches, writer, path)
        else:
            self.compare_values(reader, writer, path)

    def compare_with_some(self, branches: list[Schema], writer: Schema, path: str) -> None:
        """A writer is readable by a union when one branch reads it all."""
        w_types = self.types(writer, 1)
        candidates = [b for b in branches if _covers(self.types(b, 0), w_types)]
        attempts: list[list[Breaking]] = []
        for branch in candidates:
            before = self.found
            self.found = []
            self.compare(branch, writer, path)
            attempts.append(self.found)
            self.found = before
            if not attempts[-1]:
                return
        if attempts:
            self.found.extend(attempts[0])

    def compare_values(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
    ) -> None:
        self.compare_enums(reader, writer, path)
        self.compare_bounds(reader, writer, path)
        self.compare_patterns(reader, writer, path)
        if any(k in reader or k in writer for k in ("properties", "required")) or any(
            isinstance(s.get("additionalProperties"), Mapping | bool) for s in (reader, writer)
        ):
            self.compare_objects(reader, writer, path)
        self.compare_arrays(reader, writer, path)

    def compare_enums(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
    ) -> None:
        r_values, w_values = _enum(reader), _enum(writer)
        if r_values is None:
            return
        if w_values is None:
            loose = _show(self.types(writer, 1))
            enum = f"enum {json.dumps(r_values)}"
            detail = (
                f"{loose} narrowed to {enum}"
                if self.new_is_reader
                else f"{enum} widened to {loose}"
            )
            self.add(path, Rule.TYPE_NARROWED, Rule.TYPE_WIDENED, detail)
            return
        missing = [v for v in w_values if v not in r_values]
        if missing:
            verb = "removed" if self.new_is_reader else "added"
            detail = f"enum value{'s' if len(missing) > 1 else ''} {json.dumps(missing)} {verb}"
            self.add(path, Rule.ENUM_VALUE_REMOVED, Rule.ENUM_VALUE_ADDED, detail)

    def compare_bounds(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
    ) -> None:
        for bounds, looser in ((_LOWER, _lower_looser), (_UPPER, _upper_looser)):
            for inclusive, exclusive in bounds:
                r_bound = _bound(reader, inclusive, exclusive)
                w_bound = _bound(writer, inclusive, exclusive)
                if r_bound is not None and (w_bound is None or looser(w_bound, r_bound)):
                    old, new = self.old_new(r_bound, w_bound)
                    self.add(
                        path,
                        Rule.CONSTRAINT_TIGHTENED,
                        Rule.CONSTRAINT_LOOSENED,
                        f"{inclusive} {'tightened' if self.new_is_reader else 'loosened'} "
                        f"from {_show_bound(old)} to {_show_bound(new)}",
                    )

    def compare_patterns(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
    ) -> None:
        for keyword in ("pattern", "multipleOf"):
            r_value, w_value = reader.get(keyword), writer.get(keyword)
            if r_value is None or r_value == w_value:
                continue
            old, new = self.old_new(r_value, w_value)
            if w_value is None:
                verb = "added" if self.new_is_reader else "removed"
                detail = f"{keyword} {json.dumps(r_value)} {verb}"
                self.add(path, Rule.CONSTRAINT_TIGHTENED, Rule.CONSTRAINT_LOOSENED, detail)
            elif keyword == "multipleOf" and _divides(r_value, w_value):
                continue  # every multiple of the writer's step is one of the reader's
            elif keyword == "multipleOf" and _divides(w_value, r_value):
                verb = "tightened" if self.new_is_reader else "loosened"
                detail = f"multipleOf {verb} from {old} to {new}"
                self.add(path, Rule.CONSTRAINT_TIGHTENED, Rule.CONSTRAINT_LOOSENED, detail)
            else:
                detail = f"{keyword} changed from {json.dumps(old)} to {json.dumps(new)}"
                self.found.append(
                    Breaking(path, Rule.CONSTRAINT_CHANGED, detail, self.direction, self.version)
                )

    def compare_objects(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
    ) -> None:
        r_props: Mapping[str, Schema] = reader.get("properties", {})
        w_props: Mapping[str, Schema] = writer.get("properties", {})
        r_required, w_required = set(reader.get("required", ())), set(writer.get("required", ()))
        r_extra = reader.get("additionalProperties", True)
        w_extra = writer.get("additionalProperties", True)
        for name in [*r_props, *sorted(r_required - set(r_props))]:
            field = _join(path, name)
            needed = name in r_required and not self.has_default(r_props.get(name, True))
            if name in w_props:
                if needed and name not in w_required:
                    verb = "required" if self.new_is_reader else "optional"
                    self.add(
                        field, Rule.FIELD_MADE_REQUIRED, Rule.FIELD_MADE_OPTIONAL, f"made {verb}"
                    )
                self.compare(r_props.get(name, True), w_props[name], field)
            elif needed:
                detail = (
                    "required field added without a default"
                    if self.new_is_reader
                    else "required field removed"
                )
                self.add(field, Rule.REQUIRED_FIELD_ADDED, Rule.REQUIRED_FIELD_REMOVED, detail)
            elif isinstance(w_extra, Mapping) and name in r_props:
                self.compare(r_props[name], w_extra, field)
        for name, w_schema in w_props.items():
            if name in r_props:
                continue
            if r_extra is False:
                detail = (
                    "field removed while additionalProperties is false"
                    if self.new_is_reader
                    else "field added while the old schema's additionalProperties is false"
                )
                self.add(_join(path, name), Rule.FIELD_REMOVED, Rule.FIELD_ADDED, detail)
            elif isinstance(r_extra, Mapping):
                self.compare(r_extra, w_schema, _join(path, name))
        if w_extra is not False:
            if r_extra is False:
                verb = "closed" if self.new_is_reader else "opened"
                self.add(
                    path,
                    Rule.ADDITIONAL_PROPERTIES_CLOSED,
                    Rule.ADDITIONAL_PROPERTIES_OPENED,
                    f"additionalProperties {verb}",
                )
            elif isinstance(r_extra, Mapping):
                self.compare(r_extra, w_extra, _join(path, "*"))

    def compare_arrays(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
    ) -> None:
        r_prefix: list[Schema] = reader.get("prefixItems", [])
        w_prefix: list[Schema] = writer.get("prefixItems", [])
        r_items: Schema = reader.get("items", True)
        w_items: Schema = writer.get("items", True)
        for index in range(max(len(r_prefix), len(w_prefix))):
            r_item = r_prefix[index] if index < len(r_prefix) else r_items
            w_item = w_prefix[index] if index < len(w_prefix) else w_items
            self.compare(r_item, w_item, f"{path}[{index}]")
        if "items" in reader or "items" in writer:
            self.compare(r_items, w_items, f"{path}[]")

    def has_default(self, schema: Schema) -> bool:
        resolved = self.resolve(schema, 0)
        return isinstance(resolved, Mapping) and "default" in resolved


def _ref_or_id(schema: Schema) -> object:
    if isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
        return schema["$ref"]
    return id(schema)


def _lower_looser(writer: tuple[float, bool], reader: tuple[float, bool]) -> bool:
    return writer[0] < reader[0] or (writer[0] == reader[0] and reader[1] and not writer[1])


def _upper_looser(writer: tuple[float, bool], reader: tuple[float, bool]) -> bool:
    return writer[0] > reader[0] or (writer[0] == reader[0] and reader[1] and not writer[1])


def _show_bound(bound: tuple[float, bool] | None) -> str:
    if bound is None:
        return "none"
    return f"{bound[0]} (exclusive)" if bound[1] else f"{bound[0]}"


def _divides(step: Any, multiple: Any) -> bool:
    try:
        ratio = multiple / step
    except (TypeError, ZeroDivisionError):
        return False
    return isinstance(ratio, float | int) and float(ratio).is_integer()
