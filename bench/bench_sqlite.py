"""The embedded (SQLite) broker: publish, consume and latency, against raw ``sqlite3`` baselines.

Baselines run in the same benchmark run, on the same disk, and write the
very rows the broker writes (its schema, its partitioning, the same encoded
CloudEvents): raw ``executemany`` in 1,000-row transactions is the practical
ceiling of batched publishing, one INSERT+COMMIT per row the floor of
unbatched publishing, and raw exactly-once transactions (offset, dedup
record, follow-up, head) the ceiling of exactly-once handling.

Each case runs in its own subprocess (``python bench/bench_sqlite.py --case
NAME``, printing one JSON line), in a fresh temporary directory removed
afterwards: a short warm-up run, then ``repeat`` timed runs; the table
(``_sqlite_report.py``) shows the median. The group, latency and idle cases
start further child processes (``_sqlite_procs.py``), without a warm-up;
latency and idle run once.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import _sqlite_cases as cases
import _sqlite_procs as procs
from _rss import peak_rss_mib
from _sqlite_data import Meter, Run

__all__ = ["CASES", "Options", "Result", "profile_case", "ratio", "run_cases", "verdict"]


@dataclass(frozen=True)
class Options:
    events: int = 50_000
    repeat: int = 3
    latency_rate: float = 1_000.0
    latency_seconds: float = 5.0
    idle_seconds: float = 5.0
    #: Heartbeat of the group members: how soon a partition moves to a member that joins.
    group_heartbeat: float = 0.2


@dataclass(frozen=True)
class Target:
    """``kind``: rate (events/s >=), ratio (vs baseline, >=), faster (ratio >= and every
    process handled events), p99_ms (<), cpu (< %)."""

    text: str
    kind: str
    value: float


@dataclass(frozen=True)
class Case:
    label: str
    #: Events of one run, from ``Options``.
    events: Callable[[Options], int]
    measure: Callable[[int, Options, Meter], Run]
    baseline: str | None = None
    target: Target | None = None
    #: In this process (warm-up, then ``repeat`` runs; can be profiled), or in child processes.
    in_process: bool = True
    #: Child-process cases: ``repeat`` runs (True) or one (the long latency and idle runs).
    repeated: bool = True


def _all(o: Options) -> int:
    return o.events


def _few(o: Options) -> int:
    return min(o.events, 2_000)


def _tenth(o: Options) -> int:
    return max(1, o.events // 10)


def _quadruple(o: Options) -> int:
    return 4 * o.events


def _latency_events(o: Options) -> int:
    return max(1, round(o.latency_rate * o.latency_seconds))


_RATE_50K = Target(">= 50,000/s", "rate", 50_000)
#: "Two faster than one": every process took a share of the events, and the
#: wall time beat one process's by more than the run-to-run noise.
_FASTER = Target(">= 1.1x, shared", "faster", 1.1)

CASES: dict[str, Case] = {
    "raw-full": Case(
        "raw sqlite3: executemany of the broker's rows, 1,000 per transaction, WAL, "
        "synchronous=FULL (the practical ceiling of batched publishing)",
        _all,
        lambda n, o, m: cases.raw_inserts(n, "FULL", 1_000, m),
    ),
    "raw-normal": Case(
        "the same, synchronous=NORMAL",
        _all,
        lambda n, o, m: cases.raw_inserts(n, "NORMAL", 1_000, m),
        baseline="raw-full",
    ),
    "broker-batch": Case(
        "SqliteBroker.publish of 1,000 pre-encoded messages per call, durability=full",
        _all,
        lambda n, o, m: cases.broker_batch(n, m),
        baseline="raw-full",
        target=Target(">= 0.8x", "ratio", 0.8),
    ),
    "app-batch": Case(
        "app.publish_batch of 1,000 events per call, creating and encoding them too",
        _all,
        lambda n, o, m: cases.app_batch(n, m),
        baseline="raw-full",
    ),
    "raw-commit-each": Case(
        "raw sqlite3: one INSERT + COMMIT per row, FULL (one fsync per event)",
        _few,
        lambda n, o, m: cases.raw_inserts(n, "FULL", 1, m),
    ),
    "publishers-100": Case(
        "100 asyncio tasks, each awaiting app.publish of one event at a time (group commit)",
        _all,
        lambda n, o, m: cases.concurrent_publishers(n, 100, m),
        baseline="app-batch",
        target=Target(">= 0.6x", "ratio", 0.6),
    ),
    "publishers-100-pydantic": Case(
        "the same with pydantic payloads (a model created per publish)",
        _all,
        lambda n, o, m: cases.concurrent_publishers(n, 100, m, model=True),
        baseline="publishers-100",
    ),
    "raw-consume": Case(
        "raw sqlite3: read the topic in 1,000-row pages per partition, commit an offset "
        "per page, FULL (the ceiling of consuming)",
        _all,
        lambda n, o, m: cases.raw_consume(n, m),
    ),
    "alo": Case(
        "at-least-once, events published first, then one consumer App (concurrency 1) "
        "from start until stopped",
        _all,
        lambda n, o, m: cases.consume(n, m),
        baseline="raw-consume",
        target=Target(">= 0.35x", "ratio", 0.35),
    ),
    "alo-pydantic": Case(
        "the same, the handler taking a pydantic model",
        _all,
        lambda n, o, m: cases.consume(n, m, model=True),
        baseline="alo",
    ),
    "alo-overlap": Case(
        "at-least-once, the same App publishing (publish_batch) while it consumes",
        _all,
        lambda n, o, m: cases.consume(n, m, overlap=True),
        baseline="raw-consume",
        target=_RATE_50K,
    ),
    "raw-eo-1": Case(
        "raw sqlite3: an exactly-once handling's writes (offset, dedup record, follow-up, "
        "head), one handling per transaction, FULL",
        _few,
        lambda n, o, m: cases.raw_exactly_once(n, 1, m),
    ),
    "eo-c1": Case(
        "exactly-once, concurrency 1, the handler returns one follow-up event",
        _tenth,
        lambda n, o, m: cases.consume(n, m, delivery="exactly_once"),
        baseline="alo",
        target=Target(">= 0.5x", "ratio", 0.5),
    ),
    "eo-c1-pydantic": Case(
        "the same, the handler taking a pydantic model",
        _tenth,
        lambda n, o, m: cases.consume(n, m, delivery="exactly_once", model=True),
        baseline="eo-c1",
    ),
    "raw-eo-64": Case(
        "raw sqlite3: the same writes, 64 handlings per transaction, FULL",
        _all,
        lambda n, o, m: cases.raw_exactly_once(n, 64, m),
    ),
    "eo-c64": Case(
        "exactly-once, concurrency 64, one follow-up event each",
        _all,
        lambda n, o, m: cases.consume(n, m, delivery="exactly_once", concurrency=64),
        baseline="alo",
        target=Target(">= 0.5x", "ratio", 0.5),
    ),
    "group-1": Case(
        "one consumer process drains pre-published events; from 'go' until the group's "
        "committed offsets (polled read-only) reach the heads; default heartbeat (1s)",
        _quadruple,
        lambda n, o, m: procs.group(n, 1),
        in_process=False,
    ),
    "group-2": Case(
        "two consumer processes of the same group, the same events, default heartbeat",
        _quadruple,
        lambda n, o, m: procs.group(n, 2),
        baseline="group-1",
        target=_FASTER,
        in_process=False,
    ),
    "group-2-fast": Case(
        "the same with a short member heartbeat (below), so partitions reach the member "
        "that joins second sooner",
        _quadruple,
        lambda n, o, m: procs.group(n, 2, o.group_heartbeat),
        baseline="group-1",
        target=_FASTER,
        in_process=False,
    ),
    "eo-group-1": Case(
        "exactly-once, one consumer process (concurrency 4, a 0.5 ms handler, one "
        "follow-up each) drains pre-published events",
        _tenth,
        lambda n, o, m: procs.group(n, 1, exactly_once=True),
        in_process=False,
    ),
    "eo-group-2": Case(
        "the same with two consumer processes of the group (they share the write lock)",
        _tenth,
        lambda n, o, m: procs.group(n, 2, exactly_once=True),
        baseline="eo-group-1",
        target=_FASTER,
        in_process=False,
    ),
    "latency": Case(
        "publish (producer process, fixed rate, send time in the data) -> handler start "
        "(consumer process)",
        _latency_events,
        lambda n, o, m: procs.latency(o.latency_rate, o.latency_seconds),
        target=Target("p99 < 10 ms", "p99_ms", 10.0),
        in_process=False,
        repeated=False,
    ),
    "idle": Case(
        "a consumer process subscribed with nothing to consume: its own CPU time "
        "(process_time, all threads) over the interval",
        lambda o: 0,
        lambda n, o, m: procs.idle(o.idle_seconds),
        target=Target("< 2% CPU", "cpu", 2.0),
        in_process=False,
        repeated=False,
    ),
}

#: Warm-up events of the in-process cases (imports, first-call caches, the file system).
WARMUP_EVENTS = 1_000


@dataclass
class Result:
    case: str
    events: int
    runs: list[Run]
    rss_peak_mib: float
    notes: list[str] = field(default_factory=list)

    @property
    def run(self) -> Run:
        """The median run by wall time (its commits, latencies ... are the ones shown)."""
        return sorted(self.runs, key=lambda r: r.seconds)[(len(self.runs) - 1) // 2]

    @property
    def seconds(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def rate(self) -> float | None:
        return self.events / self.seconds if self.events else None

    @property
    def cpu_percent(self) -> float:
        run = self.run
        return 100.0 * run.cpu_seconds / run.seconds

    @property
    def writer_busy(self) -> float | None:
        run = self.run
        return None if run.writer_seconds is None else run.writer_seconds / run.seconds


def ratio(result: Result, results: dict[str, Result]) -> float | None:
    """Events/s against the case's baseline (time against time when it counts no events)."""
    name = CASES[result.case].baseline
    base = results.get(name) if name else None
    if base is None:
        return None
    return base.seconds / result.seconds * (result.events / base.events if base.events else 1.0)


def verdict(result: Result, results: dict[str, Result]) -> bool | None:
    target = CASES[result.case].target
    if target is None:
        return None
    run = result.run
    if target.kind == "rate":
        return (result.rate or 0.0) >= target.value
    if target.kind in ("ratio", "faster"):
        value = ratio(result, results)
        if value is None:
            return None
        shared = target.kind == "ratio" or (run.shares is not None and min(run.shares) > 0)
        return value >= target.value and shared
    if target.kind == "p99_ms":
        return run.p99_ms is not None and run.p99_ms < target.value
    if target.kind == "cpu":
        return result.cpu_percent < target.value
    raise ValueError(f"unknown target kind {target.kind!r}")


# -- running cases ------------------------------------------------------------------


def measure_case(name: str, options: Options) -> Result:
    """Run one case: warm-up (in-process cases), then the timed runs."""
    case = CASES[name]
    meter = Meter().install()
    events = case.events(options)
    if case.in_process:
        case.measure(min(events, WARMUP_EVENTS), options, meter)
    runs = [
        case.measure(events, options, meter) for _ in range(options.repeat if case.repeated else 1)
    ]
    # Multi-process cases: the peak of the measured child processes, not of this driver.
    children = [r.child_rss_mib for r in runs if r.child_rss_mib is not None]
    rss = max(children) if children else peak_rss_mib()
    result = Result(name, events, runs, rss)
    if result.run.note:
        result.notes.append(result.run.note)
    return result


def run_cases(
    names: Sequence[str], options: Options, progress: Callable[[str], None] | None = None
) -> list[Result]:
    """Each case in a fresh subprocess, one after another."""
    results = []
    for name in names:
        if progress is not None:
            progress(name)
        command = [sys.executable, os.path.abspath(__file__), "--case", name]
        for key, value in asdict(options).items():
            command += [f"--{key.replace('_', '-')}", str(value)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"case {name} failed (exit {done.returncode}):\n{done.stderr}")
        raw = json.loads(done.stdout.strip().splitlines()[-1])
        raw["runs"] = [Run(**r) for r in raw["runs"]]
        results.append(Result(**raw))
    return results


# -- profiling -------------------------------------------------------------------------


def profile_case(name: str, options: Options, lines: int = 30) -> str:
    """cProfile of one run of a case: the event loop thread, and the writer's transactions.

    Only the timed part of the run is profiled (not its set-up); the writer
    profile covers the time inside transactions, not the writer waiting for work.
    """
    case = CASES[name]
    if not case.in_process:
        raise ValueError(f"{name} runs in child processes; profile an in-process case")
    meter = Meter().install()
    events = case.events(options)
    case.measure(min(events, WARMUP_EVENTS), options, meter)
    meter.profiling = True
    run = case.measure(events, options, meter)
    out = io.StringIO()
    out.write(
        f"{name}: {events:,} events in {run.seconds:.3f}s under cProfile "
        f"({events / run.seconds:,.0f} events/s), {run.commits} commits, "
        f"writer in transactions {run.writer_seconds or 0.0:.3f}s\n"
    )
    # BENCH_SORT (a pstats key; tottime by default) and BENCH_LINES change the listing.
    sort = os.environ.get("BENCH_SORT", "tottime")
    lines = int(os.environ.get("BENCH_LINES", lines))
    out.write(f"\n== event loop thread, by {sort} ==\n")
    pstats.Stats(meter.main_profile, stream=out).sort_stats(sort).print_stats(lines)
    if meter.available:
        out.write("\n== writer thread, inside transactions, by cumulative time ==\n")
        writer = pstats.Stats(meter.writer_profile, stream=out)
        writer.sort_stats("cumulative").print_stats(lines)
    return out.getvalue()


# -- worker ---------------------------------------------------------------------------


def _worker(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one sqlite benchmark case; print JSON.")
    parser.add_argument("--case", required=True, choices=list(CASES))
    parser.add_argument("--profile", action="store_true", help="print a profile instead")
    defaults = Options()
    for key, value in asdict(defaults).items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    options = Options(**{key: getattr(args, key) for key in asdict(defaults)})
    if args.profile:
        print(profile_case(args.case, options))
        return
    print(json.dumps(asdict(measure_case(args.case, options))))


if __name__ == "__main__":
    _worker()
