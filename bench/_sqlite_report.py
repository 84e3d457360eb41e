"""The embedded-broker benchmark's table: results, same-run baselines, targets, and notes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench_sqlite import CASES, Options, Result, ratio, verdict

__all__ = ["print_table"]


def _fmt(value: float | None, digits: int = 0, suffix: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{suffix}"


def print_table(results: Sequence[Result], options: Options, console: Any) -> None:
    from rich import box
    from rich.table import Table

    by_case = {r.case: r for r in results}
    table = Table(
        title=f"Embedded broker (sqlite, WAL, durability full), --sqlite-events "
        f"{options.events:,}: median of {options.repeat} runs (latency, idle: one run)",
        title_justify="left",
        box=box.SIMPLE_HEAVY,
    )
    headers = (
        "case",
        "events",
        "seconds",
        "events/s",
        "vs baseline",
        "target",
        "met",
        "commits",
        "ev/commit",
        "writer",
        "CPU %",
        "p50 ms",
        "p99 ms",
        "RSS MiB",
    )
    for header in headers:
        text = header in ("case", "vs baseline", "target", "met")
        table.add_column(header, no_wrap=True, justify="left" if text else "right")
    for r in results:
        case = CASES[r.case]
        run = r.run
        value = ratio(r, by_case)
        met = verdict(r, by_case)
        per_commit = r.events / run.commits if run.commits and r.events else None
        table.add_row(
            r.case,
            f"{r.events:,}" if r.events else "-",
            f"{r.seconds:.3f}",
            _fmt(r.rate),
            "-" if value is None else f"{value:.2f}x {case.baseline}",
            case.target.text if case.target else "-",
            "-" if met is None else ("[green]met[/]" if met else "[bold red]NOT MET[/]"),
            _fmt(run.commits),
            _fmt(per_commit, 1),
            _fmt(None if r.writer_busy is None else 100 * r.writer_busy, 0, "%"),
            _fmt(r.cpu_percent, 1 if r.cpu_percent < 10 else 0),
            _fmt(run.p50_ms, 2),
            _fmt(run.p99_ms, 2),
            _fmt(r.rss_peak_mib, 1),
        )
    console.print(table)
    console.print("Cases:")
    for r in results:
        console.print(f"  {r.case}: {CASES[r.case].label}")
        for note in r.notes:
            console.print(f"      ({note})")
    console.print(
        "Columns: events/s is wall clock (consumer cases stop it once app.stop() has returned: "
        "every event handled and settled, the group's position written); vs baseline: events/s "
        "against the named same-run case; commits: the broker writer's transactions (one fsync "
        "each), joins and heartbeats included; writer: share of the wall time the writer "
        "thread spent inside transactions; CPU %: process CPU time over wall time, all threads "
        "(group-*: all member processes); RSS: peak of the case's processes. Keys: 256. "
        "group-2*: 'faster' means every process handled a share and the group took at most "
        "1/1.1 of one process's time (beyond the run-to-run noise); group-2-fast: "
        f"heartbeat {options.group_heartbeat:g}s."
    )
    missed = [r for r in results if verdict(r, by_case) is False]
    if missed:
        console.print(
            "\nWhere the time goes, for missed targets "
            "(details: bench/run.py --sqlite-profile CASE):"
        )
    for r in missed:
        console.print(f"  {r.case}: {_where(r, by_case)}")


def _where(result: Result, results: dict[str, Result]) -> str:
    run = result.run
    if not result.events:
        return f"{run.cpu_seconds:.3f} CPU-seconds in {run.seconds:.2f}s; {run.note}"
    if run.writer_seconds is None and run.note:
        return run.note
    per_event = 1e6 / result.events
    parts = [
        f"per event {run.seconds * per_event:.1f} µs wall, {run.cpu_seconds * per_event:.1f} "
        "µs CPU (all threads)"
    ]
    if run.writer_seconds is not None and run.commits:
        writer_cpu = run.writer_cpu_seconds or 0.0
        parts.append(
            f"{run.writer_seconds * per_event:.1f} µs inside writer transactions, "
            f"{writer_cpu * per_event:.1f} µs of it the writer's CPU, the rest waiting (fsync, "
            f"the GIL) ({run.commits:,} commits of {1e3 * run.writer_seconds / run.commits:.2f} "
            f"ms, {result.events / run.commits:.1f} events each)"
        )
        parts.append(f"so about {(run.cpu_seconds - writer_cpu) * per_event:.1f} µs CPU elsewhere")
    name = CASES[result.case].baseline
    base = results.get(name) if name else None
    if base is not None and base.rate is not None:
        parts.append(f"baseline {name}: {1e6 / base.rate:.1f} µs per event")
    return "; ".join(parts)
