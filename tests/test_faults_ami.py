"""Fault: AMI refuses us - a wrong secret, a refused connection, a port that answers
nothing or garbage.

The service stays up (the API answers, changes are accepted and stay pending), says
what is wrong in GET /api/v1/status (asterisk.connected false, config.last_error) and
in its log, keeps retrying, and recovers: by itself when Asterisk comes back on the
port, or once restarted with the right secret/port. The secret itself is never logged.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from sipprov import pbx as pbx_mod
from sipprov.agents import extensions
from sipprov.apply.applier import Applier
from sipprov.config import Config
from sipprov.context import Services
from sipprov.db import database
from sipprov.http import create_app
from tests.api_helpers import call
from tests.faults.pbxutil import clean_asterisk, config_for, endpoints, ensure_running
from tests.faults.service import Serve, admin_token, free_tcp_port, status_when, write_config

pytestmark = pytest.mark.pbx


def _body(n: int) -> dict:
    return {"first_name": "Ola", "last_name": "Wisniewska", "login": f"ow{n}",
            "email": f"ow{n}@example.com", "role": "extension"}


@pytest.fixture
async def token(db_dsn: str) -> str:
    return await admin_token(db_dsn, "ami-faults")


@pytest.fixture
async def ami_cfg(pbx, pbx_config: Config, db_dsn: str) -> AsyncIterator[Config]:
    yield config_for(pbx_config, db_dsn)
    await ensure_running(pbx_config)
    await clean_asterisk(pbx_config)


async def test_wrong_secret_is_reported_retried_and_fixed_by_a_restart(
        ami_cfg: Config, token: str, tmp_path: Path) -> None:
    wrong = "wrong-" + secrets.token_hex(12)
    port = free_tcp_port()
    bad = copy.deepcopy(ami_cfg)
    bad.asterisk = dataclasses.replace(bad.asterisk, ami_secret=wrong)
    serve = Serve(write_config(tmp_path / "bad.toml", bad, port), port, tmp_path, "bad")
    await serve.start()
    try:
        async with serve.session(token) as http:
            for n in range(2):  # the service is up and accepts changes
                r = await call(http, "POST", "/api/v1/agents", json=_body(n))
                assert r.status == 201, r.body
            st = await status_when(http, lambda b: b["config"]["last_error"] is not None, 15)
            assert st.body["asterisk"]["connected"] is False
            assert st.body["config"]["pending"] > 0
            assert re.search(r"refused Login for user 'sipprov'", st.body["config"]["last_error"])
            assert (await call(http, "GET", "/api/v1/health")).status == 200
            # it keeps retrying (with backoff), and says so in its log
            deadline = time.monotonic() + 15
            while serve.output().count("refused Login") < 3:
                assert time.monotonic() < deadline, serve.output()[-2000:]
                await asyncio.sleep(0.2)
    finally:
        assert await serve.stop() == 0
    log = serve.output()
    assert re.search(r"WARNING sipprov\.apply\.applier: apply deferred, retrying in [0-9.]+ s: "
                     r"AMI at 127\.0\.0\.1:\d+ refused Login", log), log[-2000:]
    assert wrong not in log and ami_cfg.asterisk.ami_secret not in log

    # restarted with the right secret: everything pending is applied
    port = free_tcp_port()
    good = Serve(write_config(tmp_path / "good.toml", ami_cfg, port), port, tmp_path, "good")
    await good.start()
    try:
        async with good.session(token) as http:
            st = await status_when(http, lambda b: b["config"]["pending"] == 0
                                   and b["asterisk"]["connected"], 30)
            assert st.body["config"]["last_error"] is None
            r = await call(http, "GET", "/api/v1/agents")
            exts = {str(a["extension"]) for a in r.body["items"]}
        assert len(exts) == 2 and exts <= await endpoints(ami_cfg)
    finally:
        assert await good.stop() == 0
    assert ami_cfg.asterisk.ami_secret not in good.output()


# --- in-process: the app and the applier of one service ---------------------------


@dataclass
class InProcess:
    cfg: Config
    pool: asyncpg.Pool
    services: Services
    http: aiohttp.ClientSession

    async def restart_applier(self, cfg: Config) -> None:
        """What a restart with another configuration does to the applier."""
        assert self.services.applier is not None
        await self.services.applier.stop()
        self.services.applier = Applier(self.pool, cfg)
        await self.services.applier.start()


@pytest.fixture
async def in_process(ami_cfg: Config, token: str) -> AsyncIterator[InProcess]:
    pool = await database.create_pool(ami_cfg.database.dsn, ami_cfg.database)
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, ami_cfg.extensions)
    services = Services(cfg=ami_cfg, pool=pool, applier=None)
    server = TestServer(create_app(services), host="127.0.0.1")
    await server.start_server()
    http = aiohttp.ClientSession(base_url=str(server.make_url("")),
                                 headers={"Authorization": f"Bearer {token}"})
    env = InProcess(ami_cfg, pool, services, http)
    try:
        yield env
    finally:
        await http.close()
        await server.close()
        if services.applier is not None:
            await services.applier.stop()
        await pool.close()


async def _assert_reported(env: InProcess, caplog: pytest.LogCaptureFixture,
                           pattern: str) -> None:
    """Accepted, pending, reported in status and in the log, retried."""
    r = await call(env.http, "POST", "/api/v1/agents", json=_body(1))
    assert r.status == 201, r.body
    st = await status_when(env.http, lambda b: b["config"]["last_error"] is not None, 15)
    assert st.body["asterisk"]["connected"] is False and st.body["config"]["pending"] > 0
    assert re.search(pattern, st.body["config"]["last_error"]), st.body
    assert (await call(env.http, "GET", "/api/v1/health")).status == 200
    assert env.services.applier is not None
    attempts = env.services.applier.status()["attempts"]
    deadline = time.monotonic() + 15
    while env.services.applier.status()["attempts"] < attempts + 2:
        assert time.monotonic() < deadline, env.services.applier.status()
        await asyncio.sleep(0.1)
    deferred = [rec for rec in caplog.records if rec.name == "sipprov.apply.applier"
                and rec.levelno == logging.WARNING and "apply deferred" in rec.getMessage()]
    assert len(deferred) >= 2 and re.search(pattern, deferred[-1].getMessage())
    assert env.cfg.asterisk.ami_secret not in caplog.text


async def _assert_recovered(env: InProcess) -> None:
    st = await status_when(env.http, lambda b: b["config"]["pending"] == 0
                           and b["asterisk"]["connected"] and b["config"]["last_error"] is None,
                           30)
    assert st.body["asterisk"]["version"]
    r = await call(env.http, "GET", "/api/v1/agents")
    assert {str(a["extension"]) for a in r.body["items"]} <= await endpoints(env.cfg)


async def test_refused_connection_recovers_by_itself_when_asterisk_returns(
        in_process: InProcess, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await asyncio.to_thread(pbx_mod.stop, in_process.cfg)
    in_process.services.applier = Applier(in_process.pool, in_process.cfg)
    await in_process.services.applier.start()
    await _assert_reported(in_process, caplog, r"AMI at 127\.0\.0\.1:\d+: cannot connect")
    await ensure_running(in_process.cfg)  # same port, same process: no restart
    await _assert_recovered(in_process)


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # accepts, never answers


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n\x00\xff")
    await writer.drain()
    writer.close()


@pytest.mark.parametrize("kind,pattern", [
    ("refused", r"cannot connect"),
    ("silent", r"no (answer|connection) within"),
    ("garbage", r"AMI Login: connection closed"),
])
async def test_wrong_port_is_reported_and_fixed_by_a_restart(
        in_process: InProcess, caplog: pytest.LogCaptureFixture, kind: str,
        pattern: str) -> None:
    caplog.set_level(logging.DEBUG)
    server = None
    port = free_tcp_port()
    if kind != "refused":
        server = await asyncio.start_server(_silent if kind == "silent" else _garbage,
                                            "127.0.0.1", port)
    wrong = copy.deepcopy(in_process.cfg)
    wrong.asterisk = dataclasses.replace(wrong.asterisk, ami_port=port, ami_timeout_s=1.0)
    in_process.services.applier = Applier(in_process.pool, wrong)
    try:
        await in_process.services.applier.start()
        await _assert_reported(in_process, caplog, pattern)
    finally:
        if server is not None:
            server.close()
    await in_process.restart_applier(in_process.cfg)
    await _assert_recovered(in_process)
