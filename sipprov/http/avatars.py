"""Agent avatars over HTTP: upload (PUT), fetch, remove; the rules are in agents/avatars.py."""

from __future__ import annotations

from aiohttp import web

from sipprov.agents import avatars
from sipprov.agents.avatars import TYPES
from sipprov.db.transaction import run
from sipprov.http.keys import SERVICES, actor
from sipprov.http.responses import path_int
from sipprov.http.routes import Reply, Route


async def put_avatar(request: web.Request) -> web.Response:
    user_id = path_int(request, "id", "agent")
    avatars.check_size(request.content_length)  # before reading 8 MB we would refuse
    data = await request.read()
    await run(request.app[SERVICES].pool, avatars.store, user_id, data, request.content_type,
              actor(request))
    return web.Response(status=204)


async def get_avatar(request: web.Request) -> web.Response:
    user_id = path_int(request, "id", "agent")
    avatar = await avatars.get(request.app[SERVICES].pool, user_id)
    return web.Response(
        body=avatar.data, content_type=avatar.content_type,
        headers={"Cache-Control": "private, max-age=60",
                 "Last-Modified": avatar.updated_at.strftime("%a, %d %b %Y %H:%M:%S GMT"),
                 "X-Content-Type-Options": "nosniff"},
    )


async def delete_avatar(request: web.Request) -> web.Response:
    await run(request.app[SERVICES].pool, avatars.delete, path_int(request, "id", "agent"),
              actor(request))
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
