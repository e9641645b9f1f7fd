"""What /health and /status report about the database: reachable or not, and the config
versions (pending vs applied). The database is authoritative for versions: the applier
may run in another process."""

from __future__ import annotations

import asyncio

import asyncpg

from sipprov.db.database import is_unavailable
from sipprov.db.sql import config_state, health

HEALTH_TIMEOUT_S = 2.0


async def database_ok(pool: asyncpg.Pool, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """True when the database answers within `timeout`; False when it is unreachable.
    Any other error is a bug and propagates."""
    try:
        await asyncio.wait_for(health.ping(pool), timeout)
    except Exception as exc:  # noqa: BLE001
        if is_unavailable(exc):
            return False
        raise
    return True


async def config(pool: asyncpg.Pool) -> config_state.ConfigState:
    """The config version, the applied version and the last apply error."""
    return await config_state.read(pool)
