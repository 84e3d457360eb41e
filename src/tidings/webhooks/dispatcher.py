"""Deliveries for every registered webhook: one subscription (consumer group) per endpoint.

:class:`Dispatcher` reads the registrations from a :class:`WebhookStore`
every ``poll_interval`` seconds and keeps one :class:`~tidings.App` running
per active endpoint, reading its topic as group ``tidings-webhook-<id>``
(so a webhook added from another process starts within a poll, and one
removed or paused stops). Each App's handler POSTs the event (:class:`Sender`);
the core's retry policy retries a failed delivery with backoff and
dead-letters it after the last attempt (``<topic>.dlq``). After
``pause_after`` events dead-lettered in a row the endpoint is paused: its
group keeps its position, and ``resume`` delivers what came meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from tidings.app import App
from tidings.broker import Broker, Delivery
from tidings.errors import ConfigurationError, GroupInUseError
from tidings.event import Event
from tidings.hooks import Observer
from tidings.inspection import GroupAdmin
from tidings.retry import RetryPolicy
from tidings.webhooks.registry import GROUP_PREFIX, Webhook, WebhookStore
from tidings.webhooks.sender import Sender

__all__ = ["Dispatcher", "WebhookSettings", "forget_group"]

log = logging.getLogger("tidings.webhooks")

_SOURCE = "/tidings-webhooks"


@dataclass(frozen=True)
class WebhookSettings:
    """How webhooks are delivered, with their defaults."""

    allow_private: bool = False
    """Turn the SSRF guard off (:mod:`tidings.webhooks.targets`): loopback and private targets."""
    poll_interval: float = 1.0
    """Seconds between two reads of the registrations."""
    timeout: float = 10.0
    """Seconds an endpoint has to answer one delivery."""
    attempts: int = 5
    """Deliveries of one event before it is dead-lettered."""
    initial_delay: float = 1.0
    """Backoff before the first retry (doubled each time, full jitter)."""
    max_delay: float = 60.0
    """Longest backoff between two attempts."""
    pause_after: int = 5
    """Events dead-lettered in a row that pause the endpoint."""
    concurrency: int = 4
    """Deliveries in flight per endpoint (events of one key stay in order)."""

    def __post_init__(self) -> None:
        if self.poll_interval <= 0 or self.timeout <= 0:
            raise ConfigurationError("webhook poll_interval and timeout must be > 0")
        if self.pause_after < 1 or self.concurrency < 1:
            raise ConfigurationError("webhook pause_after and concurrency must be >= 1")
        self.retry_policy()  # checks attempts and delays

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.attempts,
            initial_delay=self.initial_delay,
            max_delay=self.max_delay,
        )


class Dispatcher:
    """Runs the deliveries of ``store``'s webhooks on ``broker`` (connected by the caller)."""

    def __init__(
        self, broker: Broker, store: WebhookStore, settings: WebhookSettings | None = None
    ) -> None:
        self.broker = broker
        self.store = store
        self.settings = settings or WebhookSettings()
        self._sender: Sender | None = None
        self._running: dict[str, App] = {}
        self._poller: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Webhooks whose deliveries could not start (logged once, not tried again).
        self._broken: set[str] = set()
        self._lock = asyncio.Lock()

    @property
    def running(self) -> list[str]:
        """The ids of the webhooks being delivered now."""
        return sorted(self._running)

    async def start(self) -> None:
        """Deliver the stored webhooks now, and look for changes every ``poll_interval``."""
        self._sender = Sender(
            timeout=self.settings.timeout, allow_private=self.settings.allow_private
        )
        await self.sync()
        self._poller = asyncio.create_task(self._poll(), name="tidings-webhooks")

    async def stop(self) -> None:
        """Stop every delivery (in-flight ones finish or are redelivered later)."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        async with self._lock:
            await asyncio.gather(*(app.stop() for app in self._running.values()))
            self._running.clear()
        if self._sender is not None:
            await self._sender.close()
            self._sender = None

    async def sync(self) -> None:
        """Start the deliveries of new active webhooks, stop those of removed or paused ones.

        The consumer group of a removed webhook is deleted (where the broker can).
        """
        stored = await self.store.webhooks()
        wanted = {w.id: w for w in stored if not w.paused}
        kept = {w.id for w in stored}
        async with self._lock:
            for webhook_id in [i for i in self._running if i not in wanted]:
                await self._running.pop(webhook_id).stop()
                if webhook_id not in kept:
                    await forget_group(self.broker, GROUP_PREFIX + webhook_id)
            for webhook_id, webhook in wanted.items():
                if webhook_id not in self._running and webhook_id not in self._broken:
                    try:
                        self._running[webhook_id] = await self._start(webhook)
                    except Exception as exc:  # one bad registration stops no other
                        self._broken.add(webhook_id)
                        log.error("webhook %s cannot be delivered: %s", webhook_id, exc)
                        await self.store.count_failure(webhook_id, f"{type(exc).__name__}: {exc}")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            try:
                await self.sync()
            except Exception:
                log.exception("reading the webhook registrations failed; trying again")

    async def _start(self, webhook: Webhook) -> App:
        sender = self._sender
        assert sender is not None, "start() the dispatcher first"
        app = App(webhook.group, broker=self.broker, source=_SOURCE, schemas=False)

        async def deliver(event: Event) -> None:
            await sender.send(webhook, event)

        app.add_subscription(
            deliver,
            webhook.topic,
            group=webhook.group,
            name=webhook.group,
            filter=webhook.filter,
            retry=self.settings.retry_policy(),
            concurrency=self.settings.concurrency,
        )
        app.add_observer(_Outcomes(self, webhook))
        await app.start()
        log.info("delivering %s to webhook %s (%s)", webhook.topic, webhook.id, webhook.url)
        return app

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def failed(self, webhook: Webhook, error: BaseException) -> None:
        count = await self.store.count_failure(webhook.id, f"{type(error).__name__}: {error}")
        if count >= self.settings.pause_after and await self.store.set_paused(webhook.id, True):
            log.warning(
                "webhook %s (%s) paused after %d failed events in a row",
                webhook.id,
                webhook.url,
                count,
            )
            await self.sync()


async def forget_group(broker: Broker, group: str) -> None:
    """Delete a removed webhook's consumer group, unless it is in use or the broker cannot."""
    if isinstance(broker, GroupAdmin):
        # In use: another gateway still delivers it, and deletes it when it stops.
        with contextlib.suppress(GroupInUseError):
            await broker.delete_group(group)


class _Outcomes(Observer):
    """Counts one endpoint's failed events in a row in the store; a delivery resets it."""

    def __init__(self, dispatcher: Dispatcher, webhook: Webhook) -> None:
        self.dispatcher = dispatcher
        self.webhook = webhook
        self.failing = webhook.failures > 0

    def handled(self, subscription: str, delivery: Delivery, event: Event, seconds: float) -> None:
        if self.failing:
            self.failing = False
            self.dispatcher.spawn(self.dispatcher.store.clear_failures(self.webhook.id))

    def dead_lettered(
        self, subscription: str, delivery: Delivery, error: BaseException, topic: str
    ) -> None:
        self.failing = True
        self.dispatcher.spawn(self.dispatcher.failed(self.webhook, error))
