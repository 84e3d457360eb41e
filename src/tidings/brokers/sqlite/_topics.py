"""Topic names to ids and partition counts: created on first use, cached after."""

from __future__ import annotations

import asyncio
import time

from tidings.brokers.sqlite import _ops, _retention
from tidings.brokers.sqlite._writer import Writer
from tidings.errors import ConfigurationError

__all__ = ["TopicRegistry"]


class TopicRegistry:
    """``(topic_id, partitions)`` of each topic this client used."""

    def __init__(self, writer: Writer, default_partitions: int) -> None:
        self._writer = writer
        self._default_partitions = default_partitions
        self._known: dict[str, tuple[int, int]] = {}
        self._requests: dict[str, asyncio.Future[tuple[int, int]]] = {}

    def cached(self, name: str) -> tuple[int, int] | None:
        """Without waiting: the topic if this client already knows it."""
        return self._known.get(name)

    async def resolve(self, name: str) -> tuple[int, int]:
        """The topic, created with the default partition count if it does not exist."""
        found = self._known.get(name)
        if found is not None:
            return found
        pending = self._requests.get(name)
        if pending is None:  # one writer operation however many tasks ask at once
            partitions = self._default_partitions
            pending = self._writer.submit(
                lambda conn: _ops.find_or_create_topic(conn, name, partitions, time.time())
            )
            self._requests[name] = pending
        try:
            found = await asyncio.shield(pending)
        finally:
            self._requests.pop(name, None)
        self._known[name] = found
        return found

    async def ensure(
        self,
        name: str,
        partitions: int | None,
        retention: float | None,
        retention_bytes: int | None,
        compact: bool,
    ) -> None:
        """Create ``name`` or set its retention (see ``SqliteBroker.ensure_topic``)."""
        if partitions is not None and partitions < 1:
            raise ConfigurationError("partitions must be >= 1 (or None)")
        if retention is not None and retention <= 0:
            raise ConfigurationError("retention must be > 0 seconds (or None: forever)")
        if retention_bytes is not None and retention_bytes <= 0:
            raise ConfigurationError("retention_bytes must be > 0 (or None: no limit)")
        settings = _retention.TopicSettings(
            partitions,
            self._default_partitions,
            None if retention is None else int(retention * 1000),
            retention_bytes,
            compact,
        )
        try:
            self._known[name] = await self._writer.submit(
                lambda conn: _retention.ensure_topic(conn, name, settings, time.time())
            )
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
