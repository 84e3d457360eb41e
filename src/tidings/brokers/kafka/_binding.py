"""Messages <-> Kafka records: the CloudEvents Kafka protocol binding's transport half.

The record key is the partition key (UTF-8), headers are UTF-8 bytes. Which
CloudEvents mode a record is in (binary: ``ce_`` headers and a
``content-type`` header; structured: a JSON envelope with content type
``application/cloudevents+json``) is the codec's business: it writes the
mode it is set to and reads both, whoever wrote the record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tidings.codec import Codec

__all__ = [
    "STRUCTURED_CONTENT_TYPE",
    "codec_for",
    "message_headers",
    "message_key",
    "record_headers",
    "record_key",
]

#: The ``content-type`` header of a structured-mode record (the Kafka protocol binding).
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"


def codec_for(binding: str) -> Codec:
    """The App's default codec for the URL's ``binding`` option."""
    if binding == "structured":
        return Codec("structured")
    return Codec("binary", header_prefix="ce_")


def record_key(key: str | None) -> bytes | None:
    return None if key is None else key.encode()


def record_headers(headers: Mapping[str, str]) -> list[tuple[str, bytes]]:
    return [(name, value.encode()) for name, value in headers.items()]


def message_key(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")


_NO_HEADERS: Mapping[str, str] = {}


def message_headers(raw: Sequence[tuple[str, bytes | None]]) -> Mapping[str, str]:
    """Record headers as text; a repeated name keeps its last value (as Kafka clients read)."""
    if not raw:
        return _NO_HEADERS
    try:
        return {name: value.decode() for name, value in raw}  # type: ignore[union-attr]
    except (AttributeError, UnicodeDecodeError):  # a null or non-UTF-8 value: keep going
        return {name: (value or b"").decode("utf-8", "replace") for name, value in raw}
