"""SQL for uploaded avatars (at most 8 MB, PNG/JPEG/WebP; the table checks both)."""

from __future__ import annotations

import asyncpg

# Inserts only for an existing user: no row back means no such user.
UPSERT = (
    "INSERT INTO avatars (user_id, content_type, data)"
    " SELECT id, $2, $3 FROM users WHERE id = $1"
    " ON CONFLICT (user_id) DO UPDATE SET content_type = EXCLUDED.content_type,"
    " data = EXCLUDED.data, updated_at = now()"
    " RETURNING user_id, updated_at"
)
GET = "SELECT content_type, data, updated_at FROM avatars WHERE user_id = $1"
DELETE = "DELETE FROM avatars WHERE user_id = $1 RETURNING user_id"
USER_EXISTS = "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)"


async def upsert(conn: asyncpg.Connection | asyncpg.Pool, user_id: int, content_type: str,
                 data: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(UPSERT, user_id, content_type, data)


async def get(conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(GET, user_id)


async def delete(conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> bool:
    return await conn.fetchval(DELETE, user_id) is not None


async def user_exists(conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> bool:
    return bool(await conn.fetchval(USER_EXISTS, user_id))
