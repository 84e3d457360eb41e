"""What a saga's step may do: emit commands, schedule or cancel a timeout, compensate, complete."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tidings.compensation import compensating
from tidings.errors import ConfigurationError
from tidings.event import Event
from tidings.payload import payload_info

__all__ = ["Output", "SagaContext"]


@dataclass(frozen=True)
class Output:
    """An event a step produced: where it goes, and when (None: at once)."""

    topic: str
    event: Event
    deliver_at: float | None = None


class SagaContext:
    """Handed to each step of a saga with the instance's state and the event's payload.

    ``id`` is the instance's correlation key and ``event`` the event being
    handled. What a step emits (and what it returns) is derived from
    ``event``: same ``correlationid``, ``causationid`` = ``event.id``, same
    partition key.
    """

    def __init__(
        self,
        saga_id: str,
        event: Event,
        *,
        build: Callable[[Any, str | None, dict[str, Any]], Output],
        timeouts: dict[str, str],
        timeout_types: frozenset[type],
        timeouts_topic: str,
    ) -> None:
        self.id = saga_id
        self.event = event
        self._build = build
        self._timeouts = timeouts
        self._timeout_types = timeout_types
        self._timeouts_topic = timeouts_topic
        self.outputs: list[Output] = []
        self.completed = False

    @property
    def root(self) -> str:
        """The id of the event the whole flow started from (``correlationid``, or ``event.id``)."""
        return self.event.correlationid or self.event.id

    def emit(self, payload: Any, *, topic: str | None = None) -> None:
        """Send ``payload`` (a command or an event) once the step's new state is saved."""
        self.outputs.append(self._build(payload, topic, {}))

    def compensate(
        self, payload: Any, *, undoes: str | None = None, topic: str | None = None
    ) -> None:
        """Send ``payload`` as a compensation: it undoes the effect of event ``undoes``.

        ``undoes`` defaults to :attr:`root`, the event the flow started from.
        The event carries the ``compensates`` extension, which ``tidings
        trace`` shows.
        """
        extensions = dict(compensating(undoes or self.root))
        self.outputs.append(self._build(payload, topic, {"extensions": extensions}))

    def timeout(self, seconds: float, payload: Any) -> None:
        """Deliver ``payload`` to this instance in ``seconds``, unless it moved on first.

        The payload's type must have a step declared with
        :meth:`~tidings.sagas.Saga.on_timeout`. The event is published with
        the broker's delayed publish (emulated by the consumer where the
        broker has none). One timeout per type is pending: scheduling it
        again replaces the earlier one, :meth:`cancel_timeout` and
        :meth:`complete` drop it, and a dropped timeout that still arrives is
        ignored.
        """
        if type(payload) not in self._timeout_types:
            raise ConfigurationError(
                f"{type(payload).__qualname__} is not a timeout of this saga: declare its "
                "step with @saga.on_timeout(...)"
            )
        if seconds < 0:
            raise ConfigurationError("a timeout must be >= 0 seconds")
        output = self._build(payload, self._timeouts_topic, {})
        output = Output(output.topic, output.event, time.time() + seconds)
        self._drop([self._timeouts.get(payload_info(payload).name, "")])  # replaced
        self._timeouts[payload_info(payload).name] = output.event.id
        self.outputs.append(output)

    def cancel_timeout(self, payload_type: type) -> None:
        """Drop the pending timeout of ``payload_type`` (if any): when it arrives, it is ignored."""
        self._drop([self._timeouts.pop(payload_info(payload_type).name, "")])

    def _drop(self, event_ids: list[str]) -> None:
        """Do not even send timeouts this step scheduled and then dropped."""
        self.outputs = [o for o in self.outputs if o.event.id not in event_ids]

    @property
    def pending_timeouts(self) -> list[str]:
        """The type names of the timeouts still pending."""
        return sorted(self._timeouts)

    def complete(self) -> None:
        """End the instance: later events for it are ignored, its pending timeouts dropped."""
        self.completed = True
        self._drop(list(self._timeouts.values()))
        self._timeouts.clear()

    def __repr__(self) -> str:
        return f"<SagaContext {self.id} {self.event.type} {self.event.id}>"
