"""The SNS/SQS adapter against moto in server mode (started here, on a free port)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _moto import Moto
from _services import follow_two_events, free_port, run_python

from tidings import App
from tidings.broker import Message, SubscribeOptions
from tidings.brokers import from_url
from tidings.brokers.sqs import SqsBroker
from tidings.errors import BrokerUnavailable, ConfigurationError, EventTooLargeError
from tidings.testing._fetching import quiet
from tidings.testing.conformance import BrokerConformance, collect
from tidings.testing.request_reply import RequestReplySemantics


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    server = Moto()
    server.start()
    yield server
    server.stop()


def _no_history(self: Any, *args: Any, **kwargs: Any) -> None:
    pytest.skip(
        "SNS keeps no history: a group's queue receives what is published once it exists, "
        "so an event published before the group was created never reaches it"
    )


#: A receive's long poll is short, so that closing is quick in the tests; moto slows down
#: as a queue fills (it counts every message on each send), hence the long publish timeout.
#: One receive in flight per queue: moto's ReceiveMessage takes no lock, so two at once
#: can both take a message (real standard queues may deliver twice too, but rarely).
FAST = "wait=1&publish_timeout=60&receivers=1"


def _moto_too_slow(self: Any, *args: Any, **kwargs: Any) -> None:
    pytest.skip(
        "moto's SQS spends time proportional to a queue's length on every send and receive "
        "(it recomputes each message's visibility): thousands of queued events take minutes"
    )


#: Tests of thousands of events in one queue (see _moto_too_slow).
_VOLUME = (
    "test_many_messages",
    "test_large_fetches_skip_nothing",
    "test_a_thousand_requests_in_flight_each_get_their_own_reply",
)


def _no_order(self: Any, *args: Any, **kwargs: Any) -> None:
    pytest.skip("standard SNS topics and SQS queues promise no order; the FIFO suite runs it")


async def _factory(url: str) -> AsyncIterator[Callable[[], SqsBroker]]:
    """Brokers of ``url``, closed at the end (Apps given a broker leave that to its owner)."""
    made: list[SqsBroker] = []

    def make() -> SqsBroker:
        broker = SqsBroker.from_url(url)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()


def _moto_race(self: Any, *args: Any, **kwargs: Any) -> None:
    pytest.skip(
        "moto's ReceiveMessage takes no lock: two members receiving from one standard queue at "
        "once can both get a message (seen: 201 of 200). AWS standard queues are at-least-once "
        "too; the FIFO suite, where moto locks message groups, runs it"
    )


class TestSnsSqs(BrokerConformance):
    patience = 20.0
    test_competing_consumers = _moto_race
    test_group_less_reader_sees_what_is_published_while_open = _no_history
    test_a_rebalance_during_retry_holds_strands_no_key = _no_order
    locals().update(dict.fromkeys(_VOLUME, _moto_too_slow))

    @pytest.fixture
    async def broker_factory(self, moto: Moto) -> AsyncIterator[Callable[[], SqsBroker]]:
        async for make in _factory(moto.url("sns+sqs", FAST)):
            yield make


def _no_rebalance(self: Any, *args: Any, **kwargs: Any) -> None:
    pytest.skip(
        "SQS moves nothing when a member joins: what a member held goes back to the queue on "
        "nack, close or the end of its visibility timeout, to whichever member receives next"
    )


class TestSnsSqsFifo(BrokerConformance):
    patience = 40.0
    test_group_less_reader_sees_what_is_published_while_open = _no_history
    test_revoked_deliveries_are_reported_and_redelivered_in_key_order = _no_rebalance
    locals().update(dict.fromkeys(_VOLUME, _moto_too_slow))

    @pytest.fixture
    async def broker_factory(self, moto: Moto) -> AsyncIterator[Callable[[], SqsBroker]]:
        # Short polls: moto's FIFO receive waits out its whole long poll when the groups it
        # saw busy at its start free up meanwhile.
        async for make in _factory(moto.url("sns+sqs", FAST + "&fifo=true&wait=0")):
            yield make


def _point_to_point(self: Any, *args: Any, **kwargs: Any) -> None:
    pytest.skip(
        "sqs:// queues are point to point: no group-less readers (request/reply replies use "
        "them; run it on sns+sqs://), and a queue keeps what was sent before anyone read it"
    )


class TestSqsQueues(BrokerConformance):
    patience = 20.0
    locals().update(dict.fromkeys(_VOLUME, _moto_too_slow))
    locals().update(
        dict.fromkeys(
            [name for name in vars(RequestReplySemantics) if name.startswith("test_")],
            _point_to_point,
        )
    )
    test_group_less_reader_sees_what_is_published_while_open = _point_to_point
    test_new_group_starting_at_latest = _point_to_point
    test_large_fetches_skip_nothing = _no_order
    test_a_rebalance_during_retry_holds_strands_no_key = _no_order

    @pytest.fixture
    async def broker_factory(self, moto: Moto) -> AsyncIterator[Callable[[], SqsBroker]]:
        async for make in _factory(moto.url("sqs", FAST)):
            yield make


# -- adapter-specific ------------------------------------------------------------------


def _unique(base: str) -> str:
    return f"sqs-{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def broker(moto: Moto) -> AsyncIterator[SqsBroker]:
    opened = SqsBroker.from_url(moto.url("sns+sqs", FAST))
    await opened.connect()
    yield opened
    await opened.close()


async def test_connect_raises_broker_unavailable_within_the_timeout() -> None:
    port = free_port()
    broker = from_url(f"sns+sqs://AKID:s3cret@127.0.0.1:{port}?connect_timeout=0.5")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        await broker.connect()
    assert time.monotonic() - started < 3
    assert f"AKID:***@127.0.0.1:{port}" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_a_bare_url_works_from_the_standard_aws_environment(moto: Moto, tmp_path: Path) -> None:
    topic = _unique("env")
    script = tmp_path / "bare.py"
    script.write_text(
        "import asyncio\n"
        "from tidings import App\n"
        "async def main():\n"
        "    app = App('bare', broker='sns+sqs://?wait=1')\n"
        "    seen = asyncio.Event()\n"
        f"    @app.subscribe({topic!r}, group='g')\n"
        "    async def handle(data: dict) -> None:\n"
        "        print('got', data['n'])\n"
        "        seen.set()\n"
        "    async with app:\n"
        f"        await app.publish({{'n': 7}}, topic={topic!r}, type='T')\n"
        "        await asyncio.wait_for(seen.wait(), 20)\n"
        "asyncio.run(main())\n"
    )
    env = {
        "AWS_ENDPOINT_URL": moto.endpoint,
        "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr
    assert "got 7" in done.stdout


async def test_a_plain_sqs_client_reads_binary_mode_as_message_attributes(
    moto: Moto, broker: SqsBroker
) -> None:
    topic = _unique("plain")
    sub = await broker.subscribe([topic], "audit")
    await sub.close()
    app = App("plain", broker=moto.url("sns+sqs", FAST))
    async with app:
        event = await app.publish({"total": 12}, topic=topic, type="order.placed", key="c1")
    url = (await broker.aws.sqs.get_queue_url(QueueName=f"{topic}__audit"))["QueueUrl"]
    got = await broker.aws.sqs.receive_message(
        QueueUrl=url, MessageAttributeNames=["All"], WaitTimeSeconds=5
    )
    (message,) = got["Messages"]
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert message["Body"] == '{"total":12}'
    assert attributes["ce_id"] == event.id
    assert attributes["ce_type"] == "order.placed"
    assert attributes["ce_specversion"] == "1.0"
    assert attributes["content-type"] == "application/json"
    assert attributes["tidings-key"] == "c1"


async def test_a_message_received_max_receives_times_moves_to_the_redrive_queue(
    moto: Moto,
) -> None:
    broker = SqsBroker.from_url(moto.url("sns+sqs", FAST + "&max_receives=2"))
    await broker.connect()
    try:
        topic = _unique("redrive")
        sub = await broker.subscribe([topic], "g")
        await broker.publish(topic, [Message(b"poison")])
        for attempt in (1, 2):
            (d,) = await collect(sub, 1, ack=False, timeout=10)
            assert d.attempt == attempt
            await d.nack()
        assert await quiet(sub, 2.0) == []
        url = (await broker.aws.sqs.get_queue_url(QueueName=f"{topic}-dlq"))["QueueUrl"]
        got = await broker.aws.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)
        assert [m["Body"] for m in got["Messages"]] == ["poison"]
    finally:
        await broker.close()


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
async def test_messages_waiting_in_the_buffer_past_ack_wait_come_once(
    moto: Moto, fifo: bool
) -> None:
    """Received ahead of the App and left in the buffer for twice the visibility timeout,
    the messages are handed out once each, as first attempts: the member renewed their
    visibility meanwhile, so SQS never gave them out again."""
    options = FAST + ("&fifo=true" if fifo else "")
    broker = SqsBroker.from_url(moto.url("sns+sqs", options))
    await broker.connect()
    try:
        topic = _unique("kept")
        sub = await broker.subscribe([topic], "g", SubscribeOptions(ack_wait=3.0))
        await broker.publish(topic, [Message(f"m{i}".encode(), key="k") for i in range(20)])
        await asyncio.sleep(7.0)  # received into the buffer and not fetched
        got = await collect(sub, 20, timeout=10)
        assert sorted(d.value for d in got) == sorted(f"m{i}".encode() for i in range(20))
        assert {d.attempt for d in got} == {1}
        assert await quiet(sub, 4.0) == []  # nothing comes a second time
    finally:
        await broker.close()


async def test_fifo_topics_drop_a_second_publish_of_an_event_id(moto: Moto) -> None:
    broker = SqsBroker.from_url(moto.url("sns+sqs", FAST + "&fifo=true"))
    await broker.connect()
    try:
        topic = _unique("dedup")
        sub = await broker.subscribe([topic], "g")
        once = Message(b"once", key="k", id="0190-event-1")
        await broker.publish(topic, [once])
        await broker.publish(topic, [once, Message(b"next", key="k", id="0190-event-2")])
        got = await collect(sub, 3, timeout=5)
        assert [d.value for d in got] == [b"once", b"next"]
    finally:
        await broker.close()


async def test_an_event_over_the_size_limit_is_refused_before_sending(
    broker: SqsBroker,
) -> None:
    with pytest.raises(EventTooLargeError):
        await broker.publish(_unique("big"), [Message(b"\x00" * (200 * 1024))])


async def test_sqs_queues_have_no_group_less_readers(moto: Moto) -> None:
    broker = SqsBroker.from_url(moto.url("sqs", FAST))
    await broker.connect()
    try:
        with pytest.raises(ConfigurationError, match="point to point"):
            await broker.subscribe([_unique("q")], None)
    finally:
        await broker.close()


def test_the_docs_page_example_runs(moto: Moto, tmp_path: Path) -> None:
    page = Path(__file__).resolve().parents[2] / "docs" / "brokers" / "sqs.md"
    blocks = page.read_text().split("```python\n")[1:]
    assert blocks, "the page has no python example"
    for number, block in enumerate(blocks):
        script = tmp_path / f"example{number}.py"
        code = block.split("```", 1)[0].replace("127.0.0.1:5000", f"127.0.0.1:{moto.port}")
        script.write_text(code)
        done = run_python(str(script), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "billing {'amount': 12}" in done.stdout


def test_tail_follows_live_events_and_the_other_commands_say_what_they_cannot(
    moto: Moto, tmp_path: Path
) -> None:
    url = moto.url("sns+sqs", FAST)
    topic = _unique("tail")
    refused = run_python("-m", "tidings.cli", "tail", topic, "--broker", url, cwd=tmp_path)
    assert refused.returncode == 2
    assert "keeps no history to read" in refused.stderr and "--follow" in refused.stderr
    for command in (["topics"], ["groups"], ["dlq", "list", topic]):
        done = run_python("-m", "tidings.cli", *command, "--broker", url, cwd=tmp_path)
        assert done.returncode != 0
        assert done.stderr.count("\n") == 1 and "cannot be inspected" in done.stderr
        assert "test:***@" in done.stderr
    assert sorted(follow_two_events(url, topic, tmp_path, timeout=60)) == [0, 1]


def test_the_demo_passes_its_invariants_on_sns_sqs(moto: Moto, tmp_path: Path) -> None:
    url = moto.url("sns+sqs", FAST)
    done = run_python(
        "-m", "tidings.cli", "demo", "--broker", url, "--orders", "10", "--rate", "5",
        "--headless", cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "every invariant holds" in done.stdout


def test_missing_credentials_are_named(moto: Moto, tmp_path: Path) -> None:
    code = (
        "import asyncio\nfrom tidings.brokers import from_url\n"
        f"broker = from_url('sns+sqs://127.0.0.1:{moto.port}')\n"
        "try:\n    asyncio.run(broker.connect())\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"HOME": str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert "BrokerUnavailable no AWS credentials" in done.stdout, done.stdout + done.stderr
    assert "AWS_ACCESS_KEY_ID" in done.stdout
