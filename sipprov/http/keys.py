"""Typed keys for what the application and each request carry."""

from __future__ import annotations

from aiohttp import web

from sipprov.access.ratelimit import LoginRateLimiter
from sipprov.access.tokens import TokenInfo
from sipprov.access.urlsign import UrlSigner
from sipprov.context import Services

SERVICES = web.AppKey("services", Services)
LOGIN_LIMITER = web.AppKey("login_limiter", LoginRateLimiter)
# (method, path) of the routes anyone may call, from the route table.
PUBLIC_ROUTES = web.AppKey("public_routes", frozenset)
# GET /api/v1/openapi.json, serialized once when the app is made.
OPENAPI_DOCUMENT = web.AppKey("openapi_document", bytes)
URL_SIGNER = web.AppKey("url_signer", UrlSigner)
# The token that authenticated the request (request[TOKEN]); absent on public routes.
# web.RequestKey exists from aiohttp 3.12 on; a plain string key works everywhere.
TOKEN = (web.RequestKey("token", TokenInfo) if hasattr(web, "RequestKey")  # type: ignore[attr-defined]
         else "sipprov.token")


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def token(request: web.Request) -> TokenInfo:
    return request[TOKEN]


def actor(request: web.Request) -> str:
    """The audit-log name for whoever made this request."""
    info = request.get(TOKEN)
    return info.actor if info is not None else "anonymous"
