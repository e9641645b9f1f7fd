"""SQL for the console's CSV import jobs (migration 019, sipprov/web/imports.py).

Every *_enc value is a Fernet token whose key the database never sees. A running job's
instance holds the session advisory lock (LOCK_CLASS, lock_key); a reader that can take
that lock for an instant knows the instance is gone, and marks the job interrupted.
"""

from __future__ import annotations

from typing import TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

LOCK_CLASS = 7261019

# Free when nobody holds it: the xact lock ends with the statement's transaction.
_RUNNER_GONE = f"pg_try_advisory_xact_lock({LOCK_CLASS}, lock_key)"

_FIELDS = (
    "id, lock_key, user_id, filename, continue_on_error, state, runner, step, done, total,"
    " preview_enc, result_enc, credentials_enc IS NOT NULL AS has_credentials,"
    " committed_at IS NOT NULL AS committed"
)

INSERT = (
    "INSERT INTO import_jobs (id, user_id, filename, continue_on_error, upload_enc, preview_enc,"
    " expires_at) VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))"
)
GET = f"SELECT {_FIELDS} FROM import_jobs WHERE id = $1 AND user_id = $2 AND expires_at > now()"

# A running job whose instance is gone. CASE keeps the lock attempt to running rows.
MARK_INTERRUPTED = (
    "UPDATE import_jobs SET state = 'interrupted', finished_at = now(), upload_enc = NULL"
    " WHERE id = $1 AND CASE WHEN state = 'running' THEN " + _RUNNER_GONE + " ELSE false END"
)

# On the runner's own connection, which holds the job's lock: preview -> running.
LOCK = f"SELECT pg_advisory_lock({LOCK_CLASS}, $1)"
UNLOCK = f"SELECT pg_advisory_unlock({LOCK_CLASS}, $1)"
START = (
    "UPDATE import_jobs SET state = 'running', runner = $3, started_at = now(), step = '',"
    " done = 0, total = NULL WHERE id = $1 AND user_id = $2 AND state = 'preview'"
    " AND expires_at > now() RETURNING lock_key, upload_enc"
)
PROGRESS = "UPDATE import_jobs SET step = $2, done = $3, total = $4 WHERE id = $1 AND state = 'running'"
# In the import's own transaction, just before its COMMIT.
COMMITTED = "UPDATE import_jobs SET committed_at = now() WHERE id = $1"
FINISH = (
    "UPDATE import_jobs SET state = $2, result_enc = $3, credentials_enc = $4, upload_enc = NULL,"
    " finished_at = now() WHERE id = $1 AND state = 'running'"
)

# The generated passwords, once: read under a row lock, cleared when the key opened them.
CREDENTIALS_FOR_UPDATE = (
    "SELECT credentials_enc FROM import_jobs WHERE id = $1 AND user_id = $2"
    " AND credentials_enc IS NOT NULL FOR UPDATE"
)
CLEAR_CREDENTIALS = "UPDATE import_jobs SET credentials_enc = NULL WHERE id = $1"

DELETE = "DELETE FROM import_jobs WHERE id = $1 AND user_id = $2 AND state <> 'running'"
# Expired jobs; a running one only when its instance is gone.
PRUNE = (
    "DELETE FROM import_jobs WHERE expires_at <= now()"
    " AND CASE WHEN state = 'running' THEN " + _RUNNER_GONE + " ELSE true END"
)


async def insert(conn: Conn, job_id: str, user_id: int, filename: str, continue_on_error: bool,
                 upload_enc: bytes, preview_enc: bytes, max_age_s: float) -> None:
    await conn.execute(INSERT, job_id, user_id, filename, continue_on_error, upload_enc,
                       preview_enc, max_age_s)


async def get(conn: Conn, job_id: str, user_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(GET, job_id, user_id)


async def mark_interrupted(conn: Conn, job_id: str) -> bool:
    return await conn.execute(MARK_INTERRUPTED, job_id) == "UPDATE 1"


async def lock(conn: asyncpg.Connection, lock_key: int) -> None:
    await conn.execute(LOCK, lock_key)


async def unlock(conn: asyncpg.Connection, lock_key: int) -> None:
    await conn.execute(UNLOCK, lock_key)


async def start(conn: asyncpg.Connection, job_id: str, user_id: int,
                runner: str) -> asyncpg.Record | None:
    return await conn.fetchrow(START, job_id, user_id, runner)


async def progress(conn: Conn, job_id: str, step: str, done: int, total: int | None) -> None:
    await conn.execute(PROGRESS, job_id, step, done, total)


async def committed(conn: asyncpg.Connection, job_id: str) -> None:
    await conn.execute(COMMITTED, job_id)


async def finish(conn: Conn, job_id: str, state: str, result_enc: bytes | None,
                 credentials_enc: bytes | None) -> None:
    await conn.execute(FINISH, job_id, state, result_enc, credentials_enc)


async def take_credentials(conn: asyncpg.Connection, job_id: str, user_id: int) -> bytes | None:
    """Inside the caller's transaction: the row stays locked until it commits."""
    return await conn.fetchval(CREDENTIALS_FOR_UPDATE, job_id, user_id)


async def clear_credentials(conn: asyncpg.Connection, job_id: str) -> None:
    await conn.execute(CLEAR_CREDENTIALS, job_id)


async def delete(conn: Conn, job_id: str, user_id: int) -> None:
    await conn.execute(DELETE, job_id, user_id)


async def prune(conn: Conn) -> int:
    return int((await conn.execute(PRUNE)).split()[-1])
