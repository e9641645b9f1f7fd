"""The full story against the real Asterisk: create an agent over HTTP with
?wait=applied, register with the returned SIP password (SIPp), rotate the SIP password,
then the old one is refused and the new one accepted."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from sipprov.access import tokens
from sipprov.agents import extensions
from sipprov.apply.ami import AmiClient
from sipprov.apply.applier import Applier
from sipprov.config import Config
from sipprov.context import Services
from sipprov.db import database
from sipprov.db.sql import config_state
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
    # the one node of a config without [[asterisk.nodes]]
    [node] = status.body["nodes"]
    assert node["name"] == "default" and node["site"] is None
    assert node["reachable"] is True and node["last_error"] is None
    assert node["applied_version"] == status.body["config"]["applied_version"]


async def test_one_bad_row_is_quarantined_and_the_rest_applies(
        pbx_api: tuple[aiohttp.ClientSession, Config]) -> None:
    api, cfg = pbx_api
    port, realm = cfg.pbx.sip_port, cfg.asterisk.sip_realm
    wait = "?wait=applied&wait_timeout=30"
    a = await call(api, "POST", f"/api/v1/agents{wait}", json=agent_body(11))
    b = await call(api, "POST", f"/api/v1/agents{wait}", json=agent_body(12))
    assert a.status == 201 and b.status == 201, (a.body, b.body)
    bad_id, bad_ext = b.body["id"], str(b.body["extension"])
    # A hostile value written straight into the database, past the API's validation
    conn = await asyncpg.connect(cfg.database.dsn)
    try:
        async with conn.transaction():
            await conn.execute("UPDATE users SET caller_id_name = $1 WHERE id = $2",
                               "Eve\n[evil]\ntype=endpoint", bad_id)
            await config_state.bump(conn)
    finally:
        await conn.close()

    # everyone else still applies: a new agent is in Asterisk and registers
    c = await call(api, "POST", f"/api/v1/agents{wait}", json=agent_body(13))
    assert c.status == 201, c.body  # 201, not 202: applied despite the bad row
    sip = c.body["credentials"]["sip"]
    reg = await sipp.register(HOST, port, sip["username"], sip["password"], realm=realm)
    assert reg.ok and reg.status == 200, reg
    ami = AmiClient(cfg.asterisk)
    await ami.connect()
    try:
        assert await ami.pjsip_endpoint_exists(str(a.body["extension"]))
        assert await ami.pjsip_endpoint_exists(str(c.body["extension"]))
        assert not await ami.pjsip_endpoint_exists(bad_ext)  # kept out of Asterisk
        assert not await ami.pjsip_endpoint_exists("evil")

        # the reason, in /status and on the agent's record (never the value)
        st = await call(api, "GET", "/api/v1/status")
        assert st.body["config"]["pending"] == 0 and st.body["config"]["last_error"] is None
        [held] = st.body["config"]["quarantined"]
        assert (held["kind"], held["id"]) == ("agent", bad_id) and held["since"]
        assert f"agent {bad_id}" in held["reason"] and "evil" not in held["reason"]
        rec = await call(api, "GET", f"/api/v1/agents/{bad_id}")
        assert rec.body["quarantine"]["reason"] == held["reason"]
        assert (await call(api, "GET", f"/api/v1/agents/{a.body['id']}")).body["quarantine"] is None

        # fixed through the API: released by the next apply, back in Asterisk
        r = await call(api, "PATCH", f"/api/v1/agents/{bad_id}{wait}", json={"caller_id": "Eve Fixed"})
        assert r.status == 200, r.body
        # applied means the quarantine was recorded by that apply: released
        assert (await call(api, "GET", "/api/v1/status")).body["config"]["quarantined"] == []
        assert (await call(api, "GET", f"/api/v1/agents/{bad_id}")).body["quarantine"] is None
        assert await ami.pjsip_endpoint_exists(bad_ext)
    finally:
        await ami.close()
