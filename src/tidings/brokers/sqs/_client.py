"""The SNS and SQS clients of one broker, and the resources they create.

aiobotocore's clients (one SNS, one SQS per broker) share a connection pool
sized for the receives in flight. Topics, queues and subscriptions are created
on first use (``CreateTopic``, ``CreateQueue`` and ``Subscribe`` return what
exists), and their ARNs and URLs remembered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from tidings.brokers.sqs._topology import (
    dead_letter_queue,
    queue_attributes,
    queue_policy,
    topic_name,
)
from tidings.brokers.sqs._url import SqsOptions
from tidings.errors import BrokerUnavailable

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient

__all__ = ["AWS_ERRORS", "MISSING_QUEUE", "MISSING_TOPIC", "Aws", "code_of"]

log = logging.getLogger("tidings.brokers.sqs")

#: What a call through aiobotocore raises when it fails.
AWS_ERRORS = (ClientError, BotoCoreError, OSError, TimeoutError)
#: Error codes of a queue or a topic that does not exist (any more).
MISSING_QUEUE = frozenset(
    ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue")
)
MISSING_TOPIC = frozenset(("NotFound", "NotFoundException"))
_EXISTS = ("QueueAlreadyExists", "QueueNameExists", "AWS.SimpleQueueService.QueueNameExists")


def code_of(exc: BaseException) -> str:
    """The AWS error code of a ``ClientError`` (empty for other errors)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


class Aws:
    """An SNS client and an SQS client with what they created."""

    def __init__(self, options: SqsOptions, pool: int = 64) -> None:
        self.options = options
        self._pool = pool
        self._stack = contextlib.AsyncExitStack()
        self._sqs: SQSClient | None = None
        self._sns: SNSClient | None = None
        self.topics: dict[str, str] = {}
        self.queues: dict[str, tuple[str, str]] = {}
        self.subscribed: set[tuple[str, str]] = set()
        self._creating: dict[str, asyncio.Lock] = {}

    @property
    def sqs(self) -> SQSClient:
        assert self._sqs is not None, "connect() first"
        return self._sqs

    @property
    def sns(self) -> SNSClient:
        assert self._sns is not None, "connect() first"
        return self._sns

    async def open(self) -> None:
        """Create the clients and make one call: BrokerUnavailable if it fails in time."""
        options = self.options
        session = get_session()
        region = options.region or session.get_config_variable("region") or "us-east-1"
        config = AioConfig(
            connect_timeout=options.connect_timeout,
            read_timeout=max(options.publish_timeout, options.wait + 10.0),
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=self._pool,
        )
        kwargs: dict[str, Any] = {"region_name": region, "config": config}
        if options.endpoint is not None:
            kwargs["endpoint_url"] = options.endpoint
        if options.access_key is not None:
            kwargs["aws_access_key_id"] = options.access_key
            kwargs["aws_secret_access_key"] = options.secret_key
        try:
            self._sqs = await self._stack.enter_async_context(
                session.create_client("sqs", **kwargs)
            )
            if options.fanout:
                self._sns = await self._stack.enter_async_context(
                    session.create_client("sns", **kwargs)
                )
            async with asyncio.timeout(options.connect_timeout):
                await self.sqs.list_queues(MaxResults=1)
        except NoCredentialsError:
            await self.close()
            raise BrokerUnavailable(
                f"no AWS credentials for {options.url}: put key_id:secret@ in the URL or set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
            ) from None
        except (*AWS_ERRORS, ValueError) as exc:
            await self.close()
            reason = (
                f"no answer within {options.connect_timeout:g}s"
                if isinstance(exc, TimeoutError)
                else str(exc) or type(exc).__name__
            )
            raise BrokerUnavailable(f"no SNS/SQS endpoint at {options.url}: {reason}") from None

    async def close(self) -> None:
        self._sqs = self._sns = None
        with contextlib.suppress(Exception):
            await self._stack.aclose()

    def forget(self) -> None:
        """Look every topic and queue up again (one vanished: others may have too)."""
        self.topics.clear()
        self.queues.clear()
        self.subscribed.clear()

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._creating.get(name)
        if lock is None:
            lock = self._creating[name] = asyncio.Lock()
        return lock

    # -- resources ----------------------------------------------------------------

    async def topic_arn(self, topic: str) -> str:
        """The ARN of ``topic``'s SNS topic, created on first use."""
        found = self.topics.get(topic)
        if found is not None:
            return found
        fifo = self.options.fifo
        attributes = {"FifoTopic": "true", "ContentBasedDeduplication": "false"} if fifo else {}
        async with self._lock("topic:" + topic):
            found = self.topics.get(topic)
            if found is None:
                made = await self.sns.create_topic(
                    Name=topic_name(topic, fifo), Attributes=attributes
                )
                found = self.topics[topic] = made["TopicArn"]
        return found

    async def queue(self, name: str, dead_letters_of: str | None) -> tuple[str, str]:
        """``(url, arn)`` of the queue ``name``, created on first use; with
        ``dead_letters_of`` (a topic) its redrive policy moves to ``<topic>-dlq``."""
        found = self.queues.get(name)
        if found is not None:
            return found
        async with self._lock("queue:" + name):
            found = self.queues.get(name)
            if found is not None:
                return found
            redrive = None
            if dead_letters_of is not None:
                dlq = dead_letter_queue(dead_letters_of, self.options.fifo)
                if dlq != name:
                    redrive = (await self.queue(dlq, None))[1]
            attributes = queue_attributes(self.options.fifo, redrive, self.options.max_receives)
            try:
                url = (await self.sqs.create_queue(QueueName=name, Attributes=attributes))[
                    "QueueUrl"
                ]
            except ClientError as exc:
                if code_of(exc) not in _EXISTS:
                    raise
                # It exists with other settings (made by another version or by hand): use it.
                log.info("queue %s exists with other attributes; using it as it is", name)
                url = (await self.sqs.get_queue_url(QueueName=name))["QueueUrl"]
            got = await self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            found = self.queues[name] = (url, got["Attributes"]["QueueArn"])
        return found

    async def subscribe_queue(self, topic: str, queue_url: str, queue_arn: str) -> str:
        """Subscribe the queue to ``topic`` with raw message delivery; the subscription ARN."""
        topic_arn = await self.topic_arn(topic)
        await self.sqs.set_queue_attributes(
            QueueUrl=queue_url, Attributes={"Policy": queue_policy(queue_arn, topic_arn)}
        )
        made = await self.sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
            ReturnSubscriptionArn=True,
        )
        self.subscribed.add((topic_arn, queue_arn))
        return made["SubscriptionArn"]

    async def drop_queue(self, name: str, subscription_arn: str | None) -> None:
        """Unsubscribe and delete a queue (a group-less reader's), ignoring failures."""
        found = self.queues.pop(name, None)
        with contextlib.suppress(*AWS_ERRORS):
            if subscription_arn is not None:
                await self.sns.unsubscribe(SubscriptionArn=subscription_arn)
            if found is not None:
                await self.sqs.delete_queue(QueueUrl=found[0])
