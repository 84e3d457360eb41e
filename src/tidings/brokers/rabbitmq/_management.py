"""The RabbitMQ management HTTP API (plugin ``rabbitmq_management``): listing what exists.

AMQP 0-9-1 cannot list exchanges, queues or consumers; inspection
(``tidings topics``, ``groups``, ``dlq list``) asks the management API for
them, with the URL's credentials, at the URL's ``management`` option
(``http://<host>:15672`` by default, ``https://<host>:15671`` for ``amqps://``).
Message counts there are the server's statistics, refreshed every few seconds
(``collect_statistics_interval``, 5 s by default). Calls run in a thread
(``urllib``): inspection is occasional and needs no extra dependency.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from tidings.errors import BrokerUnavailable

__all__ = ["Management"]

_HINT = (
    "inspection of amqp:// needs the management plugin: "
    "rabbitmq-plugins enable rabbitmq_management (or set the URL's management option)"
)


class Management:
    def __init__(
        self,
        base: str,
        username: str,
        password: str,
        vhost: str,
        timeout: float,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.base = base.rstrip("/")
        self.vhost = quote(vhost, safe="")
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._auth = f"Basic {token}"
        self._timeout = timeout
        self._context = context

    def _call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(self.base + path, method=method)
        request.add_header("Authorization", self._auth)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(
                request, timeout=self._timeout, context=self._context
            ) as answer:
                body = answer.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and method != "GET":
                return None
            raise BrokerUnavailable(
                f"RabbitMQ management API at {self.base} answered {exc.code} {exc.reason} "
                f"to {method} {path.split('?', 1)[0]}"
            ) from None
        except (OSError, ValueError) as exc:
            raise BrokerUnavailable(
                f"no RabbitMQ management API at {self.base} ({type(exc).__name__}: {exc}); " + _HINT
            ) from None
        return json.loads(body) if body else None

    async def get(self, path: str) -> Any:
        return await asyncio.to_thread(self._call, "GET", path)

    async def delete(self, path: str) -> Any:
        return await asyncio.to_thread(self._call, "DELETE", path)

    async def exchanges(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.get(
            f"/api/exchanges/{self.vhost}?columns=name,type"
        )
        return found

    async def queues(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.get(
            f"/api/queues/{self.vhost}?columns=name,type,arguments,messages,"
            "messages_ready,messages_unacknowledged,message_bytes,consumers,message_stats"
        )
        return found

    async def consumers(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.get(f"/api/consumers/{self.vhost}")
        return found

    async def delete_queue(self, name: str) -> None:
        await self.delete(f"/api/queues/{self.vhost}/{quote(name, safe='')}")
