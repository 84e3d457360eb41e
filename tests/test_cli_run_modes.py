"""``tidings run`` with --factory, --workers N and --reload, and the draining line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tidings import App
from tidings.brokers import from_url

TIMEOUT = 60.0

SERVICE = """\
import json
import os

from tidings import App

VERSION = {version}


def make_app() -> App:
    app = App("svc")

    @app.subscribe("jobs", group="workers")
    async def work(data: dict) -> None:
        with open("handled.jsonl", "a") as out:
            out.write(json.dumps({{"pid": os.getpid(), "n": data["n"], "v": VERSION}}) + "\\n")

    return app


app = make_app()
"""


@pytest.fixture
def service(tmp_path: Path) -> Path:
    (tmp_path / "svc.py").write_text(SERVICE.format(version=1))
    return tmp_path


def _env(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FORCE_COLOR"}
    env.update(NO_COLOR="1", TIDINGS_BROKER=f"sqlite:///{cwd / 'jobs.db'}?session_timeout=2")
    return env


def _start(cwd: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = cwd / f"run-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tidings.cli", "run", *args],
            cwd=cwd,
            env=_env(cwd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, log


def _wait_for(what: str, check: object, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"{what}: not seen; output:\n{log.read_text()}")
        time.sleep(0.05)


def _handled(cwd: Path) -> list[dict[str, int]]:
    path = cwd / "handled.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def _publish(cwd: Path, numbers: range) -> None:
    producer = App("producer", broker=f"sqlite:///{cwd / 'jobs.db'}")
    async with producer:
        await producer.publish_batch(
            [producer.event({"n": n}, type="Job", key=f"k{n}") for n in numbers], topic="jobs"
        )


async def _owners(cwd: Path) -> int:
    """How many members own partitions of the group 'workers'."""
    broker = from_url(f"sqlite:///{cwd / 'jobs.db'}")
    await broker.connect()
    try:
        groups = await broker.list_groups()  # type: ignore[attr-defined]
    finally:
        await broker.close()
    return len({p.owner for g in groups if g.name == "workers" for p in g.partitions if p.owner})


def _stop(proc: subprocess.Popen[bytes], log: Path) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return code, log.read_text()


def test_factory_builds_the_app_and_the_first_signal_says_what_it_drains(service: Path) -> None:
    proc, log = _start(service, "svc:make_app", "--factory")
    _wait_for("running", lambda: "running on" in log.read_text(), proc, log)
    asyncio.run(_publish(service, range(3)))
    _wait_for("handled", lambda: len(_handled(service)) == 3, proc, log)
    code, output = _stop(proc, log)
    assert code == 0, output
    assert "tidings: stopping: draining 0 event(s) in flight" in output


def test_factory_refuses_something_that_is_not_a_function(service: Path) -> None:
    proc, log = _start(service, "svc:VERSION", "--factory")
    assert proc.wait(timeout=TIMEOUT) == 2
    assert "not a function" in log.read_text()


def test_workers_share_the_group_and_a_killed_worker_comes_back(service: Path) -> None:
    proc, log = _start(service, "svc:app", "--workers", "2")
    _wait_for("two running", lambda: log.read_text().count("running on") == 2, proc, log)
    asyncio.run(_publish(service, range(20)))
    _wait_for("two owners", lambda: asyncio.run(_owners(service)) == 2, proc, log)
    asyncio.run(_publish(service, range(20, 60)))
    _wait_for("all handled", lambda: len({h["n"] for h in _handled(service)}) == 60, proc, log)
    pids = {h["pid"] for h in _handled(service) if h["n"] >= 20}
    assert len(pids) == 2, "both workers took part of the group's partitions"
    os.kill(next(iter(pids)), signal.SIGKILL)
    _wait_for("restarted", lambda: "starting it again" in log.read_text(), proc, log)
    _wait_for("three running", lambda: log.read_text().count("running on") == 3, proc, log)
    asyncio.run(_publish(service, range(60, 80)))
    _wait_for("all handled", lambda: len({h["n"] for h in _handled(service)}) == 80, proc, log)
    code, output = _stop(proc, log)
    assert code == 0, output
    assert output.count("stopped |") == 2  # both live workers drained and said so


def test_workers_refuse_an_in_process_broker(service: Path) -> None:
    (service / "mem.py").write_text('from tidings import App\napp = App("m", broker="memory://")\n')
    proc, log = _start(service, "mem:app", "--workers", "2")
    assert proc.wait(timeout=TIMEOUT) == 2
    assert "lives in one process" in log.read_text()


def test_reload_restarts_the_app_when_its_source_changes(service: Path) -> None:
    proc, log = _start(service, "svc:app", "--reload")
    _wait_for("running", lambda: "running on" in log.read_text(), proc, log)
    asyncio.run(_publish(service, range(1)))
    _wait_for("handled by v1", lambda: len(_handled(service)) == 1, proc, log)
    (service / "svc.py").write_text(SERVICE.format(version=2))
    _wait_for("restarted", lambda: log.read_text().count("running on") == 2, proc, log)
    asyncio.run(_publish(service, range(1, 2)))
    _wait_for("handled by v2", lambda: len(_handled(service)) == 2, proc, log)
    assert [h["v"] for h in _handled(service)] == [1, 2]
    code, output = _stop(proc, log)
    assert code == 0, output
    assert "svc.py changed; restarting" in output


def test_workers_that_keep_dying_stop_the_supervisor(service: Path) -> None:
    (service / "dying.py").write_text(
        "from tidings import App\n"
        "app = App('dying')\n\n"
        "@app.on_startup\n"
        "def refuse() -> None:\n"
        "    raise OSError('database unreachable')\n"
    )
    proc, log = _start(service, "dying:app", "--workers", "2")
    assert proc.wait(timeout=TIMEOUT) == 1
    output = log.read_text()
    assert output.count("starting it again") == 5
    assert "times in 60s (last: worker" in output and "stopping all" in output
    assert "{n}" not in output
