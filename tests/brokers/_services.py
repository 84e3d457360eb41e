"""What every adapter's tests share: finding a service, or failing loudly in CI.

Import it as ``from _services import ...`` (pytest puts this folder on the path).
A test that needs a server calls :func:`service_missing` when it cannot reach
one: on a laptop the test skips with the reason; with
``TIDINGS_REQUIRE_SERVICES=1`` (set by ``.ci/run``) it fails instead, so a
missing server can never hide behind a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import NoReturn

import pytest

import tidings
from tidings import App
from tidings.errors import ConnectionError as BrokerConnectionError
from tidings.errors import PublishError

REQUIRE_SERVICES = os.environ.get("TIDINGS_REQUIRE_SERVICES") == "1"


def service_missing(reason: str) -> NoReturn:
    """Skip the test (laptop) or fail it (CI) because a service is missing."""
    if REQUIRE_SERVICES:
        pytest.fail(f"service required by TIDINGS_REQUIRE_SERVICES=1 is missing: {reason}")
    pytest.skip(reason)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``host:port`` to accept connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port, timeout=0.2):
            return True
        time.sleep(0.05)
    return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_python(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python *args`` in ``cwd``, importing the tidings under test (whatever the cwd)."""
    source = str(Path(tidings.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
        env={**os.environ, "PYTHONPATH": path},
    )


def start_python(*args: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """``python *args`` in the background, output discarded, with ``env`` added; it imports
    the tidings under test and the modules of this folder (workers)."""
    source = str(Path(tidings.__file__).resolve().parents[1])
    here = str(Path(__file__).resolve().parent)
    path = os.pathsep.join(p for p in (source, here, os.environ.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, *args],
        env={**os.environ, **env, "PYTHONPATH": path},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it takes longer than ``timeout``; by PID."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)


async def until(condition: Callable[[], bool], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``condition``; return whether it came true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.1)
    return condition()


async def publish_confirmed(
    app: App, topic: str, count: int, batch: int, on_batch: Callable[[int], Awaitable[None]]
) -> None:
    """Publish ``count`` events (``{"seq": i}``, 32 keys) in batches; a batch that failed is
    published again until it is confirmed, then ``on_batch(published so far)`` runs."""
    for start in range(0, count, batch):
        events = [
            app.event({"seq": i}, type="Item", key=f"k{i % 32}")
            for i in range(start, min(start + batch, count))
        ]
        while True:
            try:
                await app.publish_batch(events, topic=topic)
                break
            except (PublishError, BrokerConnectionError):
                await asyncio.sleep(0.2)
        await on_batch(start + batch)


def handled(log: Path) -> dict[int, list[tuple[int, str]]]:
    """What ``_faults_worker`` processes logged: seq -> (attempt, pid) of each handling."""
    seen: dict[int, list[tuple[int, str]]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                seen.setdefault(int(parts[0]), []).append((int(parts[1]), parts[2]))
    return seen


def start_faults_worker(url: str, topic: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """``tidings run _faults_worker:app`` on ``url``: its group reads ``topic`` and logs each
    handling to ``log`` (read it with :func:`handled`); ``env`` is added to its environment."""
    env = {"FAULTS_TOPIC": topic, "FAULTS_LOG": str(log), **env}
    args = ("-m", "tidings.cli", "run", "_faults_worker:app", "--broker", url)
    return start_python(*args, "--log-level", "error", env=env)


async def warm_up(producer: App, topic: str, log: Path, timeout: float) -> None:
    """Publish one ``{"seq": -1}`` event and wait until a ``_faults_worker`` logged it."""
    await producer.publish({"seq": -1}, topic=topic, type="Warmup", key="w")
    assert await until(lambda: -1 in handled(log), timeout), "workers never started"


async def kill_workers_mid_flow(
    url: str,
    topic: str,
    log: Path,
    started: Callable[[App], Awaitable[None]],
    *,
    count: int,
    batch: int,
    kills: Collection[int],
    pause: float,
    timeout: float,
    start_worker: Callable[[int], subprocess.Popen[bytes]] | None = None,
) -> list[tuple[int, str]]:
    """The SIGKILL flow of the fault tests, with ``tidings run _faults_worker:app`` workers.

    Starts two workers on ``url`` (or ``start_worker(slot)``, slot 0 and 1) and, inside
    ``async with`` a producer App on ``url``, awaits ``started(producer)`` (a warm-up that
    returns once they handle events). Then publishes ``count`` confirmed events in batches
    of ``batch``, ``pause`` seconds apart; after the batch that brings the count to each of
    ``kills``, the oldest worker is killed with SIGKILL and a new one started in its slot.
    Asserts that every event is handled within ``timeout`` seconds, by at least three
    processes (the killed workers and the new ones), and returns ``(attempt, pid)`` of each
    handling of them. The workers are stopped however it ends.
    """
    start = start_worker or (lambda _: start_faults_worker(url, topic, log))
    producer = App("producer", broker=url)
    workers = [start(slot) for slot in range(2)]
    killed = 0
    try:
        async with producer:
            await started(producer)

            async def chaos(published: int) -> None:
                nonlocal killed
                await asyncio.sleep(pause)
                if published in kills:
                    slot, killed = killed % 2, killed + 1
                    os.kill(workers[slot].pid, signal.SIGKILL)
                    workers[slot].wait(5)
                    workers[slot] = start(slot)

            await publish_confirmed(producer, topic, count, batch, chaos)
        done = await until(lambda: set(range(count)) <= set(handled(log)), timeout)
        missing = sorted(set(range(count)) - set(handled(log)))
        assert done, f"{len(missing)} confirmed events never handled, e.g. {missing[:5]}"
        handlings = [h for seq, found in handled(log).items() if seq >= 0 for h in found]
        assert len({pid for _, pid in handlings}) >= 3, "killed workers and replacements handled"
        return handlings
    finally:
        for worker in workers:
            stop_process(worker)


def follow_two_events(url: str, topic: str, cwd: Path, timeout: float) -> list[int]:
    """Run ``tidings tail TOPIC --follow --limit 2 --json`` in a process; once it says it
    follows, publish ``{"n": 0}`` and ``{"n": 1}`` to ``topic``; return the ``n`` of each
    event it printed (asserting it exited 0)."""
    source = str(Path(tidings.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
    args = ["tail", topic, "--follow", "--limit", "2", "--broker", url, "--json"]
    tail = subprocess.Popen(
        [sys.executable, "-m", "tidings.cli", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stderr is not None
        line = tail.stderr.readline()  # "following ..." once subscribed
        assert "following" in line, line

        async def publish() -> None:
            app = App("tailed", broker=url)
            async with app:
                for n in range(2):
                    await app.publish({"n": n}, topic=topic, type="Reading")

        asyncio.run(publish())
        out, err = tail.communicate(timeout=timeout)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
    assert tail.returncode == 0, err
    return [json.loads(row)["data"]["n"] for row in out.splitlines()]


def until_stopped(pid: int, timeout: float = 5.0) -> bool:
    """Wait until every thread of process ``pid`` is stopped (after SIGSTOP); Linux /proc."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                # The state follows the ")" closing the command name: "pid (comm) S ...".
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
        if states and all(state in ("T", "t") for state in states):
            return True
        time.sleep(0.01)
    return False
