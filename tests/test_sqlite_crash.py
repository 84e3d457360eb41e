"""Crash tests: real processes killed with SIGKILL at random points (bounded in count and time)."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import msgspec
import pytest

from tidings import App

WORKER = str(Path(__file__).with_name("crash_worker.py"))
TOTAL = 20_000
KEYS = 50


def start_consumer(db: Path, mode: str, log: Path) -> subprocess.Popen[str]:
    with log.with_suffix(".stderr").open("a") as errors:  # kept for a failure's report
        proc = subprocess.Popen(
            [sys.executable, WORKER, "consume", str(db), mode, str(log)],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def stop(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def group_progress(db: Path) -> list[tuple[int, int, int]]:
    """(partition, head, committed) of group "crash" on "crash.in"."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute(
            "SELECT h.partition, h.next_offset, COALESCE(o.committed, 0) FROM partition_heads h "
            "JOIN topics t ON t.id = h.topic_id AND t.name = 'crash.in' "
            "LEFT JOIN group_offsets o ON o.topic_id = h.topic_id "
            "AND o.partition = h.partition AND o.grp = 'crash'"
        ).fetchall()


def group_done(db: Path) -> bool:
    rows = group_progress(db)
    return bool(rows) and all(head == committed for _, head, committed in rows)


def stuck_report(db: Path, logs: list[Path]) -> str:
    """What a run that did not finish left behind: lagging partitions, workers' stderr."""
    behind = [row for row in group_progress(db) if row[1] != row[2]]
    parts = [f"partitions behind (partition, head, committed): {behind}"]
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        for table in ("members", "assignments", "retries", "settled_ahead"):
            rows = conn.execute(f"SELECT * FROM {table} WHERE grp = 'crash' LIMIT 20").fetchall()
            parts.append(f"{table}: {rows}")
        for partition, _, committed in behind:
            row = conn.execute(
                "SELECT m.partition, m.offset, m.key FROM messages m JOIN topics t "
                "ON t.id = m.topic_id AND t.name = 'crash.in' WHERE m.partition = ? "
                "AND m.offset = ?",
                (partition, committed),
            ).fetchone()
            parts.append(f"first unsettled message: {row}")
    for log in logs:
        errors = log.with_suffix(".stderr")
        tail = errors.read_text()[-3000:] if errors.exists() else ""
        parts.append(f"--- {errors.name} ---\n{tail}")
    return "\n".join(parts)


async def publish_all(db: Path) -> None:
    app = App("producer", broker=f"sqlite:///{db}")
    for start in range(0, TOTAL, 1000):
        await app.publish_batch(
            [
                app.event({"key": f"k{i % KEYS}", "seq": i}, type="Item", key=f"k{i % KEYS}")
                for i in range(start, start + 1000)
            ],
            topic="crash.in",
        )
    await app.stop()


def run_with_kills(tmp_path: Path, mode: str) -> list[tuple[str, int, int, int]]:
    db = tmp_path / "crash.db"
    asyncio.run(publish_all(db))
    logs = [tmp_path / f"handled-{i}.log" for i in range(2)]
    procs = [start_consumer(db, mode, log) for log in logs]
    rng = random.Random(7)
    kills = 0
    deadline = time.monotonic() + 120
    try:
        while kills < 5 and not group_done(db) and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.2, 0.7))
            victim = rng.randrange(2)
            stop(procs[victim], signal.SIGKILL)
            kills += 1
            procs[victim] = start_consumer(db, mode, logs[victim])
        while not group_done(db):
            if time.monotonic() > deadline:
                for proc in procs:  # each worker prints what it holds on stderr
                    proc.send_signal(signal.SIGUSR1)
                time.sleep(1.0)
                raise AssertionError("the group did not finish in time\n" + stuck_report(db, logs))
            time.sleep(0.2)
    finally:
        for proc in procs:
            stop(proc, signal.SIGTERM)
    assert kills >= 3, "the workers finished before enough kills happened"
    lines = []
    for log in logs:
        for line in log.read_text().splitlines():
            key, seq, attempt, _pid, at = line.split()
            lines.append((key, int(seq), int(attempt), int(at)))
    return lines


def check_order_and_completeness(lines: list[tuple[str, int, int, int]]) -> None:
    seen = {seq for _, seq, _, _ in lines}
    assert seen == set(range(TOTAL)), f"lost events: {sorted(set(range(TOTAL)) - seen)[:10]}"
    by_key: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for key, seq, _, at in lines:
        by_key[key].append((at, seq))
    for key, handled in by_key.items():
        highest = -1
        for _, seq in sorted(handled):
            # each handling is the next new event of the key, or a redelivery of an earlier one
            assert seq <= highest or seq == highest + KEYS or highest == -1, (
                f"key {key}: event {seq} handled before {highest + KEYS}"
            )
            highest = max(highest, seq)


@pytest.mark.slow
def test_at_least_once_group_survives_kill_9(tmp_path: Path) -> None:
    lines = run_with_kills(tmp_path, "at_least_once")
    check_order_and_completeness(lines)
    assert len(lines) >= TOTAL


@pytest.mark.slow
def test_exactly_once_effects_counted_once_despite_kill_9(tmp_path: Path) -> None:
    lines = run_with_kills(tmp_path, "exactly_once")
    check_order_and_completeness(lines)
    db = tmp_path / "crash.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT m.value FROM messages m JOIN topics t ON t.id = m.topic_id "
            "WHERE t.name = 'crash.out'"
        ).fetchall()
    counted = [msgspec.json.decode(value)["data"]["seq"] for (value,) in rows]
    assert len(counted) == TOTAL, f"{len(counted) - TOTAL:+d} effects"
    assert sorted(counted) == list(range(TOTAL))


@pytest.mark.slow
def test_killed_producer_loses_no_acknowledged_publish(tmp_path: Path) -> None:
    db = tmp_path / "producer.db"
    proc = subprocess.Popen(
        [sys.executable, WORKER, "produce", str(db), "200000", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    acknowledged = -1
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acknowledged = int(line)
        if acknowledged > 2000 and random.random() < 0.01:
            break
    stop(proc, signal.SIGKILL)
    assert acknowledged > 0
    with sqlite3.connect(db) as conn:
        stored = {
            msgspec.json.decode(value)["data"]["seq"]
            for (value,) in conn.execute("SELECT value FROM messages")
        }
    missing = [seq for seq in range(acknowledged + 1) if seq not in stored]
    assert missing == [], f"{len(missing)} acknowledged events lost"
