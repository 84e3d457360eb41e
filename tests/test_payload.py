from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from pydantic import BaseModel

from tidings.errors import ConfigurationError, SchemaError
from tidings.payload import (
    PayloadInfo,
    decode_payload,
    event_type,
    json_hook,
    payload_info,
    to_jsonable,
)


class OrderPlaced(BaseModel):
    order_id: str
    quantity: int


@event_type("com.example.order.shipped", version=2)
class OrderShipped(BaseModel):
    order_id: str


@event_type(version=4)
class OrderCancelled(BaseModel):
    order_id: str


class OrderRefunded(BaseModel):
    __event_type__ = "com.example.order.refunded"
    __event_version__ = 3
    order_id: str


@dataclasses.dataclass
class Parcel:
    parcel_id: str
    weight_grams: int
    fragile: bool = False


class Reading(msgspec.Struct):
    device: str
    celsius: float
    at: datetime | None = None


class Plain:
    pass


# -- names and versions ------------------------------------------------------------


def test_default_name_is_the_class_name_and_version_1() -> None:
    assert payload_info(OrderPlaced) == PayloadInfo("OrderPlaced", 1)
    assert payload_info(OrderPlaced(order_id="1", quantity=2)) == ("OrderPlaced", 1)
    assert payload_info(Parcel) == ("Parcel", 1)
    assert payload_info(Reading(device="d", celsius=1.0)) == ("Reading", 1)
    assert payload_info(Plain()) == ("Plain", 1)


def test_event_type_decorator_sets_name_and_version() -> None:
    assert payload_info(OrderShipped) == ("com.example.order.shipped", 2)
    assert payload_info(OrderShipped(order_id="1")).version == 2
    assert OrderShipped.__event_type__ == "com.example.order.shipped"  # type: ignore[attr-defined]


def test_event_type_decorator_without_name_keeps_the_class_name() -> None:
    assert payload_info(OrderCancelled) == ("OrderCancelled", 4)


def test_class_attributes_set_name_and_version() -> None:
    assert payload_info(OrderRefunded) == ("com.example.order.refunded", 3)
    assert "__event_type__" not in OrderRefunded.model_fields
    assert OrderRefunded(order_id="1").model_dump() == {"order_id": "1"}


def test_decorator_works_on_dataclasses_and_structs() -> None:
    @event_type("com.example.parcel.weighed", version=5)
    @dataclasses.dataclass
    class Weighed:
        grams: int

    @event_type("com.example.sensor.read")
    class Read(msgspec.Struct):
        value: int

    assert payload_info(Weighed(grams=1)) == ("com.example.parcel.weighed", 5)
    assert payload_info(Read(value=1)) == ("com.example.sensor.read", 1)


def test_redecorating_replaces_a_cached_name() -> None:
    class Renamed(BaseModel):
        x: int

    assert payload_info(Renamed) == ("Renamed", 1)
    event_type("com.example.renamed", version=2)(Renamed)
    assert payload_info(Renamed) == ("com.example.renamed", 2)


def test_subclasses_get_their_own_name() -> None:
    class ShippedExpress(OrderShipped):
        pass

    assert payload_info(ShippedExpress) == ("ShippedExpress", 1)
    assert payload_info(OrderShipped) == ("com.example.order.shipped", 2)


@pytest.mark.parametrize("name", ["", 5, b"name"])
def test_decorator_refuses_a_bad_name(name: Any) -> None:
    with pytest.raises(ConfigurationError, match="name"):
        event_type(name)


@pytest.mark.parametrize("version", [0, -1, 1.5, "2", True, None])
def test_decorator_refuses_a_bad_version(version: Any) -> None:
    with pytest.raises(ConfigurationError, match="version"):
        event_type("x", version=version)


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"__event_type__": ""}, "__event_type__"),
        ({"__event_type__": 5}, "__event_type__"),
        ({"__event_version__": 0}, "__event_version__"),
        ({"__event_version__": "2"}, "__event_version__"),
        ({"__event_version__": True}, "__event_version__"),
    ],
)
def test_bad_class_attributes_are_refused(attributes: dict[str, Any], message: str) -> None:
    cls = type("Bad", (), attributes)
    with pytest.raises(ConfigurationError, match=message):
        payload_info(cls)


@pytest.mark.parametrize(
    "payload",
    [
        {"order_id": "1"},
        [1, 2],
        (1, 2),
        "text",
        b"bytes",
        bytearray(b"x"),
        1,
        1.5,
        True,
        None,
        {1, 2},
        frozenset(),
        dict,
        list,
        str,
    ],
)
def test_untyped_payloads_have_no_event_type(payload: Any) -> None:
    with pytest.raises(ConfigurationError, match="type="):
        payload_info(payload)


# -- decoding data into payload types ----------------------------------------------


def test_decode_into_a_pydantic_model() -> None:
    assert decode_payload({"order_id": "1", "quantity": 2}, OrderPlaced) == OrderPlaced(
        order_id="1", quantity=2
    )
    # pydantic's lax mode: a numeric string is an int.
    assert decode_payload({"order_id": "1", "quantity": "2"}, OrderPlaced).quantity == 2


def test_decode_returns_an_instance_as_is() -> None:
    order = OrderPlaced(order_id="1", quantity=2)
    assert decode_payload(order, OrderPlaced) is order
    parcel = Parcel(parcel_id="p", weight_grams=5)
    assert decode_payload(parcel, Parcel) is parcel


def test_decode_into_a_dataclass() -> None:
    parcel = decode_payload({"parcel_id": "p1", "weight_grams": 900}, Parcel)
    assert parcel == Parcel(parcel_id="p1", weight_grams=900, fragile=False)
    assert decode_payload({"parcel_id": "p1", "weight_grams": "900"}, Parcel).weight_grams == 900


def test_decode_into_a_msgspec_struct() -> None:
    reading = decode_payload({"device": "d1", "celsius": 21, "at": "2024-05-01T12:00:00Z"}, Reading)
    assert reading == Reading(device="d1", celsius=21.0, at=datetime(2024, 5, 1, 12, tzinfo=UTC))


def test_decode_into_a_typing_form() -> None:
    assert decode_payload([1, 2], list[int]) == [1, 2]
    with pytest.raises(SchemaError):
        decode_payload(["x"], list[int])


@pytest.mark.parametrize(
    ("data", "cls"),
    [
        ({"order_id": "1"}, OrderPlaced),  # missing field
        ({"order_id": "1", "quantity": "two"}, OrderPlaced),
        ([1, 2], OrderPlaced),
        ("text", OrderPlaced),
        (None, OrderPlaced),
        (b"\x00", OrderPlaced),
        ({"parcel_id": "p1"}, Parcel),
        ({"parcel_id": "p1", "weight_grams": [1]}, Parcel),
        ("p1", Parcel),
        (None, Parcel),
        ({"device": "d1"}, Reading),
        ({"device": "d1", "celsius": "warm"}, Reading),
        ({"device": "d1", "celsius": 1, "at": "yesterday"}, Reading),
        (42, Reading),
    ],
)
def test_mismatches_raise_schema_error(data: Any, cls: type) -> None:
    with pytest.raises(SchemaError, match=cls.__name__):
        decode_payload(data, cls)


def test_schema_error_is_a_value_error_chained_to_the_cause() -> None:
    with pytest.raises(ValueError) as caught:
        decode_payload({"order_id": "1"}, OrderPlaced)
    assert isinstance(caught.value, SchemaError)
    assert caught.value.__cause__ is not None
    assert "quantity" in str(caught.value)


# -- JSON encoding hook ------------------------------------------------------------


def test_to_jsonable_dumps_pydantic_models_in_json_mode() -> None:
    class Stamped(BaseModel):
        at: datetime

    assert to_jsonable(Stamped(at=datetime(2024, 5, 1, tzinfo=UTC))) == {
        "at": "2024-05-01T00:00:00Z"
    }


def test_to_jsonable_refuses_unknown_objects() -> None:
    with pytest.raises(NotImplementedError, match="Plain"):
        to_jsonable(Plain())


def test_json_hook_splices_pydantic_json_and_honours_an_overridden_model_dump() -> None:
    class Stamped(BaseModel):
        at: datetime
        note: str = "é"

    class Redacting(Stamped):
        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            return {"at": "redacted"}

    encoder = msgspec.json.Encoder(enc_hook=json_hook)
    stamped = Stamped(at=datetime(2024, 5, 1, tzinfo=UTC))
    spliced = encoder.encode({"data": stamped})
    assert msgspec.json.decode(spliced) == {"data": to_jsonable(stamped)}
    redacted = Redacting(at=datetime(2024, 5, 1, tzinfo=UTC))
    assert msgspec.json.decode(encoder.encode({"data": redacted})) == {"data": {"at": "redacted"}}
    with pytest.raises(NotImplementedError, match="Plain"):
        json_hook(Plain())
