"""The CLI and the demo on the system RabbitMQ, each test in a vhost of its own.

Inspection lists exchanges and queues through the management API (plugin
``rabbitmq_management``, enabled by ``.ci/run``); the vhost goes, with
everything in it, when the test ends.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from _services import port_open, run_python, service_missing

import tidings
from tidings import App, Context
from tidings.broker import Message
from tidings.brokers.rabbitmq import RabbitBroker
from tidings.retry import RetryPolicy
from tidings.testing.conformance import collect

HOST, PORT, MANAGEMENT = "127.0.0.1", 5672, 15672


def management(method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://{HOST}:{MANAGEMENT}{path}", data=data, method=method)
    request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read()
    return json.loads(text) if text else None


@pytest.fixture
def vhost() -> Iterator[str]:
    """A fresh vhost (guest may use it); the URL of the system RabbitMQ on it."""
    if not port_open(HOST, PORT):
        service_missing(f"no RabbitMQ server at {HOST}:{PORT}")
    if not port_open(HOST, MANAGEMENT):
        service_missing(
            f"no RabbitMQ management API at {HOST}:{MANAGEMENT} "
            "(rabbitmq-plugins enable rabbitmq_management)"
        )
    name = f"tidings-test-{uuid.uuid4().hex[:10]}"
    management("PUT", f"/api/vhosts/{name}")
    permissions = {"configure": ".*", "write": ".*", "read": ".*"}
    management("PUT", f"/api/permissions/{name}/guest", permissions)
    try:
        yield f"amqp://guest:guest@{HOST}:{PORT}/{name}?heartbeat=0.25"
    finally:
        management("DELETE", f"/api/vhosts/{name}")


@pytest.fixture
async def broker(vhost: str) -> AsyncIterator[RabbitBroker]:
    opened = RabbitBroker.from_url(vhost)
    await opened.connect()
    yield opened
    await opened.close()


def cli(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return run_python("-m", "tidings.cli", *args, cwd=cwd, timeout=timeout)


async def acli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, *args)


# -- topics, groups, tail --------------------------------------------------------------


async def test_topics_and_groups_show_events_members_and_lag(
    broker: RabbitBroker, vhost: str
) -> None:
    await broker.publish("bars", [Message(f'{{"n": {i}}}'.encode(), key=f"k{i}") for i in range(6)])
    sub = await broker.subscribe(["bars"], "readers")
    got = await collect(sub, 2, timeout=5)  # acked; the other four wait with the member
    assert len(got) == 2
    topics = await acli("topics", "--json", "--broker", vhost)
    assert topics.returncode == 0, topics.stderr
    (bars,) = [json.loads(line) for line in topics.stdout.splitlines()]
    assert (bars["name"], bars["partitions"], bars["events"]) == ("bars", 4, 6)
    assert bars["retention_seconds"] == 7 * 86400

    deadline = time.monotonic() + 15  # unacked counts are the server's statistics (5 s)
    while True:
        groups = await acli("groups", "--json", "--broker", vhost)
        assert groups.returncode == 0, groups.stderr
        (readers,) = [json.loads(line) for line in groups.stdout.splitlines()]
        if readers["lag"] == 4 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert readers["name"] == "readers"
    assert readers["lag"] == 4
    assert len(readers["members"]) == 1
    assert {p["head"] for p in readers["partitions"]} <= {0, 1, 2, 3, 4, 5, 6}
    assert sum(p["head"] for p in readers["partitions"]) == 6
    assert all(p["owner"] == readers["members"][0] for p in readers["partitions"])


async def test_groups_delete_refuses_a_live_group_then_deletes_its_queues(
    broker: RabbitBroker, vhost: str
) -> None:
    await broker.publish("bars", [Message(b"{}")])
    sub = await broker.subscribe(["bars"], "doomed")
    busy = await acli("groups", "delete", "doomed", "--yes", "--broker", vhost)
    assert busy.returncode != 0
    assert "live member" in busy.stderr
    await sub.close()
    gone = await acli("groups", "delete", "doomed", "--yes", "--broker", vhost)
    assert gone.returncode == 0, gone.stderr
    listed = await acli("groups", "--json", "--broker", vhost)
    assert "doomed" not in listed.stdout
    # A group of that name starts afresh: from the events no group took (none here).
    again = await broker.subscribe(["bars"], "doomed")
    assert await collect(again, 1, timeout=1.0) == []


async def test_tail_from_beginning_last_and_follow(broker: RabbitBroker, vhost: str) -> None:
    app = App("tailer", broker=broker)
    async with app:
        for i in range(12):
            await app.publish({"n": i}, topic="bars", type="Bar", key=f"k{i % 3}")
    everything = await acli("tail", "bars", "--from-beginning", "--json", "--broker", vhost)
    assert everything.returncode == 0, everything.stderr
    seen = [json.loads(line)["data"]["n"] for line in everything.stdout.splitlines()]
    assert sorted(seen) == list(range(12))
    newest = await acli("tail", "bars", "-n", "3", "--json", "--broker", vhost)
    assert [json.loads(line)["data"]["n"] for line in newest.stdout.splitlines()] == [9, 10, 11]

    follower = start_tail(vhost)
    try:
        await asyncio.sleep(3)  # it prints the newest 10, then follows
        async with app:
            await app.publish({"n": 100}, topic="bars", type="Bar", key="k0")
            await app.publish({"n": 101}, topic="bars", type="Bar", key="k1")
        out = await asyncio.to_thread(finish, follower, 15)
    finally:
        if follower.poll() is None:
            follower.kill()
    numbers = [json.loads(line)["data"]["n"] for line in out.splitlines() if line.strip()]
    assert numbers[-2:] == [100, 101], out


def start_tail(url: str) -> subprocess.Popen[str]:
    source = str(Path(tidings.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tidings.cli",
            "tail",
            "bars",
            "--follow",
            "--json",
            "--limit",
            "12",
            "--broker",
            url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
    )


def finish(process: subprocess.Popen[str], timeout: float) -> str:
    """The output of ``process`` once it stopped by itself (``--limit``), else after SIGINT."""
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=10)
    return out


def test_tail_of_a_missing_topic_names_the_known_ones(vhost: str) -> None:
    done = cli("tail", "nothing-here", "--broker", vhost)
    assert done.returncode != 0
    assert "no topic 'nothing-here'" in done.stderr
    assert "Traceback" not in done.stderr


def test_inspection_without_the_management_api_is_one_clear_line(vhost: str) -> None:
    from _services import free_port

    url = f"{vhost}&management=http://127.0.0.1:{free_port()}"
    done = cli("topics", "--broker", url)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "rabbitmq_management" in done.stderr
    assert "guest:guest" not in done.stderr


# -- dead letters ----------------------------------------------------------------------


async def test_dlq_list_show_redrive_and_purge(broker: RabbitBroker, vhost: str) -> None:
    app = App("dlq", broker=broker)
    handled: list[int] = []
    healthy = asyncio.Event()

    @app.subscribe("bills", group="billing", retry=RetryPolicy.never())
    async def bill(data: dict[str, Any], ctx: Context) -> None:
        if not healthy.is_set():
            raise RuntimeError(f"bill {data['n']} bounced")
        handled.append(data["n"])

    async with app:
        for i in range(3):
            await app.publish({"n": i}, topic="bills", type="Bill", key=f"b{i}")
        deadline = time.monotonic() + 15
        listed = None
        while time.monotonic() < deadline:
            listed = await acli("dlq", "list", "bills", "--json", "--broker", vhost)
            if len(listed.stdout.splitlines()) == 3:
                break
            await asyncio.sleep(0.3)
        assert listed is not None and listed.returncode == 0, listed and listed.stderr
        letters = [json.loads(line) for line in listed.stdout.splitlines()]
        assert len(letters) == 3
        assert {x["dead_letter"]["error_message"] for x in letters} == {
            f"bill {i} bounced" for i in range(3)
        }
        summary = await acli("dlq", "list", "--json", "--broker", vhost)
        assert json.loads(summary.stdout.splitlines()[0])["dead_letters"] == 3

        first = letters[0]
        shown = await acli(
            "dlq", "show", "bills", str(first["offset"]), "-p", str(first["partition"]),
            "--json", "--broker", vhost,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["event"]["id"] == first["event"]["id"]

        healthy.set()
        redriven = await acli("dlq", "redrive", "bills", "--limit", "2", "--broker", vhost)
        assert redriven.returncode == 0, redriven.stderr
        assert "redrove 2 dead letter(s)" in redriven.stdout
        assert await until_true(lambda: len(handled) == 2, 15), handled
        left = await acli("dlq", "list", "bills", "--json", "--broker", vhost)
        assert len(left.stdout.splitlines()) == 1

        purged = await acli("dlq", "purge", "bills", "--yes", "--broker", vhost)
        assert purged.returncode == 0, purged.stderr
        assert "deleted 1 dead letter(s)" in purged.stdout
        empty = await acli("dlq", "list", "bills", "--json", "--broker", vhost)
        assert empty.stdout.strip() == ""
        counted = await acli("dlq", "list", "--json", "--broker", vhost)
        assert json.loads(counted.stdout.splitlines()[0])["dead_letters"] == 0


async def until_true(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.1)
    return bool(condition())


# -- the demo --------------------------------------------------------------------------


def test_demo_runs_headless_and_its_invariants_hold(tmp_path: Path, vhost: str) -> None:
    url = vhost.split("?", 1)[0]
    done = cli("demo", "--broker", url, "--orders", "100", "--headless", cwd=tmp_path, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every invariant holds" in done.stdout
    again = cli("demo", "--broker", url, "--orders", "10", "--headless", cwd=tmp_path)
    assert again.returncode != 0
    assert "already holds shop events" in again.stderr


# -- replay ----------------------------------------------------------------------------


async def test_replay_moves_a_running_group_back_to_the_beginning(
    broker: RabbitBroker, vhost: str
) -> None:
    app = App("replayed", broker=broker)
    seen: list[int] = []

    @app.subscribe("bars", group="readers")
    async def read(data: dict[str, Any]) -> None:
        seen.append(data["n"])

    async with app:
        for i in range(5):
            await app.publish({"n": i}, topic="bars", type="Bar", key="same")
        assert await until_true(lambda: len(seen) == 5, 15)
        moved = await acli(
            "replay", "--group", "readers", "--topic", "bars", "--from-beginning",
            "--broker", vhost,
        )  # fmt: skip
        assert moved.returncode == 0, moved.stderr
        assert "moved to the beginning" in moved.stdout
        assert await until_true(lambda: len(seen) == 10, 15), seen
    assert seen == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
