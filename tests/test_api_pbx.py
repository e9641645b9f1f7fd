"""The full story against the real Asterisk: create an agent over HTTP with
?wait=applied, register with the returned SIP password (SIPp), rotate the SIP password,
then the old one is refused and the new one accepted."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from sipprov.access import tokens
from sipprov.agents import extensions
from sipprov.apply.applier import Applier
from sipprov.config import Config
from sipprov.context import Services
from sipprov.db import database
from sipprov.http import create_app
from sipprov.pbx import sipp
from tests.api_helpers import agent_body, call

pytestmark = pytest.mark.pbx

HOST = "127.0.0.1"


@pytest.fixture
async def pbx_api(pbx, pbx_config: Config, db_dsn: str) -> AsyncIterator[tuple[aiohttp.ClientSession,
                                                                               Config]]:
    """The API with a running applier, writing into the test PBX instance."""
    cfg = copy.deepcopy(pbx_config)
    cfg.database = dataclasses.replace(cfg.database, dsn=db_dsn, pool_min=1, pool_max=10)
    pool = await database.create_pool(db_dsn, cfg.database)
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)
    applier = Applier(pool, cfg)
    await applier.start()
    _, token = await tokens.create_token(pool, "pbx-test", "admin")
    server = TestServer(create_app(Services(cfg=cfg, pool=pool, applier=applier)), host=HOST)
    await server.start_server()
    session = aiohttp.ClientSession(base_url=str(server.make_url("")),
                                    headers={"Authorization": f"Bearer {token}"})
    try:
        yield session, cfg
    finally:
        await session.close()
        await server.close()
        await applier.stop()
        await pool.close()


async def test_create_register_rotate(pbx_api: tuple[aiohttp.ClientSession, Config]) -> None:
    api, cfg = pbx_api
    port, realm = cfg.pbx.sip_port, cfg.asterisk.sip_realm

    r = await call(api, "POST", "/api/v1/agents?wait=applied&wait_timeout=30", json=agent_body())
    assert r.status == 201, r.body  # not 202: Asterisk has it
    sip = r.body["credentials"]["sip"]
    assert sip["server"] == f"127.0.0.1:{port}" and sip["realm"] == realm
    first = await sipp.register(HOST, port, sip["username"], sip["password"], realm=realm)
    assert first.ok and first.status == 200, first

    r = await call(api, "POST", f"/api/v1/agents/{r.body['id']}/sip-password?wait=applied")
    assert r.status == 200, r.body
    new = r.body["sip"]
    assert new["username"] == sip["username"] and new["password"] != sip["password"]
    old = await sipp.register(HOST, port, sip["username"], sip["password"], realm=realm)
    assert not old.ok and old.status in (401, 403), old
    fresh = await sipp.register(HOST, port, new["username"], new["password"], realm=realm)
    assert fresh.ok and fresh.status == 200, fresh

    status = await call(api, "GET", "/api/v1/status")
    assert status.body["asterisk"]["connected"] is True
    assert status.body["asterisk"]["version"]
    assert status.body["config"]["pending"] == 0
