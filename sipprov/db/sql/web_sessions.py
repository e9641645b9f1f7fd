"""SQL for web console sessions: rows are keyed by the sha256 of the cookie value."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

INSERT = (
    "INSERT INTO web_sessions (id_hash, user_id, csrf_token, language, expires_at)"
    " VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))"
)
# The session with what every page needs of its user; a role that lost web login or a
# user without a web password or a deactivated user has no session any more.
LOOKUP = (
    "SELECT s.user_id, s.csrf_token, s.language, u.login, u.first_name, u.last_name,"
    " u.force_password_change, u.language AS user_language, r.name AS role"
    " FROM web_sessions s JOIN users u ON u.id = s.user_id JOIN roles r ON r.id = u.role_id"
    " WHERE s.id_hash = $1 AND s.expires_at > now() AND r.web_login"
    " AND u.web_password_hash IS NOT NULL AND u.active"
)
# Sliding expiry, written at most once a minute per session.
TOUCH = (
    "UPDATE web_sessions SET last_seen = now(), expires_at = now() + make_interval(secs => $2)"
    " WHERE id_hash = $1 AND last_seen < now() - interval '60 seconds'"
)
SET_LANGUAGE = "UPDATE web_sessions SET language = $2 WHERE id_hash = $1"
DELETE = "DELETE FROM web_sessions WHERE id_hash = $1"
DELETE_OTHERS = "DELETE FROM web_sessions WHERE user_id = $1 AND id_hash <> $2"
PRUNE = "DELETE FROM web_sessions WHERE expires_at <= now()"


async def insert(conn: Conn, id_hash: bytes, user_id: int, csrf_token: str,
                 language: str | None, lifetime_s: float) -> None:
    await conn.execute(INSERT, id_hash, user_id, csrf_token, language, float(lifetime_s))


async def lookup(conn: Conn, id_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(LOOKUP, id_hash)


async def touch(conn: Conn, id_hash: bytes, lifetime_s: float) -> None:
    await conn.execute(TOUCH, id_hash, float(lifetime_s))


async def set_language(conn: Conn, id_hash: bytes, language: str) -> None:
    await conn.execute(SET_LANGUAGE, id_hash, language)


async def delete(conn: Conn, id_hash: bytes) -> None:
    await conn.execute(DELETE, id_hash)


async def delete_others(conn: Conn, user_id: int, keep: bytes) -> None:
    await conn.execute(DELETE_OTHERS, user_id, keep)


async def prune(conn: Conn) -> int:
    return int((await conn.execute(PRUNE)).split()[-1])


# --- one-time softphone provisioning links ------------------------------------------------

PROVISIONING_REPLACE = "DELETE FROM provisioning_tokens WHERE user_id = $1 OR expires_at <= now()"
PROVISIONING_INSERT = (
    "INSERT INTO provisioning_tokens (token_hash, user_id, expires_at)"
    " VALUES ($1, $2, now() + make_interval(secs => $3))"
)
# Taking a link uses it up.
PROVISIONING_TAKE = """
WITH taken AS (
    DELETE FROM provisioning_tokens WHERE token_hash = $1 AND expires_at > now()
    RETURNING user_id
)
SELECT u.id, u.extension, u.sip_ha1_md5, u.sip_realm, u.caller_id_name
FROM taken JOIN users u ON u.id = taken.user_id
WHERE u.extension IS NOT NULL AND u.sip_ha1_md5 IS NOT NULL
"""


async def provisioning_issue(conn: asyncpg.Connection, token_hash: bytes, user_id: int,
                             lifetime_s: float) -> None:
    """A new link for the user; their older links stop working."""
    async with conn.transaction():
        await conn.execute(PROVISIONING_REPLACE, user_id)
        await conn.execute(PROVISIONING_INSERT, token_hash, user_id, float(lifetime_s))


async def provisioning_take(conn: Conn, token_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(PROVISIONING_TAKE, token_hash)
