"""SQL for the extension pool: one row per number, owned by at most one user or queue.

Allocation locks the lowest free row FOR UPDATE SKIP LOCKED: concurrent transactions
never get the same number and never wait for each other; a rolled-back allocation
frees its number again. The allocation queries are bounded by the configured range, so
numbers left over from an older, wider range are never handed out again.

Cooldown: a released number keeps `released_at`; until `cooldown` seconds have passed
it is skipped by every allocation (the old phone may still be registered) except a
request of the owner that released it (migration 004).
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

# A free row that is out of its cooldown ($N: the cooldown in seconds).
def _rested(cooldown_param: str) -> str:
    return (f"(released_at IS NULL OR released_at <= now() - make_interval(secs => {cooldown_param}"
            "::double precision))")


ALLOCATE_LOWEST = f"""
UPDATE extension_pool SET owner = $3
WHERE number = (
    SELECT number FROM extension_pool
    WHERE owner IS NULL AND NOT reserved AND number BETWEEN $1 AND $2 AND {_rested("$4")}
    ORDER BY number
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING number
"""

# Waits on a concurrent claim of the same number, then re-checks owner: the loser
# gets no row (and a ConflictError), never a duplicate.
ALLOCATE_EXACT = f"""
UPDATE extension_pool SET owner = $2
WHERE number = $1 AND owner IS NULL AND NOT reserved
  AND (released_owner = $2 OR {_rested("$3")})
RETURNING number
"""

# N numbers for N owners in one statement (bulk import): the i-th lowest free number
# goes to the i-th owner.
ALLOCATE_MANY = f"""
WITH free AS (
    SELECT number, row_number() OVER (ORDER BY number) AS i
    FROM (
        SELECT number FROM extension_pool
        WHERE owner IS NULL AND NOT reserved AND number BETWEEN $1 AND $2 AND {_rested("$4")}
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

# available_at: when a released number may go to someone else (NULL: never released).
LOOKUP = """
SELECT number, reserved, owner, released_owner,
       released_at + make_interval(secs => $2::double precision) AS available_at,
       released_at + make_interval(secs => $2::double precision) > now() AS cooling
FROM extension_pool WHERE number = $1
"""

# $3 false: the number never reached a phone (a create that failed later in the same
# transaction), so it is not held back.
RELEASE = """
UPDATE extension_pool SET owner = NULL,
    released_at = CASE WHEN $3 THEN now() ELSE released_at END,
    released_owner = CASE WHEN $3 THEN $2 ELSE released_owner END
WHERE number = $1 AND owner = $2
RETURNING number
"""

STATS = f"""
SELECT count(*) FILTER (WHERE number BETWEEN $1 AND $2) AS total,
       count(*) FILTER (WHERE number BETWEEN $1 AND $2 AND reserved) AS reserved,
       count(*) FILTER (WHERE owner IS NOT NULL) AS used,
       count(*) FILTER (WHERE number BETWEEN $1 AND $2 AND owner IS NULL AND NOT reserved
                        AND {_rested("$3")}) AS free,
       count(*) FILTER (WHERE number BETWEEN $1 AND $2 AND owner IS NULL AND NOT reserved
                        AND NOT {_rested("$3")}) AS cooling
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


async def allocate_lowest(
    conn: asyncpg.Connection, first: int, last: int, owner: str, cooldown: float
) -> int | None:
    return await conn.fetchval(ALLOCATE_LOWEST, first, last, owner, cooldown)


async def allocate_exact(conn: asyncpg.Connection, number: int, owner: str, cooldown: float) -> int | None:
    return await conn.fetchval(ALLOCATE_EXACT, number, owner, cooldown)


async def allocate_many(
    conn: asyncpg.Connection, first: int, last: int, owners: list[str], cooldown: float
) -> dict[str, int]:
    rows = await conn.fetch(ALLOCATE_MANY, first, last, owners, cooldown)
    return {row["owner"]: row["number"] for row in rows}


async def lookup(conn: asyncpg.Connection, number: int, cooldown: float) -> asyncpg.Record | None:
    return await conn.fetchrow(LOOKUP, number, cooldown)


async def release(conn: asyncpg.Connection, number: int, owner: str, hold: bool = True) -> bool:
    return await conn.fetchval(RELEASE, number, owner, hold) is not None


async def stats(
    conn: asyncpg.Connection | asyncpg.Pool, first: int, last: int, cooldown: float
) -> asyncpg.Record:
    return await conn.fetchrow(STATS, first, last, cooldown)


# What the next create would get (the add-agent form's preview; not a reservation).
PEEK_LOWEST = f"""
SELECT min(number) FROM extension_pool
WHERE owner IS NULL AND NOT reserved AND number BETWEEN $1 AND $2 AND {_rested("$3")}
"""


async def peek_lowest(
    conn: asyncpg.Connection | asyncpg.Pool, first: int, last: int, cooldown: float
) -> int | None:
    return await conn.fetchval(PEEK_LOWEST, first, last, cooldown)
