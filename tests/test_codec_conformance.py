"""The CloudEvents project's own JSON-format conformance data (tests/data/cloudevents-conformance).

Every valid event and batch decodes to its golden sample (built here in code, as
the data's README asks); every invalid one raises DecodeError. The data marks
two tests as needing typed sample extension attributes; tidings has no typed
extension definitions, so there the binary, timestamp and URI extensions are
compared in their JSON form (base64 and RFC 3339 strings), which is what a
receiver without definitions holds. Where the README's sample ids differ from
the ids in the data (``simpleTextData``, ``allExtensionTypes``), the data wins.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tidings import DecodeError, Event
from tidings.codec import Codec

DATA = Path(__file__).parent / "data" / "cloudevents-conformance"
MINIMAL = {"id": "minimal", "type": "io.cloudevents.test", "source": "https://cloudevents.io"}
APRIL = datetime(2018, 4, 5, 17, 31, tzinfo=UTC)


def _golden(sample: str) -> dict[str, Any]:
    """CloudEvent-relevant attributes of the sample events of format/README.md."""
    base: dict[str, Any] = {**MINIMAL, "time": None, "data": None, "extensions": {}}
    changes: dict[str, dict[str, Any]] = {
        "minimal": {},
        "minimalWithTime": {"id": "minimalWithTime", "time": APRIL},
        "minimalWithRelativeSource": {"id": "minimalWithRelativeSource", "source": "#fragment"},
        "allCore": {
            "id": "allCore",
            "datacontenttype": "text/plain",
            "dataschema": "https://cloudevents.io/dataschema",
            "subject": "tests",
            "time": APRIL,
        },
        "simpleTextData": {
            "id": "simpleTextData",
            "datacontenttype": "text/plain",
            "data": "Simple text",
        },
        "allExtensionTypes": {
            "id": "allExtensionTypes",
            "extensions": {
                "extinteger": 10,
                "extboolean": True,
                "extstring": "text",
                "extbinary": "TWE=",
                "exttimestamp": "2023-03-31T15:12:00Z",
                "exturi": "https://cloudevents.io",
                "exturiref": "//authority/path",
            },
        },
    }
    return base | changes[sample]


GOLDEN_BATCHES = {
    "empty": [],
    "minimal": ["minimal"],
    "minimal2": ["minimal", "minimal"],
    "minimalAndAllCore": ["minimal", "allCore"],
    "minimalAndAllExtensionTypes": ["minimal", "allExtensionTypes"],
}


def _relevant(event: Event, like: dict[str, Any]) -> dict[str, Any]:
    out = {name: getattr(event, name) for name in like if name != "extensions"}
    out["extensions"] = dict(event.extensions)
    return out


def _cases(name: str) -> list[Any]:
    document = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8-sig"))
    return [pytest.param(test, id=test["id"]) for test in document["tests"]]


@pytest.mark.parametrize("test", _cases("valid-events"))
def test_valid_events_decode_to_their_golden_sample(test: dict[str, Any]) -> None:
    event = Codec().decode(json.dumps(test["event"]).encode())
    golden = _golden(test["sampleId"])
    assert _relevant(event, golden) == golden


@pytest.mark.parametrize("test", _cases("invalid-events"))
def test_invalid_events_are_refused(test: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        Codec().decode(json.dumps(test["event"]).encode())


@pytest.mark.parametrize("test", _cases("valid-batches"))
def test_valid_batches_decode_to_their_golden_samples(test: dict[str, Any]) -> None:
    events = Codec().decode_batch(json.dumps(test["batch"]).encode())
    golden = [_golden(sample) for sample in GOLDEN_BATCHES[test["sampleId"]]]
    assert [_relevant(e, g) for e, g in zip(events, golden, strict=True)] == golden


@pytest.mark.parametrize("test", _cases("invalid-batches"))
def test_invalid_batches_are_refused(test: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        Codec().decode_batch(json.dumps(test["batch"]).encode())


def test_a_batch_that_is_not_an_array_is_refused() -> None:
    with pytest.raises(DecodeError, match="JSON array"):
        Codec().decode_batch(json.dumps(MINIMAL | {"specversion": "1.0"}).encode())
