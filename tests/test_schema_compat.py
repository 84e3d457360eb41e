from __future__ import annotations

import dataclasses
import enum
import subprocess
import sys
from typing import Annotated, Any

import jsonschema
import msgspec
import pytest
from pydantic import BaseModel, ConfigDict, Field

from tidings.errors import ConfigurationError, SchemaError
from tidings.payload import event_type
from tidings.schemas import (
    DIALECT,
    Breaking,
    Compatibility,
    Rule,
    SchemaCompatibilityError,
    check,
    dataschema_uri,
    ensure_compatible,
    schema_for,
)

R = Rule
INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}


def obj(required: tuple[str, ...] = (), closed: bool = False, **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props, "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


def field(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    """A one-field payload ``{"x": schema}``."""
    return obj(("x",) if required else (), x=schema)


def findings(new: dict[str, Any], old: dict[str, Any], mode: str) -> set[tuple[str, Rule]]:
    return {(b.path, b.rule) for b in check(new, [old], mode)}


def array(items: dict[str, Any], **constraints: Any) -> dict[str, Any]:
    return {"type": "array", "items": items, **constraints}


NULLABLE = {"anyOf": [STR, {"type": "null"}]}
AB = {"enum": ["a", "b"]}
Q_NUM, Q_INT = obj(("quantity",), quantity=NUM), obj(("quantity",), quantity=INT)
TUPLE_SI, TUPLE_SS = {"prefixItems": [STR, INT]}, {"prefixItems": [STR, STR]}
MAP_INT = {"type": "object", "additionalProperties": INT}
MAP_NUM = {"type": "object", "additionalProperties": NUM}
N = None
TIGHT, LOOSE, CHANGED = R.CONSTRAINT_TIGHTENED, R.CONSTRAINT_LOOSENED, R.CONSTRAINT_CHANGED
TYPE, NARROW, ADDED = R.TYPE_CHANGED, R.TYPE_NARROWED, R.REQUIRED_FIELD_ADDED
EXTRAS_CLOSED, EXTRAS_OPENED = R.ADDITIONAL_PROPERTIES_CLOSED, R.ADDITIONAL_PROPERTIES_OPENED


def integer(**constraints: Any) -> dict[str, Any]:
    return field({**INT, **constraints})


def string(**constraints: Any) -> dict[str, Any]:
    return field({**STR, **constraints})


# Each row: a change from old to new, the field path, and the rule it breaks
# backward (new consumers reading old data) and forward (old consumers
# reading new data), or N where that direction is fine.
RULES = [
    # fields
    ("required field added", obj(a=STR), obj(("b",), a=STR, b=STR), "b", R.REQUIRED_FIELD_ADDED, N),
    ("optional field added", obj(a=STR), obj(a=STR, b=STR), "b", N, N),
    ("required field with default added", obj(), obj(("b",), b={**STR, "default": ""}), "b", N, N),
    ("required field removed", obj(("b",), b=STR), obj(), "b", N, R.REQUIRED_FIELD_REMOVED),
    ("optional field removed", obj(a=STR, b=STR), obj(a=STR), "b", N, N),
    ("field made required", field(STR, required=False), field(STR), "x", R.FIELD_MADE_REQUIRED, N),
    ("field made optional", field(STR), field(STR, required=False), "x", N, R.FIELD_MADE_OPTIONAL),
    ("field removed, closed", obj(closed=True, b=STR), obj(closed=True), "b", R.FIELD_REMOVED, N),
    ("field added, closed", obj(closed=True), obj(closed=True, b=STR), "b", N, R.FIELD_ADDED),
    ("extras closed", obj(a=STR), obj(closed=True, a=STR), "<root>", EXTRAS_CLOSED, N),
    ("extras opened", obj(closed=True, a=STR), obj(a=STR), "<root>", N, EXTRAS_OPENED),
    # types
    ("number -> integer", field(NUM), field(INT), "x", R.TYPE_NARROWED, N),
    ("integer -> number", field(INT), field(NUM), "x", N, R.TYPE_WIDENED),
    ("string -> integer", field(STR), field(INT), "x", R.TYPE_CHANGED, R.TYPE_CHANGED),
    ("string -> string | null", field(STR), field(NULLABLE), "x", N, R.TYPE_WIDENED),
    ("string | null -> string", field(NULLABLE), field(STR), "x", R.TYPE_NARROWED, N),
    ("type list widened", field(STR), field({"type": ["string", "null"]}), "x", N, R.TYPE_WIDENED),
    ("any -> string", field({}), field(STR), "x", R.TYPE_NARROWED, N),
    # enums
    ("string -> enum", field(STR), field(AB), "x", R.TYPE_NARROWED, N),
    ("enum -> string", field(AB), field(STR), "x", N, R.TYPE_WIDENED),
    ("enum value removed", field(AB), field({"enum": ["a"]}), "x", R.ENUM_VALUE_REMOVED, N),
    ("enum value added", field({"enum": ["a"]}), field(AB), "x", N, R.ENUM_VALUE_ADDED),
    ("const -> enum", field({"const": "a"}), field(AB), "x", N, R.ENUM_VALUE_ADDED),
    ("enum reordered", field(AB), field({**STR, "enum": ["b", "a"]}), "x", N, N),
    # constraints
    ("minimum raised", integer(minimum=0), integer(minimum=1), "x", TIGHT, N),
    ("minimum added", integer(), integer(minimum=1), "x", TIGHT, N),
    ("minimum made exclusive", integer(minimum=0), integer(exclusiveMinimum=0), "x", TIGHT, N),
    ("maximum raised", integer(maximum=10), integer(maximum=20), "x", N, LOOSE),
    ("maxLength removed", string(maxLength=10), string(), "x", N, LOOSE),
    ("minItems added", field(array(INT)), field(array(INT, minItems=1)), "x", TIGHT, N),
    ("pattern added", string(), string(pattern="^[a-z]+$"), "x", TIGHT, N),
    ("pattern changed", string(pattern="^a"), string(pattern="^b"), "x", CHANGED, CHANGED),
    ("multipleOf 2 -> 4", integer(multipleOf=2), integer(multipleOf=4), "x", TIGHT, N),
    ("multipleOf 2 -> 3", integer(multipleOf=2), integer(multipleOf=3), "x", CHANGED, CHANGED),
    ("annotations only", string(title="X"), string(format="uuid", description="id"), "x", N, N),
    # arrays, nested objects, maps, tuples
    ("array item type changed", field(array(INT)), field(array(STR)), "x[]", TYPE, TYPE),
    ("nested field narrowed", field(array(Q_NUM)), field(array(Q_INT)), "x[].quantity", NARROW, N),
    ("nested required added", field(obj()), field(obj(("b",), b=INT)), "x.b", ADDED, N),
    ("map value widened", field(MAP_INT), field(MAP_NUM), "x.*", N, R.TYPE_WIDENED),
    ("tuple position changed", field(TUPLE_SI), field(TUPLE_SS), "x[1]", TYPE, TYPE),
]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "path", "backward", "forward"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
def test_rule_in_both_directions(
    old: dict[str, Any], new: dict[str, Any], path: str, backward: Rule | None, forward: Rule | None
) -> None:
    expected_backward = {(path, backward)} if backward else set()
    expected_forward = {(path, forward)} if forward else set()
    assert findings(new, old, "BACKWARD") == expected_backward
    assert findings(new, old, "FORWARD") == expected_forward
    assert findings(new, old, "FULL") == expected_backward | expected_forward
    assert findings(new, old, "NONE") == set()


def test_findings_name_their_direction_and_say_what_changed() -> None:
    (backward,) = check(field(INT), [field(NUM)], Compatibility.FULL)
    assert backward.direction == "backward"
    assert str(backward) == "x: type narrowed from number to integer (type-narrowed, backward)"
    (forward,) = check(field({"enum": ["a", "b"]}), [field({"enum": ["a"]})], "full")
    assert forward.direction == "forward"
    assert forward.detail == 'enum value ["b"] added'


def test_refs_are_followed_on_each_side() -> None:
    def with_item(quantity: dict[str, Any]) -> dict[str, Any]:
        schema = field({"type": "array", "items": {"$ref": "#/$defs/Item"}})
        schema["$defs"] = {"Item": obj(("quantity",), quantity=quantity)}
        return schema

    inline = field({"type": "array", "items": obj(("quantity",), quantity=NUM)})
    assert findings(with_item(INT), inline, "BACKWARD") == {("x[].quantity", R.TYPE_NARROWED)}
    assert findings(inline, with_item(INT), "FORWARD") == {("x[].quantity", R.TYPE_WIDENED)}
    assert check(with_item(NUM), [inline], "FULL") == []


def test_a_ref_outside_the_document_is_refused() -> None:
    with pytest.raises(SchemaError, match="only local"):
        check(field({"$ref": "https://example.com/x.json"}), [field(STR)])


# -- modes ---------------------------------------------------------------------

BACKWARD_ONLY = (obj(a=STR), obj(("b",), a=STR, b=STR))  # breaks new consumers
FORWARD_ONLY = (obj(("a", "b"), a=STR, b=STR), obj(("a",), a=STR))  # breaks old consumers

MODES = [
    (Compatibility.BACKWARD, True, False),
    (Compatibility.BACKWARD_TRANSITIVE, True, False),
    (Compatibility.FORWARD, False, True),
    (Compatibility.FORWARD_TRANSITIVE, False, True),
    (Compatibility.FULL, True, True),
    (Compatibility.FULL_TRANSITIVE, True, True),
    (Compatibility.NONE, False, False),
]


@pytest.mark.parametrize(("mode", "backward", "forward"), MODES, ids=[m[0] for m in MODES])
def test_mode_checks_its_directions(mode: Compatibility, backward: bool, forward: bool) -> None:
    assert (mode.backward, mode.forward) == (backward, forward)
    assert bool(check(BACKWARD_ONLY[1], [BACKWARD_ONLY[0]], mode)) is backward
    assert bool(check(FORWARD_ONLY[1], [FORWARD_ONLY[0]], mode)) is forward


@event_type("com.example.order", version=1)
class OrderV1(BaseModel):
    order_id: str
    note: str = ""


@event_type("com.example.order", version=2)
class OrderV2(BaseModel):  # note dropped (it was optional)
    order_id: str


@event_type("com.example.order", version=3)
class OrderV3(BaseModel):  # note back, as a number: fine after v2, not after v1
    order_id: str
    note: int = 0


@pytest.mark.parametrize(
    ("mode", "breaks"),
    [
        ("BACKWARD", False),
        ("BACKWARD_TRANSITIVE", True),
        ("FORWARD", False),
        ("FORWARD_TRANSITIVE", True),
        ("FULL", False),
        ("FULL_TRANSITIVE", True),
        ("NONE", False),
    ],
)
def test_transitive_modes_check_every_previous_version(mode: str, breaks: bool) -> None:
    history = [schema_for(OrderV1), schema_for(OrderV2)]
    assert check(history[1], history[:1], Compatibility.FULL_TRANSITIVE) == []
    found = check(schema_for(OrderV3), history, mode)
    assert bool(found) is breaks
    assert all((b.path, b.rule, b.version) == ("note", R.TYPE_CHANGED, 1) for b in found)


def test_an_empty_history_is_compatible() -> None:
    assert check(field(STR), [], Compatibility.FULL_TRANSITIVE) == []


def test_an_unknown_mode_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="BACKWARD_TRANSITIVE"):
        check(field(STR), [field(STR)], "SIDEWAYS")


def test_ensure_compatible_raises_naming_every_field() -> None:
    old = obj(("a",), a=NUM, b=STR)
    new = {**obj(("a", "c"), a=INT, c=STR), "title": "com.example.thing"}
    ensure_compatible(new, [old], Compatibility.NONE)
    with pytest.raises(SchemaCompatibilityError) as caught:
        ensure_compatible(new, [old], "FULL")
    error = caught.value
    assert isinstance(error, SchemaError)
    assert error.mode is Compatibility.FULL
    assert {(b.path, b.rule) for b in error.breaking} == {
        ("a", R.TYPE_NARROWED),
        ("c", R.REQUIRED_FIELD_ADDED),
    }
    message = str(error)
    assert "schema com.example.thing is not FULL compatible" in message
    for finding in error.breaking:
        assert str(finding) in message


# -- generation ----------------------------------------------------------------


class Size(enum.Enum):
    SMALL = "small"
    LARGE = "large"


class ItemModel(BaseModel):
    sku: str
    quantity: int = Field(ge=1)


@event_type("com.example.order.placed", version=2)
class PlacedModel(BaseModel):
    order_id: str
    items: list[ItemModel]
    size: Size = Size.SMALL
    note: str | None = None


@dataclasses.dataclass
class ItemClass:
    sku: str
    quantity: Annotated[int, msgspec.Meta(ge=1)]


@event_type("com.example.order.placed", version=2)
@dataclasses.dataclass
class PlacedClass:
    order_id: str
    items: list[ItemClass]
    size: Size = Size.SMALL
    note: str | None = None


class ItemStruct(msgspec.Struct):
    sku: str
    quantity: Annotated[int, msgspec.Meta(ge=1)]


@event_type("com.example.order.placed", version=2)
class PlacedStruct(msgspec.Struct):
    order_id: str
    items: list[ItemStruct]
    size: Size = Size.SMALL
    note: str | None = None


PLACED = [PlacedModel, PlacedClass, PlacedStruct]


@pytest.mark.parametrize("payload", PLACED, ids=lambda t: t.__name__)
def test_generated_schema_is_draft_2020_12_with_type_and_version(payload: type) -> None:
    schema = schema_for(payload)
    assert schema["$schema"] == DIALECT
    assert schema["$id"] == "urn:tidings:schema:com.example.order.placed:2"
    assert schema["title"] == "com.example.order.placed"
    assert schema["x-tidings-version"] == 2
    assert schema["type"] == "object"
    assert "$ref" not in schema  # the payload's own object is the root
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate({"order_id": "o1", "items": [{"sku": "s", "quantity": 2}]})
    bad = {"order_id": "o1", "items": [{"sku": "s", "quantity": 0}], "size": "huge"}
    assert len(list(validator.iter_errors(bad))) == 2


@pytest.mark.parametrize("other", PLACED[1:], ids=lambda t: t.__name__)
def test_the_same_shape_gives_equivalent_schemas(other: type) -> None:
    model, same = schema_for(PlacedModel), schema_for(other)
    assert sorted(model["properties"]) == sorted(same["properties"])
    assert model["required"] == same["required"]
    assert check(same, [model], Compatibility.FULL) == []
    assert check(model, [same], Compatibility.FULL) == []


class LooseItem(msgspec.Struct):
    sku: str
    quantity: float


@event_type("com.example.order.placed", version=3)
class PlacedLoosely(msgspec.Struct):
    order_id: str
    items: list[LooseItem]
    size: Size = Size.SMALL
    note: str | None = None


def test_a_nested_change_across_payload_kinds_is_found() -> None:
    found = check(schema_for(PlacedLoosely), [schema_for(PlacedModel)], Compatibility.FULL)
    # a type change is reported alone: the bounds of another type are not compared
    assert [(b.path, b.rule) for b in found] == [("items[].quantity", R.TYPE_WIDENED)]
    assert all(b.direction == "forward" and b.version == 2 for b in found)


class Tree(msgspec.Struct):
    label: str
    children: list[Tree] = []


def test_recursive_types_keep_their_defs_and_the_check_ends() -> None:
    schema = schema_for(Tree)
    assert "Tree" in schema["$defs"]
    jsonschema.Draft202012Validator(schema).validate(
        {"label": "a", "children": [{"label": "b", "children": [{"label": "c"}]}]}
    )
    assert check(schema, [schema], Compatibility.FULL) == []


def test_closed_pydantic_model_closes_additional_properties() -> None:
    class Open(BaseModel):
        a: str

    class Closed(BaseModel):
        model_config = ConfigDict(extra="forbid")
        a: str

    found = check(schema_for(Closed), [schema_for(Open)], Compatibility.BACKWARD)
    assert [(b.path, b.rule) for b in found] == [("<root>", R.ADDITIONAL_PROPERTIES_CLOSED)]


def test_a_class_no_library_describes_is_a_schema_error() -> None:
    class Plain:
        pass

    with pytest.raises(SchemaError, match="pydantic model, a dataclass or a msgspec Struct"):
        schema_for(Plain)


@pytest.mark.parametrize(
    ("name", "version", "uri"),
    [
        ("com.example.order.placed", 1, "urn:tidings:schema:com.example.order.placed:1"),
        ("OrderPlaced", 12, "urn:tidings:schema:OrderPlaced:12"),
        ("a b:c/d", 3, "urn:tidings:schema:a%20b%3Ac%2Fd:3"),
    ],
)
def test_dataschema_uri(name: str, version: int, uri: str) -> None:
    assert dataschema_uri(name, version) == uri


def test_importing_schemas_imports_no_optional_dependency() -> None:
    code = (
        "import sys, tidings.schemas; "
        "print(sorted(m for m in ('pydantic', 'jsonschema') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_breaking_is_a_value() -> None:
    one = Breaking("x", Rule.TYPE_CHANGED, "type changed", "backward", 1)
    assert one == Breaking("x", Rule.TYPE_CHANGED, "type changed", "backward", 1)
    assert str(one) == "x: type changed (type-changed, backward against v1)"
