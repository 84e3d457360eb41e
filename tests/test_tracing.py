"""OpenTelemetry tracing: the exact span tree of a chain, retries, dead letters, batches."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tidings import App, Context, Event, RetryPolicy

CHAIN = ("OrderPlaced", "InventoryReserved", "PaymentRequested", "PaymentProcessed")
TOPICS = ("orders", "inventory", "payments", "payments.done")


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture(params=["memory", "sqlite"])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://tracing-{uuid.uuid4().hex}"
    return f"sqlite:///{tmp_path / 'tracing.db'}"


def tree(spans: tuple[ReadableSpan, ...]) -> list[object]:
    """The spans as nested ``(name, kind, [children])``, children in start order."""
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        by_parent.setdefault(parent, []).append(span)

    def build(parent: int | None) -> list[object]:
        children = sorted(by_parent.get(parent, []), key=lambda s: s.start_time or 0)
        return [
            (s.name, s.kind.name, build(s.context.span_id if s.context else None)) for s in children
        ]

    return build(None)


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


def chain_app(url: str, provider: TracerProvider, done: list[Event]) -> App:
    app = App("shop", broker=url, tracer_provider=provider)
    for step, topic in enumerate(TOPICS[:-1]):
        app.add_subscription(
            _forward(CHAIN[step + 1], TOPICS[step + 1]), topic, group=f"step{step}", name=topic
        )

    @app.subscribe("payments.done", group="audit")
    async def audit(event: Event) -> None:
        done.append(event)

    return app


def _forward(next_type: str, next_topic: str) -> Callable[[Context], Awaitable[None]]:
    async def forward(ctx: Context) -> None:
        ctx.emit(ctx.event.data, topic=next_topic, type=next_type)

    return forward


def _chain_tree() -> list[object]:
    """publish -> process -> publish -> process ... : one root, strictly nested."""
    node: list[object] = [("payments.done process", "CONSUMER", [])]
    for topic in reversed(TOPICS):
        node = [(f"{topic} publish", "PRODUCER", node)]
        if topic != TOPICS[0]:
            previous = TOPICS[TOPICS.index(topic) - 1]
            node = [(f"{previous} process", "CONSUMER", node)]
    return node


async def test_a_chain_forms_one_trace_with_one_root(
    broker_url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    done: list[Event] = []
    async with chain_app(broker_url, provider, done) as app:
        await app.publish({"order": 1}, topic="orders", type="OrderPlaced", key="o1")
        await wait_for(lambda: bool(done))
        await wait_for(lambda: len(exporter.get_finished_spans()) == 8)
    spans = exporter.get_finished_spans()
    assert tree(spans) == _chain_tree()
    assert len({s.context.trace_id for s in spans if s.context}) == 1
    # The last event carries the context of the publish span that sent it.
    (last_publish,) = [s for s in spans if s.name == "payments.done publish"]
    assert last_publish.context is not None
    context = last_publish.context
    assert done[0].traceparent == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    )


async def test_spans_carry_the_messaging_attributes(
    broker_url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    done: list[Event] = []
    async with chain_app(broker_url, provider, done) as app:
        sent = await app.publish({"order": 1}, topic="orders", type="OrderPlaced", key="o1")
        await wait_for(lambda: bool(done))
        await wait_for(lambda: len(exporter.get_finished_spans()) == 8)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    publish = spans["orders publish"].attributes or {}
    assert publish["messaging.destination.name"] == "orders"
    assert publish["messaging.operation.type"] == "send"
    assert publish["messaging.message.id"] == sent.id
    assert publish["messaging.system"] == "tidings"
    process = spans["orders process"]
    attributes = process.attributes or {}
    assert process.kind is SpanKind.CONSUMER
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.message.id"] == sent.id
    assert attributes["messaging.consumer.group.name"] == "step0"
    assert attributes["messaging.destination.partition.id"].isdigit()  # type: ignore[union-attr]
    assert attributes["tidings.offset"] == 0
    assert attributes["tidings.attempt"] == 1
    # A follow-up keeps the chain's correlation id, shown as the conversation id.
    follow_up = spans["inventory process"].attributes or {}
    assert follow_up["messaging.message.conversation_id"] == sent.id


async def test_an_event_published_inside_a_span_is_its_child(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = App("client", broker="memory://inside-span", tracer_provider=provider)
    tracer = provider.get_tracer("test")
    async with app:
        with tracer.start_as_current_span("checkout"):
            await app.publish({"n": 1}, topic="orders", type="OrderPlaced")
    assert tree(exporter.get_finished_spans()) == [
        ("checkout", "INTERNAL", [("orders publish", "PRODUCER", [])])
    ]


async def test_a_retried_then_dead_lettered_handling_marks_each_span(
    broker_url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = App("failing", broker=broker_url, tracer_provider=provider)
    attempts: list[int] = []

    @app.subscribe(
        "jobs",
        group="workers",
        retry=RetryPolicy(max_attempts=2, initial_delay=0.01, jitter="none"),
    )
    async def work(ctx: Context) -> None:
        attempts.append(ctx.attempt)
        raise ValueError("no stock")

    async with app:
        await app.publish({"n": 1}, topic="jobs", type="Job")
        await wait_for(lambda: len(exporter.get_finished_spans()) == 3)
    spans = exporter.get_finished_spans()
    root, first, second = sorted(spans, key=lambda s: s.start_time or 0)
    assert root.name == "jobs publish"
    assert root.context is not None
    assert [s.parent.span_id for s in (first, second) if s.parent] == [root.context.span_id] * 2
    for span, what in ((first, "retry"), (second, "dead-letter")):
        assert span.status.status_code is StatusCode.ERROR
        assert [e.name for e in span.events] == ["exception", what]
        assert (span.events[0].attributes or {})["exception.type"] == "ValueError"
    assert attempts == [1, 2]
    assert (second.events[1].attributes or {})["tidings.dlq.topic"] == "jobs.dlq"
    assert (first.attributes or {})["tidings.attempt"] == 1
    assert (second.attributes or {})["tidings.attempt"] == 2


async def test_a_batch_handling_links_the_publish_of_each_event(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = App("batches", broker="memory://batch-tracing", tracer_provider=provider)
    got: list[int] = []

    @app.subscribe("jobs", group="g", batch_size=10, batch_timeout=0.2)
    async def work(events: list[Event]) -> None:
        got.extend(e.data["n"] for e in events)

    async with app:
        await app.publish_batch([app.event({"n": n}, type="Job") for n in range(3)], topic="jobs")
        await wait_for(lambda: len(got) == 3)
        await wait_for(lambda: len(exporter.get_finished_spans()) == 2)
    publish, process = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    assert (publish.attributes or {})["messaging.batch.message_count"] == 3
    assert process.parent is None  # a batch has many parents: it links to them
    assert (process.attributes or {})["messaging.batch.message_count"] == 3
    assert publish.context is not None
    assert [link.context.span_id for link in process.links] == [publish.context.span_id] * 3


async def test_without_a_configured_provider_nothing_is_traced() -> None:
    """The API alone (no SDK provider set globally) wraps nothing: no traceparent appears."""
    app = App("plain", broker="memory://untraced")
    seen: list[Event] = []

    @app.subscribe("t", group="g")
    async def h(event: Event) -> None:
        seen.append(event)

    async with app:
        assert app._tracing is None
        await app.publish({"n": 1}, topic="t", type="T")
        await wait_for(lambda: bool(seen))
    assert seen[0].traceparent is None


def _tidings_run(
    service: str, database: Path, trace_file: Path, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TRACED_SERVICE": service,
        "TRACE_FILE": str(trace_file),
        "TIDINGS_BROKER": f"sqlite:///{database}",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tidings.cli", "run", "tracing_service:app"],
            cwd=Path(__file__).parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_three_services_in_separate_processes_share_one_trace(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    database = tmp_path / "shop.db"
    services = ("inventory", "payments", "processor")
    processes = {
        name: _tidings_run(name, database, tmp_path / f"{name}.jsonl", tmp_path / f"{name}.log")
        for name in services
    }
    done: list[Event] = []
    client = App("client", broker=f"sqlite:///{database}", tracer_provider=provider)

    @client.subscribe("payments.done", group="audit")
    async def audit(event: Event) -> None:
        done.append(event)

    try:
        async with client:
            await client.publish({"order": 7}, topic="orders", type="OrderPlaced", key="o7")
            await wait_for(lambda: bool(done), timeout=60.0)
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGINT)
        codes = {name: p.wait(timeout=30) for name, p in processes.items()}
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in services}
    assert codes == dict.fromkeys(services, 0), logs
    records = [
        json.loads(line)
        for name in services
        for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()
    ]
    for span in exporter.get_finished_spans():
        assert span.context is not None
        records.append(
            {
                "service": "client",
                "name": span.name,
                "kind": span.kind.name,
                "trace_id": span.context.trace_id,
                "span_id": span.context.span_id,
                "parent": span.parent.span_id if span.parent else None,
                "start": span.start_time,
            }
        )
    assert len({r["trace_id"] for r in records}) == 1
    roots = [r for r in records if r["parent"] is None]
    assert [(r["service"], r["name"]) for r in roots] == [("client", "orders publish")]
    assert _record_tree(records) == _chain_tree()
    by_service = {(r["service"], r["name"]) for r in records}
    assert ("inventory", "orders process") in by_service
    assert ("payments", "inventory process") in by_service
    assert ("processor", "payments publish") not in by_service
    assert ("processor", "payments.done publish") in by_service


def _record_tree(records: list[dict[str, object]]) -> list[object]:
    by_parent: dict[object, list[dict[str, object]]] = {}
    for record in records:
        by_parent.setdefault(record["parent"], []).append(record)

    def build(parent: object) -> list[object]:
        children = sorted(by_parent.get(parent, []), key=lambda r: int(str(r["start"])))
        return [(r["name"], r["kind"], build(r["span_id"])) for r in children]

    return build(None)
