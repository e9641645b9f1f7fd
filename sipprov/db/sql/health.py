"""SQL for the health check: the cheapest statement that proves the database answers."""

from __future__ import annotations

import asyncpg

PING = "SELECT 1"


async def ping(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    await conn.fetchval(PING)
