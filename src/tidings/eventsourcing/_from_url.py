"""Choosing an event store by URL, and how its events reach the bus."""

from __future__ import annotations

import os

from tidings.brokers import redact_url
from tidings.brokers.sqlite._config import SqliteConfig
from tidings.errors import ConfigurationError
from tidings.eventsourcing._sqlite import SqliteEventStore
from tidings.eventsourcing.store import EventStore, TopicFor

__all__ = ["event_store_from_url"]


def event_store_from_url(
    url: str,
    *,
    broker_url: str | None = None,
    topic: TopicFor | None = "events",
    schema: str = "public",
) -> EventStore:
    """An unconnected event store for ``url``, publishing to the bus at ``broker_url``.

    ``sqlite:///path.db``: when ``broker_url`` is None or the embedded broker on
    the same file, appended events go straight into that broker's log (one
    transaction); otherwise into the file's outbox table. ``postgresql://...``
    (extra ``tidings[postgres]``): into the outbox table of ``schema``.

    >>> event_store_from_url("sqlite:///shop.db", broker_url="sqlite:///./shop.db").publish
    'broker'
    >>> event_store_from_url("sqlite:///shop.db", broker_url="kafka://localhost:9092").publish
    'outbox'
    """
    if url.startswith("sqlite:"):
        store = SqliteEventStore.from_url(url, topic=topic)
        if broker_url is not None and not _same_file(store.path, broker_url):
            store = SqliteEventStore.from_url(url, topic=topic, publish="outbox")
        return store
    if url.startswith(("postgresql://", "postgres://")):
        from tidings.eventsourcing.postgres import PostgresEventStore

        return PostgresEventStore(url, schema=schema, topic=topic)
    raise ConfigurationError(
        f"no event store for {redact_url(url)!r}: use sqlite:///path.db or postgresql://..."
    )


def _same_file(path: str, broker_url: str) -> bool:
    if not broker_url.startswith("sqlite:"):
        return False
    other = SqliteConfig.from_url(broker_url).path
    return os.path.realpath(other) == os.path.realpath(path)
