"""Webhook signatures (interoperable with ``standardwebhooks``), the SSRF guard, the stores."""

from __future__ import annotations

import base64
import ipaddress
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import standardwebhooks

from tidings.brokers.memory import MemoryBroker
from tidings.brokers.sqlite import SqliteBroker
from tidings.errors import ConfigurationError
from tidings.webhooks import (
    MemoryWebhookStore,
    UnsafeTargetError,
    WebhookStorage,
    WebhookStore,
    WebhookVerificationError,
    new_secret,
    new_webhook,
    register,
    signed_headers,
    verify,
)
from tidings.webhooks.targets import refusal, resolve, split_target

BODY = b'{"specversion":"1.0","id":"e-1","source":"/shop","type":"OrderPlaced","data":{"n":1}}'


def test_the_official_library_verifies_our_signature() -> None:
    secret = new_secret()
    headers = signed_headers(secret, "e-1", BODY)
    assert standardwebhooks.Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    tampered = BODY.replace(b'"n":1', b'"n":2')
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(tampered, headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new_secret()).verify(BODY, headers)


def test_our_verify_accepts_the_official_librarys_signature() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the spec's example secret
    now = datetime.now(tz=UTC)
    official = standardwebhooks.Webhook(secret)
    signature = official.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", now, BODY.decode())
    headers = {
        "Webhook-Id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "Webhook-Timestamp": str(int(now.timestamp())),
        "Webhook-Signature": f"v1,bm90IHRoaXMgb25l {signature}",  # a rotated secret's first
    }
    assert verify(BODY, headers, secret) == json.loads(BODY)
    assert verify(BODY.decode(), headers, secret)["id"] == "e-1"


def test_verify_refuses_a_changed_body_a_wrong_secret_and_missing_headers() -> None:
    secret = new_secret()
    headers = signed_headers(secret, "e-1", BODY)
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(BODY + b" ", headers, secret)
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(BODY, headers, new_secret())
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(BODY, {**headers, "webhook-id": "e-2"}, secret)
    for name in headers:
        with pytest.raises(WebhookVerificationError, match="missing"):
            verify(BODY, {k: v for k, v in headers.items() if k != name}, secret)
    with pytest.raises(WebhookVerificationError, match="not Unix seconds"):
        verify(BODY, {**headers, "webhook-timestamp": "soon"}, secret)


def test_verify_refuses_a_timestamp_more_than_five_minutes_away() -> None:
    secret = new_secret()
    signed_at = int(time.time())
    headers = signed_headers(secret, "e-1", BODY, timestamp=signed_at)
    assert verify(BODY, headers, secret, now=signed_at + 299)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(BODY, headers, secret, now=signed_at + 301)
    with pytest.raises(WebhookVerificationError, match="future"):
        verify(BODY, headers, secret, now=signed_at - 301)
    # The official library keeps the same window.
    old = signed_headers(secret, "e-1", BODY, timestamp=signed_at - 301)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError, match="too old"):
        standardwebhooks.Webhook(secret).verify(BODY, old)


def test_a_secret_is_whsec_and_24_to_64_bytes_of_base64() -> None:
    made = new_secret()
    assert made.startswith("whsec_") and len(base64.b64decode(made[6:])) == 32
    for bad, why in [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "starts with 'whsec_'"),
        ("whsec_not base64!", "not base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 bytes"),
    ]:
        with pytest.raises(ConfigurationError, match=why):
            new_webhook("https://example.com/hook", "orders", secret=bad)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://127.8.9.10/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.1.1/hook", "private"),
        ("http://172.16.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://100.64.0.1/hook", "not globally routable"),
        ("http://[::1]:8080/hook", "loopback"),
        ("http://[::]/hook", "unspecified"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://[fc00::1]/hook", "private"),
        ("http://[ff02::1]/hook", "multicast"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://[::ffff:10.0.0.1]/hook", "private"),
        ("http://[::ffff:169.254.169.254]/hook", "link-local"),
        ("http://[2002:a00:1::]/hook", "private"),  # 6to4 of 10.0.0.1
        ("http://[64:ff9b::a9fe:a9fe]/hook", "link-local"),  # NAT64 of 169.254.169.254
        ("http://localhost:8080/hook", "loopback"),
        ("http://2130706433/hook", "loopback"),  # 127.0.0.1 as one number
        ("http://0x7f.1/hook", "loopback"),
    ],
)
async def test_registration_refuses_targets_inside_the_network(url: str, why: str) -> None:
    store = MemoryWebhookStore()
    with pytest.raises(UnsafeTargetError, match=why) as caught:
        await register(store, new_webhook(url, "orders"))
    assert "--allow-private-webhooks" in str(caught.value)
    assert await store.webhooks() == []
    allowed = await register(store, new_webhook(url, "orders"), allow_private=True)
    assert [w.id for w in await store.webhooks()] == [allowed.id]


async def test_a_public_address_is_allowed_and_a_name_that_does_not_resolve_is_refused() -> None:
    assert refusal(ipaddress.ip_address("93.184.216.34")) is None
    assert refusal(ipaddress.ip_address("2606:2800:220:1:248:1893:25c8:1946")) is None
    store = MemoryWebhookStore()
    await register(store, new_webhook("https://93.184.216.34/hook", "orders"))
    with pytest.raises(ConfigurationError, match="does not resolve"):
        await register(store, new_webhook("https://no-such-host.invalid/hook", "orders"))
    assert len(await store.webhooks()) == 1


async def test_resolve_checks_every_address_of_a_name() -> None:
    found = await resolve(split_target("http://localhost:9/x"), allow_private=True)
    assert all(address.is_loopback for address in found)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/hook", "http:// or https://"),
        ("example.com/hook", "http:// or https://"),
        ("http:///hook", "names no host"),
        ("https://user:pw@example.com/hook", "no user or password"),
        ("https://example.com:99999/hook", "not valid"),
    ],
)
def test_a_webhook_url_is_absolute_http(url: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match=why):
        new_webhook(url, "orders")


def test_a_webhook_needs_a_valid_topic_and_filter() -> None:
    with pytest.raises(ConfigurationError):
        new_webhook("https://example.com/hook", "")
    with pytest.raises(ConfigurationError):
        new_webhook("https://example.com/hook", "orders.*")
    with pytest.raises(ConfigurationError):
        new_webhook("https://example.com/hook", "orders", filter={"exactly": {"type": "x"}})


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[WebhookStore]:
    broker: MemoryBroker | SqliteBroker
    if request.param == "memory":
        broker = MemoryBroker()
    else:
        broker = SqliteBroker(str(tmp_path / "hooks.db"))
    assert isinstance(broker, WebhookStorage)
    await broker.connect()
    try:
        yield broker.webhook_store()
    finally:
        await broker.close()


async def test_a_store_keeps_registrations_and_their_delivery_state(storage: WebhookStore) -> None:
    first = new_webhook("https://example.com/a", "orders", filter={"exact": {"type": "Placed"}})
    second = new_webhook("https://example.com/b", "payments")
    await storage.add_webhook(first)
    await storage.add_webhook(second)
    with pytest.raises(ConfigurationError, match="exists already"):
        await storage.add_webhook(first)
    assert await storage.webhooks() == [first, second]
    assert await storage.count_failure(first.id, "DeliveryFailedError: 500") == 1
    assert await storage.count_failure(first.id, "DeliveryFailedError: 503") == 2
    assert await storage.count_failure("nope", "x") == 0
    assert await storage.set_paused(first.id, True)
    (stored, _) = await storage.webhooks()
    assert (stored.paused, stored.failures, stored.last_error) == (
        True,
        2,
        "DeliveryFailedError: 503",
    )
    assert stored.filter == {"exact": {"type": "Placed"}} and stored.secret == first.secret
    assert await storage.set_paused(first.id, False)
    (stored, _) = await storage.webhooks()
    assert (stored.paused, stored.failures) == (False, 0)
    await storage.count_failure(first.id, "x")
    await storage.clear_failures(first.id)
    assert (await storage.webhooks())[0].failures == 0
    assert not await storage.set_paused("nope", True)
    assert await storage.remove_webhook(first.id)
    assert not await storage.remove_webhook(first.id)
    assert await storage.webhooks() == [second]
    assert "secret" not in second.to_dict() and second.to_dict()["group"].endswith(second.id)


async def test_the_embedded_brokers_registrations_are_seen_by_another_client(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "shared.db")
    one, two = SqliteBroker(path), SqliteBroker(path)
    await one.connect()
    await two.connect()
    try:
        webhook = new_webhook("https://example.com/a", "orders")
        await one.webhook_store().add_webhook(webhook)
        assert await two.webhook_store().webhooks() == [webhook]
    finally:
        await one.close()
        await two.close()
