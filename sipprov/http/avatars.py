"""Agent avatars over HTTP: upload (PUT), fetch, remove; the rules are in agents/avatars.py."""

from __future__ import annotations

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from sipprov.agents import avatars
from sipprov.agents.avatars import TYPES
from sipprov.db.transaction import run
from sipprov.errors import NotFoundError, UnsupportedMediaError
from sipprov.http.errors import MalformedRequestError
from sipprov.http.keys import SERVICES, URL_SIGNER, actor
from sipprov.http.responses import path_int
from sipprov.http.routes import Param, Reply, Route

MULTIPART = "multipart/form-data"
# Form field names taken as the image (else the first part that is a file).
FILE_FIELDS = ("avatar", "file", "image")


def public_path(user_id: int) -> str:
    """Where a signed avatar link points (no bearer token needed with the signature)."""
    return f"/api/v1/avatars/{user_id}"


def signed_url(request: web.Request, user_id: int) -> str:
    return request.app[URL_SIGNER].sign(public_path(user_id))


async def _form_image(request: web.Request) -> tuple[bytes, str | None]:
    """The image of a browser form upload (multipart/form-data): the part named
    avatar/file/image, else the first file part; read with the 8 MB limit."""
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name not in FILE_FIELDS and part.filename is None:
                continue
            data = bytearray()
            while chunk := await part.read_chunk(65536):
                data += chunk
                avatars.check_size(len(data))
            return bytes(data), part.headers.get("Content-Type")
    except (ValueError, AssertionError, UnicodeError, HttpProcessingError):
        raise MalformedRequestError("the body is not a valid multipart/form-data form") from None
    raise UnsupportedMediaError("the form has no file part (name it avatar)")


async def put_avatar(request: web.Request) -> web.Response:
    """PUT or POST: the image as the body, or a browser form (multipart/form-data)."""
    user_id = path_int(request, "id", "agent")
    avatars.check_size(request.content_length)  # before reading 8 MB we would refuse
    if request.content_type == MULTIPART:
        data, declared = await _form_image(request)
    else:
        data, declared = await request.read(), request.content_type
    await run(request.app[SERVICES].pool, avatars.store, user_id, data, declared, actor(request))
    return web.Response(status=204)


async def post_avatar(request: web.Request) -> web.Response:
    """POST: what a browser form sends (see put_avatar)."""
    return await put_avatar(request)


async def get_signed_avatar(request: web.Request) -> web.Response:
    """The avatar through a signed link (`avatar_url`): no token, the signature is the
    permission; a wrong or expired one is a 404 like a missing avatar."""
    user_id = path_int(request, "id", "agent")
    if not request.app[URL_SIGNER].valid(public_path(user_id), request.query.get("expires"),
                                         request.query.get("sig")):
        raise NotFoundError("no such avatar link (expired or not signed by this server)")
    return await _serve(request, user_id)


async def get_avatar(request: web.Request) -> web.Response:
    return await _serve(request, path_int(request, "id", "agent"))


async def _serve(request: web.Request, user_id: int) -> web.Response:
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


UPLOAD = {"type": "string", "format": "binary"}
FORM = {"type": "object", "properties": {"avatar": {"type": "string", "format": "binary"}}}

ROUTES = [
    Route("PUT", "/api/v1/agents/{id}/avatar", put_avatar,
          "Upload an agent's avatar (PNG, JPEG or WebP, at most 8 MB)", "agents",
          body=UPLOAD, body_media=(*TYPES, MULTIPART), errors=(413, 415),
          replies={204: Reply("stored")}),
    Route("POST", "/api/v1/agents/{id}/avatar", post_avatar,
          "Upload an agent's avatar from a browser form (multipart/form-data, field avatar)",
          "agents", body=FORM, body_media=(MULTIPART, *TYPES), errors=(413, 415),
          replies={204: Reply("stored")}),
    Route("GET", "/api/v1/avatars/{id}", get_signed_avatar,
          "An uploaded avatar through the signed link in `avatar_url` (no token)", "agents",
          public=True,
          query=(Param("expires", {"type": "integer"}, "from the signed link"),
                 Param("sig", {"type": "string"}, "from the signed link")),
          replies={200: Reply("the image, as uploaded", media=TYPES)}),
    Route("GET", "/api/v1/agents/{id}/avatar", get_avatar, "An agent's uploaded avatar",
          "agents",
          replies={200: Reply("the image, as uploaded", media=TYPES)}),
    Route("DELETE", "/api/v1/agents/{id}/avatar", delete_avatar,
          "Remove an uploaded avatar (back to gravatar)", "agents",
          replies={204: Reply("removed (or there was none)")}),
]
