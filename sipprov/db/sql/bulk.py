"""SQL for bulk import and export of agents: set-based statements and COPY, so a file of
10,000 rows costs a handful of round trips instead of tens of thousands.

The agent read query is the agent service's own (sql/agents.py AGENT_SELECT), so an
exported row is exactly what the API returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from sipprov.db.sql.agents import AGENT_SELECT, INSERT_COLUMNS

# An import holds this for its whole transaction (seconds): concurrent creates and
# updates (API, CLI) wait, reads go on. With it, the import's checks of login, e-mail
# and extension uniqueness against the table cannot be invalidated before commit, so
# a row is refused with its line number instead of the whole COPY failing.
LOCK_USERS = "LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE"

USER_KEYS = "SELECT id, lower(login) AS login, lower(email) AS email FROM users"
ALL_LOGINS = "SELECT lower(login) FROM users"
COUNT_USERS = "SELECT count(*) FROM users"

AGENTS_BY_IDS = AGENT_SELECT + "WHERE u.id = ANY($1::bigint[]) ORDER BY u.id"
ALL_AGENTS = AGENT_SELECT + "ORDER BY u.id"

NEXT_USER_IDS = (
    "SELECT nextval(pg_get_serial_sequence('users', 'id')) FROM generate_series(1, $1::integer)"
)

# Numbers the file asks for, claimed in one statement; what is not returned was out of
# range, reserved, taken or missing from the pool (the caller asks the extension
# service about those one by one, for its exact error).
CLAIM_EXACT = """
UPDATE extension_pool AS p SET owner = w.owner
FROM unnest($3::integer[], $4::text[]) AS w (number, owner)
WHERE p.number = w.number AND p.owner IS NULL AND NOT p.reserved
  AND p.number BETWEEN $1 AND $2
  AND (p.released_at IS NULL OR p.released_at <= now() - make_interval(secs => $5::double precision))
RETURNING p.number
"""

# Deferred web password hashes: only where none was stored meanwhile (an admin who set
# a password through the API after the import wins).
SET_WEB_HASHES = """
UPDATE users AS u SET web_password_hash = t.hash
FROM unnest($1::bigint[], $2::text[]) AS t (id, hash)
WHERE u.id = t.id AND u.web_password_hash IS NULL
"""

MEMBER_COLUMNS = ("queue_id", "user_id", "penalty")
CAMPAIGN_COLUMNS = ("campaign", "user_id")
AUDIT_COLUMNS = ("actor", "action", "entity", "entity_id", "details")


async def lock_users(conn: asyncpg.Connection) -> None:
    await conn.execute(LOCK_USERS)


async def user_keys(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(USER_KEYS)


async def all_logins(conn: asyncpg.Connection) -> set[str]:
    return {r[0] for r in await conn.fetch(ALL_LOGINS)}


async def agents_by_ids(conn: asyncpg.Connection, ids: Sequence[int]) -> list[asyncpg.Record]:
    return await conn.fetch(AGENTS_BY_IDS, list(ids))


async def next_user_ids(conn: asyncpg.Connection, n: int) -> list[int]:
    if n <= 0:
        return []
    return [r[0] for r in await conn.fetch(NEXT_USER_IDS, n)]


async def claim_exact(
    conn: asyncpg.Connection, first: int, last: int, numbers: Sequence[int], owners: Sequence[str],
    cooldown: float,
) -> set[int]:
    if not numbers:
        return set()
    rows = await conn.fetch(CLAIM_EXACT, first, last, list(numbers), list(owners), cooldown)
    return {r[0] for r in rows}


async def copy_users(conn: asyncpg.Connection, records: Iterable[Sequence[Any]]) -> None:
    """Rows in sql/agents.py INSERT_COLUMNS order."""
    await conn.copy_records_to_table("users", records=records, columns=list(INSERT_COLUMNS))


async def copy_memberships(conn: asyncpg.Connection, records: Iterable[Sequence[Any]]) -> None:
    await conn.copy_records_to_table("queue_members", records=records, columns=list(MEMBER_COLUMNS))


async def copy_campaigns(conn: asyncpg.Connection, records: Iterable[Sequence[Any]]) -> None:
    await conn.copy_records_to_table(
        "campaign_members", records=records, columns=list(CAMPAIGN_COLUMNS)
    )


async def copy_audit(conn: asyncpg.Connection, records: Iterable[Sequence[Any]]) -> None:
    """(actor, action, entity, entity_id, details as JSON text)."""
    await conn.copy_records_to_table("audit_log", records=records, columns=list(AUDIT_COLUMNS))


async def set_web_hashes(
    conn: asyncpg.Connection | asyncpg.Pool, ids: Sequence[int], hashes: Sequence[str]
) -> int:
    """Returns how many users got their hash (the others had one set meanwhile)."""
    status = await conn.execute(SET_WEB_HASHES, list(ids), list(hashes))
    return int(status.split()[-1])


def all_agents(conn: asyncpg.Connection, prefetch: int = 1000) -> Any:
    """An async cursor over every agent in id order (call inside a transaction)."""
    return conn.cursor(ALL_AGENTS, prefetch=prefetch)


async def count_users(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(COUNT_USERS))
