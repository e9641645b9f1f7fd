"""Run service-layer mutations inside a transaction the caller already holds.

The service functions take a pool and do `async with pool.acquire() as conn: async with
conn.transaction(): ...`. Given a TxPool instead, acquire() hands back the caller's
connection and transaction() becomes a SAVEPOINT: the function's rules, locks, audit
row and config bump all land in the caller's transaction (committed or rolled back
with it), and a function that raises undoes only its own work. This is how a bulk
import applies per-row updates with exactly the rules of a single PATCH, in one
transaction for the whole file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg


class TxPool:
    """Looks enough like an asyncpg.Pool for the service layer; never closes anything."""

    def __init__(self, conn: asyncpg.Connection):
        if not conn.is_in_transaction():
            raise RuntimeError("TxPool needs a connection inside a transaction")
        self._conn = conn

    @asynccontextmanager
    async def acquire(self, *, timeout: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        yield self._conn

    async def fetch(self, query: str, *args: Any, **kw: Any) -> list[asyncpg.Record]:
        return await self._conn.fetch(query, *args, **kw)

    async def fetchrow(self, query: str, *args: Any, **kw: Any) -> asyncpg.Record | None:
        return await self._conn.fetchrow(query, *args, **kw)

    async def fetchval(self, query: str, *args: Any, **kw: Any) -> Any:
        return await self._conn.fetchval(query, *args, **kw)

    async def execute(self, query: str, *args: Any, **kw: Any) -> str:
        return await self._conn.execute(query, *args, **kw)
