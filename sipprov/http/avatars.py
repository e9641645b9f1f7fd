"""Agent avatars: upload (PUT, at most 8 MB of PNG, JPEG or WebP), fetch, remove.

The type is decided by the file's magic bytes, not by the Content-Type header: a
declared image type that disagrees with the bytes is refused, so nothing but one of
the three image formats is ever stored or served back. Without an upload the agent's
`avatar_url` is a gravatar URL derived from the e-mail.
"""

from __future__ import annotations

from aiohttp import web

from sipprov.db.sql import avatars as sql
from sipprov.errors import NotFoundError
from sipprov.http.errors import PayloadTooLargeError, UnsupportedMediaError
from sipprov.http.keys import SERVICES
from sipprov.http.responses import path_int
from sipprov.http.routes import Reply, Route

MAX_AVATAR_BYTES = 8 * 1024 * 1024
TYPES = ("image/png", "image/jpeg", "image/webp")


def sniff(data: bytes) -> str | None:
    """The image type from the first bytes, or None when it is none of ours."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


async def put_avatar(request: web.Request) -> web.Response:
    user_id = path_int(request, "id", "agent")
    if request.content_length is not None and request.content_length > MAX_AVATAR_BYTES:
        raise PayloadTooLargeError(f"an avatar may be at most {MAX_AVATAR_BYTES} bytes")
    data = await request.read()
    if len(data) > MAX_AVATAR_BYTES:
        raise PayloadTooLargeError(f"an avatar may be at most {MAX_AVATAR_BYTES} bytes")
    found = sniff(data)
    if found is None:
        raise UnsupportedMediaError("the avatar must be a PNG, JPEG or WebP image")
    declared = request.content_type
    if declared.startswith("image/") and declared != found:
        raise UnsupportedMediaError(
            f"the file is {found} but the request says {declared[:60]}")
    row = await sql.upsert(request.app[SERVICES].pool, user_id, found, data)
    if row is None:
        raise NotFoundError(f"no agent with id {user_id}")
    return web.Response(status=204)


async def get_avatar(request: web.Request) -> web.Response:
    user_id = path_int(request, "id", "agent")
    row = await sql.get(request.app[SERVICES].pool, user_id)
    if row is None:
        pool = request.app[SERVICES].pool
        what = ("this agent has no uploaded avatar; its avatar_url is a gravatar URL"
                if await sql.user_exists(pool, user_id) else f"no agent with id {user_id}")
        raise NotFoundError(what)
    return web.Response(
        body=bytes(row["data"]), content_type=row["content_type"],
        headers={"Cache-Control": "private, max-age=60",
                 "Last-Modified": row["updated_at"].strftime("%a, %d %b %Y %H:%M:%S GMT"),
                 "X-Content-Type-Options": "nosniff"},
    )


async def delete_avatar(request: web.Request) -> web.Response:
    user_id = path_int(request, "id", "agent")
    pool = request.app[SERVICES].pool
    if not await sql.delete(pool, user_id) and not await sql.user_exists(pool, user_id):
        raise NotFoundError(f"no agent with id {user_id}")
    return web.Response(status=204)


ROUTES = [
    Route("PUT", "/api/v1/agents/{id}/avatar", put_avatar,
          "Upload an agent's avatar (PNG, JPEG or WebP, at most 8 MB)", "agents",
          body={"type": "string", "format": "binary"}, body_media=TYPES, errors=(413, 415),
          replies={204: Reply("stored")}),
    Route("GET", "/api/v1/agents/{id}/avatar", get_avatar, "An agent's uploaded avatar",
          "agents",
          replies={200: Reply("the image, as uploaded", media=TYPES)}),
    Route("DELETE", "/api/v1/agents/{id}/avatar", delete_avatar,
          "Remove an uploaded avatar (back to gravatar)", "agents",
          replies={204: Reply("removed (or there was none)")}),
]
