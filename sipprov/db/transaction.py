"""One transaction for one service call: how the HTTP API and the CLI call the services.

The service functions (agents, queues, directory) take a connection that is already
inside the caller's transaction: their rules, locks, audit row and config bump land in
that transaction and commit or roll back with it. So a caller that needs several calls
in one unit (the bulk import: one transaction for a whole file, a SAVEPOINT per row)
simply opens it itself, and a single call from a handler is `run(pool, fn, ...)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg

P = ParamSpec("P")
T = TypeVar("T")


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection inside a transaction: committed when the block ends,
    rolled back when it raises."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn


async def run(
    pool: asyncpg.Pool,
    fn: Callable[Concatenate[asyncpg.Connection, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """`fn(conn, *args, **kwargs)` in a transaction of its own."""
    async with transaction(pool) as conn:
        return await fn(conn, *args, **kwargs)


def require(conn: Any) -> None:
    """Refuse a mutation outside a transaction: without one, each statement would commit
    on its own and a refusal half-way would leave half a change."""
    if not isinstance(conn, asyncpg.Connection) or not conn.is_in_transaction():
        raise RuntimeError("a service mutation needs a connection inside the caller's transaction")
