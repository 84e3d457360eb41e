"""Webhook registrations in the broker's own file (table ``webhooks``).

Reads run on the reader's connection, writes in a writer transaction, so
``tidings webhooks add`` in one process is seen by a ``tidings serve`` in another.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

from tidings.errors import ConfigurationError
from tidings.webhooks.registry import Webhook

if TYPE_CHECKING:
    from tidings.brokers.sqlite import SqliteBroker

__all__ = ["SqliteWebhookStore"]

_COLUMNS = "id, url, topic, secret, filter, created_at, paused, failures, last_error"


class SqliteWebhookStore:
    """A :class:`~tidings.webhooks.WebhookStore` in the embedded broker's database."""

    def __init__(self, broker: SqliteBroker) -> None:
        self.broker = broker

    async def webhooks(self) -> list[Webhook]:
        def query(conn: sqlite3.Connection) -> list[Webhook]:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM webhooks ORDER BY created_at, id")
            return [_webhook(row) for row in rows]

        return await self.broker.reader.run(query)

    async def add_webhook(self, webhook: Webhook) -> None:
        text = None if webhook.filter is None else json.dumps(dict(webhook.filter))

        def insert(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                f"INSERT OR IGNORE INTO webhooks ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    webhook.id,
                    webhook.url,
                    webhook.topic,
                    webhook.secret,
                    text,
                    webhook.created_at,
                    int(webhook.paused),
                    webhook.failures,
                    webhook.last_error,
                ),
            )
            return cursor.rowcount == 1

        if not await self.broker.writer.submit(insert):
            raise ConfigurationError(f"a webhook with id {webhook.id!r} exists already")

    async def remove_webhook(self, webhook_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,)).rowcount == 1

        return await self.broker.writer.submit(delete)

    async def count_failure(self, webhook_id: str, error: str) -> int:
        def update(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "UPDATE webhooks SET failures = failures + 1, last_error = ? WHERE id = ? "
                "RETURNING failures",
                (error, webhook_id),
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self.broker.writer.submit(update)

    async def clear_failures(self, webhook_id: str) -> None:
        def update(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE webhooks SET failures = 0 WHERE id = ?", (webhook_id,))

        await self.broker.writer.submit(update)

    async def set_paused(self, webhook_id: str, paused: bool) -> bool:
        def update(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE webhooks SET paused = ?, failures = CASE WHEN ? THEN failures ELSE 0 END "
                "WHERE id = ?",
                (int(paused), int(paused), webhook_id),
            )
            return cursor.rowcount == 1

        return await self.broker.writer.submit(update)


def _webhook(row: tuple[object, ...]) -> Webhook:
    webhook_id, url, topic, secret, text, created_at, paused, failures, last_error = row
    return Webhook(
        id=str(webhook_id),
        url=str(url),
        topic=str(topic),
        secret=str(secret),
        filter=None if text is None else json.loads(str(text)),
        created_at=float(created_at),  # type: ignore[arg-type]
        paused=bool(paused),
        failures=int(failures),  # type: ignore[call-overload]
        last_error=None if last_error is None else str(last_error),
    )
