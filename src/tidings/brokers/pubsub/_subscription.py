"""A member of a group (or a group-less reader): pulling from its subscriptions, giving back.

A member reads one Pub/Sub subscription per topic. ``pullers`` tasks per
subscription call ``Pull`` (up to a hundred messages each, waiting up to the
URL's ``wait``) while the member holds fewer than ``prefetch`` unsettled
messages. Pub/Sub hands a pulled message to no other member until its ack
deadline passes, so competing consumers need no coordination, and a member that
dies loses nothing: what it held comes back after the deadline.

With message ordering, Pub/Sub delivers a key's next messages only once those
it handed out are settled. A nack there is kept here: the member keeps the
message (and the later messages of its key it holds, reported through
``on_revoke`` if core had them) and extends their deadlines until the delay has
passed, then hands them out again, the retry first, as the next attempt. So
the key's order holds whatever the server does with a nack (Google's service
sends the later messages again too, even acked ones; the emulator sends them
before the nacked one) and a retry cannot run early. A kept retry still
waiting when the member closes is given back once its pulls ended, so it
counts one delivery more, not two. Without ordering a nack sets the message's
ack deadline to its delay, up to 600 s (longer delays are kept here too), and
Pub/Sub delivers it again, to any member.

What the member loses it reports through ``on_revoke`` at its next ``fetch``:
deliveries whose ack deadline passed before they were settled, the later
messages of a key moved behind its retry, and nacked deliveries that did not
come back to this member within ``wait + 5`` seconds of their due time.

Messages the member holds but core does not (fetched ahead, or kept behind a
retry) have their deadlines extended here; core extends what it holds.
Closing gives back (deadline 0) everything unsettled, after sending the
settlements still queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from google.api_core import exceptions as api_errors
from google.pubsub_v1.types import PullResponse

from tidings.broker import Delivery, RevokeHandler, SubscribeOptions
from tidings.brokers.pubsub._binding import read
from tidings.brokers.pubsub._client import GOOGLE_ERRORS, MAX_DEADLINE, Google
from tidings.brokers.pubsub._delivery import PubSubDelivery, Settlements, whole_seconds
from tidings.errors import BrokerUnavailable

__all__ = ["Feed", "PubSubMember"]

log = logging.getLogger("tidings.brokers.pubsub")

#: Seconds between attempts to pull again after a failure (doubling up to the last).
_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0)
#: Failed pulls in a row after which ``fetch`` raises BrokerUnavailable.
_FAILURES = 30
#: Most messages one pull asks for: smaller pulls spread a group's messages (and, with
#: ordering, its keys) over its members; a thousand is Pub/Sub's own limit.
_MAX_PULL = 100
#: Most seconds a puller of an ordered subscription waits for its batch to be settled.
_STEP = 0.25
#: Seconds between pulls that came back empty at once.
_EMPTY_PAUSE = 0.1


class Feed:
    """One subscription a member reads: its topic, its path, its ack deadline."""

    __slots__ = ("deadline", "name", "not_before", "ordered", "reader", "settlements", "topic")

    def __init__(
        self, topic: str, name: str, settlements: Settlements, reader: bool, ordered: bool
    ) -> None:
        self.topic = topic
        self.name = name
        self.settlements = settlements
        self.reader = reader
        self.ordered = ordered
        #: The subscription's ack deadline, in seconds.
        self.deadline = 10
        #: Messages published before this Unix time are acked unseen (a new subscription
        #: starting at the end where the server cannot seek: see ``PubSubBroker.subscribe``).
        self.not_before: float | None = None


class PubSubMember:
    """A :class:`~tidings.broker.Subscription` on Pub/Sub subscriptions."""

    def __init__(
        self,
        google: Google,
        feeds: Sequence[Feed],
        group: str | None,
        options: SubscribeOptions,
        on_revoke: RevokeHandler | None,
        closer: Callable[[PubSubMember], Awaitable[None]],
        restore: Callable[[Feed], Awaitable[None]],
    ) -> None:
        self.google = google
        self.feeds = {feed.name: feed for feed in feeds}
        self.group = group
        self.prefetch = options.prefetch
        self.on_revoke = on_revoke
        self._closer = closer
        self._restorer = restore
        self._restoring = asyncio.Lock()
        self.wait = google.options.wait
        #: Pulled and not settled (buffered, handed, or kept behind a retry), by ack id.
        self.held: dict[str, PubSubDelivery] = {}
        self.buffer: deque[PubSubDelivery] = deque()
        #: Pulls in flight, counted as held so that they never exceed the prefetch.
        self.reserved = 0
        self.wake = asyncio.Event()
        self.room = asyncio.Event()
        self.closed = False
        self.failures = 0
        self.last_error: BaseException | None = None
        #: Lost deliveries not reported yet.
        self.lost: list[PubSubDelivery] = []
        #: Nacked back to Pub/Sub: delivery id -> (the delivery, report it lost after).
        self.away: dict[str, tuple[PubSubDelivery, float]] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self.share = _MAX_PULL
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, pullers: int) -> None:
        self.room.set()
        #: Most messages one pull asks for: the prefetch shared by every puller (so that
        #: none of them starves the others).
        self.share = min(max(self.prefetch // (pullers * len(self.feeds)), 1), _MAX_PULL)
        for feed in self.feeds.values():
            for n in range(pullers):
                self._tasks.append(
                    asyncio.create_task(self._pull(feed), name=f"tidings-pubsub-{feed.name}-{n}")
                )
        self._tasks.append(asyncio.create_task(self._keep_held(), name="tidings-pubsub-keeper"))

    def settlements(self, name: str) -> Settlements:
        return self.feeds[name].settlements

    # -- pulling ----------------------------------------------------------------------

    async def _pull(self, feed: Feed) -> None:
        failures = 0
        subscriber = self.google.subscriber
        while not self.closed:
            room = self.prefetch - len(self.held) - self.reserved
            if room <= 0:
                self.room.clear()
                await self.room.wait()
                continue
            count = min(room, self.share)
            self.reserved += count
            started = time.monotonic()
            try:
                response = await subscriber.pull(
                    request={"subscription": feed.name, "max_messages": count},
                    timeout=self.wait,
                    retry=None,
                )
            except api_errors.DeadlineExceeded:
                self.reserved -= count
                continue  # nothing to pull within ``wait``
            except GOOGLE_ERRORS as exc:
                self.reserved -= count
                if self.closed:
                    return
                if isinstance(exc, api_errors.NotFound):
                    await self._restore(feed)
                failures += 1
                self.failures += 1
                self.last_error = exc
                delay = _BACKOFF[min(failures, len(_BACKOFF)) - 1]
                log.warning("pulling from %s failed (%r); again in %gs", feed.name, exc, delay)
                self.wake.set()
                await asyncio.sleep(delay)
                continue
            self.reserved -= count
            failures = self.failures = 0
            if self.closed:
                for received in PullResponse.pb(response).received_messages:
                    feed.settlements.change(received.ack_id, 0)
                return
            received = PullResponse.pb(response).received_messages
            if received:
                batch = self._take(feed, received)
                if feed.ordered:
                    await self._settling(batch)
                    await feed.settlements.flush()
            elif time.monotonic() - started < _EMPTY_PAUSE:
                # An empty answer at once (the emulator answers a second before the
                # deadline: at once for ``wait`` <= 1): no busy loop of pulls.
                await asyncio.sleep(_EMPTY_PAUSE)

    async def _settling(self, batch: list[PubSubDelivery]) -> None:
        """Wait until the member settled (or lost) ``batch``.

        An ordered subscription hands out nothing more of a key while its messages are
        out: a pull sent meanwhile mostly waits (the emulator answers it only at its
        deadline). So each puller pulls again once what it brought is settled and the
        acks are sent, or after ``_STEP`` seconds: a slow handler, an event held for a
        delay or a retry must not stop the pulling of other keys.
        """
        held = self.held
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_STEP):
                while not self.closed and any(held.get(d.ack_id) is d for d in batch):
                    self.room.clear()
                    await self.room.wait()

    def _take(self, feed: Feed, messages: Any) -> list[PubSubDelivery]:
        due = time.monotonic() + feed.deadline
        held, buffer, away = self.held, self.buffer, self.away
        taken: list[PubSubDelivery] = []
        for received in messages:
            message = received.message
            stamp = message.publish_time
            published = stamp.seconds + stamp.nanos / 1e9
            if feed.not_before is not None and published < feed.not_before:
                feed.settlements.ack(received.ack_id)
                continue
            value, key, headers = read(message)
            delivery = PubSubDelivery(
                self,
                feed.name,
                feed.topic,
                received.ack_id,
                message.message_id,
                value,
                key,
                headers,
                received.delivery_attempt or 1,
                published,
                due,
            )
            if away:
                away.pop(delivery.id, None)
            held[delivery.ack_id] = delivery
            buffer.append(delivery)
            taken.append(delivery)
        if taken:
            self.wake.set()
        return taken

    async def _restore(self, feed: Feed) -> None:
        """The subscription vanished (deleted, or an emulator restarted empty): make it again."""
        async with self._restoring:
            self.google.topics.clear()
            try:
                await self._restorer(feed)
            except GOOGLE_ERRORS as exc:
                log.warning("re-creating subscription %s failed: %r", feed.name, exc)
                return
            log.warning("subscription %s was gone: created again", feed.name)

    async def _keep_held(self) -> None:
        """Extend the deadlines of what the member holds and core does not."""
        while not self.closed:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for delivery in list(self.held.values()):
                if delivery.handed or delivery.lost:
                    continue
                feed = self.feeds[delivery.subscription]
                if delivery.due - now < feed.deadline / 2 and delivery.due > now:
                    self.keep(delivery)

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        deadline = time.monotonic() + timeout
        while not self.closed:
            self._report_lost()
            if self.failures >= _FAILURES:
                raise BrokerUnavailable(
                    f"pulling from Pub/Sub at {self.google.options.url} failed {self.failures} "
                    f"times in a row: {self.last_error!r}"
                )
            out: list[Delivery] = []
            buffer = self.buffer
            while buffer and len(out) < max_count:
                delivery = buffer.popleft()
                if not delivery.fenced():
                    delivery.handed = True
                    out.append(delivery)
            if out:
                return out
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), min(remaining, 1.0))
        return []

    def _report_lost(self) -> None:
        now = time.monotonic()
        for ack_id, delivery in list(self.held.items()):
            if now >= delivery.due:
                del self.held[ack_id]
                self.room.set()
                if delivery.handed and not delivery.settled:
                    delivery.settled = True
                    self.lost.append(delivery)
        if self.away:
            for ident, (delivery, after) in list(self.away.items()):
                if now >= after:
                    del self.away[ident]
                    self.lost.append(delivery)
        if self.lost:
            lost, self.lost = self.lost, []
            if self.on_revoke is not None:
                self.on_revoke(lost)

    # -- settling ----------------------------------------------------------------------

    def settled(self, delivery: PubSubDelivery) -> None:
        """``delivery`` is no longer held (acked or nacked)."""
        if self.held.get(delivery.ack_id) is delivery:
            del self.held[delivery.ack_id]
            self.room.set()

    def keep(self, delivery: PubSubDelivery) -> None:
        """Set the delivery's ack deadline to the subscription's again."""
        feed = self.feeds[delivery.subscription]
        delivery.due = time.monotonic() + feed.deadline
        feed.settlements.change(delivery.ack_id, feed.deadline)

    def nacked(self, delivery: PubSubDelivery, delay: float) -> None:
        self.settled(delivery)
        feed = self.feeds[delivery.subscription]
        if feed.ordered or delay > MAX_DEADLINE:
            self._hold(delivery, delay, feed.ordered and delivery.key is not None)
            return
        feed.settlements.change(delivery.ack_id, whole_seconds(delay))
        if delivery.handed:
            self.away[delivery.id] = (delivery, time.monotonic() + delay + self.wait + 5.0)

    def _hold(self, delivery: PubSubDelivery, delay: float, ordered: bool) -> None:
        """Keep ``delivery`` (and the later messages of its key held here) for ``delay``."""
        kept = [delivery.again(delivery.attempt + 1)]
        if ordered:
            for other in list(self.held.values()):
                if other.key == delivery.key and other.subscription == delivery.subscription:
                    if other.handed and not other.settled:
                        other.settled = True
                        self.lost.append(other)
                    kept.append(other.again(other.attempt))
            if len(kept) > 1:
                self.buffer = deque(d for d in self.buffer if not d.lost)
        for held in kept:
            self.held[held.ack_id] = held

        def release() -> None:
            self._timers.discard(timer)
            self._release(kept)

        timer = asyncio.get_running_loop().call_later(delay, release)
        self._timers.add(timer)

    def _release(self, kept: list[PubSubDelivery]) -> None:
        if self.closed:
            return
        ready = [d for d in kept if self.held.get(d.ack_id) is d and not d.fenced()]
        self.buffer.extendleft(reversed(ready))
        if ready:
            self.wake.set()

    # -- closing -----------------------------------------------------------------------

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.wake.set()
        self.room.set()
        await self._closer(self)

    async def stop(self) -> None:
        """Stop pulling, send queued settlements, give back what is held (the closer)."""
        self.closed = True
        self.room.set()
        for timer in self._timers:
            timer.cancel()
        # Pulls in flight end by their own deadline (``wait``) and give back what they
        # bring: a pull cancelled here may still be answered by the server, its messages
        # then held by nobody until their ack deadline passes.
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=self.wait + 2.0)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(BaseException):
                    await task
        held, self.held = list(self.held.values()), {}
        self.buffer.clear()
        for delivery in held:
            delivery.lost = True
            if not delivery.settled:
                self.settlements(delivery.subscription).change(delivery.ack_id, 0)
        for feed in self.feeds.values():
            with contextlib.suppress(*GOOGLE_ERRORS):
                await feed.settlements.flush()
            if feed.reader:
                await self.google.delete_subscription(feed.name)
