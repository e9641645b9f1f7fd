"""SQL for node_state (migration 015): what each Asterisk node holds, as the applier
last recorded it. Readers (/status, `sipprov status`) read it: the applier may run in
another process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

# One row per node per apply attempt; applied_version never goes back.
UPSERT = (
    "INSERT INTO node_state AS n (name, site, applied_version, applied_at, reachable,"
    " checked_at, last_error, last_error_at)"
    " VALUES ($1, $2, $3::bigint, CASE WHEN $3::bigint > 0 THEN now() END, $4, now(), $5::text,"
    " CASE WHEN $5::text IS NOT NULL THEN now() END)"
    " ON CONFLICT (name) DO UPDATE SET site = EXCLUDED.site,"
    " applied_version = GREATEST(n.applied_version, EXCLUDED.applied_version),"
    " applied_at = CASE WHEN EXCLUDED.applied_version > n.applied_version"
    " THEN now() ELSE n.applied_at END,"
    " reachable = EXCLUDED.reachable, checked_at = now(), last_error = EXCLUDED.last_error,"
    " last_error_at = CASE WHEN EXCLUDED.last_error IS NULL THEN NULL"
    " WHEN EXCLUDED.last_error IS DISTINCT FROM n.last_error THEN now()"
    " ELSE n.last_error_at END"
)
READ_ALL = (
    "SELECT name, site, applied_version, applied_at, reachable, checked_at, last_error,"
    " last_error_at FROM node_state ORDER BY name"
)


@dataclass(frozen=True)
class NodeState:
    name: str
    site: str | None
    applied_version: int
    applied_at: datetime | None
    reachable: bool | None
    checked_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None


async def record(conn: asyncpg.Connection,
                 rows: list[tuple[str, str | None, int, bool | None, str | None]]) -> None:
    """(name, site, applied_version, reachable, last_error) per node."""
    await conn.executemany(UPSERT, [(n, s, v, r, e[:2000] if e else None)
                                    for n, s, v, r, e in rows])


async def read_all(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, NodeState]:
    return {r["name"]: NodeState(**dict(r)) for r in await conn.fetch(READ_ALL)}
