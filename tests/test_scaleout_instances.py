"""Several `sipprov serve` instances on one PostgreSQL (issue 15, docs/scale-out.md):
real serve processes on one database and the tests' PBX.

- Login rate-limit and lockout state is in PostgreSQL: a login locked out through
  instance A is refused (429 + Retry-After) through instance B, and after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sipprov.config import Config
from tests.api_helpers import agent_body, call
from tests.faults.pbxutil import clean_asterisk, config_for, ensure_running
from tests.faults.service import Serve, admin_token, free_tcp_port, write_config

LOGIN = "/api/v1/auth/login"


@pytest.fixture
async def svc_cfg(pbx, pbx_config: Config, db_dsn: str) -> AsyncIterator[Config]:
    cfg = config_for(pbx_config, db_dsn)
    yield cfg
    await ensure_running(pbx_config)
    await clean_asterisk(pbx_config)


@pytest.fixture
async def token(db_dsn: str) -> str:
    return await admin_token(db_dsn, "scaleout")


def _serve(cfg: Config, tmp_path: Path, name: str, **overrides: dict[str, Any]) -> Serve:
    port = free_tcp_port()
    path = write_config(tmp_path / f"{name}.toml", cfg, port, **overrides)
    return Serve(path, port, tmp_path, name)


@pytest.mark.pbx
async def test_lockout_holds_across_instances_and_restarts(
        svc_cfg: Config, token: str, tmp_path: Path) -> None:
    limits = {"security": {"login_free_attempts": 1, "login_lockout_attempts": 2,
                           "login_lockout_s": 600}}
    a = await _serve(svc_cfg, tmp_path, "a", **limits).start()
    b = await _serve(svc_cfg, tmp_path, "b", **limits).start()
    try:
        async with a.session(token) as via_a, b.session(token) as via_b:
            r = await call(via_a, "POST", "/api/v1/agents",
                           json=agent_body(password="Correct-Horse-77"))
            assert r.status == 201, r.body
            good = {"login": r.body["login"], "password": "Correct-Horse-77"}
            bad = {**good, "password": "Wrong-Guess-00"}
            assert (await call(via_a, "POST", LOGIN, json=bad)).status == 401
            # The first failure slows the login on B too (1 s), even the right password.
            r = await call(via_b, "POST", LOGIN, json=good)
            assert r.status == 429 and r.headers["Retry-After"] == "1", r.body
            # Past the slow-down, the second failure (through B) locks it out everywhere.
            for _ in range(50):
                r = await call(via_b, "POST", LOGIN, json=bad)
                if r.status != 429:
                    break
                await asyncio.sleep(0.1)  # polling for the 1 s delay to pass
            assert r.status == 401, r.body
            for http in (via_a, via_b):
                r = await call(http, "POST", LOGIN, json=good)
                assert r.status == 429 and r.body["error"]["code"] == "rate_limited"
                assert 590 <= int(r.headers["Retry-After"]) <= 600
    finally:
        assert await a.stop() == 0
        assert await b.stop() == 0
    again = await _serve(svc_cfg, tmp_path, "again", **limits).start()
    try:
        async with again.session(token) as http:
            r = await call(http, "POST", LOGIN, json=good)
            assert r.status == 429 and 500 <= int(r.headers["Retry-After"]) <= 600
    finally:
        assert await again.stop() == 0
