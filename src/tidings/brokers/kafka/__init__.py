"""Kafka (``kafka://host:port[,host:port][?options]``), on aiokafka.

Topics and partitions are Kafka's: the record key is the partition key and
Kafka's default partitioner (murmur2) picks the partition, so a key lands
where any other Kafka client would put it. Consumer groups are Kafka consumer
groups; an ack moves the partition's contiguous settled prefix, committed as
the group's offset. A nack keeps the record in the member and hands it out
again after its delay, before later records of its key (other keys flow).
Records are CloudEvents in binary mode (``ce_`` headers) unless the URL says
``binding=structured``; both modes are read.

Options: see :class:`~tidings.brokers.kafka._url.KafkaConfig` and
docs/brokers/kafka.md.

Modules: ``_url`` (options), ``_binding`` (records <-> messages), ``_producer``
(publishing), ``_subscription`` (the group member) with ``_partition`` (one
assigned partition: deliveries, watermark, local redelivery) and ``_marks``
(handed-out marks for attempts), ``_offsets`` (group offsets without
joining), ``_admin`` (inspection, provisioning, seek positions), ``_client``
(aiokafka settings and errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from tidings.broker import (
    Capabilities,
    Message,
    Position,
    RevokeHandler,
    SubscribeOptions,
)
from tidings.brokers._member_id import member_id
from tidings.brokers.kafka._admin import KafkaAdmin
from tidings.brokers.kafka._binding import codec_for
from tidings.brokers.kafka._client import (
    aiokafka_module,
    client_settings,
    stop_consumer,
    unavailable,
)
from tidings.brokers.kafka._marks import HandedMarks
from tidings.brokers.kafka._producer import RecordProducer
from tidings.brokers.kafka._subscription import KafkaSubscription
from tidings.brokers.kafka._url import KafkaConfig
from tidings.codec import Codec
from tidings.errors import BrokerClosedError, ConfigurationError, PublishError
from tidings.inspection import GroupInfo, StoredMessage, TopicInfo

__all__ = ["KafkaBroker", "KafkaConfig"]

log = logging.getLogger("tidings.kafka")

_UNKNOWN_MEMBER_ID = 25
_ILLEGAL_GENERATION = 22

#: Largest record value tidings publishes (Kafka's default ``message.max.bytes`` is ~1 MiB).
MAX_MESSAGE_SIZE = 1_000_000

CAPABILITIES = Capabilities(
    persistent=True,
    ordered_per_key=True,
    consumer_groups=True,
    key_affinity=True,
    replay=True,
    delayed_publish=False,
    delayed_redelivery=True,
    exactly_once=False,
    publish_dedup=False,
    headers=True,
    wildcards=False,
    max_message_size=MAX_MESSAGE_SIZE,
)


class KafkaBroker:
    """A client of one Kafka cluster (or any Kafka-protocol server)."""

    capabilities = CAPABILITIES
    #: OpenTelemetry's ``messaging.system`` for spans of this broker.
    messaging_system = "kafka"

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        self._aiokafka: Any = None
        self._producer: Any = None
        self._admin_client: Any = None
        self._client: Any = None
        self._admin: KafkaAdmin | None = None
        self._records: RecordProducer | None = None
        self._subscriptions: list[KafkaSubscription] = []
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> KafkaBroker:
        return cls(KafkaConfig.from_url(url))

    def __repr__(self) -> str:
        return f"<KafkaBroker {self.config.url}>"

    def default_codec(self) -> Codec:
        return codec_for(self.config.binding)

    # -- connections -----------------------------------------------------------------

    async def connect(self) -> None:
        if self._closed:
            raise BrokerClosedError(f"kafka broker {self.config.url} is closed")
        if self._admin is not None:
            return
        aiokafka = self._aiokafka = aiokafka_module()
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.client import AIOKafkaClient

        config = self.config
        settings = client_settings(config)
        self._producer = aiokafka.AIOKafkaProducer(
            acks="all" if config.acks == "all" else 1,
            enable_idempotence=config.idempotence,
            linger_ms=config.linger_ms,
            max_request_size=1 << 20,
            **settings,
        )
        self._admin_client = AIOKafkaAdminClient(**settings)
        self._client = AIOKafkaClient(**settings)
        try:
            await self._start(self._client.bootstrap(), "connecting")
            await self._start(self._admin_client.start(), "connecting")
            await self._start(self._producer.start(), "starting the producer")
        except BaseException:
            await self._stop_clients()
            raise
        self._records = RecordProducer(self._producer, config.binding == "structured")
        self._admin = KafkaAdmin(config, aiokafka, self._admin_client, self._client, self._producer)

    async def _start(self, starting: Any, what: str) -> None:
        from aiokafka.errors import KafkaConnectionError, KafkaError

        try:
            await asyncio.wait_for(starting, self.config.connect_timeout)
        except (TimeoutError, KafkaConnectionError, OSError) as exc:
            raise unavailable(self.config, exc, what) from None
        except KafkaError as exc:
            if self.config.idempotence and what == "starting the producer":
                raise ConfigurationError(
                    f"kafka broker {self.config.url} refused the idempotent producer "
                    f"({type(exc).__name__}); add ?idempotence=false to the URL if the "
                    "server does not support it"
                ) from None
            raise unavailable(self.config, exc, what) from None

    async def _stop_clients(self) -> None:
        for stop in (
            self._producer.stop if self._producer is not None else None,
            self._admin_client.close if self._admin_client is not None else None,
            self._client.close if self._client is not None else None,
        ):
            if stop is None:
                continue
            try:
                await asyncio.wait_for(stop(), self.config.connect_timeout)
            except Exception as exc:
                log.debug("kafka: closing a client failed: %s", exc)

    @property
    def admin(self) -> KafkaAdmin:
        if self._closed:
            raise BrokerClosedError(f"kafka broker {self.config.url} is closed")
        if self._admin is None:
            raise BrokerClosedError(f"kafka broker {self.config.url} is not connected")
        return self._admin

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sub in list(self._subscriptions):
            await sub.close()
        self._subscriptions.clear()
        if self._admin is not None:
            try:
                await self._admin.close()
            except Exception as exc:
                log.debug("kafka: closing the inspector failed: %s", exc)
        await self._stop_clients()

    # -- publishing ------------------------------------------------------------------

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        admin = self.admin
        try:
            await admin.ensure(topic)
        except ConfigurationError:
            raise
        except Exception as exc:
            raise PublishError(f"kafka publish to {topic!r} failed: {exc}") from exc
        assert self._records is not None
        try:
            await self._records.publish(topic, messages)
        except Exception as exc:
            raise PublishError(
                f"kafka publish to {topic!r} failed (stored or not): {type(exc).__name__}: {exc}"
            ) from exc

    # -- subscribing -----------------------------------------------------------------

    async def subscribe(
        self,
        topics: Sequence[str],
        group: str | None,
        options: SubscribeOptions = SubscribeOptions(),  # noqa: B008 - frozen
        on_revoke: RevokeHandler | None = None,
    ) -> KafkaSubscription:
        admin = self.admin
        for topic in topics:
            await admin.ensure(topic)
        if group is None:
            sub = await self._reader(topics)
        else:
            sub = await self._member(topics, group, options, on_revoke)
        self._subscriptions.append(sub)
        return sub

    def _consumer(
        self, group: str | None, start: str, prefetch: int, client_name: str | None = None
    ) -> Any:
        config = self.config
        settings = client_settings(config)
        if group is not None:
            # The coordinator names a member <client_id>-<uuid>: say whose it is.
            settings["client_id"] = member_id(client_name or config.client_id)
        return self._aiokafka.AIOKafkaConsumer(
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset=start,
            session_timeout_ms=int(config.session_timeout * 1000),
            heartbeat_interval_ms=int(config.heartbeat_interval * 1000),
            fetch_max_wait_ms=100,
            max_poll_records=max(prefetch, 500),
            **settings,
        )

    async def _member(
        self,
        topics: Sequence[str],
        group: str,
        options: SubscribeOptions,
        on_revoke: RevokeHandler | None,
    ) -> KafkaSubscription:
        from aiokafka import ConsumerRebalanceListener

        config = self.config
        assert self._admin is not None
        marks = HandedMarks(self._admin.offsets, group) if config.track_attempts else None
        latest: dict[Any, int] | None = None
        if options.start == "latest":
            latest = {}
            for topic in topics:
                for p, (_, end) in (await self._admin.bounds(topic)).items():
                    latest[self._aiokafka.TopicPartition(topic, p)] = end
        consumer = self._consumer(group, options.start, options.prefetch, options.client_name)
        sub = KafkaSubscription(
            config,
            consumer,
            group,
            grouped=True,
            marks=marks,
            on_revoke=on_revoke,
            offsets=self._admin.offsets,
            latest=latest,
        )

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await sub.partitions_revoked(revoked)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                await sub.partitions_assigned(assigned)

        try:
            await self._start(consumer.start(), f"joining group {group}")
            consumer.subscribe(list(topics), listener=Listener())
            # Subscribed means consuming: wait for the first assignment (a join takes the
            # coordinator's rebalance delay), so events published next are this member's.
            await asyncio.wait_for(
                sub.assigned.wait(), config.connect_timeout + config.session_timeout
            )
        except TimeoutError:
            log.warning("kafka: group %s has not assigned partitions yet; reading on", group)
        except BaseException:
            await stop_consumer(consumer, config.session_timeout, f"a member of {group}")
            raise
        sub.start_committing()
        return sub

    async def _reader(self, topics: Sequence[str]) -> KafkaSubscription:
        config = self.config
        consumer = self._consumer(None, "latest", 256)
        name = f"~reader-{uuid.uuid4().hex[:12]}"
        sub = KafkaSubscription(config, consumer, name, grouped=False, marks=None, on_revoke=None)
        try:
            await self._start(consumer.start(), "starting a reader")
            tps = [
                self._aiokafka.TopicPartition(topic, p)
                for topic in topics
                for p in await self.admin.partitions(topic)
            ]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)
                sub.add(tp)
        except BaseException:
            await stop_consumer(consumer, config.connect_timeout, "a reader")
            raise
        return sub

    # -- replay, provisioning, inspection --------------------------------------------

    async def seek(self, topic: str, group: str, position: Position) -> None:
        admin = self.admin
        offsets = await admin.positions(topic, position)
        local = [s for s in self._subscriptions if s.grouped and s.group == group and not s.closed]
        rest = dict(offsets)
        for sub in local:
            owned = {p: offsets[p] for p in sub.owns(topic) if p in offsets}
            await sub.seek(topic, owned)
            for p in owned:
                rest.pop(p, None)
        if not rest:
            return
        error = await admin.offsets.commit(group, {(topic, p): o for p, o in rest.items()})
        if error in (_UNKNOWN_MEMBER_ID, _ILLEGAL_GENERATION):
            # Some servers (tansu) refuse member-less commits once a group had members:
            # join it briefly, as its only member, and commit as that member.
            error = await self._commit_as_member(topic, group, rest)
        if error:
            raise ConfigurationError(
                f"kafka refused to move group {group!r} (error {error}): Kafka moves only a "
                "group without live members; stop its workers, seek, then start them"
            )

    async def _commit_as_member(self, topic: str, group: str, offsets: dict[int, int]) -> int:
        from aiokafka import ConsumerRebalanceListener

        consumer = self._consumer(group, "earliest", 1)
        try:
            await self._start(consumer.start(), f"joining group {group}")
            assigned = asyncio.Event()

            class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
                async def on_partitions_revoked(self, revoked: Any) -> None:
                    pass

                async def on_partitions_assigned(self, partitions: Any) -> None:
                    assigned.set()

            consumer.subscribe([topic], listener=Listener())
            with contextlib.suppress(TimeoutError):
                wait = self.config.connect_timeout + self.config.session_timeout
                await asyncio.wait_for(assigned.wait(), wait)
            owned = {tp.partition: tp for tp in consumer.assignment()}
            if set(offsets) - set(owned):
                return _UNKNOWN_MEMBER_ID  # others own some partitions: the group is live
            await consumer.commit({owned[p]: offset for p, offset in offsets.items()})
            return 0
        finally:
            await stop_consumer(consumer, self.config.session_timeout, f"a member of {group}")

    async def ensure_topic(
        self,
        name: str,
        *,
        partitions: int | None = None,
        retention: float | None = None,
        retention_bytes: int | None = None,
        compact: bool = False,
    ) -> None:
        await self.admin.ensure_topic(
            name,
            partitions=partitions,
            retention=retention,
            retention_bytes=retention_bytes,
            compact=compact,
        )

    async def list_topics(self) -> list[TopicInfo]:
        return await self.admin.list_topics()

    async def list_groups(self) -> list[GroupInfo]:
        return await self.admin.list_groups()

    async def read(
        self,
        topic: str,
        *,
        after: Mapping[int, int] | None = None,
        last: int | None = None,
        limit: int = 1000,
    ) -> list[StoredMessage]:
        return await self.admin.read(topic, after=after, last=last, limit=limit)

    async def delete(self, topic: str, entries: Sequence[tuple[int, int]]) -> int:
        return await self.admin.delete(topic, entries)

    async def move(self, topic: str, entries: Sequence[tuple[int, int, str, Message]]) -> int:
        return await self.admin.move(topic, entries)
