"""Web console sessions, kept in PostgreSQL (migration 008).

Why the database and not a signed cookie: logging out, deleting a user or taking a
role's web login away must end the session at once, and several sipprov processes
share one database. The browser holds only a random id (HttpOnly, SameSite=Strict);
the table holds its sha256, so a database dump logs nobody in.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import asyncpg

from sipprov.db.sql import web_sessions as sql

SESSION_COOKIE = "sipprov_session"
# Sessions slide: each request (at most one write a minute) pushes expiry this far.
LIFETIME_S = 8 * 3600
# Roles whose users see the admin pages; every other role with web login sees
# self-service only (docs/console.md).
ADMIN_ROLES = frozenset({"admin", "sub-admin"})


@dataclass(frozen=True)
class WebUser:
    """Who is logged in on this request."""

    user_id: int
    login: str
    first_name: str
    last_name: str
    role: str
    must_change_password: bool
    csrf_token: str
    # Switched to in this session (None: not switched), and the user record's own.
    language: str | None
    user_language: str
    id_hash: bytes

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


def hash_id(cookie_value: str) -> bytes:
    return hashlib.sha256(cookie_value.encode("utf-8", "replace")).digest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


async def start(pool: asyncpg.Pool, user_id: int, language: str | None) -> str:
    """A new session for `user_id`; returns the cookie value (shown to the browser only)."""
    value = new_token()
    await sql.insert(pool, hash_id(value), user_id, new_token(), language, LIFETIME_S)
    await sql.prune(pool)
    return value


async def current(pool: asyncpg.Pool, cookie_value: str | None) -> WebUser | None:
    """The live session of this cookie, or None (unknown, expired, no web login)."""
    if not cookie_value or len(cookie_value) > 100:
        return None
    id_hash = hash_id(cookie_value)
    row = await sql.lookup(pool, id_hash)
    if row is None:
        return None
    await sql.touch(pool, id_hash, LIFETIME_S)
    return WebUser(
        user_id=row["user_id"], login=row["login"], first_name=row["first_name"],
        last_name=row["last_name"], role=row["role"],
        must_change_password=row["force_password_change"], csrf_token=row["csrf_token"],
        language=row["language"], user_language=row["user_language"], id_hash=id_hash,
    )


async def end(pool: asyncpg.Pool, user: WebUser) -> None:
    await sql.delete(pool, user.id_hash)


async def end_others(pool: asyncpg.Pool, user: WebUser) -> None:
    """After a password change: every other session of this user ends."""
    await sql.delete_others(pool, user.user_id, user.id_hash)


async def set_language(pool: asyncpg.Pool, user: WebUser, language: str) -> None:
    await sql.set_language(pool, user.id_hash, language)
