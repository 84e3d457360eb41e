"""Which PostgreSQL driver for the event store: asyncpg or psycopg 3, measured.

``python bench/_postgres_drivers.py``: the three operations the store does
most (a one-statement append transaction, a 100-row batch insert, reading
10,000 rows of one stream), through each driver, against 127.0.0.1:5432/test.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import psycopg

DSN = "postgresql://postgres@127.0.0.1:5432/test"
ROWS = 10_000
SINGLE = 2_000
BATCHES = 50
BATCH = 100
DDL = "CREATE TABLE t (s text, v int, e bytea, PRIMARY KEY (s, v))"
BLOB = b'{"specversion":"1.0","id":"x","source":"/bench","type":"T","data":{"n":1}}'


async def _asyncpg(schema: str) -> dict[str, float]:
    conn = await asyncpg.connect(DSN, server_settings={"search_path": schema})
    out = {}
    await conn.execute(DDL)
    insert = "INSERT INTO t SELECT $1, v, e FROM unnest($2::int[], $3::bytea[]) AS r(v, e)"
    start = time.perf_counter()
    for i in range(SINGLE):
        await conn.execute(insert, "a", [i], [BLOB])
    out["single appends/s"] = SINGLE / (time.perf_counter() - start)
    start = time.perf_counter()
    for b in range(BATCHES):
        versions = list(range(b * BATCH, (b + 1) * BATCH))
        await conn.execute(insert, "b", versions, [BLOB] * BATCH)
    out["batched events/s"] = BATCHES * BATCH / (time.perf_counter() - start)
    await conn.execute(insert, "c", list(range(ROWS)), [BLOB] * ROWS)
    start = time.perf_counter()
    rows = await conn.fetch("SELECT v, e FROM t WHERE s = 'c' ORDER BY v")
    assert len(rows) == ROWS
    out["read 10k rows ms"] = (time.perf_counter() - start) * 1000
    await conn.close()
    return out


async def _psycopg(schema: str) -> dict[str, float]:
    conn = await psycopg.AsyncConnection.connect(
        DSN, autocommit=True, options=f"-c search_path={schema}", prepare_threshold=0
    )
    out = {}
    await conn.execute(DDL)
    insert = "INSERT INTO t SELECT %s, v, e FROM unnest(%s::int[], %s::bytea[]) AS r(v, e)"
    start = time.perf_counter()
    for i in range(SINGLE):
        await conn.execute(insert, ("a", [i], [BLOB]))
    out["single appends/s"] = SINGLE / (time.perf_counter() - start)
    start = time.perf_counter()
    for b in range(BATCHES):
        versions = list(range(b * BATCH, (b + 1) * BATCH))
        await conn.execute(insert, ("b", versions, [BLOB] * BATCH))
    out["batched events/s"] = BATCHES * BATCH / (time.perf_counter() - start)
    await conn.execute(insert, ("c", list(range(ROWS)), [BLOB] * ROWS))
    start = time.perf_counter()
    cursor = await conn.execute("SELECT v, e FROM t WHERE s = 'c' ORDER BY v", binary=True)
    rows = await cursor.fetchall()
    assert len(rows) == ROWS
    out["read 10k rows ms"] = (time.perf_counter() - start) * 1000
    await conn.close()
    return out


async def main() -> None:
    admin = await asyncpg.connect(DSN)
    for name, run in (("asyncpg", _asyncpg), ("psycopg", _psycopg)):
        schema = f"drivers_{uuid.uuid4().hex[:8]}"
        await admin.execute(f"CREATE SCHEMA {schema}")
        try:
            figures = await run(schema)
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        print(name, {k: round(v, 1) for k, v in figures.items()})
    await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
