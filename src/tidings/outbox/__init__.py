"""Transactional outbox and inbox: events and effects that commit with your own data.

* :class:`Outbox` records events in your database transaction;
* :class:`Relay` publishes them to any broker, in order per key, at least once;
* :class:`Inbox` makes ``delivery="exactly_once"`` work on any broker: the
  handler's database writes, the event's inbox record and its follow-ups
  commit in one transaction of your database.

Tables: :mod:`tidings.outbox.schema`. Needs a driver: ``pip install
'tidings[postgres]'`` (asyncpg, psycopg) or ``'tidings[sqlalchemy]'``; SQLite
works with the standard library. See ``docs/outbox.md``.
"""

from __future__ import annotations

from tidings.outbox.inbox import Inbox
from tidings.outbox.relay import Relay
from tidings.outbox.schema import INBOX_TABLE, OUTBOX_TABLE, install, statements
from tidings.outbox.writer import Outbox

__all__ = ["INBOX_TABLE", "OUTBOX_TABLE", "Inbox", "Outbox", "Relay", "install", "statements"]
