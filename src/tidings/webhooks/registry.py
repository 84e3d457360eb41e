"""Webhook registrations: what is sent where, and the port a broker fills to keep them.

A :class:`Webhook` says: POST every event of ``topic`` matching ``filter``
to ``url``, signed with ``secret``. Registrations live in the broker's own
storage (:class:`WebhookStorage`), so every process using the broker sees
the same ones: ``tidings webhooks add`` in one process, deliveries from a
``tidings serve`` in another within its poll interval.

- the embedded broker keeps them in a table of its database file;
- ``memory://`` keeps them in its hub (this process only);
- the other brokers keep none (``tidings webhooks`` says so).

Beside the registration the store keeps its delivery state: ``failures``
(events dead-lettered in a row) and ``paused``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from tidings.errors import ConfigurationError
from tidings.filters import compile_filter
from tidings.routing import validate_topic
from tidings.webhooks.signature import check_secret, new_secret
from tidings.webhooks.targets import TargetUnresolvedError, resolve, split_target

__all__ = [
    "GROUP_PREFIX",
    "MemoryWebhookStore",
    "Webhook",
    "WebhookStorage",
    "WebhookStore",
    "new_webhook",
    "register",
]

#: A webhook's deliveries are consumer group ``tidings-webhook-<id>``.
GROUP_PREFIX = "tidings-webhook-"


@dataclass(frozen=True)
class Webhook:
    """One registered endpoint and its delivery state."""

    id: str
    url: str
    topic: str
    secret: str = field(repr=False)
    filter: Mapping[str, Any] | None = None
    """A CloudEvents Subscriptions API filter (:mod:`tidings.filters`), or None: every event."""
    created_at: float = 0.0
    paused: bool = False
    failures: int = 0
    """Events dead-lettered in a row (0 after a delivered one, or a resume)."""
    last_error: str | None = None

    @property
    def group(self) -> str:
        """The consumer group its deliveries read ``topic`` as."""
        return GROUP_PREFIX + self.id

    def to_dict(self) -> dict[str, Any]:
        """The registration as JSON, without the secret."""
        return {
            "id": self.id,
            "url": self.url,
            "topic": self.topic,
            "filter": None if self.filter is None else dict(self.filter),
            "group": self.group,
            "created_at": self.created_at,
            "paused": self.paused,
            "failures": self.failures,
            "last_error": self.last_error,
        }


@runtime_checkable
class WebhookStore(Protocol):
    """Where registrations live. Safe to call from several tasks (and, for a file, processes)."""

    async def webhooks(self) -> list[Webhook]:
        """Every registration, oldest first."""
        ...

    async def add_webhook(self, webhook: Webhook) -> None:
        """Store ``webhook`` (its id is new)."""
        ...

    async def remove_webhook(self, webhook_id: str) -> bool:
        """Delete a registration; False if there is none with that id."""
        ...

    async def count_failure(self, webhook_id: str, error: str) -> int:
        """One more event failed: add 1 to ``failures``, keep ``error``; the new count (0: gone)."""
        ...

    async def clear_failures(self, webhook_id: str) -> None:
        """An event was delivered: ``failures`` back to 0."""
        ...

    async def set_paused(self, webhook_id: str, paused: bool) -> bool:
        """Pause, or resume (which also clears ``failures``); False if there is no such id."""
        ...


@runtime_checkable
class WebhookStorage(Protocol):
    """A broker that keeps webhook registrations in its own storage."""

    def webhook_store(self) -> WebhookStore:
        """The registrations' storage; usable while the broker is connected."""
        ...


def new_webhook(
    url: str,
    topic: str,
    *,
    filter: Mapping[str, Any] | None = None,
    secret: str | None = None,
) -> Webhook:
    """A checked registration with a new id (and a new secret unless one is given).

    Raises ConfigurationError for a URL that is not http(s), a bad topic
    (one topic: no wildcards), filter or secret. The target's address is
    checked by :func:`register`.
    """
    split_target(url)
    validate_topic(topic)
    if filter is not None:
        compile_filter(filter)
    if secret is not None:
        check_secret(secret)
    return Webhook(
        id=secrets.token_hex(6),
        url=url,
        topic=topic,
        secret=secret or new_secret(),
        filter=None if filter is None else dict(filter),
        created_at=time.time(),
    )


async def register(
    store: WebhookStore, webhook: Webhook, *, allow_private: bool = False
) -> Webhook:
    """Check ``webhook``'s target with the SSRF guard, then store it.

    Raises UnsafeTargetError for a refused address (see
    :mod:`tidings.webhooks.targets`), ConfigurationError for a name that
    does not resolve (both skipped with ``allow_private``).
    """
    if not allow_private:
        try:
            await resolve(split_target(webhook.url))
        except TargetUnresolvedError as exc:
            raise ConfigurationError(f"webhook URL {webhook.url!r}: {exc}") from None
    await store.add_webhook(webhook)
    return webhook


class MemoryWebhookStore:
    """A :class:`WebhookStore` in this process's memory (``memory://``'s hub)."""

    def __init__(self) -> None:
        self._webhooks: dict[str, Webhook] = {}

    async def webhooks(self) -> list[Webhook]:
        return list(self._webhooks.values())

    async def add_webhook(self, webhook: Webhook) -> None:
        if webhook.id in self._webhooks:
            raise ConfigurationError(f"a webhook with id {webhook.id!r} exists already")
        self._webhooks[webhook.id] = webhook

    async def remove_webhook(self, webhook_id: str) -> bool:
        return self._webhooks.pop(webhook_id, None) is not None

    async def count_failure(self, webhook_id: str, error: str) -> int:
        found = self._webhooks.get(webhook_id)
        if found is None:
            return 0
        found = self._webhooks[webhook_id] = replace(
            found, failures=found.failures + 1, last_error=error
        )
        return found.failures

    async def clear_failures(self, webhook_id: str) -> None:
        found = self._webhooks.get(webhook_id)
        if found is not None:
            self._webhooks[webhook_id] = replace(found, failures=0)

    async def set_paused(self, webhook_id: str, paused: bool) -> bool:
        found = self._webhooks.get(webhook_id)
        if found is None:
            return False
        failures = found.failures if paused else 0
        self._webhooks[webhook_id] = replace(found, paused=paused, failures=failures)
        return True
