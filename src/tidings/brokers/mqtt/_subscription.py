"""A group member (a shared subscription) or a group-less reader, on its own connection.

Each subscription opens its own MQTT connection (clean start, manual acks,
Receive Maximum = prefetch, so the broker hands it at most ``prefetch``
unacked messages). A group ``g`` subscribes ``$share/g/<topic>``: the broker
spreads the messages over the members, and every group gets each one.

MQTT cannot give a message back: a broker resends an unacked QoS 1 message
only to the same session, and only after a reconnect. So ``nack`` publishes a
copy, with ``tidings-attempt`` one higher and the same ``tidings-msg-id``, to
this member's own redelivery topic ``tidings-redeliver/<member>/<topic>``, and
then acks the original: a crash between the two leaves a duplicate, never a
loss. The copy comes back to the member that holds the later events of its key
(core keeps them behind it). Closing gives what the member holds to the rest
of the group the same way, through ``tidings-redeliver/<group>/<topic>``
(subscribed shared by every member), once the member stopped receiving.

A dropped connection is made again, with backoff, by the member itself
(:meth:`MqttSubscription.watch`); what it held is fenced (its acks would name
packets of the old connection). With ``session_expiry`` the broker kept the
member's session, so it sends the unacked messages again; with clean sessions
the member republishes what it held to the group, as on close: either way no
message it had is lost, though it may come twice. What the broker had sent but
the member had not read before a clean-session drop is lost (MQTT drops it with
the session).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import aiomqtt

from tidings.broker import Message
from tidings.brokers._settle import SettleOnce
from tidings.brokers.mqtt import _binding
from tidings.brokers.mqtt._client import disconnected, dropped, incoming, no_delay, send_puback
from tidings.errors import BrokerUnavailable

__all__ = ["REDELIVER", "MqttDelivery", "MqttSubscription"]

log = logging.getLogger("tidings.brokers.mqtt")

#: Drops in a row, each within _QUICK seconds of connecting, that make the member say so.
_QUICK_DROPS = 5
_QUICK = 10.0
#: Seconds between attempts to connect again (doubling up to the last).
_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0)

#: Topic prefix of the copies a group's members republish on nack.
REDELIVER = "tidings-redeliver/"


class MqttDelivery(SettleOnce):
    """One handing of an MQTT message; settled through its subscription."""

    __slots__ = (
        "attempt",
        "epoch",
        "group",
        "headers",
        "key",
        "mid",
        "msg_id",
        "published_at",
        "subscription",
        "topic",
        "value",
    )

    partition = 0
    offset = -1

    def __init__(
        self,
        subscription: MqttSubscription,
        mid: int,
        topic: str,
        value: bytes,
        received: _binding.Received,
    ) -> None:
        super().__init__()
        self.subscription = subscription
        self.epoch = subscription.epoch
        self.mid = mid
        self.topic = topic
        self.value = value
        self.headers = received.headers
        self.key = received.key
        self.attempt = received.attempt
        self.msg_id = received.msg_id or uuid.uuid4().hex
        self.group = subscription.group_name
        self.published_at = time.time()

    @property
    def id(self) -> str:
        return self.msg_id

    @property
    def position(self) -> str:
        return f"{self.topic}#{self.msg_id}"

    def fenced(self) -> bool:
        return self.epoch != self.subscription.epoch

    def message(self) -> Message:
        return Message(self.value, self.headers, self.key)

    def _on_ack(self) -> None:
        self.subscription.settle(self)

    def _on_nack(self, delay: float) -> Awaitable[None]:
        return self.subscription.redeliver(self, self.attempt + 1)


class MqttSubscription:
    """A member of ``group`` (or a reader, ``group=None``) on ``topics``."""

    def __init__(
        self,
        client: aiomqtt.Client,
        topics: Sequence[str],
        group: str | None,
        url: str,
        publish_timeout: float,
        reopen: Callable[[aiomqtt.Client], Awaitable[None]],
        persistent: bool = False,
    ) -> None:
        self.client = client
        self.topics = tuple(topics)
        self.group = group
        self.persistent = persistent
        self._reopen = reopen
        # A kept session keeps its subscriptions: its own redelivery topic must be the same
        # after a restart, so it is named by the (stable) client id.
        member = client.identifier if persistent else uuid.uuid4().hex[:16]
        self.group_name = group if group is not None else f"reader-{member}"
        self.url = url
        self.publish_timeout = publish_timeout
        self.epoch = 0
        self.held: dict[int, MqttDelivery] = {}
        self._queue = incoming(client)
        #: Where nacked copies go (this member alone) and where closing gives back (the group).
        self._own = f"{REDELIVER}{member}/"
        self._shared = f"{REDELIVER}{self.group_name}/"
        self._redelivering: set[asyncio.Future[None]] = set()
        self._closing = asyncio.get_running_loop().create_future()
        self._closed = False
        self._watcher: asyncio.Task[None] | None = None
        self._quick_drops = 0

    def filters(self) -> list[str]:
        """The topic filters this member subscribes (its topics and their redeliveries)."""
        own = [self._own + topic for topic in self.topics]
        if self.group is None:
            return [*self.topics, *own]
        shared = [*self.topics, *(self._shared + topic for topic in self.topics)]
        return [*(f"$share/{self.group}/{topic}" for topic in shared), *own]

    async def fetch(self, max_count: int, timeout: float) -> Sequence[MqttDelivery]:
        got: list[MqttDelivery] = []
        if self._closed:
            return got
        queue = self._queue
        if queue.empty():
            getter = asyncio.ensure_future(queue.get())
            try:
                await asyncio.wait(
                    (getter, self._closing), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:  # also when the fetch itself is cancelled: no getter left pending
                if not getter.done():
                    getter.cancel()
            try:
                first = await getter
            except asyncio.CancelledError:
                return got
            self._take(first, got)
        while len(got) < max_count and not queue.empty():
            self._take(queue.get_nowait(), got)
        if self._closed:  # closed meanwhile: these come again through close()
            return []
        return got

    def _take(self, message: aiomqtt.Message, into: list[MqttDelivery]) -> None:
        topic = message.topic.value
        if topic.startswith(REDELIVER):
            if topic.startswith(self._own):
                topic = topic[len(self._own) :]
            elif topic.startswith(self._shared):
                topic = topic[len(self._shared) :]
            else:  # another group's or member's ('#' matches it)
                send_puback(self.client, message.mid)
                return
        payload = message.payload
        value = payload if isinstance(payload, bytes) else str(payload or "").encode()
        delivery = MqttDelivery(self, message.mid, topic, value, _binding.read(message.properties))
        self.held[message.mid] = delivery
        into.append(delivery)

    def settle(self, delivery: MqttDelivery) -> None:
        if delivery.epoch == self.epoch and self.held.pop(delivery.mid, None) is not None:
            send_puback(self.client, delivery.mid)

    # -- a dropped connection ------------------------------------------------------------

    def watch(self) -> None:
        """Start making the connection again whenever it drops (call once subscribed)."""
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while not self._closed:
            connected_at = time.monotonic()
            try:
                await disconnected(self.client)
                reason = "disconnected"
            except aiomqtt.MqttError as exc:
                reason = str(exc)
            if self._closed:
                return
            self._dropped(connected_at)
            await self._reconnect(reason)

    def _dropped(self, connected_at: float) -> None:
        """Count a connection that ended; say so once when they keep ending right away.

        Mosquitto drops a session's older connection when a newer one takes the session
        over, with no reason the client sees: two processes under one member name would
        drop each other for ever. A drop while subscribing again counts too (under load
        that is where most of them land)."""
        quick = time.monotonic() - connected_at < _QUICK
        self._quick_drops = self._quick_drops + 1 if quick else 0
        if self._quick_drops == _QUICK_DROPS:
            log.error(
                "mqtt: the connection of client id %r to %s keeps being dropped right "
                "after it is made; is another process running under the same member name?",
                self.client.identifier,
                self.url,
            )

    async def _reconnect(self, reason: str) -> None:
        self.epoch += 1  # what was handed out before is fenced: its packet ids are gone
        held, self.held = self.held, {}
        unread: list[MqttDelivery] = []
        while not self._queue.empty():
            self._take(self._queue.get_nowait(), unread)
        self.held = {}
        log.warning(
            "mqtt: member of %s lost its connection to %s (%s); connecting again",
            self.group_name,
            self.url,
            reason,
        )
        for attempt in range(1 << 30):
            if self._closed:
                return
            opened_at: float | None = None
            try:
                await self._reopen(self.client)
                opened_at = time.monotonic()
                no_delay(self.client)
                await self.client.subscribe(
                    [(f, 1) for f in self.filters()], timeout=self.publish_timeout
                )
                break
            except (BrokerUnavailable, aiomqtt.MqttError, TimeoutError) as exc:
                if opened_at is not None:
                    self._dropped(opened_at)
                delay = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
                log.debug("mqtt: reconnect to %s failed (%s); again in %gs", self.url, exc, delay)
                await asyncio.sleep(delay)
        log.warning("mqtt: member of %s connected again to %s", self.group_name, self.url)
        if not self.persistent and self.group is not None:
            # A clean session dropped them: give them to the group again.
            for delivery in held.values():
                await self._send(self._shared, delivery, delivery.attempt + 1)
            for delivery in unread:
                await self._send(self._shared, delivery, delivery.attempt)

    async def redeliver(self, delivery: MqttDelivery, attempt: int) -> None:
        """Publish a copy to this member's redelivery topic, then ack the original."""
        sending = asyncio.ensure_future(self._send(self._own, delivery, attempt))
        self._redelivering.add(sending)
        sending.add_done_callback(self._redelivering.discard)
        try:
            await sending
        except (aiomqtt.MqttError, TimeoutError) as exc:
            # Not acked: the broker drops it with this session (see docs/brokers/mqtt.md).
            raise BrokerUnavailable(f"cannot redeliver on {self.url}: {exc}") from None
        if not delivery.fenced():
            self.settle(delivery)

    async def close(self) -> None:
        """Stop receiving, give back what this member holds, disconnect."""
        if self._closed:
            return
        self._closed = True
        self.epoch += 1
        self._closing.set_result(None)
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        client = self.client
        held, self.held = self.held, {}
        if self._redelivering:  # their copies must reach this member before it unsubscribes
            await asyncio.wait(self._redelivering, timeout=self.publish_timeout)
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await client.unsubscribe(self.filters(), timeout=self.publish_timeout)
            # Messages that arrived before the UNSUBACK were never handed out.
            unread: list[MqttDelivery] = []
            while not self._queue.empty():
                self._take(self._queue.get_nowait(), unread)
            if self.group is not None:
                for delivery in held.values():
                    await self._send(self._shared, delivery, delivery.attempt + 1)
                for delivery in unread:
                    await self._send(self._shared, delivery, delivery.attempt)
        if not dropped(client):
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)

    async def _send(self, prefix: str, delivery: MqttDelivery, attempt: int) -> None:
        properties = _binding.write(delivery.message(), delivery.msg_id, attempt)
        await self.client.publish(
            prefix + delivery.topic,
            delivery.value,
            qos=1,
            properties=properties,
            timeout=self.publish_timeout,
        )
