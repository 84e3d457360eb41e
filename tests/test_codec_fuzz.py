"""Property tests: the codec never fails with anything but DecodeError, and round-trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidings.codec import Codec, is_json_content_type
from tidings.errors import DecodeError
from tidings.event import STANDARD_ATTRIBUTES, Event

STRUCTURED = Codec()
KAFKA = Codec("binary")
HTTP = Codec("binary", header_prefix="ce-")
CODECS = (STRUCTURED, KAFKA, HTTP)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KNOWN_NAMES = sorted(set(Event.__struct_fields__) | STANDARD_ATTRIBUTES)
VALID_BASE = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
# Anything json.dumps can write, including huge ints and NaN (which is not JSON).
jsonish_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.binary(max_size=20).map(lambda b: b.decode("latin-1"))
)
attribute_names = st.sampled_from(KNOWN_NAMES) | st.text(max_size=25)
attribute_values = (
    jsonish_scalars
    | st.lists(jsonish_scalars, max_size=3)
    | st.dictionaries(st.text(max_size=5), jsonish_scalars, max_size=3)
)
# Values that look like what each attribute holds, so decoding goes past the first check.
plausible_values = st.sampled_from(
    [
        "1.0",
        "0.3",
        "",
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00",
        "2024-02-30T12:00:00+01:00",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "AAE=",
        "not base64!",
        "application/json",
        "text/plain; charset=utf-8",
        "text/plain; charset=nope",
        "7",
        "%ff",
        "%41",
    ]
)


def encode_json(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


def assert_decodes_or_refuses(codec: Codec, body: bytes, headers: Any = None) -> None:
    try:
        event = codec.decode(body, headers)
    except DecodeError:
        return
    assert isinstance(event, Event)
    assert event.specversion == "1.0"
    assert event.id and event.source and event.type


# -- robustness --------------------------------------------------------------------


@FUZZ
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_decode_error(body: bytes) -> None:
    for codec in CODECS:
        assert_decodes_or_refuses(codec, body)


@FUZZ
@given(value=st.recursive(jsonish_scalars, lambda c: st.lists(c) | st.dictionaries(st.text(), c)))
def test_arbitrary_json_only_raises_decode_error(value: Any) -> None:
    assert_decodes_or_refuses(STRUCTURED, encode_json(value))


@FUZZ
@given(
    extra=st.dictionaries(attribute_names, attribute_values | plausible_values, max_size=6),
    drop=st.sets(st.sampled_from(sorted(VALID_BASE)), max_size=2),
)
def test_near_valid_envelopes_only_raise_decode_error(
    extra: dict[str, Any], drop: set[str]
) -> None:
    obj: dict[str, Any] = {k: v for k, v in VALID_BASE.items() if k not in drop}
    obj.update(extra)
    assert_decodes_or_refuses(STRUCTURED, encode_json(obj))


header_names = (
    st.sampled_from(["ce_", "ce-", "CE-", "Ce_"]).flatmap(
        lambda p: st.sampled_from([*KNOWN_NAMES, "ext", "Bad", ""]).map(lambda n: p + n)
    )
    | st.sampled_from(["content-type", "Content-Type", "content_type"])
    | st.text(max_size=15)
)
header_values = (
    plausible_values | st.text(max_size=40) | st.binary(max_size=20) | st.integers() | st.none()
)


@FUZZ
@given(
    headers=st.dictionaries(header_names, header_values, max_size=10),
    prefix=st.sampled_from(["ce_", "ce-"]),
    with_base=st.booleans(),
    body=st.binary(max_size=60) | json_values.map(encode_json),
)
def test_arbitrary_headers_only_raise_decode_error(
    headers: dict[str, Any], prefix: str, with_base: bool, body: bytes
) -> None:
    if with_base:
        headers = {prefix + k: v for k, v in VALID_BASE.items()} | headers
    for codec in CODECS:
        assert_decodes_or_refuses(codec, body, headers)


# -- round trips -------------------------------------------------------------------

clashing = set(KNOWN_NAMES)
extension_names = st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True).filter(
    lambda n: n not in clashing
)
extension_values = st.text() | st.integers(min_value=-(2**31), max_value=2**31 - 1) | st.booleans()
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
times = st.none() | st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets | st.just(UTC)
)
texts = st.text(min_size=1, max_size=40)


@st.composite
def events(draw: st.DrawFn) -> Event:
    data_kind = draw(st.sampled_from(["none", "json", "bytes", "text"]))
    values: dict[str, Any] = {
        "type": draw(texts),
        "source": draw(texts),
        "id": draw(texts),
        "time": draw(times),
        "subject": draw(st.none() | texts),
        "dataschema": draw(st.none() | texts),
        "correlationid": draw(st.none() | st.text()),
        "partitionkey": draw(st.none() | st.text()),
        "schemaversion": draw(st.none() | st.integers(min_value=0, max_value=2**31 - 1)),
        "extensions": draw(st.dictionaries(extension_names, extension_values, max_size=4)),
    }
    if data_kind == "json":
        values["data"] = draw(json_values.filter(lambda v: v is not None))
        values["datacontenttype"] = draw(st.sampled_from([None, "application/vnd.x+json"]))
    elif data_kind == "bytes":
        values["data"] = draw(st.binary(max_size=50))
        values["datacontenttype"] = draw(st.sampled_from([None, "application/octet-stream"]))
    elif data_kind == "text":
        values["data"] = draw(st.text(max_size=50))
        values["datacontenttype"] = draw(st.sampled_from(["text/plain", "text/csv"]))
    return Event(**values)


def binary_view(event: Event) -> Event:
    """The event as binary mode reads it back: attributes as text, content type explicit."""
    content_type = event.datacontenttype
    if content_type is None and event.data is not None:
        is_bytes = isinstance(event.data, bytes)
        content_type = "application/octet-stream" if is_bytes else "application/json"
    data = event.data
    if data in (b"", "") and not is_json_content_type(content_type):
        data = None  # an empty body is no data (JSON "" is not empty: it is two quotes)
    extensions = {
        name: ("true" if value else "false") if isinstance(value, bool) else str(value)
        for name, value in event.extensions.items()
    }
    return event.replace(datacontenttype=content_type, data=data, extensions=extensions)


@FUZZ
@given(event=events())
def test_structured_round_trip(event: Event) -> None:
    body, headers = STRUCTURED.encode(event)
    assert STRUCTURED.decode(body, headers) == event


@FUZZ
@given(event=events())
def test_binary_round_trip(event: Event) -> None:
    expected = binary_view(event)
    for codec in (KAFKA, HTTP):
        body, headers = codec.encode(event)
        assert codec.decode(body, headers) == expected


@FUZZ
@given(event=events())
def test_http_headers_are_printable_ascii(event: Event) -> None:
    _, headers = HTTP.encode(event)
    for name, value in headers.items():
        if name.startswith("ce-"):
            assert all(0x21 <= ord(c) < 0x7F and c != '"' for c in value), (name, value)
