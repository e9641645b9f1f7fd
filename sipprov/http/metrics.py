"""GET /metrics in Prometheus' text format, and the middleware that counts requests.

Requests are labelled with the route's canonical path (`/api/v1/agents/{id}`), never
the raw URL, so the number of series stays bounded whatever clients send. /metrics
needs a bearer token unless http.metrics_public (docs/api.md).
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client.exposition import choose_encoder

from sipprov import health as db_health
from sipprov.access.tokens import verify_token
from sipprov.errors import AuthError
from sipprov.http.auth import bearer_token
from sipprov.http.errors import Handler
from sipprov.http.keys import SERVICES
from sipprov.metrics import UNMATCHED, Metrics, node_samples

PATH = "/metrics"


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def middleware(metrics: Metrics) -> Middleware:
    @web.middleware
    async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        t0 = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.request_done(_route_label(request), request.method, status,
                                 time.monotonic() - t0)

    return count_requests


async def metrics_handler(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    if not services.cfg.http.metrics_public:
        if await verify_token(services.pool, bearer_token(request)) is None:
            raise AuthError("invalid or revoked token")
    metrics = services.metrics
    assert metrics is not None
    metrics.refresh_nodes(node_samples(services), services.is_leader)
    up = await db_health.database_ok(services.pool)
    metrics.database_up.set(1 if up else 0)
    if up:
        state = await db_health.config(services.pool)
        metrics.config_version.set(state.version)
        metrics.applied_version.set(state.applied_version)
        metrics.pending.set(state.pending)
    # Prometheus' text format, or OpenMetrics when the scraper asks for it (Accept).
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encode(metrics.registry), headers={"Content-Type": content_type})
