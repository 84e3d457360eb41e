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
* ``api``: the OpenTelemetry API importable, no SDK configured (target <= 2%, judged
  on Python calls per event: the same code runs, so the rate differs only by noise);
* ``tracing``: the SDK with a batch span processor and an exporter that drops;
* ``metrics``: :class:`tidings.metrics.Metrics` installed, no tracing;
* ``both``: tracing and metrics (target <= 15%);
* ``both-sampled``: the same with a ParentBased(TraceIdRatioBased(0.1)) sampler, as a
  busy service would run it (not a target: shown for what sampling buys).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
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

CONFIGS = ("bare", "api", "tracing", "metrics", "both", "both-sampled")
TARGETS = {"api": 0.98, "both": 0.85}  # rate vs bare
BATCH = 500
_COUNTED = 2_000  # events of the profiled run that counts calls

console = Console(highlight=False, width=160)


def _setup(config: str) -> Any:
    """Prepare this interpreter for ``config``; returns the tracer provider, if any."""
    if config == "bare":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
        return None
    if config in ("tracing", "both", "both-sampled"):
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

        sampler = None
        if config == "both-sampled":  # what a busy service would run: 1 trace in 10
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

            sampler = ParentBased(TraceIdRatioBased(0.1))
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(BatchSpanProcessor(Drop()))
        trace.set_tracer_provider(provider)
        return provider
    return None


async def _measure(config: str, broker: str, events: int, warmup: int) -> tuple[float, float]:
    from tidings import App, Event

    app = App("bench", broker=broker)
    if config in ("metrics", "both", "both-sampled"):
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
        rate = await run(events)
        # Python calls per event: a count that machine load cannot move.
        profile = cProfile.Profile()
        profile.enable()
        await run(_COUNTED)
        profile.disable()
    calls = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
    return rate, calls / _COUNTED


def _span_floor(n: int) -> tuple[float, float]:
    """A bare SDK span as tidings makes one per handling, without tidings.

    Start (with a remote parent, 9 attributes), make current, end: microseconds
    and Python calls per span.
    """
    from opentelemetry import context, trace

    provider = _setup("tracing")
    tracer = provider.get_tracer("floor")
    attributes = {f"messaging.attribute{i}": "value" for i in range(8)} | {"tidings.attempt": 1}
    remote = trace.SpanContext(1, 2, is_remote=True, trace_flags=trace.TraceFlags(1))

    def one() -> None:
        parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        span = tracer.start_span(
            "t process", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
        )
        token = context.attach(trace.set_span_in_context(span))
        context.detach(token)
        span.end()

    started = time.perf_counter()
    for _ in range(n):
        one()
    elapsed = time.perf_counter() - started
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(_COUNTED):
        one()
    profile.disable()
    provider.shutdown()
    calls = pstats.Stats(profile).total_calls / _COUNTED  # type: ignore[attr-defined]
    return elapsed / n * 1e6, calls


def _child(argv: list[str]) -> None:
    if argv[0] == "floor":
        micros, calls = _span_floor(int(argv[2]))
        print(json.dumps({"rate": micros, "calls": calls}))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("config", choices=CONFIGS)
    parser.add_argument("broker")
    parser.add_argument("events", type=int)
    args = parser.parse_args(argv)
    provider = _setup(args.config)
    warmup = max(args.events // 10, 1000)
    rate, calls = asyncio.run(_measure(args.config, args.broker, args.events, warmup))
    if provider is not None:
        provider.shutdown()
    print(json.dumps({"rate": rate, "calls": calls}))


def _one(config: str, broker: str, events: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", config, broker, str(events)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{config} on {broker} failed:\n{out.stderr}")
    return dict(json.loads(out.stdout.splitlines()[-1]))


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
    calls: dict[str, float] = {}
    floor_calls = 0.0
    table = Table(
        title=f"Observability overhead: {args.events:,} events per run (publish_batch of "
        f"{BATCH} -> one at-least-once subscription), median of {args.repeat} runs, each in "
        "a fresh interpreter; baseline 'bare' (OpenTelemetry not importable), same run",
        title_justify="left",
    )
    for column in ("case", "events/s (median)", "runs", "vs bare", "Python calls/event"):
        table.add_column(column)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.brokers.split(","):
            rates: dict[str, list[float]] = {c: [] for c in CONFIGS}
            for run in range(args.repeat):
                floor_run = _one("floor", "-", args.events)
                floors.append(floor_run["rate"])
                floor_calls = floor_run["calls"]
                for config in CONFIGS:
                    url = (
                        f"memory://bench-{run}"
                        if kind == "memory"
                        else f"sqlite:///{Path(tmp) / f'{config}-{run}.db'}"
                    )
                    result = _one(config, url, args.events)
                    rates[config].append(result["rate"])
                    calls[f"{kind} {config}"] = result["calls"]
            for config in CONFIGS:
                medians[f"{kind} {config}"] = statistics.median(rates[config])
            for config in CONFIGS:
                median = medians[f"{kind} {config}"]
                table.add_row(
                    f"{kind} {config}",
                    f"{median:,.0f}",
                    " · ".join(f"{r:,.0f}" for r in rates[config]),
                    f"{median / medians[f'{kind} bare']:.2f}x",
                    f"{calls[f'{kind} {config}']:.1f}",
                )
    # The API-only case runs the very same code as 'bare' (nothing is wrapped), so its
    # verdict is on the Python calls per event, which load cannot move; 'both' on the rate.
    scores = dict(medians)
    for kind in args.brokers.split(","):
        for config in ("bare", "api"):
            scores[f"{kind} {config} (calls)"] = 1 / calls[f"{kind} {config}"]
    targets = []
    for kind in args.brokers.split(","):
        targets.append((f"{kind} api (calls)", f"{kind} bare (calls)", TARGETS["api"]))
        targets.append((f"{kind} both", f"{kind} bare", TARGETS["both"]))
    verdicts, missed = verdict_table(scores, targets)
    console.print(table)
    floor = statistics.median(floors)
    for kind in args.brokers.split(","):
        added = (1 / medians[f"{kind} tracing"] - 1 / medians[f"{kind} bare"]) * 1e6
        extra_calls = calls[f"{kind} tracing"] - calls[f"{kind} bare"]
        console.print(
            f"{kind}: tracing adds {added:.1f} us and {extra_calls:.0f} Python calls per event; "
            f"a bare OpenTelemetry SDK span costs {floor:.1f} us and {floor_calls:.0f} calls "
            f"here (median of {len(floors)}, same run)"
        )
    console.print(verdicts)
    if missed:
        console.print("a target was missed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
