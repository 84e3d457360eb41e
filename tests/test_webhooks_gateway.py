"""Webhooks end to end: a real ``tidings serve`` delivering to a real receiver on loopback.

The gateway runs with ``--allow-private-webhooks`` (the receiver is on
127.0.0.1) except in the tests of the SSRF guard. Each delivery is checked
with the official ``standardwebhooks`` library.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks

import tidings.webhooks
from gateway_process import Served, free_port, serving
from tidings import App
from tidings.brokers.memory import MemoryBroker
from tidings.event import Event
from tidings.webhooks.dispatcher import Dispatcher, WebhookSettings
from tidings.webhooks.sender import DeliveryFailedError, Sender

TOKEN = "hook-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
FAST = (
    "--token",
    TOKEN,
    "--webhook-attempts",
    "3",
    "--webhook-retry-delay",
    "0.2",
    "--webhook-pause-after",
    "2",
    "--webhook-timeout",
    "2",
)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """An HTTP server on loopback keeping every POST; answers ``status``."""

    port: int
    status: int = 204
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(r.body) for r in self.received]

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.received)} deliveries, not {count}, in {timeout} s")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            with state.lock:
                headers = {name.lower(): value for name, value in self.headers.items()}
                state.received.append(Received(headers, body, time.monotonic()))
            time.sleep(state.delay)
            self.send_response(state.status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def broker(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hooks.db'}"


def tidings_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``tidings ARGS`` in another process."""
    return subprocess.run(
        [sys.executable, "-m", "tidings.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")},
            "NO_COLOR": "1",
        },
        check=False,
    )


def publish(served: Served, topic: str, *events: dict[str, Any]) -> None:
    response = httpx.post(
        f"{served.url}/topics/{topic}/events",
        content=json.dumps(list(events)),
        headers={**AUTH, "content-type": "application/cloudevents-batch+json"},
    )
    assert response.status_code == 202, response.text


def event(number: int, type: str = "OrderPlaced") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"e-{number}",
        "source": "/shop",
        "type": type,
        "partitionkey": "one-key",
        "data": {"number": number},
    }


def listed(served: Served) -> list[dict[str, Any]]:
    response = httpx.get(f"{served.url}/webhooks", headers=AUTH)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["webhooks"]
    return found


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.1)


def test_a_webhook_added_from_another_process_gets_signed_filtered_deliveries(
    broker: str, tmp_path: Path, receiver: Receiver
) -> None:
    with serving(broker, tmp_path, *FAST, "--allow-private-webhooks") as served:
        publish(served, "orders", event(0))  # before the webhook: its group starts at the start
        added = tidings_cli(
            "webhooks",
            "add",
            receiver.url,
            "--topic",
            "orders",
            "--filter",
            "type=OrderPlaced",
            "--allow-private-webhooks",
            "--broker",
            broker,
            cwd=tmp_path,
        )
        assert added.returncode == 0, added.stderr
        lines = dict(line.split(": ", 1) for line in added.stdout.splitlines())
        webhook_id, secret = lines["id"], lines["secret"]
        started = time.monotonic()
        publish(served, "orders", event(1, "OrderCancelled"), event(2))
        deliveries = receiver.wait_for(2)
        assert time.monotonic() - started < 10
        official = standardwebhooks.Webhook(secret)
        for delivery in deliveries:
            assert delivery.headers["content-type"] == "application/cloudevents+json"
            parsed = official.verify(delivery.body, delivery.headers)
            assert parsed == tidings.webhooks.verify(delivery.body, delivery.headers, secret)
            assert delivery.headers["webhook-id"] == parsed["id"]
        assert [b["id"] for b in receiver.bodies()] == ["e-0", "e-2"]  # no OrderCancelled
        assert receiver.bodies()[1]["data"] == {"number": 2}
        assert receiver.bodies()[1]["specversion"] == "1.0"
        (shown,) = listed(served)
        assert shown["id"] == webhook_id and "secret" not in shown
        assert shown["filter"] == {"exact": {"type": "OrderPlaced"}}
        assert shown["group"] == f"tidings-webhook-{webhook_id}"

        groups = f"{served.url}/groups"

        def group_names() -> list[str]:
            return [g["name"] for g in httpx.get(groups, headers=AUTH).json()["groups"]]

        assert shown["group"] in group_names()
        removed = tidings_cli("webhooks", "remove", webhook_id, "--broker", broker, cwd=tmp_path)
        assert removed.returncode == 0, removed.stderr
        eventually(lambda: listed(served) == [])
        # The gateway stopped delivering, and deleted the group.
        eventually(lambda: shown["group"] not in group_names())
        publish(served, "orders", event(3))
        time.sleep(2.5)
        assert [b["id"] for b in receiver.bodies()] == ["e-0", "e-2"]


def test_a_failing_endpoint_is_retried_dead_lettered_and_paused_then_resumed(
    broker: str, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.status = 500
    with serving(broker, tmp_path, *FAST, "--allow-private-webhooks") as served:
        created = httpx.post(
            f"{served.url}/webhooks",
            json={"url": receiver.url, "topic": "orders"},
            headers=AUTH,
        )
        assert created.status_code == 201, created.text
        webhook_id, secret = created.json()["id"], created.json()["secret"]
        publish(served, "orders", event(1), event(2), event(3))
        eventually(lambda: listed(served)[0]["paused"])
        (shown,) = listed(served)
        assert shown["failures"] == 2
        assert "500" in shown["last_error"] and "DeliveryFailedError" in shown["last_error"]
        time.sleep(1.5)  # paused: nothing more is sent
        attempts: dict[str, list[float]] = {}
        for delivery in receiver.received:
            standardwebhooks.Webhook(secret).verify(delivery.body, delivery.headers)
            attempts.setdefault(delivery.headers["webhook-id"], []).append(delivery.at)
        assert len(attempts["e-1"]) == len(attempts["e-2"]) == 3  # --webhook-attempts 3
        assert len(attempts.get("e-3", [])) <= 1  # at most the attempt under way when paused
        letters = httpx.get(f"{served.url}/dlq/orders", headers=AUTH).json()["dead_letters"]
        assert [x["event"]["id"] for x in letters] == ["e-1", "e-2"]
        record = letters[0]["dead_letter"]
        assert record["error_type"] == "tidings.webhooks.sender.DeliveryFailedError"
        assert record["origin_group"] == f"tidings-webhook-{webhook_id}"
        listing = tidings_cli("webhooks", "list", "--broker", broker, cwd=tmp_path)
        assert listing.returncode == 0 and "paused" in listing.stdout, listing.stderr

        receiver.status = 200
        count = len(receiver.received)
        resumed = tidings_cli("webhooks", "resume", webhook_id, "--broker", broker, cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        receiver.wait_for(count + 1)
        eventually(lambda: "e-3" in [b["id"] for b in receiver.bodies()[count:]])
        (shown,) = listed(served)
        assert (shown["paused"], shown["failures"]) == (False, 0)


def test_the_http_api_registers_lists_resumes_and_removes_behind_the_token(
    broker: str, tmp_path: Path, receiver: Receiver
) -> None:
    with serving(broker, tmp_path, *FAST, "--allow-private-webhooks") as served:
        hooks = f"{served.url}/webhooks"
        for method, path in [
            ("GET", "/webhooks"),
            ("POST", "/webhooks"),
            ("DELETE", "/webhooks/x"),
            ("POST", "/webhooks/x/resume"),
        ]:
            assert httpx.request(method, served.url + path).status_code == 401
        secret = tidings.webhooks.new_secret()
        body = {
            "url": receiver.url,
            "topic": "orders",
            "filter": {"prefix": {"type": "Order"}},
            "secret": secret,
        }
        created = httpx.post(hooks, json=body, headers=AUTH)
        assert created.status_code == 201, created.text
        assert created.json()["secret"] == secret
        webhook_id = created.json()["id"]
        for bad, why in [
            ({"topic": "orders"}, "'url' is required"),
            ({**body, "url": "ftp://example.com/"}, "http:// or https://"),
            ({**body, "secret": "s3cret"}, "whsec_"),
            ({**body, "filter": {"exactly": {}}}, "filter"),
            ({**body, "extra": 1}, "unknown field"),
        ]:
            refused = httpx.post(hooks, json=bad, headers=AUTH)
            assert refused.status_code == 400, bad
            assert why in refused.json()["error"], refused.json()
        assert httpx.post(hooks, content=b"[", headers=AUTH).status_code == 400
        assert [w["id"] for w in listed(served)] == [webhook_id]
        publish(served, "orders", event(1))
        (delivery,) = receiver.wait_for(1)
        assert tidings.webhooks.verify(delivery.body, delivery.headers, secret)["id"] == "e-1"
        resumed = httpx.post(f"{hooks}/{webhook_id}/resume", headers=AUTH)
        assert resumed.json() == {"resumed": webhook_id}
        assert httpx.post(f"{hooks}/nope/resume", headers=AUTH).status_code == 404
        assert httpx.delete(f"{hooks}/{webhook_id}", headers=AUTH).json() == {"removed": webhook_id}
        assert httpx.delete(f"{hooks}/{webhook_id}", headers=AUTH).status_code == 404
        assert listed(served) == []


def test_the_gateway_refuses_private_targets_at_registration(broker: str, tmp_path: Path) -> None:
    with serving(broker, tmp_path, "--token", TOKEN) as served:
        for url in [
            "http://127.0.0.1:9/hook",
            "http://10.0.0.7/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:9/hook",
            "http://localhost:9/hook",
        ]:
            refused = httpx.post(
                f"{served.url}/webhooks", json={"url": url, "topic": "orders"}, headers=AUTH
            )
            assert refused.status_code == 400, url
            assert "--allow-private-webhooks" in refused.json()["error"]
        assert listed(served) == []
    refused_cli = tidings_cli(
        "webhooks", "add", "http://10.0.0.7/", "--topic", "orders", "--broker", broker, cwd=tmp_path
    )
    assert refused_cli.returncode == 1
    assert "private" in refused_cli.stderr and "--allow-private-webhooks" in refused_cli.stderr


def test_the_gateway_refuses_a_private_target_again_at_delivery(
    broker: str, tmp_path: Path, receiver: Receiver
) -> None:
    # Registered where private targets were allowed; served by a gateway that refuses them.
    added = tidings_cli(
        "webhooks",
        "add",
        f"http://localhost:{receiver.port}/hook",
        "--topic",
        "orders",
        "--allow-private-webhooks",
        "--broker",
        broker,
        cwd=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    with serving(broker, tmp_path, *FAST) as served:
        publish(served, "orders", event(1))
        eventually(lambda: listed(served)[0]["failures"] == 1)
        (shown,) = listed(served)
        assert "UnsafeTargetError" in shown["last_error"] and "loopback" in shown["last_error"]
        letters = httpx.get(f"{served.url}/dlq/orders", headers=AUTH).json()["dead_letters"]
        (letter,) = letters
        assert letter["dead_letter"]["error_type"] == "tidings.webhooks.targets.UnsafeTargetError"
    assert receiver.received == []  # refused before connecting, and not retried

    def groups() -> list[str]:
        listing = tidings_cli("groups", "--json", "--broker", broker, cwd=tmp_path)
        return [json.loads(line)["name"] for line in listing.stdout.splitlines()]

    assert shown["group"] in groups()
    removed = tidings_cli("webhooks", "remove", shown["id"], "--broker", broker, cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    assert shown["group"] not in groups()  # no gateway delivers it: the command deleted it


def test_webhooks_commands_say_which_brokers_keep_no_registrations(tmp_path: Path) -> None:
    for url, says in [
        ("memory://", "lives inside one process"),
        ("nats://127.0.0.1:1", "keeps no webhook registrations"),
    ]:
        done = tidings_cli("webhooks", "list", "--broker", url, cwd=tmp_path)
        assert done.returncode != 0
        assert says in done.stderr, done.stderr


async def test_the_sender_posts_signed_to_a_checked_address_and_raises_unless_2xx(
    receiver: Receiver,
) -> None:
    webhook = tidings.webhooks.new_webhook(f"http://localhost:{receiver.port}/hook", "orders")
    sent = Event(type="OrderPlaced", source="/shop", data={"n": 1})
    sender = Sender(timeout=0.5, allow_private=True)
    try:
        await sender.send(webhook, sent)  # a name: resolved, then sent to by address
        (delivery,) = receiver.received
        assert delivery.headers["host"] == f"localhost:{receiver.port}"
        body = standardwebhooks.Webhook(webhook.secret).verify(delivery.body, delivery.headers)
        assert (body["id"], body["data"]) == (sent.id, {"n": 1})
        receiver.status = 503
        with pytest.raises(DeliveryFailedError, match="answered 503"):
            await sender.send(webhook, sent)
        receiver.status, receiver.delay = 200, 1.0
        with pytest.raises(DeliveryFailedError, match="did not answer in time"):
            await sender.send(webhook, sent)
        closed = tidings.webhooks.new_webhook(f"http://127.0.0.1:{free_port()}/", "orders")
        with pytest.raises(DeliveryFailedError, match="could not be reached"):
            await sender.send(closed, sent)
    finally:
        await sender.close()


async def test_a_registration_that_cannot_start_stops_no_other(receiver: Receiver) -> None:
    broker = MemoryBroker()
    store = broker.webhook_store()
    broken = tidings.webhooks.Webhook(
        id="broken",
        url=receiver.url,
        topic="orders",
        secret=tidings.webhooks.new_secret(),
        filter={"exactly": {"type": "x"}},  # stored without the checks of new_webhook
    )
    good = tidings.webhooks.new_webhook(receiver.url, "orders")
    await store.add_webhook(broken)
    await store.add_webhook(good)
    await broker.connect()
    dispatcher = Dispatcher(broker, store, WebhookSettings(allow_private=True, poll_interval=0.1))
    await dispatcher.start()
    try:
        assert dispatcher.running == [good.id]
        await App("shop", broker=broker).publish({"n": 1}, topic="orders", type="OrderPlaced")
        (delivery,) = await asyncio.to_thread(receiver.wait_for, 1)
        assert tidings.webhooks.verify(delivery.body, delivery.headers, good.secret)
        stored = {w.id: w for w in await store.webhooks()}
        assert stored["broken"].failures == 1
        assert "ConfigurationError" in (stored["broken"].last_error or "")
        await asyncio.sleep(0.3)  # later polls do not try it again
        assert (await store.webhooks())[0].failures == 1
    finally:
        await dispatcher.stop()
        await broker.close()
