"""OpenTelemetry tracing: a PRODUCER span per publish, a CONSUMER span per handling.

Active when ``opentelemetry-api`` is importable and a tracer provider is
configured when the App connects: the global one (set in code, or by
``opentelemetry-instrument`` from the ``OTEL_*`` variables), or the App's
``tracer_provider=`` argument. Without a configured provider nothing is
wrapped, so an installed API costs nothing.

Spans follow the OpenTelemetry messaging conventions. Context travels in the
event's ``traceparent``/``tracestate``: a publish span is the child of the
current span (a handling, or the user's own), else of the trace the event
already carries, else a root; every published event then carries the publish
span's context, so its handling is a child of its publish. A failed attempt
sets the handling span's status to error, records the exception, and adds a
``retry`` or ``dead-letter`` span event.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from tidings.broker import Delivery
from tidings.errors import ConfigurationError
from tidings.event import Event
from tidings.hooks import Observer
from tidings.middleware import Outgoing, PublishFn

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
except ImportError:  # tracing stays off; tidings[otel] installs the API
    otel_available = False
else:
    otel_available = True

if TYPE_CHECKING:
    from opentelemetry.trace import Span, SpanContext, Tracer, TracerProvider

__all__ = ["Tracing"]

Process = Callable[[Delivery, Event], Coroutine[Any, Any, None]]
ProcessBatch = Callable[[list[tuple[Delivery, Event]]], Coroutine[Any, Any, None]]

_SCHEMA_URL = "https://opentelemetry.io/schemas/1.27.0"
_VERSION = "0.1.0"  # tidings.__version__ (importing it here would be circular)


def _traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def _stamped(event: Event, traceparent: str, tracestate: str | None) -> Event:
    """A copy of ``event`` carrying a span's context (a valid event stays valid)."""
    copy: Event = event.__copy__()  # type: ignore[attr-defined]  # msgspec's, without checks
    msgspec.structs.force_setattr(copy, "traceparent", traceparent)
    msgspec.structs.force_setattr(copy, "tracestate", tracestate)
    return copy


class Tracing:
    """Spans for one App's publishes and handlings."""

    def __init__(self, provider: TracerProvider, system: str) -> None:
        self.tracer: Tracer = provider.get_tracer("tidings", _VERSION, schema_url=_SCHEMA_URL)
        self.system = system

    @classmethod
    def configured(cls, provider: TracerProvider | None, system: str) -> Tracing | None:
        """Tracing through ``provider``, else the global provider if one is set; else None."""
        if not otel_available:
            if provider is not None:
                raise ConfigurationError(
                    "tracer_provider needs OpenTelemetry: pip install 'tidings[otel]'"
                ) from None
            return None
        if provider is None:
            provider = trace.get_tracer_provider()
            if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
                return None  # nothing configured: the API would only make no-op spans
        return cls(provider, system)

    # -- context carried by events -------------------------------------------------

    def _remote(self, event: Event) -> SpanContext | None:
        """The span context an event carries, if any."""
        traceparent = event.traceparent
        if traceparent is None:
            return None
        state = trace.TraceState.from_header([event.tracestate]) if event.tracestate else None
        return trace.SpanContext(
            trace_id=int(traceparent[3:35], 16),
            span_id=int(traceparent[36:52], 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(int(traceparent[53:55], 16)),
            trace_state=state,
        )

    def _parent(self, events: Sequence[Event]) -> tuple[Any, list[Any]]:
        """The parent context of a publish of ``events``, and links to other carried traces."""
        current = trace.get_current_span().get_span_context()
        carried = [c for c in map(self._remote, events) if c is not None]
        if current.is_valid:
            parent = None  # the current context
            trace_id = current.trace_id
        elif carried:
            first = carried[0]
            parent = trace.set_span_in_context(trace.NonRecordingSpan(first))
            trace_id = first.trace_id
        else:
            return otel_context.Context(), []  # a root
        links = [trace.Link(c) for c in carried if c.trace_id != trace_id]
        return parent, links

    # -- publish -------------------------------------------------------------------

    def publish(self, next_publish: PublishFn) -> PublishFn:
        """Publish middleware: a PRODUCER span per broker call, its context on each event."""
        tracer = self.tracer
        system = self.system

        async def publish(outgoing: Outgoing) -> None:
            events = outgoing.events
            parent, links = self._parent(events)
            attributes: dict[str, Any] = {
                "messaging.system": system,
                "messaging.destination.name": outgoing.topic,
                "messaging.operation.type": "send",
                "messaging.operation.name": "publish",
            }
            if len(events) == 1:
                attributes["messaging.message.id"] = events[0].id
                if events[0].correlationid is not None:
                    attributes["messaging.message.conversation_id"] = events[0].correlationid
            else:
                attributes["messaging.batch.message_count"] = len(events)
            with tracer.start_as_current_span(
                f"{outgoing.topic} publish",
                context=parent,
                kind=trace.SpanKind.PRODUCER,
                attributes=attributes,
                links=links,
            ) as span:
                context = span.get_span_context()
                traceparent = _traceparent(context)
                tracestate = context.trace_state.to_header() or None
                stamped = [_stamped(e, traceparent, tracestate) for e in events]
                await next_publish(
                    Outgoing(outgoing.topic, stamped, deliver_at=outgoing.deliver_at)
                )

        return publish

    # -- handling ------------------------------------------------------------------

    def _consumer_attributes(self, group: str) -> Callable[[Delivery], dict[str, Any]]:
        """Builds a handling span's attributes from its delivery (the fixed ones made once)."""
        fixed: dict[str, Any] = {
            "messaging.system": self.system,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.consumer.group.name": group,
        }
        offset = "messaging.kafka.offset" if self.system == "kafka" else "tidings.offset"

        def attributes(d: Delivery) -> dict[str, Any]:
            return {
                **fixed,
                "messaging.destination.name": d.topic,
                "messaging.destination.partition.id": str(d.partition),
                offset: d.offset,
                "tidings.attempt": d.attempt,
            }

        return attributes

    def process(self, process: Process, group: str) -> Process:
        """Run each handling in a CONSUMER span, the child of its event's publish."""
        tracer = self.tracer
        consumer_attributes = self._consumer_attributes(group)

        async def traced(d: Delivery, event: Event) -> None:
            remote = self._remote(event)
            parent = (
                otel_context.Context()
                if remote is None
                else trace.set_span_in_context(trace.NonRecordingSpan(remote))
            )
            attributes = consumer_attributes(d)
            attributes["messaging.message.id"] = event.id
            if event.correlationid is not None:
                attributes["messaging.message.conversation_id"] = event.correlationid
            span = tracer.start_span(
                f"{d.topic} process",
                context=parent,
                kind=trace.SpanKind.CONSUMER,
                attributes=attributes,
            )
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                await process(d, event)
            finally:
                otel_context.detach(token)
                span.end()

        return traced

    def process_batch(self, process: ProcessBatch, group: str) -> ProcessBatch:
        """Run each batch handling in one CONSUMER span, linked to each event's publish."""
        tracer = self.tracer
        consumer_attributes = self._consumer_attributes(group)

        async def traced(items: list[tuple[Delivery, Event]]) -> None:
            first, _ = items[0]
            links = [trace.Link(c) for c in (self._remote(e) for _, e in items) if c is not None]
            attributes = consumer_attributes(first)
            attributes["messaging.batch.message_count"] = len(items)
            with tracer.start_as_current_span(
                f"{first.topic} process",
                context=otel_context.Context(),
                kind=trace.SpanKind.CONSUMER,
                attributes=attributes,
                links=links,
            ):
                await process(items)

        return traced

    def observer(self) -> Observer:
        """The hooks that put retries and dead-letter moves on the handling span."""
        return _SpanEvents()


class _SpanEvents(Observer):
    """Marks the current handling span when its attempt fails."""

    def _failed(self, error: BaseException) -> Span:
        span = trace.get_current_span()
        span.record_exception(error)
        span.set_status(trace.Status(trace.StatusCode.ERROR, repr(error)))
        return span

    def retried(
        self, subscription: str, delivery: Delivery, error: BaseException, delay: float
    ) -> None:
        self._failed(error).add_event(
            "retry", {"tidings.attempt": delivery.attempt, "tidings.retry.delay": delay}
        )

    def dead_lettered(
        self, subscription: str, delivery: Delivery, error: BaseException, topic: str
    ) -> None:
        self._failed(error).add_event(
            "dead-letter", {"tidings.attempt": delivery.attempt, "tidings.dlq.topic": topic}
        )
