"""The Pub/Sub clients of one broker, and the topics and subscriptions they create.

One gRPC channel (grpc.aio) carries both GAPIC async clients, the publisher and
the subscriber: plain text to an emulator, TLS with Application Default
Credentials to Google. Topics and subscriptions are created on first use
(``AlreadyExists`` means another client made them) and remembered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

import grpc
from google.api_core import exceptions as api_errors
from google.auth.exceptions import GoogleAuthError
from google.protobuf import duration_pb2, timestamp_pb2
from google.pubsub_v1.services.publisher import PublisherAsyncClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcAsyncIOTransport
from google.pubsub_v1.services.subscriber import SubscriberAsyncClient
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcAsyncIOTransport

from tidings.brokers.pubsub._topology import dead_letter_topic, subscription_id, topic_id
from tidings.brokers.pubsub._url import PubSubOptions
from tidings.errors import BrokerUnavailable, ConfigurationError

__all__ = ["GOOGLE_ERRORS", "Google", "deadline_seconds"]

log = logging.getLogger("tidings.brokers.pubsub")

#: What a call through the GAPIC clients raises when it fails.
GOOGLE_ERRORS = (api_errors.GoogleAPIError, grpc.RpcError, OSError, TimeoutError)
#: Messages of up to 10 MB travel both ways (gRPC's default stops at 4 MB).
_CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
#: Pub/Sub's bounds of an ack deadline, in seconds.
MIN_DEADLINE, MAX_DEADLINE = 10, 600
#: A group-less reader's subscription is deleted by Pub/Sub after a day without use.
_READER_TTL = 86400


def deadline_seconds(seconds: float) -> int:
    """An ack deadline Pub/Sub accepts: whole seconds within 10-600."""
    return min(max(int(seconds + 0.999), MIN_DEADLINE), MAX_DEADLINE)


def _timestamp(when: float) -> timestamp_pb2.Timestamp:
    seconds = int(when)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=int((when - seconds) * 1e9))


class Google:
    """A publisher and a subscriber client of one project, with what they created."""

    def __init__(self, options: PubSubOptions) -> None:
        self.options = options
        self.project = f"projects/{options.project}"
        self._channel: grpc.aio.Channel | None = None
        self._publisher: PublisherAsyncClient | None = None
        self._subscriber: SubscriberAsyncClient | None = None
        self.topics: set[str] = set()
        self._creating: dict[str, asyncio.Lock] = {}

    @property
    def publisher(self) -> PublisherAsyncClient:
        assert self._publisher is not None, "connect() first"
        return self._publisher

    @property
    def subscriber(self) -> SubscriberAsyncClient:
        assert self._subscriber is not None, "connect() first"
        return self._subscriber

    def topic_path(self, topic: str) -> str:
        return f"{self.project}/topics/{topic_id(topic)}"

    def subscription_path(self, topic: str, group: str) -> str:
        return f"{self.project}/subscriptions/{subscription_id(topic, group)}"

    async def open(self) -> None:
        """Open the channel and list one topic: BrokerUnavailable if that fails in time."""
        options = self.options
        try:
            if options.emulator is not None:
                self._channel = grpc.aio.insecure_channel(
                    options.emulator, options=_CHANNEL_OPTIONS
                )
            else:
                self._channel = PublisherGrpcAsyncIOTransport.create_channel(
                    options.target, options=_CHANNEL_OPTIONS
                )
        except GoogleAuthError as exc:
            raise BrokerUnavailable(
                f"no Google credentials for {options.url}: set GOOGLE_APPLICATION_CREDENTIALS "
                f"or run 'gcloud auth application-default login' ({exc})"
            ) from None
        self._publisher = PublisherAsyncClient(
            transport=PublisherGrpcAsyncIOTransport(channel=self._channel)
        )
        self._subscriber = SubscriberAsyncClient(
            transport=SubscriberGrpcAsyncIOTransport(channel=self._channel)
        )
        try:
            async with asyncio.timeout(options.connect_timeout):
                await self.publisher.list_topics(
                    request={"project": self.project, "page_size": 1},
                    retry=None,
                    timeout=options.connect_timeout,
                )
        except (*GOOGLE_ERRORS, GoogleAuthError) as exc:
            await self.close()
            where = f"emulator at {options.emulator}" if options.emulator else options.target
            reason = (
                f"no answer within {options.connect_timeout:g}s"
                if isinstance(exc, TimeoutError | api_errors.DeadlineExceeded)
                else _reason(exc)
            )
            raise BrokerUnavailable(
                f"no Pub/Sub service for {options.url} ({where}): {reason}"
            ) from None

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._creating.get(name)
        if lock is None:
            lock = self._creating[name] = asyncio.Lock()
        return lock

    # -- resources ----------------------------------------------------------------

    async def create_topic(self, topic: str, retention: int | None = None) -> None:
        """Create ``topic`` (its retention: ``retention`` or the URL's) unless it exists."""
        path = self.topic_path(topic)
        async with self._lock(path):
            if path in self.topics:
                return
            request: dict[str, Any] = {"name": path}
            keep = self.options.retention if retention is None else retention
            if keep:
                request["message_retention_duration"] = duration_pb2.Duration(seconds=keep)
            with contextlib.suppress(api_errors.AlreadyExists):
                await self.publisher.create_topic(request=request)
            self.topics.add(path)

    async def create_subscription(
        self, topic: str, name: str, ack_wait: float, reader: bool
    ) -> bool:
        """Create the subscription ``name`` on ``topic`` (and the topics it needs).

        Returns True if it is new. A group's subscription gets message ordering
        (unless ``ordering=false``) and the dead-letter policy to ``<topic>.dlq``;
        a reader's expires after a day unused and has neither.
        """
        await self.create_topic(topic)
        request: dict[str, Any] = {
            "name": name,
            "topic": self.topic_path(topic),
            "ack_deadline_seconds": deadline_seconds(ack_wait),
        }
        if reader:
            request["expiration_policy"] = {"ttl": duration_pb2.Duration(seconds=_READER_TTL)}
        else:
            request["enable_message_ordering"] = self.options.ordering
            if not topic.endswith(".dlq"):
                await self.create_topic(topic + ".dlq")
                request["dead_letter_policy"] = {
                    "dead_letter_topic": f"{self.project}/topics/{dead_letter_topic(topic)}",
                    "max_delivery_attempts": self.options.max_deliveries,
                }
        try:
            await self.subscriber.create_subscription(request=request)
        except api_errors.AlreadyExists:
            return False
        return True

    async def delete_subscription(self, name: str) -> None:
        with contextlib.suppress(*GOOGLE_ERRORS):
            await self.subscriber.delete_subscription(request={"subscription": name})

    async def seek(self, name: str, when: float | datetime) -> None:
        """Move the subscription ``name`` to a time (messages after it come again)."""
        stamp = _timestamp(when.timestamp() if isinstance(when, datetime) else when)
        try:
            await self.subscriber.seek(request={"subscription": name, "time": stamp})
        except api_errors.MethodNotImplemented:
            raise ConfigurationError(
                f"{self.options.url} cannot seek {name.rsplit('/', 1)[-1]!r}: the Pub/Sub "
                "emulator does not implement seek on subscriptions with message ordering "
                "(Google's service does); use ordering=false on the emulator to replay"
            ) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, api_errors.GoogleAPICallError):
        status = exc.grpc_status_code
        return f"{status.name if status else type(exc).__name__}: {exc.message}"
    return str(exc) or type(exc).__name__
