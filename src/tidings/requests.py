"""The asking side of request/reply: one mailbox per App, replies matched by request id.

The mailbox is opened at the first request and read until the App stops: a
broker's native inbox (:class:`~tidings.broker.NativeReplies`), else a
group-less subscription on the App's reply topic
(``tidings.replies.<app name>``; every instance of the App reads it and keeps
the replies to its own requests). A reply's ``causationid`` names its
request. A reply for a request that timed out (or was answered already) is
dropped and counted in :attr:`Requests.late`; one for no request of this
instance in :attr:`Requests.unmatched`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from tidings._deadline import expire_after
from tidings._replies import REPLY_FAILED_TYPE
from tidings.broker import Broker, Message, NativeReplies, Provisioning, Subscription
from tidings.codec import Codec
from tidings.errors import ConfigurationError, RequestError, RequestFailed, RequestTimeout
from tidings.event import Event

__all__ = ["REPLY_RETENTION", "Requests", "reply_topic"]

log = logging.getLogger("tidings.requests")

#: Seconds a reply topic keeps its replies, where the broker can be told.
REPLY_RETENTION = 3600.0
#: Ids of requests that timed out or were answered, kept to tell late replies apart.
_FORGET_AFTER = 10_000
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def reply_topic(app_name: str) -> str:
    """The reply topic of the App named ``app_name`` (on brokers without inboxes)."""
    return "tidings.replies." + _UNSAFE.sub("_", app_name)[:200]


class Requests:
    """Outstanding requests of one App, and the mailbox their replies arrive in."""

    def __init__(self, app_name: str, broker: Broker, codec: Codec) -> None:
        self.app_name = app_name
        self.broker = broker
        self.codec = codec
        self._pending: dict[str, asyncio.Future[Event]] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        self._address: str | None = None
        self._opening = asyncio.Lock()
        self._sub: Subscription | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        #: Replies received for requests that were waiting.
        self.answered = 0
        #: Requests that raised RequestTimeout.
        self.timed_out = 0
        #: Replies that came after their request timed out or was answered: dropped.
        self.late = 0
        #: Replies naming no request of this App instance (another instance's): dropped.
        self.unmatched = 0

    @property
    def outstanding(self) -> int:
        """Requests waiting for their reply now."""
        return len(self._pending)

    async def address(self) -> str:
        """Where replies to this App go; opens the mailbox on first use."""
        if self._address is not None:
            return self._address
        async with self._opening:
            if self._closed:
                raise ConfigurationError(f"app {self.app_name!r} is stopped")
            if self._address is None:
                self._address = await self._open()
        return self._address

    async def _open(self) -> str:
        broker = self.broker
        if isinstance(broker, NativeReplies):
            return await broker.open_inbox(self._receive)
        topic = reply_topic(self.app_name)
        if isinstance(broker, Provisioning):
            try:
                await broker.ensure_topic(topic, retention=REPLY_RETENTION)
            except ConfigurationError as exc:
                log.debug("reply topic %s keeps its default retention: %s", topic, exc)
        self._sub = await broker.subscribe([topic], None)
        self._reader = asyncio.get_running_loop().create_task(self._read(self._sub))
        return topic

    async def _read(self, sub: Subscription) -> None:
        while not self._closed:
            try:
                deliveries = await sub.fetch(256, 1.0)
                for d in deliveries:
                    self._receive(Message(d.value, d.headers))
                    await d.ack()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker is away: requests time out meanwhile
                if self._closed:
                    return
                log.warning("%s: reading replies failed: %r; retrying", self.app_name, exc)
                await asyncio.sleep(0.5)

    def _receive(self, message: Message) -> None:
        try:
            reply = self.codec.decode(message.value, message.headers)
        except Exception as exc:
            log.warning("%s: a reply could not be decoded and is dropped: %s", self.app_name, exc)
            self.unmatched += 1
            return
        request_id = reply.causationid or ""
        waiting = self._pending.pop(request_id, None)
        if waiting is None or waiting.done():
            if request_id in self._done:
                self.late += 1
                log.info("%s: late reply to request %s dropped", self.app_name, request_id)
            else:
                self.unmatched += 1
            return
        self._forget(request_id)
        self.answered += 1
        waiting.set_result(reply)

    def _forget(self, request_id: str) -> None:
        self._done[request_id] = None
        if len(self._done) > _FORGET_AFTER:
            self._done.popitem(last=False)

    async def ask(
        self,
        request: Event,
        topic: str,
        timeout: float,
        publish: Callable[[], Awaitable[None]],
    ) -> Event:
        """Publish ``request`` (through ``publish``) and wait up to ``timeout`` for its reply.

        The wait starts once the broker accepted the request. Raises
        :class:`RequestTimeout`, or :class:`RequestFailed` for a failure reply.
        """
        if self._closed:
            raise ConfigurationError(f"app {self.app_name!r} is stopped")
        loop = asyncio.get_running_loop()
        waiting: asyncio.Future[Event] = loop.create_future()
        self._pending[request.id] = waiting  # before publishing: a reply may come first
        timer: asyncio.TimerHandle | None = None
        try:
            await publish()
            timer = expire_after(timeout, waiting)
            reply = await waiting
        except TimeoutError:
            self.timed_out += 1
            raise RequestTimeout(topic, request.id, timeout) from None
        finally:
            if timer is not None:
                timer.cancel()
            if self._pending.pop(request.id, None) is not None:
                self._forget(request.id)
        if reply.type == REPLY_FAILED_TYPE:
            data = reply.data if isinstance(reply.data, dict) else {}
            raise RequestFailed(
                topic,
                request.id,
                str(data.get("error_type", "Exception")),
                str(data.get("error", "")),
            )
        return reply

    async def close(self) -> None:
        """Stop reading replies; requests still waiting raise :class:`RequestError`."""
        self._closed = True
        for request_id, waiting in list(self._pending.items()):
            if not waiting.done():
                waiting.set_exception(
                    RequestError(
                        f"app {self.app_name!r} stopped before request {request_id} was answered",
                        "",
                        request_id,
                    )
                )
        self._pending.clear()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                await sub.close()
            except Exception as exc:
                log.debug("%s: closing the reply subscription failed: %r", self.app_name, exc)
