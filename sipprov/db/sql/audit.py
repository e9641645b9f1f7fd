"""SQL for the append-only audit log (a trigger refuses UPDATE, DELETE and TRUNCATE)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

INSERT = """
INSERT INTO audit_log (actor, action, entity, entity_id, details)
VALUES ($1, $2, $3, $4, $5::jsonb)
"""

# Newest first; every filter optional ($6: the last id of the previous page).
LIST = """
SELECT id, at, actor, action, entity, entity_id, details::text AS details
FROM audit_log
WHERE ($1::text IS NULL OR entity = $1) AND ($2::text IS NULL OR entity_id = $2)
  AND ($3::text IS NULL OR lower(actor) = lower($3))
  AND ($4::timestamptz IS NULL OR at >= $4) AND ($5::timestamptz IS NULL OR at < $5)
  AND ($6::bigint IS NULL OR id < $6)
ORDER BY id DESC
LIMIT $7
"""


async def insert(
    conn: asyncpg.Connection, actor: str, action: str, entity: str, entity_id: str | None, details: str
) -> None:
    await conn.execute(INSERT, actor, action, entity, entity_id, details)


async def list_entries(
    conn: asyncpg.Connection | asyncpg.Pool,
    entity: str | None,
    entity_id: str | None,
    before_id: int | None,
    limit: int,
    *,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[asyncpg.Record]:
    return await conn.fetch(LIST, entity, entity_id, actor, since, until, before_id, limit)
