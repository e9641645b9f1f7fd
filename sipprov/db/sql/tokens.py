"""SQL for API tokens: only the sha256 of a token's secret part is ever stored."""

from __future__ import annotations

import asyncpg

INSERT = (
    "INSERT INTO api_tokens (name, role, token_hash) VALUES ($1, $2, $3)"
    " RETURNING id, name, role, created_at, last_used_at, revoked_at"
)
BY_ID = "SELECT id, name, role, token_hash, revoked_at FROM api_tokens WHERE id = $1"
# At most one write a minute per token: a busy client must not turn reads into writes.
TOUCH = (
    "UPDATE api_tokens SET last_used_at = now() WHERE id = $1"
    " AND (last_used_at IS NULL OR last_used_at < now() - interval '60 seconds')"
)
REVOKE = (
    "UPDATE api_tokens SET revoked_at = now()"
    " WHERE lower(name) = lower($1) AND revoked_at IS NULL RETURNING id"
)
LIST = (
    "SELECT id, name, role, created_at, last_used_at, revoked_at FROM api_tokens"
    " WHERE $1 OR revoked_at IS NULL ORDER BY lower(name), id"
)


async def insert(conn: asyncpg.Connection | asyncpg.Pool, name: str, role: str,
                 token_hash: str) -> asyncpg.Record:
    return await conn.fetchrow(INSERT, name, role, token_hash)


async def by_id(conn: asyncpg.Connection | asyncpg.Pool, token_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(BY_ID, token_id)


async def touch(conn: asyncpg.Connection | asyncpg.Pool, token_id: int) -> None:
    await conn.execute(TOUCH, token_id)


async def revoke(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> list[int]:
    return [r["id"] for r in await conn.fetch(REVOKE, name)]


async def list_all(conn: asyncpg.Connection | asyncpg.Pool,
                   include_revoked: bool = False) -> list[asyncpg.Record]:
    return await conn.fetch(LIST, include_revoked)
