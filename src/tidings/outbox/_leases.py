"""Which partitions of the outbox a relay may publish, for how long.

PostgreSQL: the keys are hashed into a fixed number of partitions (rows of
``<table>_leases``); each live relay (a heartbeat row in ``<table>_relays``)
holds about its share of them, with an expiry the database clock keeps. A
relay gives back partitions above its share only between batches, so two
relays never publish one partition at once unless one stalls past its lease.
SQLite: one lease row; one relay at a time.
"""

from __future__ import annotations

import math
import time

from tidings.outbox._sql import Sql

__all__ = ["Leases", "PostgresLeases", "SqliteLeases"]


class Leases:
    """The partitions this relay holds, and until when (``time.monotonic``)."""

    partitions: list[int]
    count: int
    valid_until: float

    async def renew(self, sql: Sql) -> None:
        raise NotImplementedError  # pragma: no cover

    async def release(self, sql: Sql) -> None:
        raise NotImplementedError  # pragma: no cover

    def valid(self) -> bool:
        return bool(self.partitions) and time.monotonic() < self.valid_until


class PostgresLeases(Leases):
    def __init__(self, table: str, owner: str, ttl: float) -> None:
        self.table = table
        self.owner = owner
        self.ttl = ttl
        self.partitions = []
        self.count = 0
        self.valid_until = 0.0
        self._interval = float(ttl)

    async def renew(self, sql: Sql) -> None:
        started = time.monotonic()
        t, me, ttl = self.table, self.owner, self._interval
        later = "now() + make_interval(secs => {})"
        if not self.count:
            rows = await sql.fetch(f"SELECT count(*) FROM {t}_leases")
            self.count = int(rows[0][0])
        await sql.execute(
            f"INSERT INTO {t}_relays (owner, expires_at) VALUES ({{}}, {later})"
            " ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at",
            (me, ttl),
        )
        await sql.execute(f"DELETE FROM {t}_relays WHERE expires_at < now() - interval '1 hour'")
        live = await sql.fetch(f"SELECT count(*) FROM {t}_relays WHERE expires_at > now()")
        share = math.ceil(self.count / max(int(live[0][0]), 1))
        held = sorted(
            row[0]
            for row in await sql.fetch(
                f"UPDATE {t}_leases SET expires_at = {later}"
                f" WHERE owner = {{}} AND expires_at > now() RETURNING partition",
                (ttl, me),
            )
        )
        if len(held) > share:
            extra = held[share:]
            await sql.execute(
                f"UPDATE {t}_leases SET owner = NULL, expires_at = 'epoch'"
                " WHERE owner = {} AND partition = ANY(CAST({} AS int[]))",
                (me, extra),
            )
            held = held[:share]
        elif len(held) < share:
            claimed = await sql.fetch(
                f"UPDATE {t}_leases SET owner = {{}}, expires_at = {later},"
                f" epoch = epoch + 1 WHERE partition IN (SELECT partition FROM {t}_leases"
                " WHERE owner IS NULL OR owner = {} OR expires_at <= now()"
                " ORDER BY partition LIMIT {} FOR UPDATE SKIP LOCKED) RETURNING partition",
                (me, ttl, me, share - len(held)),
            )
            held = sorted(held + [row[0] for row in claimed])
        self.partitions = held
        self.valid_until = started + self.ttl * 0.8

    async def release(self, sql: Sql) -> None:
        t = self.table
        await sql.execute(
            f"UPDATE {t}_leases SET owner = NULL, expires_at = 'epoch' WHERE owner = {{}}",
            (self.owner,),
        )
        await sql.execute(f"DELETE FROM {t}_relays WHERE owner = {{}}", (self.owner,))
        self.partitions = []


class SqliteLeases(Leases):
    def __init__(self, table: str, owner: str, ttl: float) -> None:
        self.table = table
        self.owner = owner
        self.ttl = ttl
        self.partitions = []
        self.count = 1
        self.valid_until = 0.0

    async def renew(self, sql: Sql) -> None:
        started = time.monotonic()
        now = time.time()
        held = await sql.execute(
            f"UPDATE {self.table}_leases SET owner = {{}}, expires_at = {{}},"
            " epoch = epoch + (owner IS NOT {})"
            " WHERE partition = 0 AND (owner IS NULL OR owner = {} OR expires_at <= {})",
            (self.owner, now + self.ttl, self.owner, self.owner, now),
        )
        self.partitions = [0] if held else []
        self.valid_until = started + self.ttl * 0.8

    async def release(self, sql: Sql) -> None:
        await sql.execute(
            f"UPDATE {self.table}_leases SET owner = NULL, expires_at = 0 WHERE owner = {{}}",
            (self.owner,),
        )
        self.partitions = []
