"""SQL for the extension pool: one row per number, owned by at most one user or queue.

Allocation locks the lowest free row FOR UPDATE SKIP LOCKED: concurrent transactions
never get the same number and never wait for each other; a rolled-back allocation
frees its number again. The allocation queries are bounded by the configured range, so
numbers left over from an older, wider range are never handed out again.
"""

from __future__ import annotations

import asyncpg

# Inserts the whole range in one statement (90,000 rows in well under a second) and
# brings the reserved flags in line; idempotent.
SYNC_INSERT = """
INSERT INTO extension_pool (number, reserved)
SELECT n, n = ANY($3::integer[]) FROM generate_series($1::integer, $2::integer) AS n
ON CONFLICT (number) DO UPDATE SET reserved = EXCLUDED.reserved
WHERE extension_pool.reserved IS DISTINCT FROM EXCLUDED.reserved
"""
# Free numbers outside the range go; owned ones stay until their owner lets them go.
SYNC_DELETE = """
DELETE FROM extension_pool
WHERE (number < $1 OR number > $2) AND owner IS NULL
"""
COUNT_OWNED_OUTSIDE = """
SELECT count(*) FROM extension_pool WHERE (number < $1 OR number > $2) AND owner IS NOT NULL
"""

ALLOCATE_LOWEST = """
UPDATE extension_pool SET owner = $3
WHERE number = (
    SELECT number FROM extension_pool
    WHERE owner IS NULL AND NOT reserved AND number BETWEEN $1 AND $2
    ORDER BY number
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING number
"""

# Waits on a concurrent claim of the same number, then re-checks owner: the loser
# gets no row (and a ConflictError), never a duplicate.
ALLOCATE_EXACT = """
UPDATE extension_pool SET owner = $2
WHERE number = $1 AND owner IS NULL AND NOT reserved
RETURNING number
"""

# N numbers for N owners in one statement (bulk import): the i-th lowest free number
# goes to the i-th owner.
ALLOCATE_MANY = """
WITH free AS (
    SELECT number, row_number() OVER (ORDER BY number) AS i
    FROM (
        SELECT number FROM extension_pool
        WHERE owner IS NULL AND NOT reserved AND number BETWEEN $1 AND $2
        ORDER BY number
        LIMIT cardinality($3::text[])
        FOR UPDATE SKIP LOCKED
    ) AS locked
),
wanted AS (
    SELECT owner, i FROM unnest($3::text[]) WITH ORDINALITY AS w (owner, i)
)
UPDATE extension_pool AS p SET owner = wanted.owner
FROM free JOIN wanted USING (i)
WHERE p.number = free.number
RETURNING p.number, p.owner
"""

LOOKUP = "SELECT number, reserved, owner FROM extension_pool WHERE number = $1"

RELEASE = "UPDATE extension_pool SET owner = NULL WHERE number = $1 AND owner = $2 RETURNING number"

STATS = """
SELECT count(*) FILTER (WHERE number BETWEEN $1 AND $2) AS total,
       count(*) FILTER (WHERE number BETWEEN $1 AND $2 AND reserved) AS reserved,
       count(*) FILTER (WHERE owner IS NOT NULL) AS used,
       count(*) FILTER (WHERE number BETWEEN $1 AND $2 AND owner IS NULL AND NOT reserved) AS free
FROM extension_pool
"""


async def sync(
    conn: asyncpg.Connection, first: int, last: int, reserved: list[int]
) -> tuple[int, int, int]:
    """Returns (rows inserted or re-flagged, free rows deleted, owned rows outside the range)."""
    changed = await conn.execute(SYNC_INSERT, first, last, reserved)
    deleted = await conn.execute(SYNC_DELETE, first, last)
    outside = await conn.fetchval(COUNT_OWNED_OUTSIDE, first, last)
    return int(changed.split()[-1]), int(deleted.split()[-1]), int(outside)


async def allocate_lowest(conn: asyncpg.Connection, first: int, last: int, owner: str) -> int | None:
    return await conn.fetchval(ALLOCATE_LOWEST, first, last, owner)


async def allocate_exact(conn: asyncpg.Connection, number: int, owner: str) -> int | None:
    return await conn.fetchval(ALLOCATE_EXACT, number, owner)


async def allocate_many(
    conn: asyncpg.Connection, first: int, last: int, owners: list[str]
) -> dict[str, int]:
    rows = await conn.fetch(ALLOCATE_MANY, first, last, owners)
    return {row["owner"]: row["number"] for row in rows}


async def lookup(conn: asyncpg.Connection, number: int) -> asyncpg.Record | None:
    return await conn.fetchrow(LOOKUP, number)


async def release(conn: asyncpg.Connection, number: int, owner: str) -> bool:
    return await conn.fetchval(RELEASE, number, owner) is not None


async def stats(conn: asyncpg.Connection | asyncpg.Pool, first: int, last: int) -> asyncpg.Record:
    return await conn.fetchrow(STATS, first, last)


# What the next create would get (the add-agent form's preview; not a reservation).
PEEK_LOWEST = """
SELECT min(number) FROM extension_pool
WHERE owner IS NULL AND NOT reserved AND number BETWEEN $1 AND $2
"""


async def peek_lowest(conn: asyncpg.Connection | asyncpg.Pool, first: int, last: int) -> int | None:
    return await conn.fetchval(PEEK_LOWEST, first, last)
