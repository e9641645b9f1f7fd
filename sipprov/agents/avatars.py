"""Agent avatars: what may be stored (at most 8 MB of PNG, JPEG or WebP) and storing it.

The type is decided by the file's magic bytes, not by what the uploader declares: a
declared image type that disagrees with the bytes is refused, so nothing but one of
the three image formats is ever stored or served back. Without an upload the agent's
`avatar_url` is a gravatar URL derived from the e-mail (service.agent_from_row).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

import asyncpg

from sipprov import audit
from sipprov.db import transaction
from sipprov.db.sql import avatars as sql
from sipprov.errors import NotFoundError, PayloadTooLargeError, UnsupportedMediaError

MAX_AVATAR_BYTES = 8 * 1024 * 1024
TYPES = ("image/png", "image/jpeg", "image/webp")
Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True)
class Avatar:
    content_type: str
    data: bytes
    updated_at: datetime


def sniff(data: bytes) -> str | None:
    """The image type from the first bytes, or None when it is none of ours."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def check_size(size: int | None) -> None:
    """Refuse an upload over the limit (callers check a declared length before reading)."""
    if size is not None and size > MAX_AVATAR_BYTES:
        raise PayloadTooLargeError(f"an avatar may be at most {MAX_AVATAR_BYTES} bytes")


def check_image(data: bytes, declared: str | None) -> str:
    """The stored content type of an upload, or the refusal (size, type, disagreement)."""
    check_size(len(data))
    found = sniff(data)
    if found is None:
        raise UnsupportedMediaError("the avatar must be a PNG, JPEG or WebP image")
    if declared and declared.startswith("image/") and declared != found:
        raise UnsupportedMediaError(f"the file is {found} but the request says {declared[:60]}")
    return found


async def store(conn: asyncpg.Connection, user_id: int, data: bytes, declared: str | None,
                actor: str) -> None:
    """Store (or replace) the agent's avatar, audited; NotFoundError when there is no
    such agent."""
    transaction.require(conn)
    content_type = check_image(data, declared)
    if await sql.upsert(conn, user_id, content_type, data) is None:
        raise NotFoundError(f"no agent with id {user_id}")
    await audit.record(conn, actor, "set_avatar", "agent", user_id,
                       {"content_type": content_type, "bytes": len(data)})


async def get(conn: Conn, user_id: int) -> Avatar:
    """The uploaded avatar; NotFoundError says whether the agent or only the upload is missing."""
    row = await sql.get(conn, user_id)
    if row is None:
        what = ("this agent has no uploaded avatar; its avatar_url is a gravatar URL"
                if await sql.user_exists(conn, user_id) else f"no agent with id {user_id}")
        raise NotFoundError(what)
    return Avatar(row["content_type"], bytes(row["data"]), row["updated_at"])


async def delete(conn: asyncpg.Connection, user_id: int, actor: str) -> None:
    """Remove the upload (none is fine; only a removal is audited); NotFoundError when
    there is no such agent."""
    transaction.require(conn)
    if await sql.delete(conn, user_id):
        await audit.record(conn, actor, "delete_avatar", "agent", user_id, {})
    elif not await sql.user_exists(conn, user_id):
        raise NotFoundError(f"no agent with id {user_id}")
