"""What happens to a failed attempt: retried later, or dead-lettered (SEMANTICS.md).

The retry policy decides per delivery, from that delivery's own attempt
count. A retry nacks with the policy's delay (waiting in core first where the
broker cannot delay a redelivery). A dead letter stores the event, unchanged,
with its failure record in ``<topic>.dlq`` and only then acks it; under
exactly-once both happen in one commit. A broker error while doing either
propagates: the delivery stays unsettled and is delivered again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from tidings._flow import Flow
from tidings._logfields import EXTRA, delivery_fields, described
from tidings._replies import failure_reply, is_request, reply_address
from tidings.broker import Broker, Delivery
from tidings.deadletter import dead_letter_message, dead_letter_topic
from tidings.errors import ConfigurationError, UnroutableError
from tidings.event import Event
from tidings.exactly_once import ExactlyOnce, HandlerTransaction
from tidings.hooks import Observers
from tidings.publisher import Publisher
from tidings.retry import RetryPolicy
from tidings.stats import ConsumerStats

__all__ = ["Failures"]

log = logging.getLogger("tidings.consumer")
Spawn = Callable[[Coroutine[Any, Any, None]], None]


class Failures:
    """The retry and dead-letter steps of one subscription."""

    def __init__(
        self,
        name: str,
        policy: RetryPolicy,
        broker: Broker,
        exactly_once: ExactlyOnce | None,
        stats: ConsumerStats,
        observers: Observers,
        flow: Flow,
        wait: Callable[[Delivery, float], None],
        publisher: Publisher | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        self.broker = broker
        # An inbox commits in the user's database, which keeps no dead letters (nor their
        # headers): they are published, then acked, as under at-least-once.
        transactional = exactly_once is not None and not isinstance(
            exactly_once, HandlerTransaction
        )
        self.exactly_once = exactly_once if transactional else None
        self.stats = stats
        self.observers = observers
        self.observing = bool(observers)
        self.flow = flow
        #: Nacks a delivery later, for brokers that cannot delay a redelivery.
        self.wait = wait
        self.delayed_redelivery = broker.capabilities.delayed_redelivery
        #: Sends the failure reply of a request that is dead-lettered.
        self.publisher = publisher
        #: First failure time per delivery id, for the dead-letter record.
        self.first_failure: dict[str, float] = {}
        #: When each delivery away for a retry comes back (monotonic), by delivery id.
        self.retry_due: dict[str, float] = {}

    async def failed(
        self, delivery: Delivery, error: BaseException, event: Event | None = None
    ) -> bool:
        """Apply the policy to a failed attempt; True if the delivery will come back."""
        self.stats.failed += 1
        if not self.flow.holds(delivery):
            return False  # lost to a rebalance meanwhile: its new owner handles it
        decision = self.policy.decide(error, delivery.attempt)
        if decision.action == "dead_letter":
            await self.dead_letter(delivery, error, event)
            return False
        self.flow.release(delivery)
        now = time.time()
        self.first_failure.setdefault(delivery.id, now)
        self.retry_due[delivery.id] = time.monotonic() + decision.delay
        fields = delivery_fields(self.name, delivery, event)
        fields.update(error=repr(error), outcome="retry", delay=decision.delay)
        log.info(
            "%s: %s failed on attempt %d with %r; retrying in %.3gs",
            self.name,
            described(fields),
            delivery.attempt,
            error,
            decision.delay,
            extra={EXTRA: fields},
        )
        self.stats.retried += 1
        if self.observing:
            self.observers.retried(self.name, delivery, error, decision.delay)
        if self.delayed_redelivery or decision.delay <= 0:
            await delivery.nack(decision.delay)
        else:
            self.wait(delivery, decision.delay)
        return True

    def succeeded(self, delivery: Delivery) -> None:
        if self.first_failure:
            self.first_failure.pop(delivery.id, None)
            self.retry_due.pop(delivery.id, None)

    async def dead_letter(
        self, delivery: Delivery, error: BaseException, event: Event | None = None
    ) -> None:
        """Store ``delivery`` in its DLQ, then ack it (one commit under exactly-once).

        A request (``event`` with ``replyto``) is then answered with a failure reply.
        """
        now = time.time()
        first = self.first_failure.get(delivery.id, now)
        message = dead_letter_message(delivery, error, first, now, self.name)
        topic = dead_letter_topic(delivery.topic)
        if self.exactly_once is not None:
            await self.exactly_once.commit(delivery, None, [(topic, message)])
            self.flow.release(delivery)
        else:
            await self.broker.publish(topic, [message])
            self.flow.release(delivery)
            await delivery.ack()
        self.first_failure.pop(delivery.id, None)
        self.retry_due.pop(delivery.id, None)
        fields = delivery_fields(self.name, delivery, event)
        fields.update(error=repr(error), outcome="dead_letter", dead_letter_topic=topic)
        # A mistake in the code (a handler returning what cannot be published) is loud.
        mistake = isinstance(error, ConfigurationError | UnroutableError)
        log.log(
            logging.ERROR if mistake else logging.WARNING,
            "%s: %s failed on attempt %d with %r; dead-lettered to %s%s",
            self.name,
            described(fields),
            delivery.attempt,
            error,
            topic,
            " (a mistake in the handler's code: never retried)" if mistake else "",
            extra={EXTRA: fields},
        )
        self.stats.dead_lettered += 1
        if self.observing:
            self.observers.dead_lettered(self.name, delivery, error, topic)
        if event is not None and is_request(event) and self.publisher is not None:
            await self._answer_failure(event, error)

    async def _answer_failure(self, request: Event, error: BaseException) -> None:
        publisher = self.publisher
        assert publisher is not None
        address = reply_address(request, publisher.native_replies)
        if address is None:
            return
        try:
            await publisher.send_reply(address, failure_reply(request, error, publisher.source))
        except Exception as exc:  # dead-lettered already: the caller times out instead
            log.warning("%s: the failure reply to %s was not sent: %r", self.name, request.id, exc)
