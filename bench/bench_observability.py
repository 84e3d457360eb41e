"""What tracing and metrics cost: throughput with each on and off, in the same run.

``bench/run.py --suite observability -- [--events N] [--repeat R]``

Each measurement runs in a fresh interpreter (OpenTelemetry's global provider
can be set once per process), the configurations interleaved run by run so
that drift on a shared machine hits them alike. A run publishes N events
with ``publish_batch`` (500 a call) to a topic that one at-least-once
subscription drains; the rate is N over the time from the first publish to
the last handling, after a warm-up of the same path.

Configurations:

* ``bare``: OpenTelemetry made unimportable: the baseline;
* ``api``: the OpenTelemetry API importable, no SDK configured (target <= 2%);
* ``tracing``: the SDK with a batch span processor and an exporter that drops;
* ``metrics``: :class:`tidings.metrics.Metrics` installed, no tracing;
* ``both``: tracing and metrics (target <= 15%).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_nats import verdict_table
from rich.console import Console
from rich.table import Table

CONFIGS = ("bare", "api", "tracing", "metrics", "both")
TARGETS = {"api": 0.98, "both": 0.85}  # rate vs bare
BATCH = 500

console = Console(highlight=False, width=160)


def _setup(config: str) -> Any:
    """Prepare this interpreter for ``config``; returns the tracer provider, if any."""
    if config == "bare":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
        return None
    if config in ("tracing", "both"):
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class Drop(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Drop()))
        trace.set_tracer_provider(provider)
        return provider
    return None


async def _measure(config: str, broker: str, events: int, warmup: int) -> float:
    from tidings import App, Event

    app = App("bench", broker=broker)
    if config in ("metrics", "both"):
        from tidings.metrics import Metrics

        Metrics().install(app)
    handled = 0
    target = 0
    done = asyncio.Event()

    @app.subscribe("bench", group="g", prefetch=1000)
    async def handle(event: Event) -> None:
        nonlocal handled
        handled += 1
        if handled >= target:
            done.set()

    async def run(n: int) -> float:
        nonlocal target
        target = handled + n
        done.clear()
        started = time.perf_counter()
        for first in range(0, n, BATCH):
            batch = [
                app.event({"n": i, "s": "x" * 32}, type="Tick")
                for i in range(first, min(n, first + BATCH))
            ]
            await app.publish_batch(batch, topic="bench")
        await done.wait()
        return n / (time.perf_counter() - started)

    async with app:
        await run(warmup)
        return await run(events)


def _span_floor(n: int) -> float:
    """Microseconds per bare SDK span (start, make current, end; 9 attributes): no tidings."""
    from opentelemetry import context, trace

    provider = _setup("tracing")
    tracer = provider.get_tracer("floor")
    attributes = {f"messaging.attribute{i}": "value" for i in range(8)} | {"tidings.attempt": 1}
    started = time.perf_counter()
    for _ in range(n):
        span = tracer.start_span("t process", kind=trace.SpanKind.CONSUMER, attributes=attributes)
        token = context.attach(trace.set_span_in_context(span))
        context.detach(token)
        span.end()
    elapsed = time.perf_counter() - started
    provider.shutdown()
    return elapsed / n * 1e6


def _child(argv: list[str]) -> None:
    if argv[0] == "floor":
        print(json.dumps({"rate": _span_floor(int(argv[2]))}))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("config", choices=CONFIGS)
    parser.add_argument("broker")
    parser.add_argument("events", type=int)
    args = parser.parse_args(argv)
    provider = _setup(args.config)
    rate = asyncio.run(
        _measure(args.config, args.broker, args.events, max(args.events // 10, 1000))
    )
    if provider is not None:
        provider.shutdown()
    print(json.dumps({"rate": rate}))


def _one(config: str, broker: str, events: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", config, broker, str(events)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{config} on {broker} failed:\n{out.stderr}")
    return float(json.loads(out.stdout.splitlines()[-1])["rate"])


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        _child(argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="bench_observability.py")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--brokers", default="memory,sqlite")
    args = parser.parse_args(argv)
    medians: dict[str, float] = {}
    floors: list[float] = []
    table = Table(
        title=f"Observability overhead: {args.events:,} events per run (publish_batch of "
        f"{BATCH} -> one at-least-once subscription), median of {args.repeat} runs, each in "
        "a fresh interpreter; baseline 'bare' (OpenTelemetry not importable), same run",
        title_justify="left",
    )
    for column in ("case", "events/s (median)", "runs", "vs bare"):
        table.add_column(column)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.brokers.split(","):
            rates: dict[str, list[float]] = {c: [] for c in CONFIGS}
            for run in range(args.repeat):
                floors.append(_one("floor", "-", args.events))
                for config in CONFIGS:
                    url = (
                        f"memory://bench-{run}"
                        if kind == "memory"
                        else f"sqlite:///{Path(tmp) / f'{config}-{run}.db'}"
                    )
                    rates[config].append(_one(config, url, args.events))
            for config in CONFIGS:
                medians[f"{kind} {config}"] = statistics.median(rates[config])
            for config in CONFIGS:
                median = medians[f"{kind} {config}"]
                table.add_row(
                    f"{kind} {config}",
                    f"{median:,.0f}",
                    " · ".join(f"{r:,.0f}" for r in rates[config]),
                    f"{median / medians[f'{kind} bare']:.2f}x",
                )
    targets = [
        (f"{kind} {config}", f"{kind} bare", target)
        for kind in args.brokers.split(",")
        for config, target in TARGETS.items()
    ]
    verdicts, missed = verdict_table(medians, targets)
    console.print(table)
    floor = statistics.median(floors)
    for kind in args.brokers.split(","):
        added = (1 / medians[f"{kind} tracing"] - 1 / medians[f"{kind} bare"]) * 1e6
        console.print(
            f"{kind}: tracing adds {added:.1f} us per event; a bare OpenTelemetry SDK span "
            f"costs {floor:.1f} us here (median of {len(floors)}, same run)"
        )
    console.print(verdicts)
    if missed:
        console.print("a target was missed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
