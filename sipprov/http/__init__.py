"""The HTTP API (aiohttp): `create_app(services)` builds it; see docs and
GET /api/v1/openapi.json for the contract."""

from sipprov.http.app import create_app

__all__ = ["create_app"]
