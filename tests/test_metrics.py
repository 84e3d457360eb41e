from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from test_cli import _env, _read_until, _start, _stop, _tidings
from tidings import App, RetryPolicy
from tidings.errors import ConfigurationError
from tidings.metrics import Metrics

sys.path.insert(0, str(Path(__file__).parent / "brokers"))
from _services import free_port, wait_for_port

TIMEOUT = 10.0
RETRY_ONCE = RetryPolicy(max_attempts=2, initial_delay=0.01, jitter="none")


@pytest.fixture(params=["memory", "sqlite"])
def broker_url(
    request: pytest.FixtureRequest, tmp_path: Path, memory_url: Callable[[], str]
) -> str:
    if request.param == "memory":
        return memory_url()
    return f"sqlite:///{tmp_path / 'metrics.db'}"


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    sample = registry.get_sample_value(name, labels)
    return 0.0 if sample is None else sample


def lag(registry: CollectorRegistry, group: str, topic: str) -> float:
    """The group's lag on ``topic``, summed over the partitions it has."""
    return sum(
        sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "tidings_consumer_lag"
        and sample.labels["group"] == group
        and sample.labels["topic"] == topic
    )


async def until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_counts_handled_failed_retried_dead_lettered_and_published(broker_url: str) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    app = App("counted", broker=broker_url)
    metrics.install(app)

    @app.subscribe("jobs", group="workers", retry=RETRY_ONCE)
    async def work(data: dict[str, int]) -> None:
        if data["n"] == 2:
            raise ValueError("bad job")

    job = {"topic": "jobs", "type": "Job", "group": "workers"}
    async with app:
        await app.publish({"n": 1}, topic="jobs", type="Job")
        await app.publish({"n": 2}, topic="jobs", type="Job")
        await until(lambda: value(registry, "tidings_events_dead_lettered_total", **job) == 1)
        await until(lambda: value(registry, "tidings_events_handled_total", **job) == 1)

    assert value(registry, "tidings_events_published_total", topic="jobs", type="Job") == 2
    assert value(registry, "tidings_events_failed_total", **job) == 2
    assert value(registry, "tidings_events_retried_total", **job) == 1
    assert value(registry, "tidings_handler_duration_seconds_count", **job) == 3
    assert value(registry, "tidings_handler_duration_seconds_sum", **job) > 0
    assert value(registry, "tidings_handlers_in_flight", group="workers") == 0
    # The dead letter went to the broker directly, not through app.publish.
    assert value(registry, "tidings_events_published_total", topic="jobs.dlq", type="Job") == 0


async def test_in_flight_and_lag_while_a_handler_is_held(broker_url: str) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    app = App("held", broker=broker_url)
    metrics.install(app)
    release = asyncio.Event()
    started = asyncio.Event()

    @app.subscribe("jobs", group="slow")
    async def work(data: dict[str, int]) -> None:
        started.set()
        await release.wait()

    for n in range(3):  # stored before the group starts reading: all three are lag
        await app.publish({"n": n}, topic="jobs", type="Job")
    async with app:
        try:
            await asyncio.wait_for(started.wait(), TIMEOUT)
            assert value(registry, "tidings_handlers_in_flight", group="slow") == 1
            await metrics.refresh_lag(app)
            assert lag(registry, "slow", "jobs") == 3
            async with metrics.track_lag(app, interval=0.01):
                release.set()
                await until(lambda: lag(registry, "slow", "jobs") == 0)
        finally:
            release.set()
        assert value(registry, "tidings_handlers_in_flight", group="slow") == 0
    job = {"topic": "jobs", "type": "Job", "group": "slow"}
    assert value(registry, "tidings_events_handled_total", **job) == 3


async def test_a_batch_handler_counts_each_event() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    app = App("batched", broker="memory://metrics-batch")
    metrics.install(app)
    seen: list[int] = []

    @app.subscribe("jobs", group="batch", batch_size=3, batch_timeout=0.05)
    async def work(data: list[dict[str, int]]) -> None:
        seen.extend(d["n"] for d in data)

    async with app:
        for n in range(3):
            await app.publish({"n": n}, topic="jobs", type="Job")
        await until(lambda: len(seen) == 3)
    job = {"topic": "jobs", "type": "Job", "group": "batch"}
    assert value(registry, "tidings_events_handled_total", **job) == 3


def test_one_registry_takes_one_metrics() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        Metrics(registry)


async def test_track_lag_refuses_a_non_positive_interval() -> None:
    metrics = Metrics(CollectorRegistry())
    with pytest.raises(ConfigurationError, match="positive"):
        async with metrics.track_lag(App("x", broker="memory://"), interval=0):
            pass


def test_without_the_extra_importing_metrics_names_it() -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "import tidings.cli.run\n"  # the CLI itself does not need it
        "try:\n    import tidings.metrics\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == (
        "ConfigurationError tidings.metrics needs prometheus-client: pip install 'tidings[metrics]'"
    )


SERVED = textwrap.dedent(
    """
    from tidings import App, RetryPolicy

    app = App("served")


    @app.subscribe("jobs", group="workers", retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    async def work(data: dict) -> None:
        if data["n"] == 2:
            raise ValueError("bad job")
    """
)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_run_serves_metrics_over_http(tmp_path: Path) -> None:
    (tmp_path / "served.py").write_text(SERVED)
    database = tmp_path / "served.db"
    port = free_port()
    env = _env(TIDINGS_BROKER=f"sqlite:///{database}")
    proc = _start("run", "served:app", "--metrics-port", str(port), cwd=tmp_path, env=env)
    try:
        started = _read_until(proc, "metrics on")
        assert f"http://127.0.0.1:{port}/metrics" in started
        assert wait_for_port("127.0.0.1", port, TIMEOUT)

        async def publish() -> None:
            async with App("publisher", broker=f"sqlite:///{database}") as publisher:
                for n in (1, 2, 3):
                    await publisher.publish({"n": n}, topic="jobs", type="Job")

        asyncio.run(publish())
        job = (("group", "workers"), ("topic", "jobs"), ("type", "Job"))
        deadline = time.monotonic() + TIMEOUT
        while True:
            samples = scrape(port)
            if samples.get(("tidings_events_dead_lettered_total", job)) == 1 and (
                samples.get(("tidings_events_handled_total", job)) == 2
            ):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"counters not reached: {samples}")
            time.sleep(0.05)
        assert samples[("tidings_events_failed_total", job)] == 2
        assert samples[("tidings_events_retried_total", job)] == 1
        assert samples[("tidings_handlers_in_flight", (("group", "workers"),))] == 0
        assert samples[("tidings_handler_duration_seconds_count", job)] == 4
        every = tuple(sorted((*job, ("le", "+Inf"))))
        assert samples[("tidings_handler_duration_seconds_bucket", every)] == 4
        code, rest = _stop(proc, signal.SIGINT)
    finally:
        if proc.poll() is None:  # a failed assertion: do not leave the server running
            proc.kill()
            proc.communicate()
    assert code == 0, started + rest
    assert "Traceback" not in started + rest


def test_run_refuses_a_busy_metrics_port(tmp_path: Path, busy_port: int) -> None:
    (tmp_path / "served.py").write_text(SERVED)
    env = _env(TIDINGS_BROKER="memory://")
    result = _tidings("run", "served:app", "--metrics-port", str(busy_port), cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr
    assert f"error: --metrics-port: cannot listen on 127.0.0.1:{busy_port}" in result.stderr
