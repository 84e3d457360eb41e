"""A saga at work in an App: subscriptions that load, move, save and send.

Why not the inbox: a step's state change and the commands it sends must not
diverge, and the saga gets that on every broker without a transaction
spanning the broker: the saved document records, for each event handled, the
events its step produced (ids included). The order is *save, then send*:

* a crash or a failed publish after the save leads to a redelivery, which
  finds the event in the document and sends the same events again (same ids,
  so consumers that deduplicate by id see one), without running the step;
* a step that raises, or a save that loses an optimistic-concurrency race,
  saves nothing and sends nothing; the event is retried on fresh state.

So an event changes an instance's state once, however often it is delivered.
Timeouts need the broker's delayed publish, which an outbox table cannot
express; this is the other reason sagas do not go through the inbox.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tidings.app import App
from tidings.context import Context
from tidings.errors import ConfigurationError
from tidings.event import Event
from tidings.payload import decode_payload
from tidings.retry import RetryPolicy
from tidings.sagas.context import Output, SagaContext
from tidings.sagas.definition import Saga, Step
from tidings.sagas.record import Record
from tidings.sagas.sql import SqlSagaStore
from tidings.sagas.store import SagaStore
from tidings.subscription import Subscription

__all__ = ["SAGA_ID", "SagaRunner", "SagaSnapshot"]

log = logging.getLogger("tidings.sagas")
S = TypeVar("S")
#: The extension naming the saga instance a timeout event belongs to.
SAGA_ID = "sagaid"
#: How many timeouts may wait in the consumer (brokers without delayed publish).
TIMEOUTS_PREFETCH = 10_000


@dataclass(frozen=True)
class SagaSnapshot(Generic[S]):
    """An instance as stored now."""

    id: str
    state: S
    completed: bool
    version: int
    pending_timeouts: list[str]


class SagaRunner(Generic[S]):
    """The subscription running ``saga`` in ``app``; see :meth:`Saga.install`."""

    def __init__(
        self,
        saga: Saga[S],
        app: App,
        store: SagaStore | Any,
        *,
        topics: Sequence[str] | None = None,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        name: str | None = None,
    ) -> None:
        if not saga.steps:
            raise ConfigurationError(f"saga {saga.name!r} has no steps")
        self.saga = saga
        self.app = app
        if isinstance(store, SagaStore):
            self.store: SagaStore = store
        else:
            self.store = SqlSagaStore(store)
            app.on_shutdown(self.store.close)
        listened = list(topics) if topics is not None else self._routed_topics()
        listened = [t for t in listened if t != saga.timeouts_topic]
        name = name or f"{app.name}.{saga.name}"
        self.subscription = app.add_subscription(
            self.handle, listened, name=name, concurrency=concurrency, retry=retry
        )
        #: The timeouts have a subscription of their own: on a broker without delayed
        #: publish, a timeout waits in the consumer until its time, holding a prefetch
        #: slot, and a thousand waiting timeouts must not hold back the saga's events.
        self.timeouts: Subscription | None = None
        if saga.timeout_types:
            self.timeouts = app.add_subscription(
                self.handle,
                saga.timeouts_topic,
                name=f"{name}.timeouts",
                concurrency=concurrency,
                retry=retry,
                prefetch=TIMEOUTS_PREFETCH,
            )

    def _routed_topics(self) -> list[str]:
        routes = self.app.router.routes()
        topics: list[str] = []
        for type_name, step in self.saga.steps.items():
            if step.kind == "timeout":
                continue
            topic = routes.get(type_name)
            if topic is None:
                raise ConfigurationError(
                    f"saga {self.saga.name!r} handles {type_name!r}, which has no topic in app "
                    f"{self.app.name!r}: declare app.route({step.payload_type.__qualname__}, "
                    "'topic') or pass topics=[...] to install"
                )
            if topic not in topics:
                topics.append(topic)
        return topics

    async def handle(self, event: Event, ctx: Context) -> None:
        """Handle one delivered event (the subscription's handler)."""
        step = self.saga.steps.get(event.type)
        if step is None:
            return
        payload: Any = decode_payload(event.data, step.payload_type)
        saga_id = self._saga_id(step, payload, event)
        stored = await self.store.load(self.saga.name, saga_id)
        record = Record.decode(stored, self.saga.state_type) if stored else None
        if record is not None and event.id in record.handled:
            log.debug(
                "saga %s %s: %s handled before, sending its outputs again",
                self.saga.name,
                saga_id,
                event.id,
            )
            await self._send(record.handled[event.id], ctx)
            return
        why_not = self._ignored(step, stored is not None and stored.completed, record, event)
        if why_not:
            log.debug("saga %s %s: %s ignored (%s)", self.saga.name, saga_id, event.type, why_not)
            return
        if record is None:
            record = Record(self.saga.state_type())
        await self._send(await self._apply(step, payload, saga_id, event, record), ctx)

    async def _apply(
        self, step: Step, payload: Any, saga_id: str, event: Event, record: Record[S]
    ) -> list[Output]:
        """Run ``step`` on ``record`` and save the result; return what to send."""
        version = record.version
        if step.kind == "timeout":
            del record.timeouts[event.type]  # it fired: no longer pending
        context = SagaContext(
            saga_id,
            event,
            build=lambda p, topic, attributes: self._output(saga_id, event, p, topic, attributes),
            timeouts=record.timeouts,
            timeout_types=self.saga.timeout_types,
            timeouts_topic=self.saga.timeouts_topic,
        )
        result = step.func(record.state, payload, context)
        if inspect.isawaitable(result):
            result = await result
        emitted = context.outputs
        context.outputs = []
        for returned in result if isinstance(result, list | tuple) else [result]:
            if returned is not None:
                context.emit(returned)
        outputs = [*context.outputs, *emitted]  # returned first, as an App handler's
        record.handled[event.id] = outputs
        await self.store.save(self.saga.name, saga_id, record.encode(), context.completed, version)
        return outputs

    def _saga_id(self, step: Step, payload: Any, event: Event) -> str:
        if step.kind == "timeout":
            value = event.extensions.get(SAGA_ID) if event.extensions else None
            if isinstance(value, str) and value:
                return value
        if step.key is not None:
            key = step.key(payload)
            if not isinstance(key, str) or not key:
                raise ConfigurationError(
                    f"saga {self.saga.name!r}: the key of {event.type!r} must be a non-empty "
                    f"string, got {key!r}"
                )
            return key
        return event.correlationid or event.id

    @staticmethod
    def _ignored(step: Step, completed: bool, record: Record[S] | None, event: Event) -> str:
        if record is None:
            return "" if step.kind == "starts" else "no such instance"
        if completed:
            return "the instance completed"
        if step.kind == "starts":
            return "the instance exists already"
        if step.kind == "timeout" and record.timeouts.get(event.type) != event.id:
            return "the timeout was cancelled or replaced"
        return ""

    def _output(
        self,
        saga_id: str,
        trigger: Event,
        payload: Any,
        topic: str | None,
        attributes: dict[str, Any],
    ) -> Output:
        if isinstance(payload, Event):
            raise ConfigurationError(
                f"saga {self.saga.name!r} sends payloads, not Events: the event of each is "
                "derived from the one handled (correlation, causation, key)"
            )
        extensions = dict(attributes.pop("extensions", {}))
        if topic == self.saga.timeouts_topic:
            extensions[SAGA_ID] = saga_id
        event = trigger.derive(
            payload,
            source=self.app.source,
            partitionkey=trigger.partitionkey,
            extensions=extensions,
            **attributes,
        )
        return Output(topic or self.app.router.topic_for(payload, event), event)

    async def _send(self, outputs: list[Output], ctx: Context) -> None:
        for output in outputs:
            if output.deliver_at is None:
                ctx.emit(output.event, topic=output.topic)
            else:
                await self.app.publish(
                    output.event, topic=output.topic, deliver_at=output.deliver_at
                )

    async def get(self, saga_id: str) -> SagaSnapshot[S] | None:
        """The instance ``saga_id`` as stored now, or None."""
        stored = await self.store.load(self.saga.name, saga_id)
        if stored is None:
            return None
        record = Record.decode(stored, self.saga.state_type)
        return SagaSnapshot(
            saga_id, record.state, stored.completed, stored.version, sorted(record.timeouts)
        )
