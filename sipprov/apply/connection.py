"""The applier's own database connection and the cross-process apply lock.

The connection is kept between applies: taking one from the shared pool for every
apply would queue it behind a burst of creates. One apply runs at a time across
processes (a PostgreSQL advisory lock), so the service and `sipprov apply` never
interleave their writes and reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg

from sipprov.apply.errors import Unavailable
from sipprov.db.sql import snapshot as snapshot_sql

# How long to wait for another process's apply to finish.
APPLY_LOCK_TIMEOUT_S = 120.0

DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


class ApplyConnection:
    """One pooled connection held by the applier, re-taken when it dies."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.conn: asyncpg.Connection | None = None

    async def get(self) -> asyncpg.Connection:
        """The live connection, or a new one (Unavailable when there is none)."""
        if self.conn is not None:
            try:
                if not self.conn.is_closed():
                    return self.conn
            except asyncpg.InterfaceError:
                # The connection died (PostgreSQL restarted) and the pool took it back:
                # the proxy is detached, and even is_closed() raises. Take a new one.
                self.conn = None
        await self.release()
        try:
            self.conn = await self.pool.acquire()
        except Exception as exc:
            raise Unavailable(f"database: {exc}") from exc
        return self.conn

    def alive(self) -> asyncpg.Connection | None:
        """The held connection if it is open, without taking a new one."""
        conn = self.conn
        try:
            return conn if conn is not None and not conn.is_closed() else None
        except asyncpg.InterfaceError:
            return None

    async def release(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await self.pool.release(conn)

    async def lock(self, conn: asyncpg.Connection) -> bool:
        """Take the apply lock (waiting for another process's apply to end)."""
        deadline = time.monotonic() + APPLY_LOCK_TIMEOUT_S
        while True:
            if await conn.fetchval(snapshot_sql.TRY_APPLY_LOCK):
                return True
            if time.monotonic() > deadline:
                raise Unavailable("another process has been applying for too long")
            await asyncio.sleep(0.05)

    async def unlock(self, conn: asyncpg.Connection) -> None:
        """Release the lock; a connection that cannot is dropped (which releases it)."""
        held = self.conn
        if held is None or held is not conn:
            return
        try:
            await held.execute(snapshot_sql.APPLY_UNLOCK)
        except Exception:
            await self.release()
