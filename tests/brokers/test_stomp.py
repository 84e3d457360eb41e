"""The STOMP adapter against RabbitMQ's STOMP plugin (the system RabbitMQ, port 61613).

Each module of tests runs in a vhost of its own, deleted at the end with every queue
the tests made (the shared RabbitMQ has few file descriptors to spare).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _services import follow_two_events, port_open, run_python, service_missing, until
from test_rabbitmq_cli import management

from tidings.broker import Message
from tidings.brokers import from_url
from tidings.brokers.stomp import StompBroker
from tidings.brokers.stomp import _binding as stomp_binding
from tidings.errors import BrokerUnavailable, ConfigurationError
from tidings.testing.conformance import BrokerConformance, collect

HOST, PORT, MANAGEMENT = "127.0.0.1", 61613, 15672


def stomp_vhost() -> Iterator[str]:
    """A fresh vhost for guest, deleted afterwards; yields the ``stomp://`` URL on it."""
    if not port_open(HOST, PORT):
        service_missing(
            f"no STOMP server at {HOST}:{PORT} (rabbitmq-plugins enable rabbitmq_stomp)"
        )
    if not port_open(HOST, MANAGEMENT):
        service_missing(f"no RabbitMQ management API at {HOST}:{MANAGEMENT}")
    name = f"tidings-stomp-{uuid.uuid4().hex[:10]}"
    management("PUT", f"/api/vhosts/{name}")
    permissions = {"configure": ".*", "write": ".*", "read": ".*"}
    management("PUT", f"/api/permissions/{name}/guest", permissions)
    try:
        yield f"stomp://guest:guest@{HOST}:{PORT}/{name}"
    finally:
        management("DELETE", f"/api/vhosts/{name}")


vhost = pytest.fixture(scope="module")(stomp_vhost)


def _no_history(self: Any, *args: Any, **kwargs: Any) -> None:
    pytest.skip(
        "a topic is a routing key of amq.topic: an event published while no group's queue "
        "is bound to it is dropped, so a group created later never sees it"
    )


class TestStompBroker(BrokerConformance):
    test_group_less_reader_sees_what_is_published_while_open = _no_history

    @pytest.fixture
    async def broker_factory(self, vhost: str) -> AsyncIterator[Callable[[], StompBroker]]:
        made: list[StompBroker] = []

        def make() -> StompBroker:
            broker = StompBroker.from_url(vhost + "?retry_grace=1")
            made.append(broker)
            return broker

        yield make
        for broker in made:  # Apps given a broker object leave closing it to its owner
            await broker.close()


# -- adapter-specific ------------------------------------------------------------------


def _amqp_url(stomp_url: str) -> str:
    """The ``amqp://`` URL of the same vhost (for a plain AMQP client)."""
    where = stomp_url.split("?", 1)[0].rsplit("/", 1)[1]
    return f"amqp://guest:guest@{HOST}:5672/{where}"


@pytest.fixture
async def broker(vhost: str) -> AsyncIterator[StompBroker]:
    opened = StompBroker.from_url(vhost)
    await opened.connect()
    yield opened
    await opened.close()


def _unique(base: str) -> str:
    return f"stomp-{base}-{uuid.uuid4().hex[:8]}"


def test_url_options_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="unknown stomp URL option"):
        StompBroker.from_url("stomp://127.0.0.1/?partitions=3")
    options = StompBroker.from_url("stomp://u:pw@example/shop?tls=true&publish_timeout=2").options
    assert (options.host, options.port, options.vhost, options.tls) == (
        "example",
        61614,
        "shop",
        True,
    )
    assert (options.username, options.publish_timeout, options.connect_timeout) == ("u", 2, 10)
    assert "pw" not in repr(options)
    assert StompBroker.from_url("stomp://h").options.vhost == "/"
    assert StompBroker.from_url("stomp://h").options.port == 61613
    for bad in ("binding=json", "queue_type=stream", "tls=maybe", "heartbeat=0", "x=1"):
        with pytest.raises(ConfigurationError):
            StompBroker.from_url(f"stomp://h/?{bad}")
    with pytest.raises(ConfigurationError, match="stomp://"):
        from_url("stomp://u:pw@h/?connect_timeout=soon")


async def test_wrong_credentials_are_refused_naming_the_url_without_password(vhost: str) -> None:
    url = vhost.replace("guest:guest@", "guest:s3cret@")
    with pytest.raises(BrokerUnavailable, match="refused the connection") as caught:
        await StompBroker.from_url(url).connect()
    assert "guest:***@" in str(caught.value) and "s3cret" not in str(caught.value)


async def test_topic_and_group_names_a_routing_key_cannot_carry_are_refused(
    broker: StompBroker,
) -> None:
    for topic in ("a/b", "a.*", "#", ""):
        with pytest.raises(ConfigurationError, match="cannot name a STOMP topic"):
            await broker.publish(topic, [Message(b"x")])
        with pytest.raises(ConfigurationError):
            await broker.subscribe([topic], "g")
    for group in ("a/b", "dlq", ""):
        with pytest.raises(ConfigurationError, match="consumer group"):
            await broker.subscribe(["fine"], group)


async def test_headers_stomp_or_rabbitmq_would_take_travel_unchanged(broker: StompBroker) -> None:
    topic = _unique("reserved")
    sub = await broker.subscribe([topic], "g")
    headers = {
        "destination": "/elsewhere",
        "receipt": "mine",
        "x-custom": "1",
        "type": "not-the-amqp-type",
        "tidings-attempts": "7",
        "with:colon": "line\nbreak\\slash",
    }
    await broker.publish(topic, [Message(b"\x00binary\x00", headers, "k")])
    (d,) = await collect(sub, 1, timeout=5.0)
    assert dict(d.headers) == headers
    assert d.value == b"\x00binary\x00"
    assert (d.key, d.attempt) == ("k", 1)


async def test_an_amqp_client_reads_events_published_over_stomp_and_the_other_way_round(
    vhost: str,
) -> None:
    """Both adapters write CloudEvents in the AMQP binding's ``cloudEvents_`` headers:
    an event an App publishes over STOMP decodes from a plain AMQP message with the
    ``amqp://`` adapter's binding, and an AMQP message written with that binding is
    handled by an App on ``stomp://``."""
    import aio_pika

    from tidings import App, Context, Event
    from tidings.brokers.rabbitmq import _binding as amqp_binding

    topic, group = _unique("interop"), "readers"
    connection = await aio_pika.connect(_amqp_url(vhost))
    got: list[Event] = []
    app = App("stomp-side", broker=vhost)

    @app.subscribe(topic, group=group)
    async def handle(data: dict[str, Any], ctx: Context) -> None:
        got.append(ctx.event)

    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind("amq.topic", topic)
        async with app:
            sent = await app.publish({"sku": "A1"}, topic=topic, type="stock.counted", key="A1")
            incoming = await queue.get(timeout=5)
            key, headers, _, _ = amqp_binding.read(incoming)
            assert incoming.headers["cloudEvents_id"] == sent.id
            assert incoming.content_type == "application/json"
            read = app.codec.decode(incoming.body, headers)
            assert (read.id, read.source, read.type, read.data) == (
                sent.id,
                sent.source,
                sent.type,
                {"sku": "A1"},
            )
            assert key == "A1"
            # ... and back: written by the amqp:// adapter's binding, sent by aio-pika.
            foreign = app.event({"sku": "B2"}, type="stock.moved", key="B2")
            body, attributes = app.codec.encode(foreign)
            message = amqp_binding.write(
                Message(body, attributes, "B2"), datetime.now(UTC), structured=False
            )
            exchange = await channel.get_exchange("amq.topic", ensure=False)
            await exchange.publish(message, routing_key=topic)
            assert await until(lambda: len(got) == 2, 5.0)
        first, second = got
        assert first.id == sent.id
        assert (second.id, second.type, second.data) == (foreign.id, "stock.moved", {"sku": "B2"})
    finally:
        await connection.close()


async def test_structured_mode_sends_one_cloudevents_json_body(vhost: str) -> None:
    from tidings import App

    topic = _unique("structured")
    app = App("structured", broker=vhost + "?binding=structured")
    reader = StompBroker.from_url(vhost)
    await reader.connect()
    try:
        sub = await reader.subscribe([topic], "g")
        async with app:
            sent = await app.publish({"n": 1}, topic=topic, type="T")
        (d,) = await collect(sub, 1, timeout=5.0)
        body = json.loads(d.value)
        assert (body["id"], body["type"], body["data"]) == (sent.id, "T", {"n": 1})
        assert not any(name.startswith("ce_") for name in d.headers)
    finally:
        await reader.close()


def test_tail_follows_live_events_and_the_other_commands_say_what_they_cannot(
    vhost: str, tmp_path: Path
) -> None:
    topic = _unique("tail")
    refused = run_python("-m", "tidings.cli", "tail", topic, "--broker", vhost, cwd=tmp_path)
    assert refused.returncode != 0
    assert refused.stderr.count("\n") == 1 and "--follow" in refused.stderr
    for command in (["topics"], ["groups"], ["dlq", "list", topic]):
        done = run_python("-m", "tidings.cli", *command, "--broker", vhost, cwd=tmp_path)
        assert done.returncode != 0
        assert done.stderr.count("\n") == 1 and "cannot be inspected" in done.stderr
    assert sorted(follow_two_events(vhost, topic, tmp_path, timeout=60)) == [0, 1]


def test_the_docs_page_example_runs(vhost: str, tmp_path: Path) -> None:
    page = Path(__file__).resolve().parents[2] / "docs" / "brokers" / "stomp.md"
    blocks = page.read_text().split("```python\n")[1:]
    assert blocks, "the page has no python example"
    for number, block in enumerate(blocks):
        code = block.split("```", 1)[0].replace("stomp://guest:guest@127.0.0.1:61613/", vhost)
        script = tmp_path / f"example{number}.py"
        script.write_text(code)
        done = run_python(str(script), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "billing {'amount': 12}" in done.stdout


# -- a browser's view: RabbitMQ's Web STOMP (port 15674) -----------------------------------

WEB_STOMP = 15674


def _frame(text: str) -> tuple[str, dict[str, str], str]:
    """A STOMP frame as a browser library reads it: command, headers (unescaped), body."""
    head, _, body = text.partition("\n\n")
    command, *lines = head.split("\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        for escaped, plain in (("\\n", "\n"), ("\\c", ":"), ("\\\\", "\\")):
            value = value.replace(escaped, plain)
        headers.setdefault(name, value)
    length = headers.get("content-length")  # in bytes
    if length:
        return command, headers, body.encode()[: int(length)].decode()
    return command, headers, body.split("\0", 1)[0]


async def test_a_browser_subscribes_over_web_stomp_to_events_tidings_publishes(
    vhost: str,
) -> None:
    """What @stomp/stompjs does in a browser, done by hand: open the WebSocket with the
    STOMP 1.2 subprotocol, CONNECT to the vhost as a user that may only read, SUBSCRIBE to
    ``/topic/<topic>``; an App publishes; the MESSAGE frame carries the CloudEvent in
    ``cloudEvents_`` headers and the JSON data as its body; a SEND is refused."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from tidings import App

    if not port_open(HOST, WEB_STOMP):
        service_missing(
            f"no Web STOMP at {HOST}:{WEB_STOMP} (rabbitmq-plugins enable rabbitmq_web_stomp)"
        )
    where = vhost.split("?", 1)[0].rsplit("/", 1)[1]
    topic = _unique("browser")
    # The read-only user the docs page suggests for browsers.
    user = f"dashboard-{uuid.uuid4().hex[:8]}"
    management("PUT", f"/api/users/{user}", {"password": "pw", "tags": ""})
    only_reads = {
        "configure": "^stomp-subscription-.*",
        "write": "^stomp-subscription-.*",
        "read": "^(amq\\.topic|stomp-subscription-.*)$",
    }
    management("PUT", f"/api/permissions/{where}/{user}", only_reads)
    try:
        async with connect(f"ws://{HOST}:{WEB_STOMP}/ws", subprotocols=["v12.stomp"]) as socket:
            assert socket.subprotocol == "v12.stomp"
            await socket.send(
                f"CONNECT\naccept-version:1.2\nhost:{where}\nlogin:{user}\npasscode:pw\n"
                "heart-beat:0,0\n\n\0"
            )
            command, headers, _ = _frame(str(await asyncio.wait_for(socket.recv(), 5)))
            assert command == "CONNECTED" and headers["version"] == "1.2"
            await socket.send(f"SUBSCRIBE\nid:0\ndestination:/topic/{topic}\nreceipt:s\n\n\0")
            command, headers, _ = _frame(str(await asyncio.wait_for(socket.recv(), 5)))
            assert (command, headers["receipt-id"]) == ("RECEIPT", "s")
            app = App("dashboard-feed", broker=vhost)
            async with app:
                sent = await app.publish(
                    {"temperature": 21.5}, topic=topic, type="reading.taken", key="sensor-1"
                )
            command, headers, body = _frame(str(await asyncio.wait_for(socket.recv(), 5)))
            # The browser's user may read, not publish: the server refuses a SEND.
            await socket.send(f"SEND\ndestination:/topic/{topic}\nreceipt:p\n\nforged\0")
            with pytest.raises(ConnectionClosed):
                while True:
                    refused = _frame(str(await asyncio.wait_for(socket.recv(), 5)))
                    assert refused[0] == "ERROR", refused
    finally:
        management("DELETE", f"/api/users/{user}")
    assert command == "MESSAGE"
    assert headers["cloudEvents_id"] == sent.id
    assert headers["cloudEvents_type"] == "reading.taken"
    assert headers["cloudEvents_source"] == sent.source
    assert headers["cloudEvents_specversion"] == "1.0"
    assert headers["content-type"] == "application/json"
    assert headers["tidings-key"] == "sensor-1"
    assert json.loads(body) == {"temperature": 21.5}


async def test_a_retry_comes_back_behind_later_events_of_its_key_and_is_handled_first(
    vhost: str,
) -> None:
    """A retry goes through a delay queue to the end of the group's queue, behind the
    later events of its key: the member holds those until it is back, so the key's events
    are handled in publish order."""
    from tidings import App, Context
    from tidings.errors import Retry

    topic, handled = _unique("behind"), []
    app = App("behind", broker=vhost)

    @app.subscribe(topic, group="g")
    async def handle(data: dict[str, Any], ctx: Context) -> None:
        if data["n"] == 0 and ctx.attempt == 1:
            raise Retry(delay=0.2)
        handled.append((data["n"], ctx.attempt))

    async with app:
        await app.publish_batch(
            [app.event({"n": n}, type="T", key="one") for n in range(10)], topic=topic
        )
        assert await until(lambda: len(handled) == 10, 10.0), handled
    assert handled == [(0, 2)] + [(n, 1) for n in range(1, 10)]


def test_the_demo_passes_its_invariants_on_stomp(vhost: str, tmp_path: Path) -> None:
    done = run_python(
        "-m", "tidings.cli", "demo", "--broker", vhost, "--orders", "10", "--rate", "5",
        "--headless", cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "every invariant holds" in done.stdout


async def test_dead_letters_are_kept_when_no_group_reads_the_dlq_yet(vhost: str) -> None:
    """``amq.topic`` drops what no queue is bound for: the dead-letter topic gets a durable
    queue of its own name, which any STOMP client reads as ``/amq/queue/<topic>.dlq``."""
    from tidings import App, DeadLetter
    from tidings.brokers.stomp._frames import Frame, StompConnection
    from tidings.retry import RetryPolicy

    topic = _unique("kept")
    app = App("kept", broker=vhost)

    @app.subscribe(topic, group="g", retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    async def fail(data: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    async with app:
        sent = await app.publish({"n": 1}, topic=topic, type="T", key="k")
        await asyncio.sleep(1.0)
    options = StompBroker.from_url(vhost).options
    reader = await StompConnection.open(
        HOST, PORT, login="guest", passcode="guest", vhost=options.vhost, heartbeat=5, timeout=5
    )
    got: list[Frame] = []
    reader.handlers["dlq"] = got.append
    try:
        await reader.send(
            "SUBSCRIBE", {"id": "dlq", "destination": f"/amq/queue/{topic}.dlq", "ack": "auto"}
        )
        assert await until(lambda: len(got) == 1, 5.0)
    finally:
        await reader.close()
    (frame,) = got
    key, headers, _, _ = stomp_binding.read(frame.headers)
    letter = DeadLetter.from_message(Message(frame.body, headers, key))
    assert (letter.attempts, letter.error_message, letter.origin_topic) == (2, "boom", topic)
    assert letter.event(app.codec).id == sent.id


async def test_classic_queues_count_a_redelivery_by_its_redelivered_flag(vhost: str) -> None:
    broker = StompBroker.from_url(vhost + "?queue_type=classic")
    await broker.connect()
    try:
        topic = _unique("classic")
        sub = await broker.subscribe([topic], "g")
        await broker.publish(topic, [Message(b"a", key="k"), Message(b"b", key="k")])
        first, second = await collect(sub, 2, ack=False, timeout=5.0)
        await first.nack()
        await second.ack()
        (again,) = await collect(sub, 1, timeout=5.0)
        assert (again.value, again.attempt, again.id) == (b"a", 2, first.id)

        def types() -> list[str]:  # the management API lists a new queue a moment late
            found = management("GET", "/api/queues?columns=name,type")
            return [q["type"] for q in found if q["name"] == f"{topic}.g"]

        assert await until(lambda: bool(types()), 10.0)
        assert types() == ["classic"]
    finally:
        await broker.close()
