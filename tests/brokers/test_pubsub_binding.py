"""The Pub/Sub adapter's pure parts: URL options, names, and the message binding."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tidings import Event
from tidings.broker import Message
from tidings.brokers import from_url
from tidings.brokers.pubsub import PubSubBroker, PubSubOptions
from tidings.brokers.pubsub._binding import HEADERS, KEY, codec_for, read, wire_size, write
from tidings.brokers.pubsub._client import deadline_seconds
from tidings.brokers.pubsub._delivery import whole_seconds
from tidings.brokers.pubsub._topology import dead_letter_topic, subscription_id, topic_id
from tidings.errors import ConfigurationError


def test_a_url_gives_project_emulator_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    options = PubSubOptions.from_url(
        "gcppubsub://my-project?emulator=127.0.0.1:8085&ordering=false&max_deliveries=5&wait=2"
    )
    assert options.project == "my-project" and options.emulator == "127.0.0.1:8085"
    assert not options.ordering and options.max_deliveries == 5 and options.wait == 2
    assert options.target == "127.0.0.1:8085"
    google = PubSubOptions.from_url("gcppubsub://my-project")
    assert google.emulator is None and google.target == "pubsub.googleapis.com:443"
    assert google.retention == 7 * 86400 and google.ordering


def test_the_emulator_variable_of_googles_clients_is_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "localhost:8681")
    assert PubSubOptions.from_url("gcppubsub://p1").emulator == "localhost:8681"
    url = "gcppubsub://p1?emulator=127.0.0.1:9"
    assert PubSubOptions.from_url(url).emulator == "127.0.0.1:9"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("gcppubsub://p?colour=red", "unknown Pub/Sub URL option"),
        ("gcppubsub://My_Project", "not a Google Cloud project id"),
        ("gcppubsub://", "not a Google Cloud project id"),
        ("gcppubsub://p?max_deliveries=4", "between 5 and 100"),
        ("gcppubsub://p?retention=60", "retention must be 0 or between"),
        ("gcppubsub://p?ordering=maybe", "ordering must be true or false"),
        ("gcppubsub://p?binding=xml", "binding must be"),
        ("gcppubsub://p?emulator=nohost", "emulator must be host:port"),
        ("gcppubsub://p?wait=0", "wait must be > 0"),
        ("gcppubsub://p?pullers=x", "bad Pub/Sub URL option"),
        ("gcppubsub://p/topics/t", "no path"),
        ("gcppubsub://user:secret@p", "carries no credentials"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        PubSubOptions.from_url(url)
    assert "secret" not in str(caught.value)


def test_the_scheme_is_registered_and_declares_what_it_does() -> None:
    ordered = from_url("gcppubsub://p1?emulator=127.0.0.1:1")
    unordered = from_url("gcppubsub://p1?emulator=127.0.0.1:1&ordering=false&retention=0")
    assert isinstance(ordered, PubSubBroker) and isinstance(unordered, PubSubBroker)
    caps = ordered.capabilities
    assert caps.persistent and caps.consumer_groups and caps.ordered_per_key and caps.replay
    assert caps.key_affinity and caps.delayed_redelivery and caps.headers
    assert not caps.delayed_publish and not caps.exactly_once and not caps.publish_dedup
    assert not unordered.capabilities.ordered_per_key and not unordered.capabilities.replay


def test_a_missing_client_library_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['google.pubsub_v1'] = None\n"
        "from tidings.brokers import from_url\n"
        "try:\n    from_url('gcppubsub://p1')\n"
        "except Exception as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert "pip install 'tidings[gcp]'" in done.stdout, done.stderr


def test_names_keep_dots_and_encode_the_rest() -> None:
    assert topic_id("orders.created") == "orders.created"
    assert dead_letter_topic("orders") == "orders.dlq"
    assert topic_id("a/b c") == "a%2Fb%20c"
    assert subscription_id("orders", "billing") == "orders__billing"
    assert subscription_id("orders", "bill/ing") == "orders__bill%2Fing"
    long = subscription_id("t" * 200, "g" * 100)
    assert len(long) == 255 and long != subscription_id("t" * 200, "g" * 101)
    for bad in ("9lives", "ab", "google.events", "x" * 256):
        with pytest.raises(ConfigurationError, match="cannot name a Pub/Sub topic"):
            topic_id(bad)


def _round_trip(message: Message) -> tuple[bytes, str | None, dict[str, str]]:
    wire, bound = write(message)
    assert len(wire.attributes) <= 100 and bound >= wire_size(wire)
    value, key, headers = read(wire)
    return value, key, dict(headers)


def test_binary_mode_writes_ce_attributes_of_the_pubsub_binding() -> None:
    event = Event(source="/shop", type="order.placed", data={"n": 1}, subject="ü/1")
    value, headers = codec_for("binary").encode(event)
    wire, _ = write(Message(value, headers, "k1"))
    assert wire.data == b'{"n":1}' and wire.ordering_key == "k1"
    assert wire.attributes["ce-type"] == "order.placed"
    assert wire.attributes["ce-id"] == event.id
    assert wire.attributes["content-type"] == "application/json"
    decoded = codec_for("binary").decode(*_round_trip(Message(value, headers, "k1"))[::2])
    assert decoded.id == event.id and decoded.subject == "ü/1"


def test_headers_that_do_not_fit_travel_packed() -> None:
    headers = {f"h{i}": str(i) for i in range(120)} | {"goog-x": "y", "n" * 300: "long"}
    headers |= {"v": "x" * 1025, "": "empty name"}
    with pytest.raises(ConfigurationError, match="do not fit"):
        write(Message(b"x", headers))
    fits = {f"h{i}": str(i) for i in range(99)} | {"goog-x": "y", "ü": ""}
    value, key, back = _round_trip(Message(b"x", fits, "k"))
    assert (value, key, back) == (b"x", "k", fits)
    assert HEADERS in write(Message(b"x", fits))[0].attributes


def test_names_seen_before_still_have_their_values_checked() -> None:
    headers = {"ce-type": "t", "ce-source": "/s"}
    assert write(Message(b"x", headers, "k"))[0].attributes == headers
    again, bound = write(Message(b"x", headers, "k"))  # the names are known now
    assert dict(again.attributes) == headers and bound >= wire_size(again)
    long = {"ce-type": "ü" * 300, "ce-source": "/s"}  # 600 bytes: fits
    assert dict(write(Message(b"x", long, "k"))[0].attributes) == long
    with pytest.raises(ConfigurationError, match="do not fit"):
        write(Message(b"x", {"ce-type": "ü" * 600}, "k"))  # 1200 bytes
    many = {f"ce-x{i}": "v" for i in range(99)}
    assert write(Message(b"x", many, "k"))[0].attributes[HEADERS]  # seen, yet too many
    assert read(write(Message(b"x", many, "k"))[0])[2] == many


def test_keys_empty_delayed_or_too_long() -> None:
    assert _round_trip(Message(b"x", key="")) == (b"x", "", {})
    delayed, _ = write(Message(b"x", key="k", deliver_at=2e9))
    assert delayed.ordering_key == "" and delayed.attributes[KEY] == "k"
    assert read(delayed)[1] == "k"
    with pytest.raises(ConfigurationError, match="at most 1024 bytes"):
        write(Message(b"x", key="k" * 1025))


@pytest.mark.parametrize("value", [b"", bytes(range(256)), b"\x00text"])
def test_any_bytes_survive(value: bytes) -> None:
    assert _round_trip(Message(value))[0] == value
    assert wire_size(write(Message(value, {"a": "b"}, "k"))[0]) == len(value) + 3


def test_deadlines_round_up_within_pubsub_bounds() -> None:
    assert [deadline_seconds(s) for s in (0.5, 10, 30, 30.2, 10**6)] == [10, 10, 30, 31, 600]
    assert [whole_seconds(s) for s in (0, 0.2, 1.0, 1.01)] == [0, 1, 1, 2]
