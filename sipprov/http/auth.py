"""Bearer-token authentication: every route needs a token except the ones the route
table marks public (health); a readonly token may only read (GET, HEAD, OPTIONS)."""

from __future__ import annotations

from aiohttp import web

from sipprov.access.tokens import verify_token
from sipprov.errors import AuthError, ForbiddenError
from sipprov.http.errors import Handler
from sipprov.http.keys import PUBLIC_ROUTES, SERVICES, TOKEN

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_TOKEN_LENGTH = 256


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthError("missing bearer token: send 'Authorization: Bearer <token>'")
    value = value.strip()
    if len(value) > MAX_TOKEN_LENGTH:
        raise AuthError("invalid or revoked token")
    return value


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    method = "GET" if request.method == "HEAD" else request.method
    if not request.path.startswith("/api/"):  # the web console: its own sessions (sipprov.web)
        return await handler(request)
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else request.path
    if (method, template) in request.app[PUBLIC_ROUTES]:
        return await handler(request)
    token = bearer_token(request)
    info = await verify_token(request.app[SERVICES].pool, token)
    if info is None:
        raise AuthError("invalid or revoked token")
    if info.read_only and request.method not in READ_METHODS:
        raise ForbiddenError("this token is read-only")
    request[TOKEN] = info
    return await handler(request)
