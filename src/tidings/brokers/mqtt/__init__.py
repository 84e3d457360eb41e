"""The MQTT broker (``mqtt://host:port[?options]``, extra ``tidings[mqtt]``), MQTT 5.

A topic is an MQTT topic of the same name; a consumer group ``g`` is a shared
subscription ``$share/g/<topic>`` (competing consumers within a group, fan-out
across groups); a group-less reader is a plain subscription. Messages travel
at QoS 1: ``publish`` returns once the broker sent its PUBACK. CloudEvents go
in binary mode in user properties (see :mod:`._binding`). Acks are manual (a
PUBACK per acked delivery); ``nack`` republishes a copy to the group (see
:mod:`._subscription`). What MQTT lacks is declared, not pretended: no replay,
no broker-side delay, no key affinity within a group, and no messages kept for
a group while none of its members is connected. See ``docs/brokers/mqtt.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import uuid
import zlib
from collections.abc import Sequence

from tidings.broker import Capabilities, Message, RevokeHandler, SubscribeOptions
from tidings.codec import Codec
from tidings.errors import BrokerClosedError, BrokerUnavailable, ConfigurationError, PublishError
from tidings.routing import validate_topic

try:
    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("the mqtt:// broker needs aiomqtt: pip install 'tidings[mqtt]'") from None

from tidings.brokers.mqtt import _binding
from tidings.brokers.mqtt._client import disconnected, dropped, manual_acks, no_delay
from tidings.brokers.mqtt._subscription import REDELIVER, MqttDelivery, MqttSubscription
from tidings.brokers.mqtt._url import MqttOptions

__all__ = ["MqttBroker", "MqttDelivery", "MqttOptions"]

log = logging.getLogger("tidings.brokers.mqtt")

CAPABILITIES = Capabilities(
    persistent=False,
    ordered_per_key=True,
    consumer_groups=True,
    key_affinity=False,
    replay=False,
    delayed_publish=False,
    delayed_redelivery=False,
    exactly_once=False,
    publish_dedup=False,
    headers=True,
    wildcards=True,
    # MQTT's largest packet is 256 MiB; leave room for the properties.
    max_message_size=(256 << 20) - (64 << 10),
)
#: Beyond any number of publishes in flight (aiomqtt warns above its threshold).
_NO_PENDING_WARNING = 1 << 62


class MqttBroker:
    """A client of an MQTT 5 broker. Create with :meth:`from_url`."""

    #: OpenTelemetry's ``messaging.system`` for spans of this broker.
    messaging_system = "mqtt"

    def __init__(self, options: MqttOptions) -> None:
        self.options = options
        self.capabilities = CAPABILITIES
        self.client: aiomqtt.Client | None = None
        self._subscriptions: set[MqttSubscription] = set()
        self._closed = False
        self._reconnecting = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str) -> MqttBroker:
        """``mqtt://[user:password@]host[:port][?option=value...]``."""
        return cls(MqttOptions.from_url(url))

    def default_codec(self) -> Codec:
        """CloudEvents binary mode in user properties, or structured with ``mode=structured``."""
        return Codec(self.options.mode)

    def __repr__(self) -> str:
        return f"<MqttBroker {self.options.url}>"

    # -- connections -----------------------------------------------------------------

    def _check_open(self) -> aiomqtt.Client:
        if self._closed or self.client is None:
            raise BrokerClosedError(f"mqtt broker {self.options.url} is closed")
        return self.client

    async def _open_client(
        self, receive_maximum: int | None = None, identifier: str | None = None
    ) -> aiomqtt.Client:
        """A new connection; BrokerUnavailable if none comes.

        With an ``identifier`` (a group member's) and ``session_expiry``, the
        session outlives the connection; otherwise the client id is new and the
        session clean.
        """
        options = self.options
        persistent = identifier is not None and options.session_expiry > 0
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if receive_maximum is not None:
            properties.ReceiveMaximum = receive_maximum
        if persistent:
            properties.SessionExpiryInterval = options.session_expiry
        tls_context = None
        if options.uses_tls:
            tls_context = ssl.create_default_context(cafile=options.tls_ca)
            if options.tls_cert is not None:
                tls_context.load_cert_chain(options.tls_cert, options.tls_key)
        client = aiomqtt.Client(
            options.host,
            options.port,
            username=options.username,
            password=options.password,
            identifier=identifier or f"{options.client_id}-{uuid.uuid4().hex[:12]}",
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=not persistent,
            keepalive=options.keepalive,
            timeout=options.connect_timeout,
            properties=properties,
            tls_context=tls_context,
            logger=log,
        )
        # aiomqtt logs a warning per publish while more than 10 are unacknowledged, which
        # every publish_batch of more than 10 events would do.
        client.pending_calls_threshold = _NO_PENDING_WARNING
        if receive_maximum is not None:
            manual_acks(client)
        await self.reopen(client)
        return client

    async def reopen(self, client: aiomqtt.Client) -> None:
        """Connect ``client`` (again: aiomqtt clients are reusable); BrokerUnavailable if not."""
        options = self.options
        if dropped(client):  # release aiomqtt's lock
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
        try:
            await asyncio.wait_for(client.__aenter__(), options.connect_timeout)
        except (TimeoutError, OSError, aiomqtt.MqttError) as exc:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
            reason = (
                f"no answer within {options.connect_timeout:g}s"
                if isinstance(exc, TimeoutError)
                else str(exc) or type(exc).__name__
            )
            raise BrokerUnavailable(f"no MQTT broker at {options.url}: {reason}") from None
        no_delay(client)

    async def connect(self) -> None:
        if self._closed:
            raise BrokerClosedError(f"mqtt broker {self.options.url} is closed")
        self.client = await self._open_client()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            with contextlib.suppress(Exception):
                await subscription.close()
        self._subscriptions.clear()
        client, self.client = self.client, None
        if client is not None and not dropped(client):
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)

    # -- publishing -----------------------------------------------------------------------

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Publish at QoS 1, in order; return once the broker acknowledged every message."""
        client = self._check_open()
        if not messages:
            return
        if disconnected(client).done():  # the connection dropped since the last publish
            async with self._reconnecting:
                if disconnected(client).done():
                    await self.reopen(client)
                    log.warning("mqtt: publisher reconnected to %s", self.options.url)
        if topic.startswith(("$", REDELIVER)):
            raise ConfigurationError(f"topic {topic!r} is reserved (starts with $ or {REDELIVER})")
        timeout = self.options.publish_timeout
        sends = [
            client.publish(
                topic,
                message.value,
                qos=1,
                properties=_binding.write(message, uuid.uuid4().hex),
                timeout=timeout,
            )
            for message in messages
        ]
        try:
            if len(sends) == 1:  # no task and gather for a lone publish
                await sends[0]
            else:
                # Each publish is handed to the client in order before the first await.
                await asyncio.gather(*sends)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            raise PublishError(
                f"publish to {topic!r} on {self.options.url} may not have been stored: "
                f"{exc or type(exc).__name__}"
            ) from None

    # -- subscribing -------------------------------------------------------------------------

    async def subscribe(
        self,
        topics: Sequence[str],
        group: str | None,
        options: SubscribeOptions = SubscribeOptions(),  # noqa: B008 - frozen
        on_revoke: RevokeHandler | None = None,
    ) -> MqttSubscription:
        """Join ``group`` (a shared subscription) on ``topics``, on a connection of its own.

        ``options.start`` cannot be honoured: MQTT keeps no history, so every
        member reads what is published from now on. ``prefetch`` is kept by the
        App (the broker may send up to ``receive_maximum`` unacked messages
        ahead). ``ack_wait`` and ``max_deliveries`` do not apply; ``on_revoke`` is never called (a
        member loses nothing while connected).
        """
        self._check_open()
        for topic in topics:
            validate_topic(topic, pattern=True)
            if "*" in topic or ">" in topic or topic.startswith(("$", REDELIVER)):
                raise ConfigurationError(
                    f"{topic!r} is not an MQTT topic filter here: wildcards are + and #, "
                    "and names starting with $ or tidings-redeliver/ are reserved"
                )
        if group is not None and (not group or any(c in group for c in "/+#")):
            raise ConfigurationError(f"an MQTT shared group name has no / + #: {group!r}")
        identifier = None if group is None else self._member_identifier(topics, group)
        client = await self._open_client(self.options.receive_maximum, identifier)
        subscription = MqttSubscription(
            client,
            topics,
            group,
            self.options.url,
            self.options.publish_timeout,
            reopen=self.reopen,
            persistent=identifier is not None,
        )
        try:
            await client.subscribe(
                [(f, 1) for f in subscription.filters()], timeout=self.options.connect_timeout
            )
        except (aiomqtt.MqttError, TimeoutError) as exc:
            await subscription.close()
            raise BrokerUnavailable(
                f"cannot subscribe to {list(topics)} on {self.options.url}: {exc}"
            ) from None
        self._subscriptions.add(subscription)
        subscription.watch()
        return subscription

    def _member_identifier(self, topics: Sequence[str], group: str) -> str | None:
        """The stable client id of this process's member of ``group`` on ``topics``, or None
        with clean sessions (``session_expiry=0``)."""
        options = self.options
        if options.session_expiry == 0:
            return None
        member = options.member or os.environ.get("TIDINGS_MEMBER")
        if not member:
            raise ConfigurationError(
                f"session_expiry needs a stable member name in {options.url}: add member=NAME "
                "to the URL or set TIDINGS_MEMBER (one name per process of the group; a "
                "second connection under the same name takes the session over)"
            )
        worker = os.environ.get("TIDINGS_WORKER")
        if worker is not None:
            member = f"{member}-{worker}"
        digest = zlib.crc32("\n".join(sorted(topics)).encode())
        return f"{options.client_id}-{group}-{member}-{digest:08x}"
