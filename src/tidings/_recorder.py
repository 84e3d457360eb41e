"""The observer that stores handling outcomes on the broker, in batches, off the hot path.

A hook only appends a record to a list; a task writes the list every
``interval`` seconds (sooner when ``flush_at`` records wait), ``batch``
records per message, with the broker's own ``publish``: the publish
middleware is bypassed, so tracing and metrics never see these
messages. Records still in the list when the process dies
are lost: they describe handlings, they are not the handlings' effects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from tidings.broker import Broker, Delivery, Provisioning
from tidings.errors import ConfigurationError
from tidings.event import Event
from tidings.hooks import Observer
from tidings.outcomes import HANDLINGS_TOPIC, Outcome, Row, encode_rows

__all__ = ["RETENTION", "OutcomeRecorder"]

log = logging.getLogger("tidings.outcomes")

#: Seconds the handling records are kept, where the broker can be told.
RETENTION = 7 * 24 * 3600.0


class OutcomeRecorder(Observer):
    """Records every handling attempt of ``app``'s subscriptions on ``topic``.

    Call :meth:`start` once the broker is connected and :meth:`stop` after the
    subscriptions stopped (it writes what is left).
    """

    def __init__(
        self,
        app: str,
        broker: Broker,
        *,
        source: str | None = None,
        topic: str = HANDLINGS_TOPIC,
        interval: float = 0.2,
        batch: int = 1000,
        flush_at: int = 10_000,
        max_buffered: int = 100_000,
    ) -> None:
        self.app = app
        self.source = source
        self.broker = broker
        self.topic = topic
        self.interval = interval
        self.batch = batch
        self.flush_at = flush_at
        self.max_buffered = max_buffered
        #: Records given up: the buffer overflowed, or the broker refused them.
        self.dropped = 0
        self._buffer: list[Row] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        if isinstance(self.broker, Provisioning):
            try:
                await self.broker.ensure_topic(self.topic, retention=RETENTION)
            except ConfigurationError:  # a broker without retention keeps them all
                await self.broker.ensure_topic(self.topic)
        self._task = asyncio.create_task(self._run(), name=f"tidings-outcomes-{self.app}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:  # let a write under way finish rather than cancel it
            self._stopping = True
            self._wake.set()
            await asyncio.gather(task, return_exceptions=True)
        await self.flush()

    async def flush(self) -> None:
        """Write the buffered records now (a failure is logged, the records dropped)."""
        records, self._buffer = self._buffer, []
        if not records:
            return
        size = self.batch
        messages = [
            encode_rows(self.app, self.source, records[i : i + size])
            for i in range(0, len(records), size)
        ]
        try:
            await self.broker.publish(self.topic, messages)
        except Exception as exc:
            self.dropped += len(records)
            log.warning("%s: %d handling record(s) not stored: %r", self.app, len(records), exc)

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    def _add(
        self,
        subscription: str,
        d: Delivery,
        outcome: Outcome,
        event: Event | None = None,
        seconds: float | None = None,
        error: BaseException | None = None,
        delay: float | None = None,
        dead_letter_topic: str | None = None,
    ) -> None:
        buffer = self._buffer
        if len(buffer) >= self.flush_at:
            self._wake.set()
            if len(buffer) >= self.max_buffered:  # the broker is not keeping up: shed
                self.dropped += 1
                return
        buffer.append(
            (
                subscription,
                d.group,
                d.topic,
                d.partition,
                d.offset,
                d.attempt,
                outcome,
                time.time(),
                d.published_at,
                None if event is None or outcome == "handled" else event.id,
                seconds,
                None if error is None else repr(error),
                delay,
                dead_letter_topic,
            )
        )

    # -- hooks (on the event loop, inline: an append each) -----------------------------

    def handled(self, subscription: str, delivery: Delivery, event: Event, seconds: float) -> None:
        self._add(subscription, delivery, "handled", event, seconds)

    def retried(
        self, subscription: str, delivery: Delivery, error: BaseException, delay: float
    ) -> None:
        self._add(subscription, delivery, "retried", error=error, delay=delay)

    def dead_lettered(
        self, subscription: str, delivery: Delivery, error: BaseException, topic: str
    ) -> None:
        self._add(subscription, delivery, "dead_lettered", error=error, dead_letter_topic=topic)

    def committed(self, subscription: str, delivery: Delivery, outputs: int) -> None:
        self._add(subscription, delivery, "committed")
