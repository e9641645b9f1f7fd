"""Fixtures for the HTTP API tests: the real app on a real port over the real test
database, tokens, and clients that speak to it over HTTP.

Register with `pytest_plugins = ["tests.api_fixtures"]` (the API test modules do).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from sipprov.access import tokens
from sipprov.agents import extensions
from sipprov.config import Config
from sipprov.context import Services
from sipprov.http import create_app
from tests.api_helpers import FakeClock


@pytest.fixture
async def services(cfg: Config, pool: asyncpg.Pool) -> Services:
    """What `sipprov serve` hands the app, minus the applier (Asterisk-free tests)."""
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)
    return Services(cfg=cfg, pool=pool, applier=None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def api_server(services: Services, clock: FakeClock) -> AsyncIterator[TestServer]:
    server = TestServer(create_app(services, clock=clock), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def admin_token(pool: asyncpg.Pool) -> str:
    return (await tokens.create_token(pool, "test-admin", "admin"))[1]


@pytest.fixture
async def readonly_token(pool: asyncpg.Pool) -> str:
    return (await tokens.create_token(pool, "test-readonly", "readonly"))[1]


def _session(server: TestServer, token: str | None) -> aiohttp.ClientSession:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return aiohttp.ClientSession(base_url=str(server.make_url("")), headers=headers)


@pytest.fixture
async def admin(api_server: TestServer, admin_token: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with _session(api_server, admin_token) as session:
        yield session


@pytest.fixture
async def readonly(api_server: TestServer,
                   readonly_token: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with _session(api_server, readonly_token) as session:
        yield session


@pytest.fixture
async def anon(api_server: TestServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with _session(api_server, None) as session:
        yield session
