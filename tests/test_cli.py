from __future__ import annotations

import contextlib
import io
import json
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rich.console import Console

import tidings
from tidings.examples import quickstart

TIMEOUT = 20.0

PROBE = textwrap.dedent(
    """
    from tidings import App, Event

    app = App("probe", broker="memory://")
    default_broker = App("envprobe")
    not_an_app = "hello"


    @app.subscribe("pings")
    async def on_ping(event: Event) -> None:
        pass
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory holding a small app module, used as the working directory."""
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "broken.py").write_text('from tidings import App\napp = App("")\n')
    return tmp_path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TIDINGS_BROKER", "FORCE_COLOR")}
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def _tidings(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidings.cli", *args],
        cwd=cwd,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def _start(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tidings.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _read_until(proc: subprocess.Popen[bytes], needle: str) -> str:
    """Read stderr until a line containing ``needle`` arrives (or fail after TIMEOUT)."""
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stderr, selectors.EVENT_READ)
        while needle.encode() not in seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                proc.kill()
                pytest.fail(f"no {needle!r} on stderr within {TIMEOUT}s: {seen.decode()}")
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                pytest.fail(f"process exited before printing {needle!r}: {seen.decode()}")
            seen += chunk
    return seen.decode()


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        _, rest = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, rest.decode()


def test_version(tmp_path: Path) -> None:
    result = _tidings("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"tidings {tidings.__version__}"


def test_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "tidings"
    if not script.exists():
        pytest.skip("the tidings console script is not installed next to this Python")
    result = subprocess.run(
        [script, "--version"], capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path
    )
    assert result.returncode == 0
    assert result.stdout.startswith("tidings ")


def test_import_tidings_loads_no_cli_dependency(tmp_path: Path) -> None:
    code = "import sys, tidings; print(sorted({'typer', 'rich'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.stdout.strip() == "[]"


def test_run_stops_on_sigterm_and_redacts_the_broker_password(project: Path) -> None:
    proc = _start(
        "run", "probe:app", "--broker", "memory://user:s3cret@probe", cwd=project, env=_env()
    )
    started = _read_until(proc, "running on")
    code, rest = _stop(proc, signal.SIGTERM)
    output = started + rest
    assert code == 0, output
    assert "app 'probe' running on memory://user:***@probe" in started
    assert "probe.on_ping <- pings" in started
    assert "app 'probe' stopped | probe.on_ping: received 0, handled 0" in rest
    assert "s3cret" not in output
    assert "Traceback" not in output


def test_run_stops_on_sigint_and_uses_the_env_broker(project: Path) -> None:
    env = _env(TIDINGS_BROKER="memory://from-env")
    proc = _start("run", "probe:default_broker", "--log-level", "warning", cwd=project, env=env)
    started = _read_until(proc, "running on")
    code, rest = _stop(proc, signal.SIGINT)
    assert code == 0, started + rest
    assert "app 'envprobe' running on memory://from-env" in started
    assert "app 'envprobe' stopped" in rest
    assert "Traceback" not in started + rest


FAILING = textwrap.dedent(
    """
    from tidings import App, Message, Reject
    from tidings.supervision import Supervision
    from tidings.brokers.memory import MemoryBroker


    class DeadLettersFail(MemoryBroker):
        async def publish(self, topic, messages):
            if topic.endswith(".dlq"):
                raise OSError("disk full")
            await super().publish(topic, messages)


    event = b'{"specversion":"1.0","id":"1","source":"/t","type":"T"}'
    broker = DeadLettersFail()
    broker.hub.append("jobs", [Message(event)])
    supervision = Supervision(max_restarts=1, initial_backoff=0.01)
    app = App("failing", broker=broker, supervision=supervision)


    @app.subscribe("jobs")
    async def work(data: dict) -> None:
        raise Reject("bad job")
    """
)


def test_run_exits_non_zero_when_a_subscription_fails_for_good(tmp_path: Path) -> None:
    (tmp_path / "failing.py").write_text(FAILING)
    result = _tidings("run", "failing:app", "--log-level", "error", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "error: subscription 'failing.work' failed: OSError('disk full')" in result.stderr


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["run", "nope:app"], 2, "error: cannot import module 'nope': No module named 'nope'"),
        (["run", "probe:missing"], 2, "error: module 'probe' has no attribute 'missing'"),
        (["run", "probe:not_an_app"], 2, "error: probe:not_an_app is a str, not a tidings.App"),
        (["run", ":app"], 2, "is not MODULE:APP"),
        (["run"], 2, "error: Missing argument 'MODULE:APP'"),
        (["run", "probe", "--broker", "nosuch://"], 2, "no broker for URL scheme 'nosuch'"),
        (["run", "broken:app"], 1, "an App needs a non-empty name"),
        (["demo", "--broker", "no-scheme"], 2, "broker URL 'no-scheme' has no scheme"),
        (["demo", "--fail-rate", "1.5"], 2, "Invalid value for '--fail-rate'"),
        (["demo", "--orders", "-1"], 2, "Invalid value for '--orders'"),
        (["frobnicate"], 2, "error: No such command 'frobnicate'"),
    ],
)
def test_user_mistakes_print_one_line(
    project: Path, args: list[str], exit_code: int, message: str
) -> None:
    result = _tidings(*args, cwd=project)
    assert result.returncode == exit_code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_error_messages_redact_passwords(project: Path) -> None:
    result = _tidings("run", "probe", "--broker", "nosuch://user:s3cret@host", cwd=project)
    assert result.returncode == 2
    assert "nosuch://user:***@host" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout


def test_demo_ignores_the_env_broker_and_runs_the_shop(tmp_path: Path) -> None:
    result = _tidings(
        "demo", "--orders", "20", "--rate", "0", cwd=tmp_path, env=_env(TIDINGS_BROKER="nosuch://")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "tidings demo: 20 orders at as fast as possible on sqlite:///./tidings-demo.db" in out
    assert "orders: 20 placed" in out
    assert "ok    every order ended confirmed and shipped, or cancelled (20 orders)" in out
    assert "done in" in out and "every invariant holds" in out
    # stdout is not a terminal: progress lines, no live screen
    assert "] placed 20/20" in out
    assert "\x1b[" not in out
    assert "Traceback" not in result.stderr


def test_demo_starts_from_a_fresh_database_each_run(tmp_path: Path) -> None:
    for _ in range(2):
        result = _tidings("demo", "--orders", "10", "--rate", "0", "--headless", cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "orders: 10 placed" in result.stdout  # not 20: the first run's log is gone
        assert "one email per confirmed order" in result.stdout
    assert (tmp_path / "tidings-demo.db").exists()
    # The order saga's instances: next to the database, and of this run only.
    with contextlib.closing(sqlite3.connect(tmp_path / "tidings-demo-sagas.db")) as sagas:
        assert sagas.execute("SELECT count(*) FROM tidings_sagas").fetchone() == (10,)


def test_the_demo_registers_its_schemas_and_its_events_name_them(tmp_path: Path) -> None:
    result = _tidings("demo", "--orders", "10", "--rate", "0", "--headless", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    url = "sqlite:///./tidings-demo.db"
    listed = _tidings("schema", "list", "--broker", url, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    types = {json.loads(line)["type"] for line in listed.stdout.splitlines()}
    assert {"OrderPlaced", "InventoryReserved", "PaymentProcessed"} <= types
    tail = _tidings(
        "tail", "inventory.events", "--from-beginning", "--json", "--broker", url, cwd=tmp_path
    )
    reserved = [
        json.loads(line)
        for line in tail.stdout.splitlines()
        if json.loads(line)["type"] == "InventoryReserved"
    ]
    assert reserved and all(
        e["dataschema"] == "urn:tidings:schema:InventoryReserved:1" for e in reserved
    )


def test_demo_with_a_seed_and_rate_0_repeats_its_outcome_counts(tmp_path: Path) -> None:
    summaries = []
    for _ in range(2):
        result = _tidings(
            "demo", "--orders", "150", "--rate", "0", "--seed", "11", "--headless", cwd=tmp_path
        )
        assert result.returncode == 0, result.stdout + result.stderr
        summaries.append(
            [
                line
                for line in result.stdout.splitlines()
                if line.startswith(("orders:", "stock:", "emails:", "events stored:"))
            ]
        )
    assert len(summaries[0]) == 4 and summaries[0] == summaries[1]
    assert "payment failed" in summaries[0][0]


def test_demo_refuses_a_given_broker_that_holds_shop_events(tmp_path: Path) -> None:
    args = ("demo", "--orders", "5", "--rate", "0", "--broker", "sqlite:///./mine.db")
    first = _tidings(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (tmp_path / "mine-outbox.jsonl").exists()
    second = _tidings(*args, cwd=tmp_path)
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith("error: sqlite:///./mine.db already holds shop events")


def test_demo_on_the_memory_broker(tmp_path: Path) -> None:
    result = _tidings(
        "demo", "--orders", "30", "--rate", "0", "--broker", "memory://", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "orders: 30 placed" in result.stdout
    assert "| lag 0 |" in result.stdout  # the in-memory broker is inspectable too
    assert not (tmp_path / "tidings-demo.db").exists()
    assert not (tmp_path / "tidings-demo-sagas.db").exists()  # the saga's state: in memory


async def test_quickstart_checks_its_own_expectations() -> None:
    buffer = io.StringIO()
    assert await quickstart.run("memory://quickstart-test", Console(file=buffer, width=200))
    assert "ok    the counters agree" in buffer.getvalue()


async def test_quickstart_reports_a_failed_expectation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quickstart, "TIMEOUT", 0.0)  # stop waiting at once
    # The app's graceful stop may still finish every handling after the wait: what is
    # tested is the report of an expectation that failed, so make one fail for sure.
    monkeypatch.setattr(quickstart, "_done", lambda app, journal: False)
    buffer = io.StringIO()
    assert not await quickstart.run(console=Console(file=buffer, width=200))
    out = buffer.getvalue()
    assert "FAIL  everything settled within 0s" in out
    assert "some expectations FAILED" in out
