from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel

from tidings.codec import STRUCTURED_CONTENT_TYPE, Codec, is_json_content_type
from tidings.errors import ConfigurationError, DecodeError, InvalidEventError
from tidings.event import Event

STRUCTURED = Codec()
KAFKA = Codec("binary")
HTTP = Codec("binary", header_prefix="ce-")
MOMENT = datetime(2024, 5, 1, 12, 30, 45, 123456, tzinfo=UTC)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class OrderPlaced(BaseModel):
    order_id: str
    quantity: int
    placed_at: datetime


@dataclasses.dataclass
class Shipment:
    order_id: str
    parcels: list[str]


def make(**changes: Any) -> Event:
    values: dict[str, Any] = {
        "type": "OrderPlaced",
        "source": "/shop",
        "id": "evt-1",
        "time": MOMENT,
    }
    values.update(changes)
    return Event(**values)


def envelope(**changes: Any) -> bytes:
    """A structured CloudEvent body; a change of None removes the attribute."""
    obj: dict[str, Any] = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}
    for name, value in changes.items():
        if value is None:
            obj.pop(name, None)
        else:
            obj[name] = value
    return json.dumps(obj).encode()


def binary_headers(prefix: str = "ce_", **changes: str) -> dict[str, str]:
    headers = {f"{prefix}specversion": "1.0", f"{prefix}id": "1", f"{prefix}source": "/s"}
    headers[f"{prefix}type"] = "t"
    headers.update(changes)
    return headers


def as_binary_reads(event: Event, content_type: str | None = "application/json") -> Event:
    """What a binary round trip gives: the codec states the content type it used."""
    return event.replace(datacontenttype=event.datacontenttype or content_type)


# -- configuration -----------------------------------------------------------------


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="mode"):
        Codec("pickle")  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["", None, 5])
def test_header_prefix_must_be_a_non_empty_string(prefix: Any) -> None:
    with pytest.raises(ConfigurationError, match="header_prefix"):
        Codec("binary", header_prefix=prefix)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (None, True),
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/vnd.shop.order+json", True),
        ("application/cloudevents+json", True),
        ("text/json", True),
        ("text/plain", False),
        ("application/octet-stream", False),
        ("application/jsonx", False),
        ("application/xml", False),
    ],
)
def test_is_json_content_type(content_type: str | None, expected: bool) -> None:
    assert is_json_content_type(content_type) is expected


# -- structured mode ---------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"order_id": "ORD-1", "lines": [{"sku": "A", "qty": 2}], "paid": True, "note": None},
        [1, "two", 3.5, False],
        "just a JSON string",
        42,
        0,
        False,
        {"unicode": "héllo ✓ 日本"},
        {},
    ],
)
def test_structured_round_trip_of_json_data(data: Any) -> None:
    event = make(data=data, subject="ORD-1")
    body, headers = STRUCTURED.encode(event)
    assert headers == {}
    assert json.loads(body)["data"] == data
    assert STRUCTURED.decode(body) == event


def test_structured_body_is_one_cloudevents_json_object() -> None:
    event = make(data={"x": 1}, subject="s", schemaversion=2, extensions={"tenant": "acme"})
    obj = json.loads(STRUCTURED.encode_structured(event))
    assert obj == {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/shop",
        "type": "OrderPlaced",
        "time": "2024-05-01T12:30:45.123456Z",
        "subject": "s",
        "schemaversion": 2,
        "tenant": "acme",
        "data": {"x": 1},
    }
    assert STRUCTURED_CONTENT_TYPE == "application/cloudevents+json"


def test_structured_without_data_or_time_omits_them() -> None:
    event = make(time=None)
    obj = json.loads(STRUCTURED.encode_structured(event))
    assert "data" not in obj
    assert "data_base64" not in obj
    assert "time" not in obj
    decoded = STRUCTURED.decode(STRUCTURED.encode_structured(event))
    assert decoded.time is None
    assert decoded.data is None
    assert decoded == event


@pytest.mark.parametrize("data", [b"\x00\x01\xfe\xff", b"", bytearray(b"abc"), memoryview(b"xyz")])
def test_structured_bytes_travel_as_data_base64(data: Any) -> None:
    event = make(data=data, datacontenttype="application/octet-stream")
    obj = json.loads(STRUCTURED.encode_structured(event))
    assert "data" not in obj
    assert base64.b64decode(obj["data_base64"]) == bytes(data)
    decoded = STRUCTURED.decode(STRUCTURED.encode_structured(event))
    assert decoded.data == bytes(data)
    assert isinstance(decoded.data, bytes)


def test_structured_text_data() -> None:
    event = make(data="héllo wörld", datacontenttype="text/plain")
    obj = json.loads(STRUCTURED.encode_structured(event))
    assert obj["data"] == "héllo wörld"
    assert STRUCTURED.decode(STRUCTURED.encode_structured(event)) == event


def test_structured_pydantic_data_is_encoded_as_json() -> None:
    payload = OrderPlaced(order_id="ORD-1", quantity=2, placed_at=MOMENT)
    event = make(data=payload)
    obj = json.loads(STRUCTURED.encode_structured(event))
    assert obj["data"] == {
        "order_id": "ORD-1",
        "quantity": 2,
        "placed_at": "2024-05-01T12:30:45.123456Z",
    }
    decoded = STRUCTURED.decode(STRUCTURED.encode_structured(event))
    assert decoded.data == payload.model_dump(mode="json")
    assert OrderPlaced.model_validate(decoded.data) == payload


def test_structured_dataclass_data_is_encoded_as_json() -> None:
    event = make(data=Shipment(order_id="ORD-1", parcels=["p1", "p2"]))
    decoded = STRUCTURED.decode(STRUCTURED.encode_structured(event))
    assert decoded.data == {"order_id": "ORD-1", "parcels": ["p1", "p2"]}


def test_structured_extensions_keep_their_types() -> None:
    extensions = {"tenant": "acme", "retries": 3, "negative": -(2**31), "urgent": True, "no": False}
    event = make(extensions=extensions)
    decoded = STRUCTURED.decode(STRUCTURED.encode_structured(event))
    assert dict(decoded.extensions) == extensions
    assert {k: type(v) for k, v in decoded.extensions.items()} == {
        k: type(v) for k, v in extensions.items()
    }


def test_structured_round_trip_of_every_known_attribute() -> None:
    event = make(
        subject="ORD-1",
        datacontenttype="application/json",
        dataschema="https://schemas.example.com/order/1",
        traceparent=TRACEPARENT,
        tracestate="vendor=abc",
        correlationid="c-1",
        causationid="c-0",
        partitionkey="ORD-1",
        sequence="00042",
        schemaversion=7,
        data={"x": 1},
    )
    decoded = STRUCTURED.decode(STRUCTURED.encode_structured(event))
    assert decoded == event
    assert decoded.attributes() == event.attributes()


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2024, 5, 1, 12, 0, tzinfo=UTC), "2024-05-01T12:00:00Z"),
        (
            datetime(2024, 5, 1, 12, 0, 0, 500, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            "2024-05-01T12:00:00.000500+05:30",
        ),
        (
            datetime(2024, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-3))),
            "2024-12-31T23:59:59-03:00",
        ),
    ],
)
def test_time_with_offsets_round_trips(moment: datetime, text: str) -> None:
    event = make(time=moment)
    assert json.loads(STRUCTURED.encode_structured(event))["time"] == text
    for codec in (STRUCTURED, KAFKA, HTTP):
        body, headers = codec.encode(event)
        decoded = codec.decode(body, headers)
        assert decoded.time == moment
        assert decoded.time is not None
        assert decoded.time.utcoffset() == moment.utcoffset()


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        datetime(2024, 5, 1, 12, 0, 0, 7, tzinfo=UTC),
        datetime(987, 1, 2, 3, 4, 5, 600000, tzinfo=UTC),
        datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(0))),
    ],
)
def test_binary_time_header_is_isoformat_with_z(moment: datetime) -> None:
    expected = moment.isoformat().replace("+00:00", "Z")
    assert KAFKA.encode(make(time=moment))[1]["ce_time"] == expected


# -- binary mode -------------------------------------------------------------------


def test_binary_puts_attributes_in_prefixed_headers() -> None:
    event = make(data={"x": 1}, subject="s", schemaversion=2, extensions={"n": 5, "ok": True})
    body, headers = KAFKA.encode(event)
    assert json.loads(body) == {"x": 1}
    assert headers == {
        "ce_specversion": "1.0",
        "ce_id": "evt-1",
        "ce_source": "/shop",
        "ce_type": "OrderPlaced",
        "ce_time": "2024-05-01T12:30:45.123456Z",
        "ce_subject": "s",
        "ce_schemaversion": "2",
        "ce_n": "5",
        "ce_ok": "true",
        "content-type": "application/json",
    }
    assert all(isinstance(v, str) for v in headers.values())


def test_binary_http_uses_the_dash_prefix() -> None:
    _, headers = HTTP.encode(make(data={"x": 1}))
    assert headers["ce-id"] == "evt-1"
    assert headers["ce-specversion"] == "1.0"
    assert not any(k.startswith("ce_") for k in headers)


@pytest.mark.parametrize("codec", [KAFKA, HTTP], ids=["ce_", "ce-"])
@pytest.mark.parametrize(
    "data",
    [{"order_id": "ORD-1", "lines": [1, 2]}, [1, 2], "a JSON string", 7, True],
)
def test_binary_round_trip_of_json_data(codec: Codec, data: Any) -> None:
    event = make(data=data, subject="ORD-1", traceparent=TRACEPARENT)
    body, headers = codec.encode(event)
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == data
    assert codec.decode(body, headers) == as_binary_reads(event)


@pytest.mark.parametrize("codec", [KAFKA, HTTP], ids=["ce_", "ce-"])
def test_binary_keeps_a_declared_content_type(codec: Codec) -> None:
    event = make(data={"x": 1}, datacontenttype="application/vnd.shop.order+json")
    body, headers = codec.encode(event)
    assert headers["content-type"] == "application/vnd.shop.order+json"
    assert not any(k.endswith("datacontenttype") for k in headers)
    assert codec.decode(body, headers) == event


@pytest.mark.parametrize("codec", [KAFKA, HTTP], ids=["ce_", "ce-"])
def test_binary_bytes_data_is_the_raw_body(codec: Codec) -> None:
    event = make(data=b"\x00\x01{not json\xff")
    body, headers = codec.encode(event)
    assert body == b"\x00\x01{not json\xff"
    assert headers["content-type"] == "application/octet-stream"
    decoded = codec.decode(body, headers)
    assert decoded.data == b"\x00\x01{not json\xff"
    assert decoded == as_binary_reads(event, "application/octet-stream")


def test_binary_bytes_that_look_like_json_stay_bytes() -> None:
    event = make(data=b"123")
    body, headers = KAFKA.encode(event)
    assert KAFKA.decode(body, headers).data == b"123"


def test_binary_bytes_with_a_declared_type_keep_it() -> None:
    event = make(data=b"\x89PNG", datacontenttype="image/png")
    body, headers = KAFKA.encode(event)
    assert headers["content-type"] == "image/png"
    assert KAFKA.decode(body, headers) == event


@pytest.mark.parametrize("codec", [KAFKA, HTTP], ids=["ce_", "ce-"])
def test_binary_text_data_round_trips_as_text(codec: Codec) -> None:
    event = make(data="héllo wörld", datacontenttype="text/plain")
    body, headers = codec.encode(event)
    assert body == "héllo wörld".encode()
    assert headers["content-type"] == "text/plain"
    decoded = codec.decode(body, headers)
    assert decoded.data == "héllo wörld"
    assert decoded == event


def test_binary_text_uses_the_declared_charset() -> None:
    event = make(data="café", datacontenttype="text/plain; charset=latin-1")
    body, headers = KAFKA.encode(event)
    assert body == "café".encode("latin-1")
    assert KAFKA.decode(body, headers) == event


def test_binary_text_that_cannot_be_encoded_is_refused() -> None:
    with pytest.raises(InvalidEventError, match="ascii"):
        KAFKA.encode(make(data="café", datacontenttype="text/plain; charset=ascii"))


def test_binary_pydantic_data_is_encoded_as_json() -> None:
    payload = OrderPlaced(order_id="ORD-1", quantity=2, placed_at=MOMENT)
    body, headers = KAFKA.encode(make(data=payload))
    assert json.loads(body) == payload.model_dump(mode="json")
    assert KAFKA.decode(body, headers).data == payload.model_dump(mode="json")


def test_binary_without_data_has_an_empty_body() -> None:
    event = make()
    body, headers = KAFKA.encode(event)
    assert body == b""
    assert "content-type" not in headers
    assert KAFKA.decode(body, headers) == event


@pytest.mark.parametrize("codec", [KAFKA, HTTP], ids=["ce_", "ce-"])
def test_binary_extensions_arrive_as_their_string_form(codec: Codec) -> None:
    # Binary mode carries every attribute as text; the reader cannot know it was an int.
    event = make(extensions={"tenant": "acme", "retries": 3, "urgent": True, "quiet": False})
    body, headers = codec.encode(event)
    decoded = codec.decode(body, headers)
    assert dict(decoded.extensions) == {
        "tenant": "acme",
        "retries": "3",
        "urgent": "true",
        "quiet": "false",
    }


@pytest.mark.parametrize("codec", [KAFKA, HTTP], ids=["ce_", "ce-"])
def test_binary_round_trip_of_every_known_attribute(codec: Codec) -> None:
    event = make(
        subject="ORD-1",
        dataschema="https://schemas.example.com/order/1",
        traceparent=TRACEPARENT,
        tracestate="vendor=abc,other=x",
        correlationid="c-1",
        causationid="c-0",
        partitionkey="ORD-1",
        sequence="00042",
        schemaversion=7,
        time=None,
        data={"x": 1},
    )
    body, headers = codec.encode(event)
    assert codec.decode(body, headers) == as_binary_reads(event)


def test_http_headers_are_percent_encoded() -> None:
    subject = 'héllo wörld 100% "quoted"'
    event = make(subject=subject, extensions={"note": "a b"})
    body, headers = HTTP.encode(event)
    assert headers["ce-subject"] == "h%C3%A9llo%20w%C3%B6rld%20100%25%20%22quoted%22"
    assert headers["ce-note"] == "a%20b"
    assert all(v.isascii() and " " not in v for v in headers.values())
    decoded = HTTP.decode(body, headers)
    assert decoded.subject == subject
    assert decoded.extensions["note"] == "a b"


def test_http_headers_are_percent_encoded_one_by_one() -> None:
    event = make(subject="a b", datacontenttype="application/json; charset=utf-8")
    _, headers = HTTP.encode(event)
    assert headers["ce-subject"] == "a%20b" and headers["ce-type"] == event.type
    assert headers["content-type"] == "application/json; charset=utf-8"
    _, plain = HTTP.encode(make(datacontenttype="application/json; charset=utf-8"))
    assert plain["content-type"] == "application/json; charset=utf-8"


def test_kafka_headers_are_not_percent_encoded() -> None:
    event = make(subject="héllo wörld %41")
    body, headers = KAFKA.encode(event)
    assert headers["ce_subject"] == "héllo wörld %41"
    assert KAFKA.decode(body, headers).subject == "héllo wörld %41"


def test_http_header_that_is_not_percent_encoded_utf8_is_refused() -> None:
    with pytest.raises(DecodeError, match="ce-subject"):
        HTTP.decode(b"", binary_headers("ce-", **{"ce-subject": "%ff%fe"}))


# -- choosing the mode when decoding -----------------------------------------------


@pytest.mark.parametrize("prefix", ["ce_", "ce-"])
@pytest.mark.parametrize("codec", [STRUCTURED, KAFKA, HTTP], ids=["structured", "ce_", "ce-"])
def test_decode_picks_binary_when_specversion_header_is_present(codec: Codec, prefix: str) -> None:
    headers = binary_headers(prefix, **{f"{prefix}subject": "s", "content-type": "text/plain"})
    event = codec.decode(b"body text", headers)
    assert (event.id, event.source, event.type, event.subject) == ("1", "/s", "t", "s")
    assert event.data == "body text"


def test_decode_without_specversion_header_is_structured() -> None:
    body = STRUCTURED.encode_structured(make(data={"x": 1}))
    headers = {"content-type": STRUCTURED_CONTENT_TYPE, "ce_id": "ignored", "other": "x"}
    event = KAFKA.decode(body, headers)
    assert event.id == "evt-1"
    assert event.data == {"x": 1}


def test_decode_with_empty_headers_is_structured() -> None:
    body = STRUCTURED.encode_structured(make())
    assert KAFKA.decode(body, {}) == make()
    assert KAFKA.decode(body, None) == make()


def test_binary_header_names_match_case_insensitively() -> None:
    headers = {
        "Ce-Specversion": "1.0",
        "CE-ID": "1",
        "ce-Source": "/s",
        "Ce-Type": "t",
        "Content-Type": "application/json",
    }
    event = HTTP.decode(b'{"x": 1}', headers)
    assert (event.id, event.source, event.datacontenttype, event.data) == (
        "1",
        "/s",
        "application/json",
        {"x": 1},
    )


def test_binary_header_values_may_be_bytes() -> None:
    headers: dict[str, Any] = {k: v.encode() for k, v in binary_headers().items()}
    headers["ce_subject"] = "ünï".encode()
    headers["content-type"] = b"application/json"
    event = KAFKA.decode(b"[1]", headers)
    assert (event.id, event.subject, event.data) == ("1", "ünï", [1])


def test_custom_prefix_is_honoured() -> None:
    codec = Codec("binary", header_prefix="cloudEvents_")
    event = make(data={"x": 1})
    body, headers = codec.encode(event)
    assert "cloudEvents_id" in headers
    assert codec.decode(body, headers) == as_binary_reads(event)


def test_binary_datacontenttype_header_is_accepted() -> None:
    headers = binary_headers(ce_datacontenttype="text/plain")
    event = KAFKA.decode(b"plain", headers)
    assert event.datacontenttype == "text/plain"
    assert event.data == "plain"


def test_binary_body_without_content_type_that_is_not_json_stays_bytes() -> None:
    # The CloudEvents SDKs send bytes data in binary mode without a content type.
    event = KAFKA.decode(b"\x00\xffraw", binary_headers())
    assert event.data == b"\x00\xffraw"
    assert event.datacontenttype is None
    assert KAFKA.decode(b'{"x": 1}', binary_headers()).data == {"x": 1}


def test_binary_empty_body_means_no_data() -> None:
    event = KAFKA.decode(b"", binary_headers(**{"content-type": "application/json"}))
    assert event.data is None


# -- malformed input ---------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"not json", b"{", b'{"id": "1",}', b"\xff\xfe", b"{}{}"])
def test_body_that_is_not_json(body: bytes) -> None:
    with pytest.raises(DecodeError, match="not valid JSON"):
        STRUCTURED.decode(body)


@pytest.mark.parametrize(
    ("body", "kind"), [(b"[]", "list"), (b"1", "int"), (b'"s"', "str"), (b"null", "null")]
)
def test_body_that_is_not_an_object(body: bytes, kind: str) -> None:
    with pytest.raises(DecodeError, match=f"JSON object, got {kind}"):
        STRUCTURED.decode(body)


@pytest.mark.parametrize("name", ["id", "source", "type", "specversion"])
def test_missing_required_attribute_is_named(name: str) -> None:
    with pytest.raises(DecodeError, match=f"'{name}' is missing"):
        STRUCTURED.decode(envelope(**{name: None}))


@pytest.mark.parametrize("name", ["id", "source", "type", "specversion"])
@pytest.mark.parametrize("value", ["", 5, True, ["x"], {"x": 1}])
def test_required_attribute_of_wrong_type_is_named(name: str, value: Any) -> None:
    with pytest.raises(DecodeError, match=f"'{name}'"):
        STRUCTURED.decode(envelope(**{name: value}))


@pytest.mark.parametrize("name", ["id", "source", "type"])
def test_missing_required_binary_header_is_named(name: str) -> None:
    headers = binary_headers()
    del headers[f"ce_{name}"]
    with pytest.raises(DecodeError, match=f"'{name}' is missing"):
        KAFKA.decode(b"", headers)


@pytest.mark.parametrize("version", ["0.3", "1", "2.0", "1.0.0"])
def test_unsupported_specversion(version: str) -> None:
    with pytest.raises(DecodeError, match=f"specversion '{version}'"):
        STRUCTURED.decode(envelope(specversion=version))
    with pytest.raises(DecodeError, match="specversion"):
        KAFKA.decode(b"", binary_headers(ce_specversion=version))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("yesterday", "not an RFC 3339"),
        ("2024-05-01", "not an RFC 3339"),
        ("2024-05-01 12:00:00Z", "not an RFC 3339"),  # no 'T'
        ("2024-05-01T12:00Z", "not an RFC 3339"),  # no seconds
        ("2024-W18-3T12:00:00Z", "not an RFC 3339"),  # ISO week date
        ("2024-05-01T12:00:00+0500", "not an RFC 3339"),
        ("2024-05-01T12:00:00+05", "not an RFC 3339"),
        ("2024-05-01T12:00:00,5Z", "not an RFC 3339"),
        ("2024-05-01T12:00+00:00:00", "not an RFC 3339"),
        ("\uff12\uff10\uff12\uff14-05-01T12:00:00Z", "not an RFC 3339"),  # full-width digits
        ("2024-05-01T12:00:00", "no UTC offset"),
        ("2024-05-01T12:00:00.5", "no UTC offset"),
        ("2024-13-01T12:00:00Z", "not a valid date-time"),
        ("2024-02-30T12:00:00Z", "not a valid date-time"),
        ("2024-05-01T24:00:00Z", "not a valid date-time"),
        ("2024-05-01T12:00:60Z", "not a valid date-time"),
        ("2024-05-01T12:00:00+24:00", "not a valid date-time"),
        (1714564800, "must be an RFC 3339 string"),
        (True, "must be an RFC 3339 string"),
    ],
)
def test_bad_time_is_refused(value: Any, reason: str) -> None:
    with pytest.raises(DecodeError, match=f"'time'.*{reason}|{reason}.*'time'"):
        STRUCTURED.decode(envelope(time=value))


@pytest.mark.parametrize("value", ["yesterday", "2024-05-01T12:00:00", "2024-05-01 12:00:00Z"])
def test_bad_time_header_is_refused(value: str) -> None:
    with pytest.raises(DecodeError, match="'time'"):
        KAFKA.decode(b"", binary_headers(ce_time=value))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01t12:00:00z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00.123456789Z", datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2024-05-01T12:00:00.1Z", datetime(2024, 5, 1, 12, 0, 0, 100000, tzinfo=UTC)),
        ("2024-05-01T12:00:00-00:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        (
            "2024-05-01T17:30:00+05:30",
            datetime(2024, 5, 1, 17, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        ),
    ],
)
def test_rfc3339_variants_are_accepted(value: str, expected: datetime) -> None:
    decoded = STRUCTURED.decode(envelope(time=value)).time
    assert decoded == expected
    assert decoded is not None
    assert decoded.utcoffset() == expected.utcoffset()


def test_data_and_data_base64_together() -> None:
    with pytest.raises(DecodeError, match="both 'data' and 'data_base64'"):
        STRUCTURED.decode(envelope(data={"x": 1}, data_base64="AAE="))


@pytest.mark.parametrize("value", ["not base64!", "AAE", "AA=E", "ÄÖ==", 5, ["AAE="]])
def test_invalid_base64(value: Any) -> None:
    with pytest.raises(DecodeError, match="data_base64"):
        STRUCTURED.decode(envelope(data_base64=value))


@pytest.mark.parametrize("name", ["Bad", "with_underscore", "with-dash", "x" * 21, "ünï"])
def test_extension_with_invalid_name(name: str) -> None:
    with pytest.raises(DecodeError, match="extension name"):
        STRUCTURED.decode(envelope(**{name: "v"}))


@pytest.mark.parametrize("header", ["ce_Bad", "ce_with_underscore", "ce_"])
def test_binary_extension_header_with_invalid_name(header: str) -> None:
    # Header names are lower-cased first, so ce_Bad is the valid extension "bad".
    headers = binary_headers(**{header: "v"})
    if header == "ce_Bad":
        assert KAFKA.decode(b"", headers).extensions == {"bad": "v"}
    else:
        with pytest.raises(DecodeError, match="extension name"):
            KAFKA.decode(b"", headers)


@pytest.mark.parametrize(
    ("value", "kind"),
    [("null", "null"), ('{"a": 1}', "dict"), ("[1]", "list"), ("1.5", "float")],
)
def test_extension_with_unsupported_value(value: str, kind: str) -> None:
    body = envelope()[:-1] + f', "ext": {value}}}'.encode()
    with pytest.raises(DecodeError, match=f"extension 'ext' has unsupported value type {kind}"):
        STRUCTURED.decode(body)


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 10**30])
def test_extension_integer_out_of_range(value: int) -> None:
    with pytest.raises(DecodeError, match="ext"):
        STRUCTURED.decode(envelope(ext=value))


@pytest.mark.parametrize(
    "name",
    [
        "subject",
        "datacontenttype",
        "dataschema",
        "traceparent",
        "tracestate",
        "correlationid",
        "causationid",
        "partitionkey",
        "sequence",
    ],
)
@pytest.mark.parametrize("value", [5, True, ["x"], {"x": "y"}])
def test_non_string_optional_attribute(name: str, value: Any) -> None:
    with pytest.raises(DecodeError, match=f"'{name}' must be a string"):
        STRUCTURED.decode(envelope(**{name: value}))


@pytest.mark.parametrize("name", ["subject", "dataschema", "datacontenttype"])
def test_empty_optional_spec_attribute(name: str) -> None:
    with pytest.raises(DecodeError, match=name):
        STRUCTURED.decode(envelope(**{name: ""}))


def test_invalid_traceparent_is_refused() -> None:
    with pytest.raises(DecodeError, match="traceparent"):
        STRUCTURED.decode(envelope(traceparent="00-abc-def-01"))


@pytest.mark.parametrize(
    "value", ["abc", "\u00b2", "\u0661", "1.5", "9" * 5000, 1.5, True, [1], 2**31]
)
def test_bad_schemaversion(value: Any) -> None:
    with pytest.raises(DecodeError, match="schemaversion"):
        STRUCTURED.decode(envelope(schemaversion=value))


@pytest.mark.parametrize("value", ["abc", "\u00b2", "9" * 5000, "", " 1"])
def test_bad_schemaversion_header(value: str) -> None:
    with pytest.raises(DecodeError, match="schemaversion"):
        KAFKA.decode(b"", binary_headers(ce_schemaversion=value))


def test_schemaversion_as_text_or_number() -> None:
    assert STRUCTURED.decode(envelope(schemaversion=3)).schemaversion == 3
    assert STRUCTURED.decode(envelope(schemaversion="3")).schemaversion == 3
    assert KAFKA.decode(b"", binary_headers(ce_schemaversion="12")).schemaversion == 12


@pytest.mark.parametrize("header", ["ce_data", "ce_data_base64"])
def test_binary_data_header_is_refused(header: str) -> None:
    with pytest.raises(DecodeError, match=header):
        KAFKA.decode(b"", binary_headers(**{header: "x"}))


def test_binary_header_of_unsupported_type() -> None:
    headers: dict[str, Any] = binary_headers()
    headers["ce_subject"] = 5
    with pytest.raises(DecodeError, match="'ce_subject' must be a string"):
        KAFKA.decode(b"", headers)


def test_binary_header_bytes_that_are_not_utf8() -> None:
    headers: dict[str, Any] = binary_headers()
    headers["ce_subject"] = b"\xff\xfe"
    with pytest.raises(DecodeError, match=r"ce_subject.*UTF-8"):
        KAFKA.decode(b"", headers)


def test_binary_json_body_that_is_not_json() -> None:
    headers = binary_headers(**{"content-type": "application/json"})
    with pytest.raises(DecodeError, match="data is not valid JSON"):
        KAFKA.decode(b"{not json", headers)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("text/plain", b"\xff\xfe"), ("text/plain; charset=no-such-charset", b"abc")],
)
def test_binary_text_body_that_cannot_be_read(content_type: str, body: bytes) -> None:
    headers = binary_headers(**{"content-type": content_type})
    with pytest.raises(DecodeError, match="not text"):
        KAFKA.decode(body, headers)


def test_decode_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        STRUCTURED.decode(b"[]")


# -- encoding errors ---------------------------------------------------------------


@pytest.mark.parametrize("codec", [STRUCTURED, KAFKA], ids=["structured", "binary"])
@pytest.mark.parametrize("data", [object(), {"s": "\ud800"}, {(1, 2): "tuple key"}])
def test_data_that_cannot_be_json_is_an_invalid_event(codec: Codec, data: Any) -> None:
    with pytest.raises(InvalidEventError, match="JSON"):
        codec.encode(make(data=data))


@pytest.mark.parametrize("prefix", ["ce-", "ce_"])
def test_binary_extensions_decode_alike_on_the_fast_and_the_general_path(prefix: str) -> None:
    codec = Codec(mode="binary", header_prefix=prefix)
    event = Event(
        type="T",
        source="/s",
        data={"a": 1},
        partitionkey="k",
        extensions={"replyto": "_INBOX.x", "tenant": "acme", "n": 5},
    )
    body, headers = codec.encode(event)
    decoded = codec.decode(body, headers)
    assert decoded == codec._decode_binary(body, headers, prefix)
    assert dict(decoded.extensions) == {"replyto": "_INBOX.x", "tenant": "acme", "n": "5"}
    # a reserved name in an extension's place takes the general path, which refuses it
    with pytest.raises(DecodeError, match="data"):
        codec.decode(body, {**headers, prefix + "data": "x"})
