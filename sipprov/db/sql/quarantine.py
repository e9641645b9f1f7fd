"""SQL for apply_quarantine: the agents and queues the applier keeps out of Asterisk."""

from __future__ import annotations

import asyncpg

LIST = "SELECT kind, id, reason, since FROM apply_quarantine ORDER BY kind, id"

# Everything not in the new set leaves; the new set is upserted (since kept).
_DELETE_OTHERS = (
    "DELETE FROM apply_quarantine WHERE (kind, id) NOT IN"
    " (SELECT k, i FROM unnest($1::text[], $2::bigint[]) AS t(k, i))"
)
_UPSERT = (
    "INSERT INTO apply_quarantine (kind, id, reason)"
    " SELECT k, i, r FROM unnest($1::text[], $2::bigint[], $3::text[]) AS t(k, i, r)"
    " ON CONFLICT (kind, id) DO UPDATE SET reason = EXCLUDED.reason"
    " WHERE apply_quarantine.reason IS DISTINCT FROM EXCLUDED.reason"
)


async def list_all(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    return await conn.fetch(LIST)


async def replace_all(conn: asyncpg.Connection,
                      rows: list[tuple[str, int, str]]) -> list[asyncpg.Record]:
    """Make the table hold exactly `rows` (kind, id, reason); returns the table."""
    kinds = [k for k, _, _ in rows]
    ids = [i for _, i, _ in rows]
    reasons = [r for _, _, r in rows]
    async with conn.transaction():
        await conn.execute(_DELETE_OTHERS, kinds, ids)
        if rows:
            await conn.execute(_UPSERT, kinds, ids, reasons)
        return await conn.fetch(LIST)
