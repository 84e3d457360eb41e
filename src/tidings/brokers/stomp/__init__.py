"""The STOMP broker (``stomp://user:pass@host:61613/vhost``, extra ``tidings[stomp]``).

STOMP 1.2 against RabbitMQ's STOMP plugin (``rabbitmq_stomp``). A topic is a
routing key of the ``amq.topic`` exchange (destination ``/topic/<topic>``); a
consumer group is a durable quorum queue ``<topic>.<group>`` bound to it
(``/amq/queue/<topic>.<group>`` to other STOMP clients): every group gets every
event, the members of a group compete for its queue (:mod:`._subscription`).
Publishes ask for a ``RECEIPT``, which RabbitMQ sends once the message is
confirmed (routed and, for durable queues, written): ``publish`` returns when
every receipt arrived and raises :class:`~tidings.errors.PublishError` when one
did not within ``publish_timeout``. Events are written in the CloudEvents AMQP
binding's headers (:mod:`._binding`), so ``amqp://`` clients read them.

What RabbitMQ's STOMP cannot do is declared, not pretended: no replay (a
group's queue holds what was published once it existed; an event published
while a topic has no group is dropped by the exchange, as on SNS), no key
affinity (competing members may hold events of one key at once: order per key
holds within one member), no delay on publish (core keeps delayed events).

The client is this package's own asyncio STOMP 1.2 framing (:mod:`._frames`,
under 400 lines). stomp.py runs a receiver thread per connection and calls
back from it, so every frame would cross threads to reach the event loop:
measured with ``bench/run.py --suite stomp`` (the same frames, one ``ACK``
each), stomp.py's own listener loop consumed at 25-65 % of the rate of this
framing on the event loop. stompman (asyncio) acks around its own handler
callback and its ``send`` does not wait for a ``RECEIPT`` in the source read
while writing this, while a publish here must wait for one. See
``docs/brokers/stomp.md``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence

from tidings.broker import Capabilities, Message, RevokeHandler, SubscribeOptions
from tidings.brokers.stomp._binding import codec_for, write
from tidings.brokers.stomp._frames import StompConnection, StompError
from tidings.brokers.stomp._subscription import StompMember, destination
from tidings.brokers.stomp._url import StompOptions
from tidings.codec import Codec
from tidings.errors import (
    BrokerClosedError,
    BrokerUnavailable,
    ConfigurationError,
    EventTooLargeError,
    PublishError,
)

__all__ = ["StompBroker", "StompOptions"]

log = logging.getLogger("tidings.brokers.stomp")

#: RabbitMQ's STOMP plugin refuses frames above ``stomp.max_frame_size`` (4 MiB by
#: default in 3.10); a margin stays for the headers.
MAX_VALUE = (4 << 20) - (64 << 10)

CAPABILITIES = Capabilities(
    persistent=True,
    ordered_per_key=True,
    consumer_groups=True,
    key_affinity=False,
    replay=False,
    delayed_publish=False,
    delayed_redelivery=True,
    exactly_once=False,
    publish_dedup=False,
    headers=True,
    wildcards=False,
    max_message_size=MAX_VALUE,
)

_BAD_TOPIC = ("/", "*", "#")
#: Topics ending so hold dead letters: a durable queue of the topic's name keeps them.
DEAD_LETTERS = ".dlq"


def check_topic(topic: str) -> None:
    if not topic or len(topic.encode()) > 200 or any(c in topic for c in _BAD_TOPIC):
        raise ConfigurationError(
            f"{topic!r} cannot name a STOMP topic: a routing key of 1-200 bytes "
            "without '/', '*' or '#'"
        )


class StompBroker:
    """A STOMP 1.2 client of RabbitMQ's STOMP plugin. Create with :meth:`from_url`."""

    #: OpenTelemetry's ``messaging.system`` for spans of this broker.
    messaging_system = "rabbitmq"

    def __init__(self, options: StompOptions) -> None:
        self.options = options
        self.capabilities = CAPABILITIES
        self.connection: StompConnection | None = None
        self._members: set[StompMember] = set()
        self._connecting = asyncio.Lock()
        self._closed = False
        self._connected = False
        #: Delay queues declared through this client's members (they expire once unused).
        self.delay_queues: set[str] = set()
        #: Dead-letter topics whose keeping queue this client bound already.
        self._kept: set[str] = set()

    @classmethod
    def from_url(cls, url: str) -> StompBroker:
        """``stomp://[user:password@]host[:port][/vhost][?option=value...]``."""
        return cls(StompOptions.from_url(url))

    def default_codec(self) -> Codec:
        """CloudEvents binary mode (``cloudEvents_`` headers), or structured with
        ``binding=structured``."""
        return codec_for(self.options.binding)

    def __repr__(self) -> str:
        return f"<StompBroker {self.options.url}>"

    # -- connection -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed or not self._connected:
            raise BrokerClosedError(f"stomp broker {self.options.url} is closed")

    async def _open(self) -> StompConnection:
        options = self.options
        context = ssl.create_default_context(cafile=options.tls_ca) if options.tls else None
        try:
            return await StompConnection.open(
                options.host,
                options.port,
                login=options.username,
                passcode=options.password,
                vhost=options.vhost,
                heartbeat=options.heartbeat,
                timeout=options.connect_timeout,
                tls=context,
            )
        except StompError as exc:
            raise BrokerUnavailable(
                f"the STOMP server at {options.url} refused the connection: {exc}"
            ) from None
        except (TimeoutError, OSError) as exc:
            raise BrokerUnavailable(
                f"no STOMP server at {options.url}: no answer within "
                f"{options.connect_timeout:g}s ({type(exc).__name__})"
            ) from None

    async def _ensure(self) -> StompConnection:
        """The publishing connection, opened again first if it was lost."""
        self._check_open()
        connection = self.connection
        if connection is not None and connection.alive:
            return connection
        async with self._connecting:
            connection = self.connection
            if connection is not None and connection.alive:
                return connection
            if connection is not None:
                log.warning("stomp broker %s: connection lost; connecting again", self.options.url)
            fresh = await self._open()
            if self._closed:
                await fresh.close()
                raise BrokerClosedError(f"stomp broker {self.options.url} is closed")
            self.connection = fresh
            return fresh

    async def connect(self) -> None:
        if self._closed:
            raise BrokerClosedError(f"stomp broker {self.options.url} is closed")
        self.connection = await self._open()
        self._connected = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for member in list(self._members):
            await self._leave(member)
        connection, self.connection = self.connection, None
        if connection is not None:
            await connection.close()

    # -- publishing -----------------------------------------------------------------

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Send every message with a receipt; return once every receipt arrived."""
        self._check_open()
        if not messages:
            return
        check_topic(topic)
        for message in messages:
            if len(message.value) > MAX_VALUE:
                raise EventTooLargeError(len(message.value), MAX_VALUE)
        try:
            connection = await self._ensure()
        except BrokerUnavailable as exc:
            raise PublishError(f"publish to {topic!r} failed: {exc}; nothing was stored") from exc
        if topic.endswith(DEAD_LETTERS) and topic not in self._kept:
            await self._keep(connection, topic)
        structured = self.options.binding == "structured"
        target = destination(topic)
        frames = []
        for message in messages:
            headers = write(message, structured)
            headers["destination"] = target
            frames.append((headers, message.value))
        receipts = connection.send_many("SEND", frames)
        timeout = self.options.publish_timeout
        try:
            async with asyncio.timeout(timeout):
                await receipts
        except (TimeoutError, StompError) as exc:
            # Receipts arriving later are counted down and ignored.
            if self._closed:
                raise BrokerClosedError(f"stomp broker {self.options.url} is closed") from None
            reason = f"no receipt within {timeout:g}s" if isinstance(exc, TimeoutError) else exc
            raise PublishError(
                f"publish to {topic!r} on {self.options.url} failed: {reason}; the events may "
                "or may not be stored"
            ) from exc

    async def _keep(self, connection: StompConnection, topic: str) -> None:
        """Bind a durable queue named ``topic`` to it, which keeps its events until read.

        For dead-letter topics (``<topic>.dlq``): ``amq.topic`` drops what no queue is
        bound for, and a dead letter must not be lost because no group reads the DLQ
        yet. A ``SUBSCRIBE`` declares and binds the queue; the ``UNSUBSCRIBE`` right after
        (without ``durable:true``) leaves both."""
        sub_id = f"keep-{connection.new_id()}"
        headers = {
            "id": sub_id,
            "destination": destination(topic),
            "ack": "client-individual",
            "prefetch-count": "1",
            "durable": "true",
            "auto-delete": "false",
            "x-queue-name": topic,
            "x-queue-type": self.options.queue_type,
        }
        try:
            async with asyncio.timeout(self.options.publish_timeout):
                await connection.send("SUBSCRIBE", headers)
                await connection.send("UNSUBSCRIBE", {"id": sub_id})
        except (TimeoutError, StompError) as exc:
            raise PublishError(
                f"cannot keep dead letters of {topic!r} on {self.options.url}: "
                f"{exc or type(exc).__name__}; nothing was stored"
            ) from None
        self._kept.add(topic)

    # -- subscribing ----------------------------------------------------------------

    async def subscribe(
        self,
        topics: Sequence[str],
        group: str | None,
        options: SubscribeOptions = SubscribeOptions(),  # noqa: B008 - frozen
        on_revoke: RevokeHandler | None = None,
    ) -> StompMember:
        """Join ``group`` (its durable queue per topic) on ``topics``, on a connection of
        its own. ``options.start`` cannot reach back: a new group's queue receives what is
        published from its creation on. ``ack_wait`` is not used: RabbitMQ keeps an
        unacked message with its consumer until the connection closes."""
        self._check_open()
        if not topics:
            raise ConfigurationError("subscribe needs at least one topic")
        for topic in topics:
            check_topic(topic)
        if group is not None and (not group or "/" in group or group == DEAD_LETTERS[1:]):
            raise ConfigurationError(
                f"{group!r} cannot name a STOMP consumer group (no '/'; 'dlq' names the "
                "queue that keeps a topic's dead letters)"
            )
        connection = await self._open()
        member = StompMember(
            connection,
            topics,
            group,
            options.prefetch,
            self.options.queue_type,
            self.options.retry_grace,
            on_revoke,
            self._leave,
        )
        self._members.add(member)
        try:
            await member.start(self.options.connect_timeout)
        except (TimeoutError, StompError) as exc:
            await self._leave(member)
            raise BrokerUnavailable(
                f"cannot subscribe to {list(topics)} on {self.options.url}: "
                f"{exc or type(exc).__name__}"
            ) from None
        except BaseException:
            await self._leave(member)
            raise
        return member

    async def _leave(self, member: StompMember) -> None:
        self._members.discard(member)
        self.delay_queues |= member.delay_queues
        await member.stop()
