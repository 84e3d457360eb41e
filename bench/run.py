"""Benchmarks: ``make bench`` (or ``.venv/bin/python bench/run.py --help``).

By default both suites (``--suite memory|sqlite|all``): the in-memory
throughput/latency/RSS table, tidings against pyee and blinker; then the
embedded (SQLite) broker's table against raw ``sqlite3`` baselines
(``bench_sqlite.py``); each with whether its targets are met. ``--profile``
profiles the tidings dict-payload case instead; ``--stages`` prints its cost
per stage; ``--sqlite-profile CASE`` profiles one sqlite case. ``--suite kafka``,
``--suite nats``, ``--suite redis`` or ``--suite mqtt`` runs that adapter's table (its own
server; its options after ``--``); ``--suite rabbitmq`` too, on the running RabbitMQ
(``-- --url amqp://...``);
``--suite requests`` the request/reply round trips (memory, sqlite, NATS);
``--suite observability`` what tracing and metrics cost (on vs off, same run);
``--suite eventstore`` the event store against eventsourcing; ``--suite outbox`` the
outbox relay against a plain publish loop.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import io
import os
import platform
import pstats
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Collection, Sequence
from importlib.metadata import PackageNotFoundError, version

from _sqlite_report import print_table as print_sqlite_table
from bench_memory import (
    CASES,
    WARMUP_EVENTS,
    CaseResult,
    Options,
    measure_throughput,
    pin_to,
    run_cases,
)
from bench_sqlite import CASES as SQLITE_CASES
from bench_sqlite import Options as SqliteOptions
from bench_sqlite import run_cases as run_sqlite_cases
from rich.console import Console
from rich.table import Table

#: Suites of broker adapters: their module under bench/, each with main(argv) -> int.
ADAPTER_SUITES = {
    "kafka": "bench_kafka",
    "nats": "bench_nats",
    "redis": "bench_redis",
    "mqtt": "bench_mqtt",
    "rabbitmq": "bench_rabbitmq",
    "sqs": "bench_sqs",
    "stomp": "bench_stomp",
    "pubsub": "bench_pubsub",
    "requests": "bench_requests",
    "observability": "bench_observability",
    "eventstore": "bench_eventstore",
    "outbox": "bench_outbox",
}

TARGET_RATE = 150_000
TARGET_TEXT = "in-memory at-least-once path >= 150,000 events/s with dict payloads on one core"
PROFILE_LINES = 80

# Wide enough for the table when the output is piped (rich assumes 80 columns then).
console = Console(highlight=False, width=max(shutil.get_terminal_size((170, 24)).columns, 170))


def _versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for dist in ("tidings", "pydantic", "pyee", "blinker"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} (not installed)")
    return ", ".join(parts)


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def print_table(results: Sequence[CaseResult], options: Options) -> None:
    by_case = {r.case: r for r in results}
    pyee, blinker = by_case.get("pyee"), by_case.get("blinker")
    table = Table(
        title=f"In-memory publish -> handled, {options.events:,} events, "
        f"median of {options.repeat} runs (best shown too)",
        title_justify="left",
    )
    for header in (
        "case",
        "events",
        "seconds",
        "events/s",
        "best ev/s",
        "ev/CPU-s",
        "vs pyee",
        "vs blinker",
        "p50 µs",
        "p99 µs",
        "peak RSS MiB",
        "RSS +MiB",
    ):
        if header == "case":
            table.add_column(header, no_wrap=True)
        else:
            table.add_column(header, justify="right")
    for r in results:
        growth = None if r.rss_start_mib is None else r.rss_peak_mib - r.rss_start_mib
        table.add_row(
            r.label,
            f"{r.events:,}",
            f"{r.median_seconds:.3f}",
            _fmt(r.median_rate),
            _fmt(r.best_rate),
            _fmt(r.median_cpu_rate),
            f"{r.median_rate / pyee.median_rate:.2f}x" if pyee else "-",
            f"{r.median_rate / blinker.median_rate:.2f}x" if blinker else "-",
            _fmt(r.p50_us, 1),
            _fmt(r.p99_us, 1),
            _fmt(r.rss_peak_mib, 1),
            _fmt(growth, 1),
        )
    console.print(table)
    console.print(
        "events/s: wall clock, from sending the first event to the ack of the last; best ev/s: "
        "the fastest run; ev/CPU-s: events per second of the process's CPU time (robust to "
        "other load on the machine)."
    )
    latency = next((r for r in results if r.latency_events), None)
    if latency is not None:
        console.print(
            f"p50/p99: send -> handler start, {latency.latency_events:,} events at "
            f"{latency.latency_rate:,.0f} events/s, one run per case."
        )
    console.print(
        "peak RSS: ru_maxrss of the case's own subprocess; RSS +MiB: peak minus RSS after "
        "imports and warm-up (the memory broker keeps every event: it is a log)."
    )
    for r in results:
        console.print(f"  {r.label}: {'; '.join(r.notes)}")

    dict_case = by_case.get("tidings-dict")
    if dict_case is not None:
        rate = dict_case.median_rate
        verdict = "MET" if rate >= TARGET_RATE else "NOT MET"
        cpu = "" if dict_case.cpu is None else f", pinned to CPU {dict_case.cpu}"
        console.print(
            f"\nTarget (issue): {TARGET_TEXT}\n"
            f"  -> {verdict}: median {rate:,.0f} events/s = {rate / TARGET_RATE:.2f}x the "
            f"target (best {dict_case.best_rate:,.0f}; {dict_case.median_cpu_rate:,.0f} per "
            f"CPU-second), one thread{cpu}."
        )


def run_table(options: Options, cases: Sequence[str]) -> None:
    console.print(_versions())
    pin = "not pinned" if options.cpu is None else f"pinned to CPU {options.cpu}"
    console.print(f"Each case in its own subprocess, one after another, {pin}.")
    started = time.perf_counter()
    results = run_cases(cases, options, progress=lambda case: console.print(f"  running {case}"))
    print_table(results, options)
    console.print(f"(benchmark took {time.perf_counter() - started:.1f}s)")


def run_profile(events: int) -> None:
    """pyinstrument call tree, then cProfile by tottime, for the tidings dict-payload case."""
    from pyinstrument import Profiler

    asyncio.run(measure_throughput("tidings-dict", min(events, WARMUP_EVENTS)))
    profiler = Profiler(interval=0.0005)
    profiler.start()
    seconds = asyncio.run(measure_throughput("tidings-dict", events)).seconds
    profiler.stop()
    console.print(
        f"pyinstrument, tidings dict payload, {events:,} events "
        f"({events / seconds:,.0f} events/s while sampling)"
    )
    tree = profiler.output_text(unicode=True, time="percent_of_total")
    # Skip pyinstrument's banner: the tree starts at the first line with a percentage.
    rows = tree.splitlines()
    start = next((i for i, row in enumerate(rows) if "%" in row), 0)
    _print_head("\n".join(rows[start:]), PROFILE_LINES)

    profile = cProfile.Profile()
    profile.enable()
    seconds = asyncio.run(measure_throughput("tidings-dict", events)).seconds
    profile.disable()
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(30)
    console.print(f"\ncProfile by tottime ({events / seconds:,.0f} events/s under cProfile):")
    _print_head(out.getvalue().strip(), 45)


def _print_head(text: str, lines: int) -> None:
    rows = text.splitlines()
    for row in rows[:lines]:
        console.print(row, markup=False, soft_wrap=True)
    if len(rows) > lines:
        console.print(f"... ({len(rows) - lines} more lines)")


def run_stages(events: int) -> None:
    from stages import STAGES, measure_stages

    results = measure_stages(events)
    table = Table(
        title=f"tidings per-event cost by stage, µs ({events:,} events; stages: best of 3)",
        title_justify="left",
    )
    table.add_column("stage")
    for r in results:
        table.add_column(r.case, justify="right")
    for key, label in STAGES:
        table.add_row(label, *(f"{r.per_event_us[key]:.2f}" for r in results))
    table.add_row(
        "end to end, GC on (median of 3)",
        *(f"{r.end_to_end_us:.2f}" for r in results),
        style="bold",
    )
    table.add_row("= events/s", *(f"{1e6 / r.end_to_end_us:,.0f}" for r in results), style="bold")
    console.print(table)


def run_sqlite_table(options: SqliteOptions, cases: Sequence[str]) -> None:
    console.print(f"\n{_versions()}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs")
    console.print(
        "Each sqlite case in its own subprocess, one after another; every database in a fresh "
        "temporary directory, removed afterwards."
    )
    started = time.perf_counter()
    results = run_sqlite_cases(
        cases, options, progress=lambda case: console.print(f"  running {case}")
    )
    print_sqlite_table(results, options, console)
    console.print(f"(sqlite benchmark took {time.perf_counter() - started:.1f}s)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite",
        choices=("memory", "sqlite", "all", *ADAPTER_SUITES),
        default="all",
        help="which table(s) to print (%(default)s; all = memory and sqlite; an adapter "
        "suite starts its own server and takes its own options after --)",
    )
    parser.add_argument("adapter_args", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument(
        "--events",
        type=int,
        default=Options.events,
        help="events per timed run of the memory suite (%(default)s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=Options.repeat,
        help="timed runs per memory case (%(default)s)",
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=Options.latency_rate,
        help="events/s of the latency run (%(default)s)",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=Options.latency_seconds,
        help="length of the latency run, capped at --events events; 0 skips it (%(default)s)",
    )
    parser.add_argument(
        "--cases", default=",".join(CASES), help="comma-separated subset of: %(default)s"
    )
    parser.add_argument(
        "--cpu", type=int, default=None, help="pin the benchmark to this CPU (default: no pinning)"
    )
    parser.add_argument(
        "--sqlite-events",
        type=int,
        default=SqliteOptions.events,
        help="events per timed run of the sqlite suite; a few cases scale it (%(default)s)",
    )
    parser.add_argument(
        "--sqlite-repeat",
        type=int,
        default=SqliteOptions.repeat,
        help="timed runs per sqlite case; latency and idle run once (%(default)s)",
    )
    parser.add_argument(
        "--sqlite-cases",
        default=",".join(SQLITE_CASES),
        help="comma-separated subset of: %(default)s",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--profile", action="store_true", help="profile the tidings dict case instead"
    )
    mode.add_argument(
        "--stages", action="store_true", help="per-stage cost of the tidings path instead"
    )
    mode.add_argument(
        "--sqlite-profile",
        metavar="CASE",
        choices=[name for name, case in SQLITE_CASES.items() if case.in_process],
        help="cProfile (event loop and writer thread) of one in-process sqlite case instead",
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.repeat < 1:
        parser.error("--events and --repeat must be >= 1")
    if args.sqlite_events < 10 or args.sqlite_repeat < 1:
        parser.error("--sqlite-events must be >= 10 and --sqlite-repeat >= 1")
    cases = _names(parser, args.cases, CASES)
    sqlite_cases = _names(parser, args.sqlite_cases, SQLITE_CASES)
    sqlite_options = SqliteOptions(events=args.sqlite_events, repeat=args.sqlite_repeat)
    cpu = args.cpu
    if args.profile:
        pin_to(cpu)
        run_profile(args.events)
    elif args.stages:
        pin_to(cpu)
        run_stages(args.events)
    elif args.sqlite_profile:
        run_sqlite_profile(args.sqlite_profile, sqlite_options)
    elif args.suite in ADAPTER_SUITES:
        run_adapter_suite(args.suite, args.adapter_args)
    else:
        if args.suite in ("memory", "all"):
            options = Options(
                events=args.events,
                repeat=args.repeat,
                latency_rate=args.latency_rate,
                latency_seconds=args.latency_seconds,
                cpu=cpu,
            )
            run_table(options, cases)
        if args.suite in ("sqlite", "all"):
            run_sqlite_table(sqlite_options, sqlite_cases)


def run_adapter_suite(suite: str, argv: list[str]) -> None:
    """An adapter's table (bench/bench_<suite>.py): ``--suite kafka -- --events N``."""
    module = importlib.import_module(ADAPTER_SUITES[suite])
    code = module.main(argv)
    if code:
        raise SystemExit(code)


def _names(parser: argparse.ArgumentParser, text: str, known: Collection[str]) -> list[str]:
    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return names


def run_sqlite_profile(case: str, options: SqliteOptions) -> None:
    """In a subprocess, like the table's cases, so only that case's imports and threads count."""
    command = [sys.executable, os.path.join(os.path.dirname(__file__), "bench_sqlite.py")]
    command += ["--case", case, "--profile", "--events", str(options.events)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"profiling {case} failed:\n{done.stderr}")
    _print_head(done.stdout.strip(), 10_000)


if __name__ == "__main__":
    sys.exit(main())
