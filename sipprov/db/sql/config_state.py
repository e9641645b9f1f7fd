"""SQL for the config version: bumped with every change Asterisk sees, in the same
transaction, and followed by the applier."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

NOTIFY_CHANNEL = "sipprov_config"

# One round trip: the bump and its NOTIFY (sent on commit, with the new version).
BUMP = (
    "WITH bumped AS (UPDATE config_state SET version = version + 1 WHERE id = 1"
    " RETURNING version)"
    f" SELECT version, pg_notify('{NOTIFY_CHANNEL}', version::text) FROM bumped"
)
READ = (
    "SELECT version, applied_version, applied_at, last_error, last_error_at, last_apply_ms"
    " FROM config_state WHERE id = 1"
)
MARK_APPLIED = (
    "UPDATE config_state SET applied_version = GREATEST(applied_version, $1),"
    " applied_at = now(), last_error = NULL, last_error_at = NULL, last_apply_ms = $2"
    " WHERE id = 1"
)
MARK_ERROR = "UPDATE config_state SET last_error = $1, last_error_at = now() WHERE id = 1"


@dataclass(frozen=True)
class ConfigState:
    version: int
    applied_version: int
    applied_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    last_apply_ms: int | None

    @property
    def pending(self) -> int:
        return max(0, self.version - self.applied_version)


async def bump(conn: asyncpg.Connection) -> int:
    """Bump the version inside the caller's transaction; the NOTIFY is sent on commit.

    Call it as late as possible in the transaction: the row lock is held until commit.
    """
    return int(await conn.fetchval(BUMP))


async def read(conn: asyncpg.Connection | asyncpg.Pool) -> ConfigState:
    row = await conn.fetchrow(READ)
    return ConfigState(**dict(row))


async def mark_applied(conn: asyncpg.Connection | asyncpg.Pool, version: int, ms: int) -> None:
    await conn.execute(MARK_APPLIED, version, ms)


async def mark_error(conn: asyncpg.Connection | asyncpg.Pool, error: str) -> None:
    await conn.execute(MARK_ERROR, error[:2000])
