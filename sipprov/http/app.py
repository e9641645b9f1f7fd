"""Builds the aiohttp application: the route table, the middlewares (request metrics
outermost, then errors, then authentication), GET /metrics and the login rate limiter
(its counts in PostgreSQL)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

from aiohttp import web

from sipprov import web as web_console
from sipprov.access.ratelimit import LoginRateLimiter
from sipprov.access.urlsign import UrlSigner
from sipprov.apply.leadership import instance_id
from sipprov.context import Services
from sipprov.errors import ValidationError
from sipprov.http import agents, audit, auth_routes, avatars, directory, openapi, queues, status
from sipprov.http import metrics as metrics_http
from sipprov.http.auth import auth_middleware
from sipprov.http.errors import Handler, error_middleware
from sipprov.http.keys import LOGIN_LIMITER, OPENAPI_DOCUMENT, PUBLIC_ROUTES, SERVICES, URL_SIGNER
from sipprov.http.routes import Route
from sipprov.http.waiting import PARAMS as WAIT_PARAMS
from sipprov.metrics import Metrics


def route_table() -> list[Route]:
    """Every route the API serves, in documentation order."""
    return [
        *status.ROUTES,
        *auth_routes.ROUTES,
        *agents.ROUTES,
        *avatars.ROUTES,
        *queues.ROUTES,
        *directory.ROUTES,
        *audit.ROUTES,
        *openapi.ROUTES,
    ]


def create_app(services: Services, *,
               clock: Callable[[], float] | None = None) -> web.Application:
    """The API over `services`. `clock` drives the login rate limiter (tests inject one;
    None: the database's clock, shared by every instance).

    Nothing runs at startup: the caller has already migrated the database and synced
    the extension pool (sipprov.server.start_services).
    """
    if services.metrics is None:
        services.metrics = Metrics(services.instance or instance_id())
        if services.applier is not None:
            services.metrics.watch_applier(services.applier)
    app = web.Application(
        middlewares=[metrics_http.middleware(services.metrics), error_middleware,
                     auth_middleware],
        client_max_size=services.cfg.http.max_body_bytes,
    )
    routes = route_table()
    app[SERVICES] = services
    app[LOGIN_LIMITER] = LoginRateLimiter(services.cfg.security, services.pool, clock=clock)
    app[PUBLIC_ROUTES] = frozenset((r.method, r.path) for r in routes if r.public)
    app[OPENAPI_DOCUMENT] = json.dumps(openapi.build_document(routes)).encode()
    app[URL_SIGNER] = UrlSigner.from_config(services.cfg.http.url_signing_key,
                                            services.cfg.http.avatar_url_ttl_s)
    for route in routes:
        app.router.add_route(route.method, route.path, known_query_only(route),
                             name=route.operation_id)
    app.router.add_get(metrics_http.PATH, metrics_http.metrics_handler, name="metrics")
    web_console.setup(app)  # the console at / (its own middleware; /api/ passes through)
    return app


def known_query_only(route: Route) -> Handler:
    """The route's handler behind a check that every query parameter is one the route
    documents: a misspelt filter (`?departmnet=x`) is a 422 naming it, not a list that
    silently ignores it."""
    known = {p.name for p in route.query if p.where == "query"}
    if route.waits:
        known |= {p.name for p in WAIT_PARAMS}
    takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"

    @functools.wraps(route.handler)
    async def handler(request: web.Request) -> web.StreamResponse:
        for name in request.query:
            if name not in known:
                raise ValidationError(f"{name[:60]}: unknown query parameter; {takes}", name[:60])
        return await route.handler(request)

    return handler
