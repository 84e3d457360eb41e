from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel

from tidings.errors import ConfigurationError, InvalidEventError
from tidings.event import Event, child_traceparent, new_traceparent
from tidings.payload import event_type

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")


class OrderPlaced(BaseModel):
    order_id: str


@event_type("com.example.inventory.reserved", version=3)
class InventoryReserved(BaseModel):
    order_id: str


def make(**changes: Any) -> Event:
    values: dict[str, Any] = {"type": "OrderPlaced", "source": "/shop"}
    values.update(changes)
    return Event(**values)


# -- defaults and required attributes -------------------------------------------


def test_defaults_fill_id_time_and_specversion() -> None:
    before = datetime.now(UTC)
    event = make()
    after = datetime.now(UTC)
    assert event.specversion == "1.0"
    assert UUID7.match(event.id)
    assert event.time is not None
    assert before <= event.time <= after
    assert event.time.utcoffset() == timedelta(0)
    assert dict(event.extensions) == {}
    assert event.data is None


@pytest.mark.parametrize("name", ["id", "source", "type"])
@pytest.mark.parametrize("value", ["", 0, None, b"x"])
def test_required_text_attributes_must_be_non_empty_strings(name: str, value: Any) -> None:
    with pytest.raises(InvalidEventError, match=repr(name)):
        make(**{name: value})


@pytest.mark.parametrize("version", ["0.3", "1", "1.0 ", "", "2.0"])
def test_specversion_must_be_1_0(version: str) -> None:
    with pytest.raises(InvalidEventError, match="specversion"):
        make(specversion=version)


@pytest.mark.parametrize("missing", ["type", "source"])
def test_type_and_source_have_no_default(missing: str) -> None:
    values: dict[str, Any] = {"type": "OrderPlaced", "source": "/shop"}
    del values[missing]
    with pytest.raises(TypeError, match=missing):
        Event(**values)


def test_invalid_event_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        make(type="")


# -- optional attributes -----------------------------------------------------------


@pytest.mark.parametrize("name", ["subject", "datacontenttype", "dataschema"])
@pytest.mark.parametrize("value", ["", 5, b"x"])
def test_optional_spec_attributes_are_non_empty_strings(name: str, value: Any) -> None:
    with pytest.raises(InvalidEventError, match=name):
        make(**{name: value})


@pytest.mark.parametrize(
    "name", ["tracestate", "correlationid", "causationid", "partitionkey", "sequence"]
)
def test_string_extensions_reject_other_types(name: str) -> None:
    assert make(**{name: "v"}).get(name) == "v"
    with pytest.raises(InvalidEventError, match=name):
        make(**{name: 7})


@pytest.mark.parametrize("value", ["2", True, 1.0, 2**31])
def test_schemaversion_must_be_an_integer(value: Any) -> None:
    with pytest.raises(InvalidEventError, match="schemaversion"):
        make(schemaversion=value)


def test_schemaversion_accepts_integers() -> None:
    assert make(schemaversion=4).schemaversion == 4


# -- time --------------------------------------------------------------------------


def test_time_must_be_timezone_aware() -> None:
    with pytest.raises(InvalidEventError, match="time"):
        make(time=datetime(2024, 5, 1, 12, 0))


@pytest.mark.parametrize("value", ["2024-05-01T12:00:00Z", 1714564800, 1714564800.0])
def test_time_must_be_a_datetime(value: Any) -> None:
    with pytest.raises(InvalidEventError, match="time"):
        make(time=value)


def test_time_keeps_its_offset_and_may_be_absent() -> None:
    tz = timezone(timedelta(hours=5, minutes=30))
    moment = datetime(2024, 5, 1, 12, 0, tzinfo=tz)
    assert make(time=moment).time == moment
    assert make(time=moment).time.utcoffset() == timedelta(hours=5, minutes=30)  # type: ignore[union-attr]
    assert make(time=None).time is None


def test_time_with_a_seconds_offset_becomes_utc_keeping_the_instant() -> None:
    # RFC 3339 cannot express a +00:09:21 offset (Paris local mean time).
    moment = datetime(1900, 1, 1, 12, 0, tzinfo=timezone(timedelta(minutes=9, seconds=21)))
    event = make(time=moment)
    assert event.time == moment
    assert event.time is not None
    assert event.time.utcoffset() == timedelta(0)


# -- extensions --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "x1", "0", "abcdefghij0123456789", "myext"])
def test_valid_extension_names(name: str) -> None:
    event = make(extensions={name: "v"})
    assert event.extensions[name] == "v"
    assert event.get(name) == "v"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Upper",
        "with_underscore",
        "with-dash",
        "with space",
        "dot.ted",
        "abcdefghij0123456789x",  # 21 characters
        "ünï",
        "ext\n",
        "\uff46\uff55\uff4c\uff4c",  # full-width letters
    ],
)
def test_invalid_extension_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidEventError, match="extension name"):
        make(extensions={name: "v"})


def test_non_string_extension_names_are_refused() -> None:
    with pytest.raises(InvalidEventError, match="extension name"):
        make(extensions={5: "v"})


@pytest.mark.parametrize(
    "name",
    [
        "id",
        "source",
        "type",
        "specversion",
        "time",
        "subject",
        "data",
        "datacontenttype",
        "dataschema",
        "traceparent",
        "tracestate",
        "correlationid",
        "causationid",
        "partitionkey",
        "sequence",
        "schemaversion",
        "extensions",
    ],
)
def test_extensions_may_not_clash_with_attributes(name: str) -> None:
    with pytest.raises(InvalidEventError, match="clashes"):
        make(extensions={name: "v"})


@pytest.mark.parametrize("value", ["text", "", 0, -5, 2**31 - 1, -(2**31), True, False])
def test_extension_values_string_integer_boolean(value: Any) -> None:
    event = make(extensions={"ext": value})
    assert event.extensions["ext"] == value
    assert type(event.extensions["ext"]) is type(value)


@pytest.mark.parametrize(
    "value", [1.5, None, {"a": 1}, ["a"], b"bytes", datetime.now(UTC), (1,), 2**31, -(2**31) - 1]
)
def test_other_extension_values_are_refused(value: Any) -> None:
    with pytest.raises(InvalidEventError, match="ext"):
        make(extensions={"ext": value})


def test_extensions_must_be_a_mapping() -> None:
    with pytest.raises(InvalidEventError, match="mapping"):
        make(extensions=[("ext", "v")])


# -- immutability ------------------------------------------------------------------


@pytest.mark.parametrize("name", Event.__struct_fields__)
def test_every_attribute_is_immutable(name: str) -> None:
    event = make(extensions={"ext": "v"})
    before = getattr(event, name)
    with pytest.raises(AttributeError):
        setattr(event, name, before)
    with pytest.raises(AttributeError):
        delattr(event, name)
    assert getattr(event, name) is before


def test_new_attributes_cannot_be_added() -> None:
    event = make()
    with pytest.raises(AttributeError):
        event.colour = "red"  # type: ignore[attr-defined]


def test_extensions_are_read_only() -> None:
    event = make(extensions={"ext": "v"})
    with pytest.raises(TypeError):
        event.extensions["ext"] = "changed"  # type: ignore[index]
    with pytest.raises(TypeError):
        event.extensions["other"] = "new"  # type: ignore[index]
    with pytest.raises(TypeError):
        del event.extensions["ext"]  # type: ignore[attr-defined]
    assert dict(event.extensions) == {"ext": "v"}


def test_empty_extensions_are_read_only_too() -> None:
    event = make(extensions={})
    with pytest.raises(TypeError):
        event.extensions["bad name"] = object()  # type: ignore[index]
    assert event.attributes().keys() == make(id=event.id, time=event.time).attributes().keys()


def test_extensions_are_copied_from_the_callers_dict() -> None:
    given: dict[str, Any] = {"ext": "v"}
    event = make(extensions=given)
    given["ext"] = "changed"
    given["Bad Name"] = 1.5
    assert dict(event.extensions) == {"ext": "v"}


# -- ids ---------------------------------------------------------------------------


def test_ids_are_uuid7() -> None:
    for _ in range(100):
        value = int(make().id.replace("-", ""), 16)
        assert (value >> 76) & 0xF == 7  # version nibble
        assert (value >> 62) & 0b11 == 0b10  # RFC 9562 variant


def test_ids_sort_by_creation_time() -> None:
    events = [make() for _ in range(500)]
    ids = [e.id for e in events]
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)


def test_id_embeds_the_creation_millisecond() -> None:
    event = make()
    embedded_ms = int(event.id.replace("-", "")[:12], 16)
    assert event.time is not None
    assert abs(embedded_ms - event.time.timestamp() * 1000) < 50


def test_identity_and_key() -> None:
    event = make(id="abc", subject="order-1")
    assert event.identity == ("/shop", "abc")
    assert event.key == "order-1"
    assert make(subject="s", partitionkey="k").key == "k"
    assert make().key is None


# -- reading -----------------------------------------------------------------------


def test_get_reads_standard_and_extension_attributes() -> None:
    event = make(subject="s", schemaversion=2, extensions={"tenant": "acme", "n": 3})
    assert event.get("type") == "OrderPlaced"
    assert event.get("subject") == "s"
    assert event.get("schemaversion") == 2
    assert event.get("tenant") == "acme"
    assert event.get("n") == 3
    assert event.get("dataschema") is None
    assert event.get("dataschema", "none") == "none"
    assert event.get("absent", "fallback") == "fallback"


def test_get_does_not_expose_data_or_the_extensions_mapping() -> None:
    event = make(data={"x": 1}, extensions={"tenant": "acme"})
    assert event.get("data") is None
    assert event.get("extensions") is None


def test_attributes_lists_what_is_set_except_data() -> None:
    moment = datetime(2024, 5, 1, tzinfo=UTC)
    event = make(id="1", time=moment, subject="s", data={"x": 1}, extensions={"flag": True})
    assert event.attributes() == {
        "type": "OrderPlaced",
        "source": "/shop",
        "id": "1",
        "time": moment,
        "subject": "s",
        "specversion": "1.0",
        "flag": True,
    }


def test_attributes_returns_a_copy() -> None:
    event = make(extensions={"flag": True})
    event.attributes()["type"] = "changed"
    event.attributes()["flag"] = False
    assert event.type == "OrderPlaced"
    assert event.extensions["flag"] is True


def test_attribute_names_lists_context_attributes() -> None:
    assert "data" not in Event.attribute_names
    assert "extensions" not in Event.attribute_names
    assert {"id", "source", "type", "specversion", "time", "traceparent"} <= set(
        Event.attribute_names
    )


def test_events_with_equal_attributes_are_equal() -> None:
    moment = datetime(2024, 5, 1, tzinfo=UTC)
    a = make(id="1", time=moment, data={"x": 1}, extensions={"e": 1})
    b = make(id="1", time=moment, data={"x": 1}, extensions={"e": 1})
    assert a == b
    assert a != make(id="2", time=moment, data={"x": 1}, extensions={"e": 1})
    assert a != make(id="1", time=moment, data={"x": 1}, extensions={"e": 2})


# -- replace -----------------------------------------------------------------------


def test_replace_changes_only_what_is_given() -> None:
    event = make(subject="s", extensions={"tenant": "acme"}, data={"x": 1})
    changed = event.replace(subject="t", partitionkey="k")
    assert changed.subject == "t"
    assert changed.partitionkey == "k"
    assert (changed.id, changed.time, changed.type, changed.data) == (
        event.id,
        event.time,
        event.type,
        event.data,
    )
    assert changed.extensions == event.extensions
    assert event.subject == "s"
    assert event.partitionkey is None


def test_replace_without_changes_is_equal() -> None:
    event = make(extensions={"tenant": "acme"})
    assert event.replace() == event


@pytest.mark.parametrize(
    "changes",
    [
        {"type": ""},
        {"source": ""},
        {"specversion": "0.3"},
        {"time": datetime(2024, 1, 1)},
        {"extensions": {"Bad": 1}},
        {"extensions": {"subject": "x"}},
        {"traceparent": "nope"},
        {"subject": 5},
    ],
)
def test_replace_validates(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidEventError):
        make().replace(**changes)


def test_replace_refuses_unknown_attributes() -> None:
    with pytest.raises(TypeError, match="colour"):
        make().replace(colour="red")


# -- traceparent -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        TRACEPARENT.upper(),
        TRACEPARENT + "-",
        TRACEPARENT[:-1],
        "ff" + TRACEPARENT[2:],  # version ff is forbidden
        "00-" + "0" * 32 + "-b7ad6b7169203331-01",  # all-zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01",  # all-zero span id
        "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
        5,
    ],
)
def test_invalid_traceparent_is_refused(value: Any) -> None:
    with pytest.raises(InvalidEventError, match="traceparent"):
        make(traceparent=value)


def test_new_traceparent_is_valid_and_fresh() -> None:
    values = {new_traceparent() for _ in range(100)}
    assert len(values) == 100
    assert len({v[3:35] for v in values}) == 100  # fresh trace ids
    for value in values:
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", value)
        assert make(traceparent=value).traceparent == value


def test_child_traceparent_keeps_trace_and_flags() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    child = child_traceparent(parent)
    assert child is not None
    assert child[:36] == parent[:36]
    assert child[36:52] != parent[36:52]
    assert child.endswith("-00")
    assert make(traceparent=child).traceparent == child
    assert child_traceparent(None) is None


# -- derive ------------------------------------------------------------------------


def test_derive_from_a_root_correlates_with_the_root_id() -> None:
    root = make(traceparent=TRACEPARENT, tracestate="vendor=1")
    child = root.derive(OrderPlaced(order_id="1"))
    assert child.correlationid == root.id
    assert child.causationid == root.id
    assert child.id != root.id
    assert child.id > root.id
    assert child.traceparent is not None
    assert child.traceparent[3:35] == TRACEPARENT[3:35]  # same trace id
    assert child.traceparent[36:52] != TRACEPARENT[36:52]  # new span id
    assert child.traceparent[-2:] == TRACEPARENT[-2:]  # same flags
    assert child.tracestate == "vendor=1"


def test_derive_carries_correlation_through_generations() -> None:
    root = make(traceparent=TRACEPARENT)
    child = root.derive(OrderPlaced(order_id="1"))
    grandchild = child.derive(OrderPlaced(order_id="2"))
    assert grandchild.correlationid == root.id
    assert grandchild.causationid == child.id
    assert grandchild.traceparent is not None
    assert child.traceparent is not None
    assert grandchild.traceparent[3:35] == root.traceparent[3:35]  # type: ignore[index]
    assert grandchild.traceparent[36:52] not in (
        child.traceparent[36:52],
        TRACEPARENT[36:52],
    )


def test_derive_keeps_an_existing_correlation_id() -> None:
    parent = make(correlationid="saga-7")
    assert parent.derive(OrderPlaced(order_id="1")).correlationid == "saga-7"


def test_derive_without_a_trace_starts_none() -> None:
    child = make().derive(OrderPlaced(order_id="1"))
    assert child.traceparent is None
    assert child.tracestate is None


def test_derive_takes_type_and_version_from_the_payload_class() -> None:
    parent = make()
    placed = parent.derive(OrderPlaced(order_id="1"))
    assert placed.type == "OrderPlaced"
    assert placed.schemaversion == 1
    assert placed.data == OrderPlaced(order_id="1")
    reserved = parent.derive(InventoryReserved(order_id="1"))
    assert reserved.type == "com.example.inventory.reserved"
    assert reserved.schemaversion == 3


def test_derive_with_explicit_type() -> None:
    child = make().derive({"order_id": "1"}, type="com.example.custom")
    assert child.type == "com.example.custom"
    assert child.data == {"order_id": "1"}
    assert child.schemaversion is None
    versioned = make().derive({"a": 1}, type="x", schemaversion=5)
    assert versioned.schemaversion == 5


def test_derive_of_a_dict_needs_a_type() -> None:
    with pytest.raises(ConfigurationError, match="type="):
        make().derive({"order_id": "1"})


def test_derive_source_defaults_to_the_parents() -> None:
    parent = make(source="/orders")
    assert parent.derive(OrderPlaced(order_id="1")).source == "/orders"
    assert parent.derive(OrderPlaced(order_id="1"), source="/billing").source == "/billing"


def test_derive_passes_other_attributes_and_lets_them_win() -> None:
    other = "00-11111111111111111111111111111111-2222222222222222-01"
    child = make(traceparent=TRACEPARENT).derive(
        OrderPlaced(order_id="1"),
        subject="order-1",
        traceparent=other,
        extensions={"tenant": "acme"},
    )
    assert child.subject == "order-1"
    assert child.traceparent == other
    assert child.extensions["tenant"] == "acme"


def test_derive_validates() -> None:
    with pytest.raises(InvalidEventError):
        make().derive(OrderPlaced(order_id="1"), extensions={"BAD": 1})
