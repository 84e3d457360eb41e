"""Interoperability with the official CloudEvents Python SDK (``cloudevents``).

Both directions, structured and binary, over the HTTP binding (``ce-``
headers) and the Kafka binding (``ce_`` headers, byte values, the message key
carrying ``partitionkey``). The SDK's 1.x API lives in ``cloudevents.v1`` since
2.0 (and at the top level before); the 2.x ``cloudevents.core`` API is tested
where installed.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tidings.codec import STRUCTURED_CONTENT_TYPE, Codec
from tidings.event import Event

try:  # cloudevents >= 2.0
    from cloudevents.v1 import conversion as sdk_conversion
    from cloudevents.v1 import http as sdk_http
    from cloudevents.v1 import kafka as sdk_kafka
except ImportError:  # pragma: no cover - cloudevents 1.x
    from cloudevents import conversion as sdk_conversion  # type: ignore[no-redef,attr-defined]
    from cloudevents import http as sdk_http  # type: ignore[no-redef,attr-defined]
    from cloudevents import kafka as sdk_kafka  # type: ignore[no-redef,attr-defined]

HAS_CORE = importlib.util.find_spec("cloudevents.core") is not None
needs_core = pytest.mark.skipif(not HAS_CORE, reason="cloudevents.core needs cloudevents >= 2.0")

STRUCTURED = Codec()
KAFKA = Codec("binary", header_prefix="ce_")
HTTP = Codec("binary", header_prefix="ce-")
MOMENT = datetime(2024, 5, 1, 12, 30, 45, 123456, tzinfo=UTC)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def tidings_event(**changes: Any) -> Event:
    values: dict[str, Any] = {
        "type": "com.example.order.placed",
        "source": "/shop/orders",
        "id": "0190a5d0-0000-7000-8000-000000000001",
        "time": MOMENT,
        "subject": "ORD-1",
        "traceparent": TRACEPARENT,
        "correlationid": "corr-1",
        "extensions": {"tenant": "acme"},
        "data": {"order_id": "ORD-1", "lines": [{"sku": "A", "qty": 2}], "paid": True},
    }
    values.update(changes)
    return Event(**values)


def sdk_v1_event(data: Any = None, **attributes: Any) -> Any:
    values: dict[str, Any] = {
        "type": "com.example.order.placed",
        "source": "/shop/orders",
        "id": "sdk-1",
        "time": "2024-05-01T12:30:45.123456+00:00",
        "subject": "ORD-1",
        "tenant": "acme",
    }
    values.update(attributes)
    return sdk_http.CloudEvent(values, data)


def over_http(headers: Mapping[str, Any]) -> dict[str, str]:
    """What an HTTP client sends: header values as text."""
    return {name: str(value) for name, value in headers.items()}


def sdk_time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def assert_sdk_v1_matches(sdk_event: Any, event: Event, **expected_extensions: Any) -> None:
    """The SDK (1.x API) event has the tidings event's attributes and data."""
    assert sdk_event["specversion"] == "1.0"
    assert sdk_event["id"] == event.id
    assert sdk_event["source"] == event.source
    assert sdk_event["type"] == event.type
    assert sdk_event.get("subject") == event.subject
    assert sdk_time(sdk_event["time"]) == event.time
    assert sdk_event.get("traceparent") == event.traceparent
    assert sdk_event.get("correlationid") == event.correlationid
    for name, value in (expected_extensions or dict(event.extensions)).items():
        assert sdk_event[name] == value
    assert sdk_event.get_data() == event.data


# -- tidings -> SDK (1.x API) ------------------------------------------------------


def test_tidings_structured_is_read_by_the_sdk() -> None:
    event = tidings_event(extensions={"tenant": "acme", "retries": 3, "urgent": True})
    body, _ = STRUCTURED.encode(event)
    sdk_event = sdk_http.from_http({"content-type": STRUCTURED_CONTENT_TYPE}, body)
    assert_sdk_v1_matches(sdk_event, event)


def test_tidings_structured_bytes_are_read_by_the_sdk() -> None:
    event = tidings_event(data=b"\x00\x01\xfe\xff", datacontenttype="application/octet-stream")
    body, _ = STRUCTURED.encode(event)
    sdk_event = sdk_http.from_http({"content-type": STRUCTURED_CONTENT_TYPE}, body)
    assert sdk_event.get_data() == b"\x00\x01\xfe\xff"
    assert sdk_event["datacontenttype"] == "application/octet-stream"


def test_tidings_structured_text_is_read_by_the_sdk() -> None:
    event = tidings_event(data="héllo", datacontenttype="text/plain")
    body, _ = STRUCTURED.encode(event)
    sdk_event = sdk_http.from_http({"content-type": STRUCTURED_CONTENT_TYPE}, body)
    assert_sdk_v1_matches(sdk_event, event)
    assert sdk_event["datacontenttype"] == "text/plain"


def test_tidings_http_binary_is_read_by_the_sdk() -> None:
    event = tidings_event(extensions={"tenant": "acme", "retries": 3, "urgent": True})
    body, headers = HTTP.encode(event)
    sdk_event = sdk_http.from_http(headers, body)
    assert_sdk_v1_matches(sdk_event, event, tenant="acme", retries="3", urgent="true")
    assert sdk_event["datacontenttype"] == "application/json"


def test_tidings_http_binary_bytes_are_read_by_the_sdk() -> None:
    event = tidings_event(data=b"\x00\x01\xfe\xff")
    body, headers = HTTP.encode(event)
    sdk_event = sdk_http.from_http(headers, body)
    assert sdk_event.get_data() == b"\x00\x01\xfe\xff"


def test_tidings_http_binary_text_is_read_by_the_sdk() -> None:
    event = tidings_event(data="héllo", datacontenttype="text/plain; charset=utf-8")
    body, headers = HTTP.encode(event)
    sdk_event = sdk_http.from_http(headers, body, data_unmarshaller=lambda b: b.decode())
    assert_sdk_v1_matches(sdk_event, event)


def test_tidings_kafka_binary_is_read_by_the_sdk() -> None:
    event = tidings_event(partitionkey="ORD-1")
    body, headers = KAFKA.encode(event)
    message = sdk_kafka.KafkaMessage(
        headers={name: value.encode() for name, value in headers.items()},
        key=event.partitionkey,
        value=body,
    )
    sdk_event = sdk_kafka.from_binary(message)
    assert_sdk_v1_matches(sdk_event, event)
    assert sdk_event["partitionkey"] == "ORD-1"


def test_tidings_kafka_structured_is_read_by_the_sdk() -> None:
    event = tidings_event()
    body, _ = STRUCTURED.encode(event)
    message = sdk_kafka.KafkaMessage(headers={}, key=None, value=body)
    assert_sdk_v1_matches(sdk_kafka.from_structured(message), event)


# -- SDK (1.x API) -> tidings ------------------------------------------------------


def assert_tidings_matches_sdk(event: Event, sdk_event: Any, **expected_extensions: Any) -> None:
    assert event.specversion == "1.0"
    assert event.id == sdk_event["id"]
    assert event.source == sdk_event["source"]
    assert event.type == sdk_event["type"]
    assert event.subject == sdk_event.get("subject")
    assert event.time == sdk_time(sdk_event["time"])
    expected = expected_extensions or {
        name: sdk_event[name]
        for name in sdk_event
        if name not in {"specversion", "id", "source", "type", "subject", "time", "datacontenttype"}
    }
    assert event.attributes().items() >= expected.items()
    assert event.data == sdk_event.get_data()


def test_sdk_structured_is_read_by_tidings() -> None:
    sdk_event = sdk_v1_event({"order_id": "ORD-1", "qty": 2}, retries=3, urgent=True)
    headers, body = sdk_conversion.to_structured(sdk_event)
    event = STRUCTURED.decode(body, headers)
    assert_tidings_matches_sdk(event, sdk_event)
    assert event.extensions == {"tenant": "acme", "retries": 3, "urgent": True}


def test_sdk_structured_bytes_are_read_by_tidings() -> None:
    sdk_event = sdk_v1_event(b"\x00\x01\xfe\xff")
    headers, body = sdk_conversion.to_structured(sdk_event)
    event = STRUCTURED.decode(body, headers)
    assert event.data == b"\x00\x01\xfe\xff"
    assert_tidings_matches_sdk(event, sdk_event)


def test_sdk_http_binary_is_read_by_tidings() -> None:
    sdk_event = sdk_v1_event(
        {"order_id": "ORD-1"}, datacontenttype="application/json", traceparent=TRACEPARENT
    )
    headers, body = sdk_conversion.to_binary(sdk_event)
    assert "ce-specversion" in headers
    event = STRUCTURED.decode(body, over_http(headers))  # any codec reads binary
    assert_tidings_matches_sdk(event, sdk_event)
    assert event.datacontenttype == "application/json"
    assert event.traceparent == TRACEPARENT


def test_sdk_http_binary_extensions_arrive_as_text() -> None:
    sdk_event = sdk_v1_event({"x": 1}, retries=3)
    headers, body = sdk_conversion.to_binary(sdk_event)
    event = HTTP.decode(body, over_http(headers))
    assert event.extensions == {"tenant": "acme", "retries": "3"}


def test_sdk_http_binary_bytes_without_content_type_are_read_by_tidings() -> None:
    sdk_event = sdk_v1_event(b"\x00\x01\xfe\xff")
    headers, body = sdk_conversion.to_binary(sdk_event)
    assert "content-type" not in headers
    event = HTTP.decode(body, over_http(headers))
    assert event.data == b"\x00\x01\xfe\xff"
    assert_tidings_matches_sdk(event, sdk_event)


def test_sdk_http_binary_text_is_read_by_tidings() -> None:
    sdk_event = sdk_v1_event("héllo", datacontenttype="text/plain")
    headers, body = sdk_conversion.to_binary(sdk_event, data_marshaller=lambda s: s.encode())
    event = HTTP.decode(body, over_http(headers))
    assert event.data == "héllo"
    assert event.datacontenttype == "text/plain"


def test_sdk_kafka_binary_is_read_by_tidings() -> None:
    sdk_event = sdk_v1_event(
        {"order_id": "ORD-1"}, partitionkey="ORD-1", datacontenttype="application/json"
    )
    message = sdk_kafka.to_binary(sdk_event)  # (it needs a datacontenttype)
    assert "ce_partitionkey" not in message.headers  # the Kafka binding moves it to the key
    assert isinstance(message.key, str)
    assert isinstance(message.value, bytes)
    headers: dict[str, str | bytes] = dict(message.headers)
    headers["ce_partitionkey"] = message.key  # what a Kafka adapter maps back
    event = KAFKA.decode(message.value, headers)
    assert_tidings_matches_sdk(event, sdk_event, tenant="acme")
    assert event.partitionkey == "ORD-1"
    assert event.key == "ORD-1"


def test_sdk_kafka_structured_is_read_by_tidings() -> None:
    sdk_event = sdk_v1_event({"order_id": "ORD-1"})
    message = sdk_kafka.to_structured(sdk_event)
    assert isinstance(message.value, bytes)
    event = KAFKA.decode(message.value, dict(message.headers))
    assert_tidings_matches_sdk(event, sdk_event)


# -- the 2.x core API --------------------------------------------------------------


def core_event(data: Any = None, **attributes: Any) -> Any:
    from cloudevents.core.v1.event import CloudEvent

    values: dict[str, Any] = {
        "type": "com.example.order.placed",
        "source": "/shop/orders",
        "id": "core-1",
        "time": datetime(2024, 5, 1, 14, 30, 45, 5, tzinfo=timezone(timedelta(hours=2))),
    }
    values.update(attributes)
    return CloudEvent(values, data)


def assert_core_matches(core: Any, event: Event, **expected_extensions: Any) -> None:
    assert core.get_id() == event.id
    assert core.get_source() == event.source
    assert core.get_type() == event.type
    assert core.get_subject() == event.subject
    assert core.get_time() == event.time
    for name, value in (expected_extensions or dict(event.extensions)).items():
        assert core.get_extension(name) == value
    assert core.get_data() == event.data


@needs_core
def test_tidings_http_binary_percent_encoding_is_read_by_core() -> None:
    from cloudevents.core.bindings import http as core_http
    from cloudevents.core.formats.json import JSONFormat

    subject = 'héllo wörld 100% "quoted" %41'
    event = tidings_event(subject=subject, extensions={"note": "a b,c;d"})
    body, headers = HTTP.encode(event)
    core = core_http.from_binary(core_http.HTTPMessage(headers=headers, body=body), JSONFormat())
    assert_core_matches(core, event)
    assert core.get_subject() == subject


@needs_core
def test_core_http_binary_percent_encoding_is_read_by_tidings() -> None:
    from cloudevents.core.bindings import http as core_http
    from cloudevents.core.formats.json import JSONFormat

    core = core_event(
        {"order_id": "ORD-1"}, subject='héllo wörld 100% "quoted"', note="a b", tenant="acme"
    )
    message = core_http.to_binary(core, JSONFormat())
    assert message.headers["ce-subject"] != core.get_subject()  # it was percent-encoded
    event = HTTP.decode(message.body, message.headers)
    assert event.subject == 'héllo wörld 100% "quoted"'
    assert event.time == core.get_time()
    assert event.extensions == {"note": "a b", "tenant": "acme"}
    assert event.data == {"order_id": "ORD-1"}


@needs_core
def test_structured_both_ways_with_core() -> None:
    from cloudevents.core.bindings import http as core_http
    from cloudevents.core.formats.json import JSONFormat

    event = tidings_event(extensions={"tenant": "acme", "retries": 3, "urgent": False})
    body, _ = STRUCTURED.encode(event)
    core = core_http.from_structured(
        core_http.HTTPMessage(headers={"content-type": STRUCTURED_CONTENT_TYPE}, body=body),
        JSONFormat(),
    )
    assert_core_matches(core, event)

    back = core_http.to_structured(core, JSONFormat())
    decoded = STRUCTURED.decode(back.body, back.headers)
    assert decoded == event


@needs_core
def test_core_kafka_binary_both_ways() -> None:
    from cloudevents.core.bindings import kafka as core_kafka
    from cloudevents.core.formats.json import JSONFormat

    event = tidings_event(partitionkey="ORD-1", data="plain text", datacontenttype="text/plain")
    body, headers = KAFKA.encode(event)
    message = core_kafka.KafkaMessage(
        headers={name: value.encode() for name, value in headers.items()},
        key=event.partitionkey,
        value=body,
    )
    core = core_kafka.from_binary(message, JSONFormat())
    assert_core_matches(core, event)
    assert core.get_extension("partitionkey") == "ORD-1"

    back = core_kafka.to_binary(core, JSONFormat())
    assert back.key == "ORD-1"
    decoded = KAFKA.decode(back.value, dict(back.headers))
    assert decoded == event


@needs_core
def test_core_binary_bytes_are_read_by_tidings() -> None:
    from cloudevents.core.bindings import http as core_http
    from cloudevents.core.formats.json import JSONFormat

    core = core_event(b"\x00\x01\xfe\xff")
    message = core_http.to_binary(core, JSONFormat())
    event = HTTP.decode(message.body, message.headers)
    assert event.data == b"\x00\x01\xfe\xff"
    assert event.time == core.get_time()


@needs_core
def test_core_structured_bytes_and_json_data_are_read_by_tidings() -> None:
    from cloudevents.core.formats.json import JSONFormat

    for data in (b"\x00\x01\xfe\xff", {"nested": {"list": [1, 2.5, None, "x"]}}):
        body = JSONFormat().write(core_event(data, subject="s"))
        event = STRUCTURED.decode(body)
        assert event.data == data
        assert event.subject == "s"
        assert json.loads(body)["id"] == event.id
