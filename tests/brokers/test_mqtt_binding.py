"""The MQTT binding's own packing of PUBLISH properties gives paho's bytes."""

from __future__ import annotations

import pytest

pytest.importorskip("aiomqtt")

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tidings.broker import Message
from tidings.brokers.mqtt import _binding


@pytest.mark.parametrize(
    ("headers", "key", "attempt"),
    [
        ({}, None, 1),
        ({"content-type": "application/json", "ce_id": "1", "n": "é", "_x": "y"}, "k1", 3),
    ],
)
def test_publish_properties_pack_to_what_paho_packs(
    headers: dict[str, str], key: str | None, attempt: int
) -> None:
    ours = _binding.write(Message(b"{}", headers, key), "m-1", attempt)
    theirs = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if "content-type" in headers:
        theirs.ContentType = headers["content-type"]
    theirs.UserProperty = ours.UserProperty
    assert ours.pack() == theirs.pack()  # type: ignore[no-untyped-call]
    assert _binding.read(ours).headers == headers
    assert (_binding.read(ours).key, _binding.read(ours).attempt) == (key, attempt)
