"""PostgreSQL: the connection pool, the embedded server, and the migrations runner.

Without a DSN we start a private PostgreSQL (sipprov/db/embedded.py) in a data folder
of our own, so `sipprov serve` works on a machine with no database set up.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from sipprov.config import DatabaseConfig
from sipprov.db import embedded

log = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "sipprov.db.migrations"
_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")

# Errors that mean "the database is away", not "the request is wrong".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.ConnectionFailureError,
    # the server closed the connection in the middle of an exchange (a COMMIT while
    # PostgreSQL stops): asyncpg finds its protocol in a state it cannot continue from
    asyncpg.exceptions.InternalClientError,
)


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached right now; the request changed nothing."""


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in data_dir and return its DSN."""
    return embedded.start(data_dir)


def resolve_dsn(cfg: DatabaseConfig) -> str:
    return cfg.dsn or start_embedded(Path(cfg.embedded_dir))


POOL_KEEPALIVES = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "2",
                   "tcp_keepalives_count": "3"}


async def create_pool(dsn: str, cfg: DatabaseConfig) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=cfg.pool_min,
        max_size=cfg.pool_max,
        timeout=cfg.acquire_timeout_s,
        command_timeout=60,
        # A client that vanished (host down, network cut) must not hold its session, and
        # with it an apply lock, for the OS default of two hours (docs/scale-out.md).
        server_settings=POOL_KEEPALIVES,
    )
    assert pool is not None
    return pool


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files(MIGRATIONS_PACKAGE).iterdir():
        m = _MIGRATION_NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), entry.name, entry.read_text("utf-8")))
    return sorted(found, key=lambda mig: mig.version)


async def upgrade(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations, each in its own transaction; return the names applied.

    An advisory lock makes concurrent starts (two services, a CLI) safe.
    """
    applied_now: list[str] = []
    # The lock first: two starts on a fresh database (several `sipprov serve`, a CLI)
    # would otherwise race on CREATE TABLE IF NOT EXISTS (a duplicate pg_type row).
    await conn.execute("SELECT pg_advisory_lock(7261001)")
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for mig in available_migrations():
            if mig.version in done:
                continue
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    mig.version,
                    mig.name,
                )
            log.info("applied migration %s", mig.name)
            applied_now.append(mig.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(7261001)")
    return applied_now


async def connect_and_upgrade(cfg: DatabaseConfig) -> tuple[str, asyncpg.Pool]:
    """Resolve the DSN (starting the embedded server if needed), migrate, return a pool."""
    dsn = await asyncio.to_thread(resolve_dsn, cfg)
    pool = await create_pool(dsn, cfg)
    async with pool.acquire() as conn:
        await upgrade(conn)
    return dsn, pool


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, UNAVAILABLE_ERRORS) and not isinstance(
        exc, asyncpg.exceptions.PostgresError
    ) or isinstance(
        exc,
        (
            # PostgresError subclasses (SQLSTATE class 08 and 57P): the connection broke
            # in the middle of a query (e.g. the server was shut down or crashed).
            asyncpg.exceptions.ConnectionDoesNotExistError,
            asyncpg.exceptions.ConnectionFailureError,
            asyncpg.exceptions.CannotConnectNowError,
            asyncpg.exceptions.AdminShutdownError,
            asyncpg.exceptions.CrashShutdownError,
            asyncpg.exceptions.TooManyConnectionsError,
        ),
    )

