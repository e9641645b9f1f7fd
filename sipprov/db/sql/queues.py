"""SQL for queues and queue memberships.

A member's effective penalty is its override, else the agent's priority - 1 (lower is
tried first by app_queue); both are returned so the API can show where it comes from.
"""

from __future__ import annotations

import asyncpg

_QUEUE_COLUMNS = """
q.id, q.name, COALESCE(q.label, q.name) AS label, q.kind, q.strategy, q.number, q.site,
q.created_at, q.updated_at,
(SELECT count(*) FROM queue_members m WHERE m.queue_id = q.id) AS member_count
"""
LIST = f"""
SELECT {_QUEUE_COLUMNS} FROM queues q
WHERE ($1::text IS NULL OR q.kind = $1)
ORDER BY lower(q.name)
"""
GET = f"SELECT {_QUEUE_COLUMNS} FROM queues q WHERE lower(q.name) = lower($1)"
LOCK = f"SELECT {_QUEUE_COLUMNS} FROM queues q WHERE lower(q.name) = lower($1) FOR UPDATE"
# Adding a member only needs the queue to stay (not unchanged): a key-share lock lets
# renames through and makes a concurrent delete wait (or us see it gone).
SHARE = "SELECT id, name, kind FROM queues WHERE lower(name) = lower($1) FOR KEY SHARE"
NEXT_ID = "SELECT nextval(pg_get_serial_sequence('queues', 'id'))"
INSERT = """
INSERT INTO queues (id, name, label, kind, strategy, number, site)
VALUES ($1, $2, $6, $3, $4, $5, $7)
"""
UPDATE = """
UPDATE queues SET name = $2, kind = $3, strategy = $4, number = $5, label = $6, site = $7,
       updated_at = now()
WHERE id = $1
"""
DELETE = "DELETE FROM queues WHERE id = $1"
# Names taken by a derived name's candidates (`hotro`, `hotro2`, ...), lower-case.
NAMES_LIKE = "SELECT lower(name) FROM queues WHERE lower(name) LIKE $1 || '%'"

MEMBERS = """
SELECT u.id AS agent_id, u.login, u.extension,
       COALESCE(m.penalty, u.priority - 1) AS penalty, m.penalty AS penalty_override
FROM queue_members m JOIN users u ON u.id = m.user_id
WHERE m.queue_id = $1
ORDER BY COALESCE(m.penalty, u.priority - 1), u.id
"""
UPSERT_MEMBER = """
INSERT INTO queue_members (queue_id, user_id, penalty) VALUES ($1, $2, $3)
ON CONFLICT (queue_id, user_id) DO UPDATE SET penalty = EXCLUDED.penalty
RETURNING (xmax = 0) AS inserted
"""
GET_MEMBER = "SELECT penalty FROM queue_members WHERE queue_id = $1 AND user_id = $2"
DELETE_MEMBER = "DELETE FROM queue_members WHERE queue_id = $1 AND user_id = $2 RETURNING user_id"

# Queues by name for an agent's `queues` list (names compared case-insensitively).
BY_NAMES = """
SELECT id, name, kind FROM queues WHERE lower(name) = ANY(
    SELECT lower(n) FROM unnest($1::text[]) AS n
)
FOR KEY SHARE
"""
# An agent's memberships, and replacing them in two statements.
USER_MEMBERSHIPS = """
SELECT m.queue_id, q.name, q.kind, m.penalty
FROM queue_members m JOIN queues q ON q.id = m.queue_id
WHERE m.user_id = $1
ORDER BY m.queue_id
"""
DELETE_USER_MEMBERSHIPS = "DELETE FROM queue_members WHERE user_id = $1"
INSERT_USER_MEMBERSHIPS = """
INSERT INTO queue_members (queue_id, user_id, penalty)
SELECT queue_id, $1, penalty FROM unnest($2::integer[], $3::integer[]) AS t (queue_id, penalty)
"""
# Users pointing at a ticket queue by name follow its rename and lose it on delete.
RENAME_TICKET_QUEUE_REFS = """
UPDATE users SET default_ticket_queue = $2 WHERE lower(default_ticket_queue) = lower($1)
"""
TICKET_QUEUE_REF_LOGINS = """
SELECT login FROM users WHERE lower(default_ticket_queue) = lower($1) ORDER BY lower(login)
"""
CLEAR_TICKET_QUEUE_REFS = """
UPDATE users SET default_ticket_queue = NULL WHERE lower(default_ticket_queue) = lower($1)
"""


async def list_queues(conn: asyncpg.Connection | asyncpg.Pool, kind: str | None) -> list[asyncpg.Record]:
    return await conn.fetch(LIST, kind)


async def get(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(GET, name)


async def lock(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(LOCK, name)


async def share(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(SHARE, name)


async def next_id(conn: asyncpg.Connection) -> int:
    return await conn.fetchval(NEXT_ID)


async def insert(
    conn: asyncpg.Connection, queue_id: int, name: str, label: str, kind: str, strategy: str,
    number: int | None, site: str | None = None,
) -> None:
    await conn.execute(INSERT, queue_id, name, kind, strategy, number, label, site)


async def update(
    conn: asyncpg.Connection, queue_id: int, name: str, label: str, kind: str, strategy: str,
    number: int | None, site: str | None = None,
) -> None:
    await conn.execute(UPDATE, queue_id, name, kind, strategy, number, label, site)


async def names_like(conn: asyncpg.Connection, prefix: str) -> set[str]:
    """Lower-case queue names starting with prefix (a derived name's taken candidates)."""
    escaped = prefix.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {r[0] for r in await conn.fetch(NAMES_LIKE, escaped)}


async def delete(conn: asyncpg.Connection, queue_id: int) -> None:
    await conn.execute(DELETE, queue_id)


async def members(conn: asyncpg.Connection | asyncpg.Pool, queue_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(MEMBERS, queue_id)


async def upsert_member(conn: asyncpg.Connection, queue_id: int, user_id: int, penalty: int | None) -> bool:
    """True when the membership is new."""
    return await conn.fetchval(UPSERT_MEMBER, queue_id, user_id, penalty)


async def get_member(conn: asyncpg.Connection, queue_id: int, user_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(GET_MEMBER, queue_id, user_id)


async def delete_member(conn: asyncpg.Connection, queue_id: int, user_id: int) -> bool:
    return await conn.fetchval(DELETE_MEMBER, queue_id, user_id) is not None


async def by_names(conn: asyncpg.Connection, names: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch(BY_NAMES, names)


async def user_memberships(conn: asyncpg.Connection, user_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(USER_MEMBERSHIPS, user_id)


async def replace_user_memberships(
    conn: asyncpg.Connection, user_id: int, queue_ids: list[int], penalties: list[int | None]
) -> None:
    await conn.execute(DELETE_USER_MEMBERSHIPS, user_id)
    if queue_ids:
        await conn.execute(INSERT_USER_MEMBERSHIPS, user_id, queue_ids, penalties)


async def delete_user_memberships(conn: asyncpg.Connection, user_id: int) -> None:
    await conn.execute(DELETE_USER_MEMBERSHIPS, user_id)


async def rename_ticket_queue_refs(conn: asyncpg.Connection, old: str, new: str) -> None:
    await conn.execute(RENAME_TICKET_QUEUE_REFS, old, new)


async def clear_ticket_queue_refs(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute(CLEAR_TICKET_QUEUE_REFS, name)


async def ticket_queue_ref_logins(conn: asyncpg.Connection, name: str) -> list[str]:
    """Users whose default ticket queue this is."""
    return [r[0] for r in await conn.fetch(TICKET_QUEUE_REF_LOGINS, name)]
