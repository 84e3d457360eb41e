"""The STOMP adapter against RabbitMQ's STOMP plugin (the system RabbitMQ, port 61613).

Each module of tests runs in a vhost of its own, deleted at the end with every queue
the tests made (the shared RabbitMQ has few file descriptors to spare).
"""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from _services import port_open, service_missing

from tidings.brokers.stomp import StompBroker
from tidings.testing.conformance import BrokerConformance

HOST, PORT, MANAGEMENT = "127.0.0.1", 61613, 15672


def management(method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://{HOST}:{MANAGEMENT}{path}", data=data, method=method)
    request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read()
    return json.loads(text) if text else None


def stomp_vhost() -> Iterator[str]:
    """A fresh vhost for guest, deleted afterwards; yields the ``stomp://`` URL on it."""
    if not port_open(HOST, PORT):
        service_missing(
            f"no STOMP server at {HOST}:{PORT} (rabbitmq-plugins enable rabbitmq_stomp)"
        )
    if not port_open(HOST, MANAGEMENT):
        service_missing(f"no RabbitMQ management API at {HOST}:{MANAGEMENT}")
    name = f"tidings-stomp-{uuid.uuid4().hex[:10]}"
    management("PUT", f"/api/vhosts/{name}")
    permissions = {"configure": ".*", "write": ".*", "read": ".*"}
    management("PUT", f"/api/permissions/{name}/guest", permissions)
    try:
        yield f"stomp://guest:guest@{HOST}:{PORT}/{name}"
    finally:
        management("DELETE", f"/api/vhosts/{name}")


vhost = pytest.fixture(scope="module")(stomp_vhost)


def _no_history(self: Any, *args: Any, **kwargs: Any) -> None:
    pytest.skip(
        "a topic is a routing key of amq.topic: an event published while no group's queue "
        "is bound to it is dropped, so a group created later never sees it"
    )


class TestStompBroker(BrokerConformance):
    test_group_less_reader_sees_what_is_published_while_open = _no_history

    @pytest.fixture
    async def broker_factory(self, vhost: str) -> AsyncIterator[Callable[[], StompBroker]]:
        made: list[StompBroker] = []

        def make() -> StompBroker:
            broker = StompBroker.from_url(vhost + "?retry_grace=1")
            made.append(broker)
            return broker

        yield make
        for broker in made:  # Apps given a broker object leave closing it to its owner
            await broker.close()
