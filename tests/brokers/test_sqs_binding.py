"""The SNS/SQS adapter's pure parts: URL options, names, and the message binding."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tidings.broker import Message
from tidings.brokers import from_url
from tidings.brokers.sqs import SqsBroker, SqsOptions
from tidings.brokers.sqs._binding import MAX_ATTRIBUTES, read, write
from tidings.brokers.sqs._delivery import visibility
from tidings.brokers.sqs._topology import dead_letter_queue, group_queue, topic_name
from tidings.errors import ConfigurationError


def test_a_url_gives_endpoint_credentials_and_options() -> None:
    options = SqsOptions.from_url(
        "sns+sqs://AKID:s3cret@127.0.0.1:4566?region=eu-west-1&fifo=true&wait=2"
    )
    assert options.fanout and options.fifo
    assert options.endpoint == "http://127.0.0.1:4566"
    assert (options.access_key, options.secret_key) == ("AKID", "s3cret")
    assert options.region == "eu-west-1" and options.wait == 2
    assert "s3cret" not in repr(options) and "s3cret" not in options.url
    tls = SqsOptions.from_url("sqs://sqs.eu-west-1.amazonaws.com?tls=true")
    assert not tls.fanout and tls.endpoint == "https://sqs.eu-west-1.amazonaws.com"


def test_a_bare_url_leaves_endpoint_region_and_credentials_to_the_aws_environment() -> None:
    options = SqsOptions.from_url("sns+sqs://")
    assert options.endpoint is None and options.region is None and options.access_key is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sns+sqs://h?colour=red", "unknown SNS/SQS URL option"),
        ("sns+sqs://h?wait=30", "wait must be between 0 and 20"),
        ("sns+sqs://h?fifo=maybe", "fifo must be true or false"),
        ("sns+sqs://h?binding=xml", "binding must be"),
        ("sns+sqs://h?max_receives=0", "max_receives"),
        ("sns+sqs://key@h", "both the access key id and the secret"),
        ("sns+sqs://h/path", "no path"),
        ("sns+sqs://h?receivers=x", "bad SNS/SQS URL option"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SqsOptions.from_url(url)


def test_both_schemes_are_registered_and_declare_what_they_do() -> None:
    fanout = from_url("sns+sqs://127.0.0.1:1")
    fifo = from_url("sns+sqs://127.0.0.1:1?fifo=true")
    queues = from_url("sqs://127.0.0.1:1")
    assert isinstance(fanout, SqsBroker) and isinstance(queues, SqsBroker)
    assert fanout.capabilities.consumer_groups and not queues.capabilities.consumer_groups
    assert not fanout.capabilities.ordered_per_key and fifo.capabilities.ordered_per_key
    assert fifo.capabilities.key_affinity and fifo.capabilities.publish_dedup
    assert not fanout.capabilities.replay and not fanout.capabilities.delayed_publish
    assert queues.capabilities.delayed_publish and fanout.capabilities.delayed_redelivery


def test_a_missing_aiobotocore_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['aiobotocore'] = None\n"
        "from tidings.brokers import from_url\n"
        "try:\n    from_url('sns+sqs://127.0.0.1:1')\n"
        "except Exception as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert "pip install 'tidings[aws]'" in done.stdout, done.stderr


def test_names_map_dots_to_hyphens_and_fit_sqs_limits() -> None:
    assert topic_name("orders.created", False) == "orders-created"
    assert topic_name("orders", True) == "orders.fifo"
    assert group_queue("orders.created", "billing", False) == "orders-created__billing"
    assert dead_letter_queue("orders", True) == "orders-dlq.fifo"
    long = group_queue("t" * 70, "g" * 30, True)
    assert len(long) == 80 and long.endswith(".fifo")
    assert long != group_queue("t" * 70, "g" * 31, True)
    with pytest.raises(ConfigurationError, match="cannot name an SNS topic"):
        topic_name("orders/created", False)


def _round_trip(message: Message) -> tuple[bytes, str | None, dict[str, str]]:
    wire = write(message)
    assert len(wire.attributes) <= MAX_ATTRIBUTES
    received = {
        "Body": wire.body,
        "MessageAttributes": wire.attributes,
        "Attributes": {"ApproximateReceiveCount": "3", "SentTimestamp": "1700000000123"},
    }
    value, key, headers, attempt, published = read(received)
    assert (attempt, published) == (3, 1700000000.123)
    return value, key, dict(headers)


def test_binary_mode_headers_are_message_attributes_and_come_back() -> None:
    headers = {"ce_id": "1", "ce_type": "order.created", "content-type": "application/json"}
    wire = write(Message(b'{"n":1}', headers, "k1"))
    assert wire.body == '{"n":1}'
    assert wire.attributes["ce_type"] == {"DataType": "String", "StringValue": "order.created"}
    assert _round_trip(Message(b'{"n":1}', headers, "k1")) == (b'{"n":1}', "k1", headers)


def test_headers_beyond_ten_or_not_fit_for_attributes_travel_packed() -> None:
    headers = {f"h{i}": str(i) for i in range(14)} | {"ü": "ö", "empty": "", "AWS.x": "y"}
    assert _round_trip(Message(b"x", headers, "k")) == (b"x", "k", headers)


@pytest.mark.parametrize("value", [b"", bytes(range(256)), b"\x00text", "ü".encode()])
def test_any_bytes_survive_as_base64_or_text(value: bytes) -> None:
    assert _round_trip(Message(value))[0] == value


def test_visibility_rounds_up_within_sqs_bounds() -> None:
    assert [visibility(s) for s in (0, 0.2, 1.0, 1.01, 10**6)] == [0, 1, 1, 2, 43200]
