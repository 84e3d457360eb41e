from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from test_cli import _env, _read_until, _start, _stop, _tidings
from tidings import App, RetryPolicy
from tidings._logfields import trace_id
from tidings.logs import JsonFormatter

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
TIMEOUT = 10.0


def fields(record: logging.LogRecord) -> dict[str, Any]:
    value = getattr(record, "tidings", None)
    assert isinstance(value, dict), record
    return value


async def test_a_retry_and_a_dead_letter_log_one_line_each_with_the_event_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tidings")
    app = App("logged", broker="memory://logs")
    failures = 0

    @app.subscribe(
        "orders",
        group="billing",
        retry=RetryPolicy(max_attempts=2, initial_delay=0.5, jitter="none"),
    )
    async def bill(data: dict[str, int]) -> None:
        nonlocal failures
        failures += 1
        raise ValueError("card declined")

    async with app:
        event = await app.publish(
            {"n": 1},
            topic="orders",
            type="OrderPlaced",
            correlationid="checkout-7",
            traceparent=TRACEPARENT,
        )
        deadline = time.monotonic() + TIMEOUT
        while not any("dead-lettered" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)

    records = [r for r in caplog.records if hasattr(r, "tidings")]
    assert [fields(r)["outcome"] for r in records] == ["retry", "dead_letter"]
    retry, dead = records
    for record, attempt in ((retry, 1), (dead, 2)):
        assert fields(record)["attempt"] == attempt
        assert {
            k: fields(record)[k]
            for k in ("event_id", "type", "topic", "group", "correlation_id", "trace_id")
        } == {
            "event_id": event.id,
            "type": "OrderPlaced",
            "topic": "orders",
            "group": "billing",
            "correlation_id": "checkout-7",
            "trace_id": TRACE,
        }
        assert fields(record)["error"] == "ValueError('card declined')"
    assert retry.levelno == logging.INFO
    assert fields(retry)["delay"] == 0.5
    assert dead.levelno == logging.WARNING
    assert fields(dead)["dead_letter_topic"] == "orders.dlq"
    message = retry.getMessage()
    assert message.startswith(f"logged.bill: event {event.id} (OrderPlaced) on orders")
    assert f"trace {TRACE}" in message and "correlation checkout-7" in message
    assert "failed on attempt 1 with ValueError('card declined'); retrying in 0.5s" in message
    assert dead.getMessage().endswith("; dead-lettered to orders.dlq")
    assert failures == 2


def test_trace_id_is_the_second_field_of_a_traceparent() -> None:
    assert trace_id(TRACEPARENT) == TRACE
    assert trace_id(None) is None
    assert trace_id("not-a-traceparent") is None


def test_the_json_formatter_writes_one_object_with_the_event_fields() -> None:
    record = logging.LogRecord(
        "tidings.consumer", logging.WARNING, __file__, 1, "a\nb %s", ("c",), None
    )
    record.tidings = {"event_id": "e1", "attempt": 2, "delay": 0.5}
    try:
        raise KeyError("k")
    except KeyError:
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["level"] == "WARNING"
    assert parsed["logger"] == "tidings.consumer"
    assert parsed["message"] == "a\nb c"
    assert parsed["event_id"] == "e1" and parsed["attempt"] == 2 and parsed["delay"] == 0.5
    assert "KeyError" in parsed["exception"]
    assert parsed["time"].endswith("+00:00")


def test_an_event_field_never_replaces_the_record_fields() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", (), None)
    record.tidings = {"message": "spoofed", "level": "NONE", "topic": object()}
    parsed = json.loads(JsonFormatter().format(record))
    assert parsed["message"] == "hello" and parsed["level"] == "INFO"
    assert parsed["topic"].startswith("<object")


FAILING = textwrap.dedent(
    """
    from tidings import App, RetryPolicy

    app = App("jsonlogs")


    @app.subscribe("jobs", group="workers", retry=RetryPolicy(max_attempts=1))
    async def work(data: dict) -> None:
        raise ValueError("bad job")
    """
)


def test_run_with_json_logs_writes_only_json_lines(tmp_path: Path) -> None:
    (tmp_path / "jsonlogs.py").write_text(FAILING)
    url = f"sqlite:///{tmp_path / 'jsonlogs.db'}"
    proc = _start(
        "run", "jsonlogs:app", "--log-format", "json", cwd=tmp_path, env=_env(TIDINGS_BROKER=url)
    )
    output = _read_until(proc, "running on")

    async def publish() -> None:
        async with App("publisher", broker=url) as publisher:
            await publisher.publish({"n": 1}, topic="jobs", type="Job", id="job-1")

    asyncio.run(publish())
    output += _read_until(proc, "dead-lettered")
    code, rest = _stop(proc, signal.SIGINT)
    output += rest
    assert code == 0, output
    lines = [json.loads(line) for line in output.splitlines()]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    (failure,) = [line for line in lines if line.get("outcome") == "dead_letter"]
    assert failure["event_id"] == "job-1"
    assert failure["type"] == "Job"
    assert failure["group"] == "workers"
    assert failure["dead_letter_topic"] == "jobs.dlq"
    assert failure["level"] == "WARNING"
    assert any("stopped" in line["message"] for line in lines)


def test_run_with_json_logs_reports_its_own_error_as_json(tmp_path: Path, busy_port: int) -> None:
    (tmp_path / "jsonlogs.py").write_text(FAILING)
    port = str(busy_port)
    command = ("run", "jsonlogs:app", "--log-format", "json", "--metrics-port", port)
    result = _tidings(*command, cwd=tmp_path, env=_env(TIDINGS_BROKER="memory://"))
    assert result.returncode == 1, result.stderr
    (line,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert line["level"] == "ERROR"
    assert f"cannot listen on 127.0.0.1:{port}" in line["message"]


def test_run_refuses_an_unknown_log_format(tmp_path: Path) -> None:
    (tmp_path / "jsonlogs.py").write_text(FAILING)
    result = _tidings("run", "jsonlogs:app", "--log-format", "yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "--log-format must be one of text, json, not 'yaml'" in result.stderr
