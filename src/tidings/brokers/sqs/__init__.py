"""The Amazon SNS/SQS broker (``sns+sqs://`` and ``sqs://``, extra ``tidings[aws]``).

``sns+sqs://``: a topic is an SNS topic; a consumer group is an SQS queue
subscribed to it with raw message delivery, so every group gets every event
(fan-out) and the members of a group compete for its queue's messages. With
``fifo=true`` topics and queues are FIFO: ``MessageGroupId`` is the partition
key (events of a key in order, one at a time within a group) and
``MessageDeduplicationId`` the event id. ``sqs://``: a topic is one SQS queue
and every consumer competes on it (point to point; no groups). Names are
mapped in :mod:`._topology`, events in :mod:`._binding`, receiving and
settling in :mod:`._subscription` and :mod:`._delivery`.

The client is aiobotocore: botocore itself (the request signing, retries,
endpoint and credential resolution of the AWS SDK for Python) on aiohttp, kept
by aio-libs and used by s3fs and aioboto3. What SNS/SQS lack is declared, not
pretended: no replay (nothing is kept for a group that does not exist yet), no
delay on SNS publishes (core keeps those), no order on standard topics. See
``docs/brokers/sqs.md``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tidings.broker import Capabilities, Message, RevokeHandler, SubscribeOptions
from tidings.codec import Codec
from tidings.errors import (
    BrokerClosedError,
    BrokerUnavailable,
    ConfigurationError,
    EventTooLargeError,
    PublishError,
)

try:
    import aiobotocore  # noqa: F401
    from botocore.exceptions import ClientError
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the sns+sqs:// and sqs:// brokers need aiobotocore: pip install 'tidings[aws]'"
    ) from None

from tidings.brokers.sqs._binding import Wire, codec_for, write
from tidings.brokers.sqs._client import AWS_ERRORS, MISSING_QUEUE, MISSING_TOPIC, Aws, code_of
from tidings.brokers.sqs._delivery import Settlements
from tidings.brokers.sqs._subscription import Queue, SqsMember
from tidings.brokers.sqs._topology import group_queue, point_queue
from tidings.brokers.sqs._url import SqsOptions

if TYPE_CHECKING:
    from types_aiobotocore_sns.type_defs import PublishBatchRequestEntryTypeDef
    from types_aiobotocore_sqs.type_defs import (
        SendMessageBatchRequestEntryTypeDef as SendEntry,
    )

__all__ = ["SqsBroker", "SqsOptions"]

log = logging.getLogger("tidings.brokers.sqs")

#: SNS and SQS take messages (body and attributes) and batches of up to 256 KiB.
WIRE_LIMIT = 256 * 1024
#: Arbitrary bytes travel as base64 (4/3 larger): the largest value that always fits.
MAX_VALUE = 192 * 1024
_BATCH = 10
#: Batches of one publish sent at once (standard topics and queues).
_IN_FLIGHT = 16
#: SQS's longest DelaySeconds (15 minutes).
_MAX_DELAY = 900


def capabilities_for(options: SqsOptions) -> Capabilities:
    """What the URL's mode can do (FIFO orders per key and deduplicates)."""
    return Capabilities(
        persistent=True,
        ordered_per_key=options.fifo,
        consumer_groups=options.fanout,
        key_affinity=options.fifo,
        replay=False,
        # SQS DelaySeconds: standard queues only (SNS has no delay, FIFO none per message).
        delayed_publish=not options.fanout and not options.fifo,
        delayed_redelivery=True,
        exactly_once=False,
        publish_dedup=options.fifo,
        headers=True,
        wildcards=False,
        max_message_size=MAX_VALUE,
    )


class SqsBroker:
    """A client of Amazon SNS and SQS (or an emulator). Create with :meth:`from_url`."""

    def __init__(self, options: SqsOptions) -> None:
        self.options = options
        self.capabilities = capabilities_for(options)
        self.aws = Aws(options, pool=max(64, 4 * options.receivers))
        self._members: set[SqsMember] = set()
        self._connected = False
        self._closed = False

    @property
    def messaging_system(self) -> str:
        """OpenTelemetry's ``messaging.system`` for spans of this broker."""
        return "aws_sns" if self.options.fanout else "aws_sqs"

    @classmethod
    def from_url(cls, url: str) -> SqsBroker:
        """``sns+sqs://`` or ``sqs://``, ``[key_id:secret@][host[:port]][?option=value...]``."""
        return cls(SqsOptions.from_url(url))

    def default_codec(self) -> Codec:
        """CloudEvents binary mode (message attributes), or structured (``binding=structured``)."""
        return codec_for(self.options.binding)

    def __repr__(self) -> str:
        return f"<SqsBroker {self.options.url}>"

    # -- connection -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed or not self._connected:
            raise BrokerClosedError(f"SNS/SQS broker {self.options.url} is closed")

    async def connect(self) -> None:
        if self._closed:
            raise BrokerClosedError(f"SNS/SQS broker {self.options.url} is closed")
        await self.aws.open()
        self._connected = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for member in list(self._members):
            await self._leave(member)
        await self.aws.close()

    # -- publishing ---------------------------------------------------------------------

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Publish in batches of ten; return once SNS (or SQS) accepted every message."""
        self._check_open()
        if not messages:
            return
        batches = self._batches(messages)
        timeout = self.options.publish_timeout
        try:
            if self.options.fifo or len(batches) == 1:
                for batch in batches:  # in order: a key's messages stay in sequence
                    async with asyncio.timeout(timeout):
                        await self._send(topic, batch)
            else:
                gate = asyncio.Semaphore(_IN_FLIGHT)

                async def limited(batch: list[tuple[Message, Wire]]) -> None:
                    async with gate, asyncio.timeout(timeout):
                        await self._send(topic, batch)

                await asyncio.gather(*(limited(batch) for batch in batches))
        except ConfigurationError:
            raise
        except (*AWS_ERRORS, PublishError) as exc:
            if self._closed:
                raise BrokerClosedError(f"SNS/SQS broker {self.options.url} is closed") from None
            reason = f"no answer within {timeout:g}s" if isinstance(exc, TimeoutError) else exc
            raise PublishError(
                f"publish to {topic!r} on {self.options.url} failed: {reason}; the events may "
                "or may not be stored"
            ) from exc

    async def _send(self, topic: str, batch: list[tuple[Message, Wire]]) -> None:
        """Send one batch; a topic or queue that vanished (an emulator restarted empty, a
        queue deleted by hand) is created again, once."""
        fifo = self.options.fifo
        for last in (False, True):
            try:
                if self.options.fanout:
                    await self._publish_sns(await self.aws.topic_arn(topic), batch)
                else:
                    url = (await self.aws.queue(point_queue(topic, fifo), topic))[0]
                    await self._send_sqs(url, batch)
                return
            except ClientError as exc:
                if last or code_of(exc) not in MISSING_TOPIC | MISSING_QUEUE:
                    raise
                log.warning("%s was gone on %s: creating it again", topic, self.options.url)
                self.aws.forget()

    def _batches(self, messages: Sequence[Message]) -> list[list[tuple[Message, Wire]]]:
        """Batches of at most ten messages and 256 KiB."""
        batches: list[list[tuple[Message, Wire]]] = []
        current: list[tuple[Message, Wire]] = []
        size = 0
        for message in messages:
            wire = write(message)
            if wire.size > WIRE_LIMIT:
                raise EventTooLargeError(wire.size, WIRE_LIMIT)
            if current and (len(current) == _BATCH or size + wire.size > WIRE_LIMIT):
                batches.append(current)
                current, size = [], 0
            current.append((message, wire))
            size += wire.size
        batches.append(current)
        return batches

    def _fifo_fields(
        self, message: Message, entry: PublishBatchRequestEntryTypeDef | SendEntry
    ) -> None:
        if self.options.fifo:
            # A delayed event (kept by the consuming App) must not hold its key meanwhile:
            # it goes in a message group of its own.
            key = message.key if message.deliver_at is None else None
            entry["MessageGroupId"] = key if key is not None else secrets.token_hex(8)
            entry["MessageDeduplicationId"] = (message.id or uuid.uuid4().hex)[:128]

    async def _publish_sns(self, arn: str, batch: list[tuple[Message, Wire]]) -> None:
        entries: list[PublishBatchRequestEntryTypeDef] = []
        for n, (message, wire) in enumerate(batch):
            entry: PublishBatchRequestEntryTypeDef = {"Id": str(n), "Message": wire.body}
            if wire.attributes:
                entry["MessageAttributes"] = wire.attributes
            self._fifo_fields(message, entry)
            entries.append(entry)
        done = await self.aws.sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=entries)
        _check_failed(done.get("Failed", []))

    async def _send_sqs(self, url: str, batch: list[tuple[Message, Wire]]) -> None:
        entries: list[SendEntry] = []
        now = time.time()
        for n, (message, wire) in enumerate(batch):
            entry: SendEntry = {"Id": str(n), "MessageBody": wire.body}
            if wire.attributes:
                entry["MessageAttributes"] = wire.attributes
            if message.deliver_at is not None and message.deliver_at > now:
                delay = math.ceil(message.deliver_at - now)
                if delay > _MAX_DELAY:
                    raise ConfigurationError(
                        f"SQS delays a message by at most {_MAX_DELAY} s; asked {delay} s"
                    )
                entry["DelaySeconds"] = delay
            self._fifo_fields(message, entry)
            entries.append(entry)
        done = await self.aws.sqs.send_message_batch(QueueUrl=url, Entries=entries)
        _check_failed(done.get("Failed", []))

    # -- subscribing ----------------------------------------------------------------------

    async def subscribe(
        self,
        topics: Sequence[str],
        group: str | None,
        options: SubscribeOptions = SubscribeOptions(),  # noqa: B008 - frozen
        on_revoke: RevokeHandler | None = None,
    ) -> SqsMember:
        """Join ``group`` (its queue per topic) on ``topics``.

        ``options.start`` cannot reach back: a new group's queue receives what
        is published from its creation on. ``ack_wait`` is the visibility
        timeout of each receive. ``max_deliveries`` is not used: the redrive
        policy, set when a queue is created, takes the URL's ``max_receives``.
        """
        self._check_open()
        if not topics:
            raise ConfigurationError("subscribe needs at least one topic")
        fifo = self.options.fifo
        queues: list[Queue] = []
        try:
            for topic in topics:
                if not self.options.fanout:
                    if group is None:
                        raise ConfigurationError(
                            "sqs:// queues are point to point: a group-less reader would take "
                            "messages away from the consumers; use sns+sqs:// for it"
                        )
                    name = point_queue(topic, fifo)
                elif group is None:
                    name = group_queue(topic, f"tail-{secrets.token_hex(6)}", fifo)
                else:
                    name = group_queue(topic, group, fifo)
                queue = Queue(topic, name, "", Settlements(self.aws.sqs, ""), group is None)
                await self._open_queue(queue)
                queues.append(queue)
        except ConfigurationError:
            for queue in queues:
                if queue.subscription_arn is not None:
                    await self.aws.drop_queue(queue.name, queue.subscription_arn)
            raise
        except AWS_ERRORS as exc:
            raise BrokerUnavailable(
                f"cannot subscribe to {list(topics)} on {self.options.url}: {exc}"
            ) from exc
        member = SqsMember(
            self.aws, queues, group, options, on_revoke, self._leave, self._open_queue
        )
        self._members.add(member)
        member.start(self.options.receivers)
        return member

    async def _open_queue(self, queue: Queue) -> None:
        """Create ``queue`` (with its redrive policy) and subscribe it to its topic."""
        url, arn = await self.aws.queue(queue.name, None if queue.reader else queue.topic)
        queue.url = queue.settlements.url = url
        if self.options.fanout:
            subscription = await self.aws.subscribe_queue(queue.topic, url, arn)
            if queue.reader:
                queue.subscription_arn = subscription

    async def _leave(self, member: SqsMember) -> None:
        self._members.discard(member)
        await member.stop()


def _check_failed(failed: Sequence[Any]) -> None:
    if failed:
        first = failed[0]
        raise PublishError(
            f"{len(failed)} message(s) refused: {first.get('Code')}: {first.get('Message')}"
        )
