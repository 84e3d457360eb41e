"""The operational commands: publish, tail, topics, groups, replay, dlq (on real databases)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest

import tidings
from tidings import App, Message, Reject
from tidings.broker import SubscribeOptions
from tidings.brokers.sqlite import SqliteBroker
from tidings.cli import main
from tidings.cli.replay import parse_since

TIMEOUT = 20.0
T = TypeVar("T")


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture(autouse=True)
def _no_env_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIDINGS_BROKER", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ops.db'}"


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], db: str) -> Callable[..., Result]:
    """Run ``tidings ARGS --broker <db>`` in this process."""

    def run(*args: str, broker: str | None = db) -> Result:
        argv = [*args, "--broker", broker] if broker is not None else list(args)
        with pytest.raises(SystemExit) as exited:
            main(argv)
        out, err = capsys.readouterr()
        code = exited.value.code
        return Result(code if isinstance(code, int) else 0, out, err)

    return run


def _run(coroutine: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine(), TIMEOUT)

    return asyncio.run(bounded())


def _broker(url: str) -> SqliteBroker:
    return SqliteBroker(url.removeprefix("sqlite:///"))


def _publish_raw(url: str, topic: str, messages: list[Message]) -> None:
    async def go() -> None:
        broker = _broker(url)
        await broker.connect()
        try:
            await broker.publish(topic, messages)
        finally:
            await broker.close()

    _run(go)


def _error_line(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.err + result.out
    return lines[0]


@pytest.fixture
def stdin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """Make stdin a file holding the text given (publish reads its file descriptor)."""
    opened: list[IO[str]] = []

    def use(text: str) -> None:
        path = tmp_path / f"stdin-{len(opened)}.txt"
        path.write_text(text)
        opened.append(path.open())
        monkeypatch.setattr(sys, "stdin", opened[-1])

    yield use
    for handle in opened:
        handle.close()


# -- publish and tail --------------------------------------------------------------------


def test_publish_then_tail_as_text_and_json(cli: Callable[..., Result]) -> None:
    first = cli("publish", "orders", "--type", "OrderPlaced", "--data", '{"id": "ORD-1"}')
    assert first.code == 0, first.err
    event_id = first.out.strip()
    second = cli(
        "publish", "orders", "-t", "OrderShipped", "-d", '{"id": "ORD-1", "by": "ship"}',
        "--key", "ORD-1", "--source", "/warehouse", "--json",
    )  # fmt: skip
    shipped = json.loads(second.out)
    assert shipped["type"] == "OrderShipped"
    assert shipped["source"] == "/warehouse"
    assert shipped["partitionkey"] == "ORD-1"

    text = cli("tail", "orders")
    assert text.code == 0, text.err
    assert len(text.lines) == 2
    placed_line = next(line for line in text.lines if event_id in line)
    assert "OrderPlaced" in placed_line
    assert '{"id":"ORD-1"}' in placed_line
    shipped_line = next(line for line in text.lines if "OrderShipped" in line)
    assert "  ORD-1  " in shipped_line  # the key

    events = cli("tail", "orders", "--json").json_lines()
    assert {e["id"] for e in events} == {event_id, shipped["id"]}
    placed = next(e for e in events if e["id"] == event_id)
    assert placed["type"] == "OrderPlaced"
    assert placed["data"] == {"id": "ORD-1"}
    assert placed["source"] == "/tidings-cli"
    assert placed["specversion"] == "1.0"


def test_publish_reads_json_lines_from_stdin_in_batches(
    cli: Callable[..., Result], stdin: Callable[[str], None]
) -> None:
    lines = [json.dumps({"n": n}) for n in range(1200)]
    lines[600:600] = ["", "   "]  # blank lines are skipped
    stdin("\n".join(lines) + "\n")
    result = cli("publish", "numbers", "--type", "Counted", "--data", "-")
    assert result.code == 0, result.err
    assert result.out.strip() == "published 1200 event(s) to 'numbers'"

    events = cli("tail", "numbers", "--from-beginning", "--json").json_lines()
    assert sorted(e["data"]["n"] for e in events) == list(range(1200))
    assert {e["type"] for e in events} == {"Counted"}
    assert len(cli("tail", "numbers", "--last", "5", "--json").lines) == 5
    assert len(cli("tail", "numbers").lines) == 10


def test_a_bad_stdin_line_stops_publishing_before_its_batch(
    cli: Callable[..., Result], stdin: Callable[[str], None]
) -> None:
    good = [json.dumps(n) for n in range(700)]
    stdin("\n".join([*good, "{oops", "1"]) + "\n")
    result = cli("publish", "numbers", "--type", "N", "--data", "-")
    assert result.code == 1
    line = _error_line(result)
    assert "stdin line 701 is not valid JSON" in line
    assert "500 event(s) from the lines before line 501 were published" in line
    assert len(cli("tail", "numbers", "--from-beginning").lines) == 500


def test_publish_prints_each_event_with_json_from_stdin(
    cli: Callable[..., Result], stdin: Callable[[str], None]
) -> None:
    stdin('{"a": 1}\n"text"\nnull')  # the last line has no newline
    result = cli("publish", "misc", "--type", "M", "--data", "-", "--json")
    assert result.code == 0, result.err
    assert [e.get("data") for e in result.json_lines()] == [{"a": 1}, "text", None]
    assert "published 3 event(s)" in result.err


def test_tail_from_beginning_limit_and_filters(cli: Callable[..., Result]) -> None:
    for n in range(6):
        kind = "Even" if n % 2 == 0 else "Odd"
        cli("publish", "numbers", "-t", kind, "-d", str(n), "--key", f"k{n % 3}")
    everything = cli("tail", "numbers", "--from-beginning", "--json").json_lines()
    assert sorted(e["data"] for e in everything) == list(range(6))
    assert len(cli("tail", "numbers", "--from-beginning", "--limit", "4").lines) == 4

    evens = cli("tail", "numbers", "--from-beginning", "--filter", "type=Even", "--json")
    assert sorted(e["data"] for e in evens.json_lines()) == [0, 2, 4]
    both = cli("tail", "numbers", "--filter", "type=Even", "--filter", "partitionkey=k1", "--json")
    assert [e["data"] for e in both.json_lines()] == [4]
    newest_odd = cli("tail", "numbers", "--filter", "type=Odd", "--last", "1", "--json")
    assert len(newest_odd.lines) == 1
    assert cli("tail", "numbers", "--filter", "type=Nope").out == ""


def test_tail_shows_poison_messages(cli: Callable[..., Result], db: str) -> None:
    cli("publish", "mixed", "-t", "Fine", "-d", "1")
    _publish_raw(db, "mixed", [Message(b"\x00not json", key="p")])
    text = cli("tail", "mixed")
    assert len(text.lines) == 2
    assert any("poison: not a CloudEvent" in line for line in text.lines)
    as_json = cli("tail", "mixed", "--json")
    assert [e["type"] for e in as_json.json_lines()] == ["Fine"]
    assert "warning: skipped mixed" in as_json.err
    assert "not a CloudEvent" in as_json.err


# -- following, in a process of its own ------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TIDINGS_BROKER", "FORCE_COLOR")}
    env["NO_COLOR"] = "1"
    # The tidings under test, wherever the child process starts.
    source = str(Path(tidings.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    return env


def _start(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tidings.cli", *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _read_until(
    proc: subprocess.Popen[bytes],
    stream: IO[bytes],
    done: Callable[[str], bool],
    timeout: float = TIMEOUT,
) -> str:
    """Read ``stream`` of ``proc`` until ``done(text so far)`` (or fail after ``timeout``)."""
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while not done(seen.decode()):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                proc.kill()
                proc.communicate()
                pytest.fail(f"not there within {timeout}s: {seen.decode()!r}")
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                proc.communicate()
                pytest.fail(f"the process exited early: {seen.decode()}")
            seen += chunk
    return seen.decode()


def _wait_for_stderr(proc: subprocess.Popen[bytes], needle: str) -> str:
    assert proc.stderr is not None
    return _read_until(proc, proc.stderr, lambda text: needle in text)


def _finish(proc: subprocess.Popen[bytes]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, out.decode(), err.decode()


def test_tail_follow_prints_new_events_and_stops_at_the_limit(
    cli: Callable[..., Result], db: str, tmp_path: Path
) -> None:
    cli("publish", "orders", "-t", "Before", "-d", "0")
    proc = _start("tail", "orders", "--follow", "--limit", "3", "--json", "-b", db, cwd=tmp_path)
    started = _wait_for_stderr(proc, "following 'orders'")
    cli("publish", "orders", "-t", "After", "-d", "1")
    cli("publish", "orders", "-t", "After", "-d", "2", "--key", "other")
    cli("publish", "orders", "-t", "TooLate", "-d", "3")
    code, out, err = _finish(proc)
    assert code == 0, started + err
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["type"], e["data"]) for e in events] == [("Before", 0), ("After", 1), ("After", 2)]


def test_tail_follow_waits_for_a_topic_and_stops_cleanly_on_ctrl_c(
    cli: Callable[..., Result], db: str, tmp_path: Path
) -> None:
    cli("publish", "other", "-t", "X", "-d", "0")  # the database exists, the topic not yet
    proc = _start("tail", "later", "--follow", "-b", db, cwd=tmp_path)
    started = _wait_for_stderr(proc, "does not exist yet")
    assert proc.stdout is not None
    for n in range(1, 4):  # one at a time, each seen before the next is published
        cli("publish", "later", "-t", "Arrived", "-d", str(n))
        printed = _read_until(proc, proc.stdout, lambda text: text.count("\n") == 1, 10.0)
        assert printed.split()[2:] == ["Arrived", "-", printed.split()[4], str(n)]
    proc.send_signal(signal.SIGINT)
    code, out, err = _finish(proc)
    assert code == 0, started + err
    assert out == ""
    assert "Traceback" not in started + err


# -- topics, groups, replay ------------------------------------------------------------------


def _consume(
    url: str,
    topic: str,
    group: str,
    count: int,
    during: Callable[[], T],
    client_name: str | None = None,
) -> T:
    """Consume and ack ``count`` events as a member of ``group``; call ``during`` meanwhile."""

    async def go() -> T:
        broker = _broker(url)
        await broker.connect()
        try:
            options = SubscribeOptions(client_name=client_name)
            subscription = await broker.subscribe([topic], group, options)
            got = 0
            while got < count:
                for delivery in await subscription.fetch(count - got, 1.0):
                    await delivery.ack()
                    got += 1
            await subscription.flush()
            value = await asyncio.to_thread(during)
            await subscription.close()
            return value
        finally:
            await broker.close()

    return _run(go)


def _group(cli: Callable[..., Result], name: str) -> dict[str, Any]:
    groups = {g["name"]: g for g in cli("groups", "--json").json_lines()}
    return groups[name]


def test_topics_and_groups(cli: Callable[..., Result], db: str) -> None:
    for n in range(8):
        cli("publish", "orders", "-t", "OrderPlaced", "-d", str(n), "--key", f"k{n}")
    cli("publish", "audit", "-t", "Audited", "-d", "{}")

    table = cli("topics")
    assert table.code == 0, table.err
    assert table.lines[0].split() == ["topic", "partitions", "events", "bytes", "retention", "rate"]
    orders_row = next(line for line in table.lines if line.startswith("orders"))
    assert orders_row.split()[1:3] == ["4", "8"]
    assert "forever" in orders_row
    topics = {t["name"]: t for t in cli("topics", "--json").json_lines()}
    assert topics["orders"]["events"] == 8
    assert topics["audit"]["events"] == 1
    assert topics["orders"]["bytes"] > 0
    assert topics["orders"]["rate"] > 0

    live, text = _consume(
        db, "orders", "billing", 3, lambda: (_group(cli, "billing"), cli("groups").out), "billing"
    )
    (member,) = live["members"]
    assert member.startswith(f"billing@{socket.gethostname()}:{os.getpid()}-"), member
    assert any(p["owner"] == member for p in live["partitions"])
    assert f"members: {member}" in text

    billing = _group(cli, "billing")
    assert billing["members"] == []
    assert sum(p["committed"] for p in billing["partitions"]) == 3
    assert sum(p["head"] for p in billing["partitions"]) == 8
    assert billing["lag"] == 5
    text = cli("groups")
    assert "group billing: 0 live member(s), total lag 5" in text.out
    assert text.lines[1].split() == ["topic", "partition", "committed", "head", "lag", "owner"]


def test_replay_each_form(cli: Callable[..., Result], db: str) -> None:
    for n in range(4):
        cli("publish", "orders", "-t", "Early", "-d", str(n))
    _consume(db, "orders", "billing", 4, lambda: None)
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    for n in range(3):
        cli("publish", "orders", "-t", "Late", "-d", str(n))
    assert _group(cli, "billing")["lag"] == 3

    result = cli("replay", "--group", "billing", "--topic", "orders", "--from-beginning")
    assert result.code == 0, result.err
    assert "moved to the beginning" in result.out
    assert "lag now 7 event(s)" in result.out
    assert all(p["committed"] == 0 for p in _group(cli, "billing")["partitions"])

    cli("replay", "-g", "billing", "-t", "orders", "--to-end")
    assert _group(cli, "billing")["lag"] == 0

    result = cli("replay", "-g", "billing", "-t", "orders", "--offset", "1")
    assert "moved to offset 1 of every partition" in result.out
    assert all(p["committed"] == min(1, p["head"]) for p in _group(cli, "billing")["partitions"])

    result = cli("replay", "-g", "billing", "-t", "orders", "--since", between.isoformat())
    assert result.code == 0, result.err
    assert _group(cli, "billing")["lag"] == 3

    cli("replay", "-g", "billing", "-t", "orders", "--since", "1h")
    assert _group(cli, "billing")["lag"] == 7

    since = ("--since", "2020-01-01T00:00:00Z")
    result = cli("replay", "-g", "fresh", "-t", "orders", *since, "--create")
    assert "partition 0: - -> 0" in result.out
    assert _group(cli, "fresh")["lag"] == 7


def test_parse_since() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_since("10m", now) == now - timedelta(minutes=10)
    assert parse_since("1d2h", now) == now - timedelta(days=1, hours=2)
    assert parse_since("2024-05-01T10:00:00Z", now) == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_since("2024-05-01T12:00:00+02:00", now) == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_since("2024-05-01 09:30", now) == datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give exactly one of --from-beginning, --offset, --since, --to-end (got none)"),
        (["--offset", "1", "--to-end"], "(got --offset and --to-end)"),
        (["--since", "yesterday"], "--since 'yesterday' is not a time"),
        (["--since", "2999-01-01T00:00:00Z"], "is in the future"),
        (["--offset", "-1"], "Invalid value for '--offset'"),
    ],
)
def test_replay_usage_mistakes(cli: Callable[..., Result], args: list[str], message: str) -> None:
    cli("publish", "orders", "-t", "X", "-d", "1")
    result = cli("replay", "--group", "g", "--topic", "orders", *args)
    assert result.code == 2
    assert message in _error_line(result)


def test_replay_refuses_an_unknown_group_unless_create(cli: Callable[..., Result], db: str) -> None:
    cli("publish", "orders", "-t", "X", "-d", "1")
    _consume(db, "orders", "b", 1, lambda: None)
    _consume(db, "orders", "a", 1, lambda: None)
    result = cli("replay", "-g", "typo", "-t", "orders", "--from-beginning")
    assert result.code == 1
    assert _error_line(result) == (
        "error: no consumer group named 'typo' (known: a, b); "
        "pass --create to start one at the replay position"
    )
    assert [g["name"] for g in cli("groups", "--json").json_lines()] == ["a", "b"]
    created = cli("replay", "-g", "typo", "-t", "orders", "--from-beginning", "--create")
    assert created.code == 0, created.err
    assert _group(cli, "typo")["lag"] == 1


def test_replay_refuses_an_unknown_topic_without_creating_it(cli: Callable[..., Result]) -> None:
    cli("publish", "orders", "-t", "X", "-d", "1")
    result = cli("replay", "-g", "g", "-t", "ordres", "--from-beginning")
    assert result.code == 1
    assert "no topic 'ordres' (topics: orders)" in _error_line(result)
    assert [t["name"] for t in cli("topics", "--json").json_lines()] == ["orders"]


# -- deleting a group -----------------------------------------------------------------------

_GROUP_TABLES = ("members", "assignments", "group_offsets", "retries", "processed", "settled_ahead")


def _rows_of(url: str, group: str) -> dict[str, int]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        counts = {
            table: conn.execute(f"SELECT COUNT(*) FROM {table} WHERE grp = ?", (group,)).fetchone()[
                0
            ]
            for table in _GROUP_TABLES
        }
    conn.close()
    return counts


def _leave_state_behind(url: str, topic: str, group: str) -> None:
    """Ack some, schedule a retry, record an exactly-once handling, settle one ahead."""

    async def go() -> None:
        broker = _broker(url)
        await broker.connect()
        try:
            subscription = await broker.subscribe([topic], group)
            deliveries: list[Any] = []
            while len(deliveries) < 8:
                deliveries += await subscription.fetch(8 - len(deliveries), 1.0)
            by_partition: dict[int, list[Any]] = {}
            for delivery in deliveries:
                by_partition.setdefault(delivery.partition, []).append(delivery)
            runs = sorted(by_partition.values(), key=len, reverse=True)
            await runs[0][0].nack(delay=3600)  # a retry row, and what follows settles ahead
            for delivery in runs[0][1:]:
                await delivery.ack()
            assert await broker.commit(runs[1][0], [], dedup_key="once")
            await subscription.flush()
            await subscription.close()
        finally:
            await broker.close()

    _run(go)


def _handled_by_a_new_member(url: str, topic: str, group: str) -> int:
    async def go() -> int:
        broker = _broker(url)
        await broker.connect()
        try:
            subscription = await broker.subscribe([topic], group)
            got = []
            while batch := await subscription.fetch(100, 0.5):
                got += batch
            await subscription.close()
            return len(got)
        finally:
            await broker.close()

    return _run(go)


def test_groups_delete_forgets_every_row_and_a_new_group_starts_afresh(
    cli: Callable[..., Result], db: str
) -> None:
    for n in range(8):
        cli("publish", "orders", "-t", "OrderPlaced", "-d", str(n), "--key", f"k{n}")
    _leave_state_behind(db, "orders", "billing")
    _consume(db, "orders", "audit", 8, lambda: None)
    left = _rows_of(db, "billing")
    assert all(left[t] for t in ("group_offsets", "retries", "processed", "settled_ahead")), left

    result = cli("groups", "delete", "billing", "--yes")
    assert result.code == 0, result.err
    assert "deleted consumer group 'billing'" in result.out
    assert set(_rows_of(db, "billing").values()) == {0}
    assert [g["name"] for g in cli("groups", "--json").json_lines()] == ["audit"]
    assert _handled_by_a_new_member(db, "orders", "billing") == 8
    assert _group(cli, "audit")["lag"] == 0  # the other group is untouched


def test_groups_delete_refusals(
    cli: Callable[..., Result], db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli("publish", "orders", "-t", "X", "-d", "1")
    _consume(db, "orders", "billing", 1, lambda: None)

    unknown = cli("groups", "delete", "biling", "--yes")
    assert unknown.code == 1
    assert "no consumer group named 'biling' (known: billing)" in _error_line(unknown)

    live = _consume(db, "orders", "billing", 0, lambda: cli("groups", "delete", "billing", "-y"))
    assert live.code == 1
    message = _error_line(live)
    assert "consumer group 'billing' has 1 live member(s)" in message
    assert "stop them first" in message

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
    asked = cli("groups", "delete", "billing")
    assert asked.code == 2
    assert "pass --yes to confirm" in _error_line(asked)
    assert _group(cli, "billing")["partitions"]


@pytest.mark.parametrize(("answer", "deleted"), [("n", False), ("y", True)])
def test_groups_delete_asks_on_a_terminal(
    cli: Callable[..., Result], db: str, tmp_path: Path, answer: str, deleted: bool
) -> None:
    cli("publish", "orders", "-t", "X", "-d", "1")
    _consume(db, "orders", "billing", 1, lambda: None)
    leader, follower = os.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tidings.cli", "groups", "delete", "billing", "-b", db],
            cwd=tmp_path,
            env=_env(),
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        os.close(follower)
        os.write(leader, f"{answer}\n".encode())
        code, out, err = _finish(proc)
    finally:
        os.close(leader)
    assert ("deleted consumer group 'billing'" in out) is deleted, out + err
    assert code == (0 if deleted else 1), err
    assert ("billing" in [g["name"] for g in cli("groups", "--json").json_lines()]) is not deleted


# -- dead letters ---------------------------------------------------------------------------


def _make_dead_letters(url: str) -> None:
    """Run an App whose handler rejects odd orders until their dead letters exist."""

    async def go() -> None:
        app = App("shop", broker=f"{url}?heartbeat=0.2")

        @app.subscribe("orders", group="billing")
        async def bill(data: dict[str, Any]) -> None:
            if data["n"] % 2:
                raise Reject(f"order {data['n']} is odd")

        async with app:
            for n in range(6):
                await app.publish({"n": n}, topic="orders", type="OrderPlaced", key=f"k{n}")
            await app.broker.publish("orders", [Message(b"\x00poison", key="p")])
            broker = app.broker
            assert isinstance(broker, SqliteBroker)
            while len(await broker.read("orders.dlq")) < 4:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.02)

    _run(go)


def test_dlq_list_and_show(cli: Callable[..., Result], db: str) -> None:
    _make_dead_letters(db)
    topics = cli("dlq", "list", "--json").json_lines()
    assert topics == [{"topic": "orders.dlq", "origin": "orders", "dead_letters": 4}]
    assert "orders.dlq" in cli("dlq", "list").out

    lines = cli("dlq", "list", "orders").lines
    assert len(lines) == 4
    assert sum("Reject: order" in line and "OrderPlaced" in line for line in lines) == 3
    assert sum("poison" in line and "DecodeError" in line for line in lines) == 1
    assert all("attempts 1" in line and "group billing" in line for line in lines)

    letters = cli("dlq", "list", "orders.dlq", "--json").json_lines()
    rejected = next(x for x in letters if "event" in x)
    record = rejected["dead_letter"]
    assert record["error_type"] == "tidings.errors.Reject"
    assert record["origin_topic"] == "orders"
    assert record["origin_group"] == "billing"
    assert rejected["event"]["data"]["n"] % 2 == 1

    shown = cli(
        "dlq", "show", "orders", str(rejected["offset"]), "-p", str(rejected["partition"]), "--json"
    )
    assert json.loads(shown.out) == rejected
    text = cli("dlq", "show", "orders", str(rejected["offset"]), "-p", str(rejected["partition"]))
    assert "error_type:       tidings.errors.Reject" in text.out
    assert '"type": "OrderPlaced"' in text.out

    poison = next(x for x in letters if "poison" in x)
    shown = cli("dlq", "show", "orders", str(poison["offset"]), "-p", str(poison["partition"]))
    assert "poison:" in shown.out
    assert "\\u0000poison" in shown.out

    missing = cli("dlq", "show", "orders", "99")
    assert missing.code == 1
    assert "no dead letter at offset 99 in orders.dlq" in _error_line(missing)


def test_dlq_redrive_moves_letters_back_and_purge_deletes(
    cli: Callable[..., Result], db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _make_dead_letters(db)
    result = cli("dlq", "redrive", "orders", "--limit", "1")
    assert result.out.strip() == "redrove 1 dead letter(s) from orders.dlq"
    assert cli("dlq", "list", "--json").json_lines()[0]["dead_letters"] == 3
    assert _group(cli, "billing")["lag"] == 1  # back in orders, not yet handled again

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
    refused = cli("dlq", "purge", "orders")
    assert refused.code == 2
    assert "pass --yes" in _error_line(refused)

    result = cli("dlq", "redrive", "orders")
    assert result.out.strip() == "redrove 3 dead letter(s) from orders.dlq"
    events = cli("tail", "orders", "--from-beginning", "--json")
    assert len(events.lines) == 6 + 3  # the poison message is skipped in JSON
    assert cli("dlq", "list", "orders").out == ""

    _make_dead_letters(db)  # the same again: 3 rejected + 1 poison, plus the redriven ones
    count = cli("dlq", "list", "--json").json_lines()[0]["dead_letters"]
    result = cli("dlq", "purge", "orders", "--yes")
    assert result.out.strip() == f"deleted {count} dead letter(s) from orders.dlq"
    assert cli("dlq", "list", "--json").json_lines()[0]["dead_letters"] == 0


def test_dlq_of_a_topic_without_dead_letters(cli: Callable[..., Result]) -> None:
    cli("publish", "orders", "-t", "X", "-d", "1")
    result = cli("dlq", "list", "orders")
    assert result.code == 0
    assert "no dead letters: orders.dlq does not exist" in result.err
    assert cli("dlq", "redrive", "orders").out.strip() == "redrove 0 dead letter(s) from orders.dlq"
    unknown = cli("dlq", "list", "nope")
    assert unknown.code == 1
    assert "no topic 'nope' and no dead-letter topic 'nope.dlq'" in _error_line(unknown)


# -- read-only use --------------------------------------------------------------------------


def _run_unprivileged(*args: str, cwd: Path) -> tuple[int, str, str]:
    """``tidings ARGS`` in a process that file permissions apply to.

    As root, file modes stop nobody: the process then runs without the
    capabilities that override them (util-linux ``setpriv``).
    """
    prefix = []
    if os.geteuid() == 0:
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    command = [*prefix, sys.executable, "-m", "tidings.cli", *args]
    done = subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, timeout=TIMEOUT)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@pytest.fixture
def read_only_db(tmp_path: Path, cli: Callable[..., Result]) -> Iterator[Path]:
    """A database with events, a group and dead letters, in a read-only directory."""
    folder = tmp_path / "ro"
    folder.mkdir()
    url = f"sqlite:///{folder / 'shop.db'}"
    cli("publish", "orders", "-t", "X", "-d", "1", broker=url)
    cli("publish", "orders.dlq", "-t", "X", "-d", "2", broker=url)
    _consume(url, "orders", "billing", 1, lambda: None)
    assert sorted(p.name for p in folder.iterdir()) == ["shop.db"]
    (folder / "shop.db").chmod(0o444)
    folder.chmod(0o555)
    yield folder / "shop.db"
    folder.chmod(0o755)


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["topics"], "orders"),
        (["groups", "--json"], '"name":"billing"'),
        (["tail", "orders", "--json"], '"type":"X"'),
        (["dlq", "list"], "orders.dlq"),
    ],
    ids=lambda a: " ".join(a[:2]) if isinstance(a, list) else "",
)
def test_reading_commands_work_on_a_read_only_database(
    read_only_db: Path, tmp_path: Path, args: list[str], shown: str
) -> None:
    code, out, err = _run_unprivileged(*args, "-b", f"sqlite:///{read_only_db}", cwd=tmp_path)
    assert code == 0, err
    assert shown in out + err
    assert sorted(p.name for p in read_only_db.parent.iterdir()) == ["shop.db"]


def test_an_unreadable_database_is_a_permission_problem(read_only_db: Path, tmp_path: Path) -> None:
    read_only_db.parent.chmod(0o755)
    read_only_db.chmod(0o000)
    for args in (["topics"], ["publish", "orders", "-t", "X", "-d", "1"]):
        code, _, err = _run_unprivileged(*args, "-b", f"sqlite:///{read_only_db}", cwd=tmp_path)
        assert code == 1
        assert err.strip() == f"error: permission denied: {read_only_db}"


# -- mistakes and refusals ------------------------------------------------------------------

COMMANDS = [
    ["topics"],
    ["groups"],
    ["tail", "orders"],
    ["publish", "orders", "-t", "X", "-d", "1"],
    ["replay", "-g", "g", "-t", "orders", "--to-end"],
    ["dlq", "list"],
    ["dlq", "purge", "orders", "--yes"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_foreign_database_is_refused_untouched(
    cli: Callable[..., Result], tmp_path: Path, args: list[str]
) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.execute("INSERT INTO users VALUES ('ada')")
    conn.close()
    before = path.read_bytes()
    result = cli(*args, broker=f"sqlite:///{path}")
    assert result.code == 1
    assert "is a SQLite database of another application" in _error_line(result)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


@pytest.mark.parametrize("args", COMMANDS[:4], ids=lambda a: " ".join(a[:2]))
def test_a_file_that_is_not_sqlite_is_refused_untouched(
    cli: Callable[..., Result], tmp_path: Path, args: list[str]
) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"just some notes\n" * 100)
    result = cli(*args, broker=f"sqlite:///{path}")
    assert result.code == 1
    assert "is not a SQLite database" in _error_line(result)
    assert path.read_bytes() == b"just some notes\n" * 100


@pytest.mark.parametrize("args", COMMANDS[:3], ids=lambda a: " ".join(a[:2]))
def test_reading_commands_do_not_create_a_database(
    cli: Callable[..., Result], tmp_path: Path, args: list[str]
) -> None:
    result = cli(*args, broker=f"sqlite:///{tmp_path / 'missing.db'}")
    assert result.code == 1
    assert "no tidings database at" in _error_line(result)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["topics", "-b", "memory://"], 2, "memory:// lives inside one process"),
        (["publish", "t", "-t", "X", "-d", "1", "-b", "memory://x"], 2, "memory:// lives"),
        (["groups", "-b", "nosuch://host"], 2, "--broker: no broker for URL scheme 'nosuch'"),
        (["publish", "t", "-t", "X", "-d", "{bad"], 2, "--data is not valid JSON"),
        (["publish", "t", "-t", "X", "-d", "NaN"], 2, "--data is not valid JSON"),
        (["publish", "t", "-t", "", "-d", "1"], 2, "attribute 'type' must be a non-empty"),
        (["publish", "t", "-t", "X"], 2, "Missing option '--data'"),
        (["tail", "t", "--filter", "type"], 2, "--filter 'type' is not ATTR=VALUE"),
        (["tail", "t", "--from-beginning", "--last", "3"], 2, "--from-beginning or --last"),
        (["tail", "nope"], 1, "no topic 'nope' (topics: t)"),
        (["dlq", "show", "t", "0", "-p", "9"], 1, "no dead letter at offset 0"),
    ],
)
def test_user_mistakes_print_one_line(
    cli: Callable[..., Result], db: str, args: list[str], exit_code: int, message: str
) -> None:
    cli("publish", "t", "-t", "X", "-d", "1")
    explicit = "-b" in args
    result = cli(*args, broker=None if explicit else db)
    assert result.code == exit_code, result.err
    assert message in _error_line(result)


def test_the_broker_comes_from_the_environment(
    cli: Callable[..., Result], db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDINGS_BROKER", db)
    assert cli("publish", "env", "-t", "X", "-d", "1", broker=None).code == 0
    assert [t["name"] for t in cli("topics", "--json", broker=None).json_lines()] == ["env"]


def test_topics_hides_tidings_own_topics_unless_all(cli: Callable[..., Result], db: str) -> None:
    from tidings import App

    async def handle_one() -> None:
        app = App("recorder", broker=db)  # the embedded broker records handlings
        done = asyncio.Event()

        @app.subscribe("orders", group="g")
        async def take(data: object) -> None:
            done.set()

        async with app:
            await app.publish({"n": 1}, topic="orders", type="OrderPlaced")
            await asyncio.wait_for(done.wait(), 10)

    asyncio.run(handle_one())
    listed = {t["name"] for t in cli("topics", "--json").json_lines()}
    assert listed == {"orders"}
    everything = {t["name"] for t in cli("topics", "--all", "--json").json_lines()}
    assert everything == {"orders", "tidings.handlings"}
