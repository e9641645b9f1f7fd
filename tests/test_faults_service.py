"""Fault: the service itself goes away.

- `sipprov serve` (a real subprocess with its own config file, database and the tests'
  PBX instance) is SIGKILLed while changes are pending (Asterisk stopped, so they
  cannot be applied); Asterisk comes back; the service is started again and applies
  them - nothing accepted was lost.
- SIGTERM drains: a slow request in flight completes with its answer, the process
  exits 0, and the change it made is in the database (applied by the next start).
- The writer killed in the middle of writing a generated file: the file is the old or
  the new version, whole, never a mix; the next write clears the dead writer's temp file.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from sipprov import pbx as pbx_mod
from sipprov.apply import files as files_mod
from sipprov.config import Config
from sipprov.db.sql import config_state
from sipprov.pbx import sipp
from tests.api_helpers import call
from tests.faults.pbxutil import (
    HOST,
    assert_disk_matches_database,
    clean_asterisk,
    config_for,
    endpoints,
    ensure_running,
)
from tests.faults.service import Serve, admin_token, free_tcp_port, status_when, write_config


@pytest.fixture
async def svc_cfg(pbx, pbx_config: Config, db_dsn: str) -> AsyncIterator[Config]:
    cfg = config_for(pbx_config, db_dsn)
    yield cfg
    await ensure_running(pbx_config)
    await clean_asterisk(pbx_config)


@pytest.fixture
async def token(db_dsn: str) -> str:
    return await admin_token(db_dsn, "faults")


def _serve(cfg: Config, tmp_path: Path, name: str, port: int | None = None) -> Serve:
    port = port or free_tcp_port()
    path = write_config(tmp_path / f"{name}.toml", cfg, port)
    return Serve(path, port, tmp_path, name)


def _body(n: int) -> dict:
    return {"first_name": "Marta", "last_name": "Lewandowska", "login": f"ml{n}",
            "email": f"ml{n}@example.com"}


@pytest.mark.pbx
async def test_killed_with_pending_changes_applies_them_after_restart(
        svc_cfg: Config, token: str, tmp_path: Path) -> None:
    await asyncio.to_thread(pbx_mod.stop, svc_cfg)  # changes cannot be applied
    first = await _serve(svc_cfg, tmp_path, "first").start()
    try:
        async with first.session(token) as http:
            created = []
            for n in range(6):
                r = await call(http, "POST", "/api/v1/agents", json=_body(n))
                assert r.status == 201, r.body
                created.append(r.body)
            st = await status_when(http, lambda b: b["config"]["pending"] > 0, 10)
            assert st.body["asterisk"]["connected"] is False
            assert st.body["config"]["applied_version"] < st.body["config"]["version"]
    finally:
        rc = await first.kill()
    assert rc == -signal.SIGKILL

    await ensure_running(svc_cfg)
    second = await _serve(svc_cfg, tmp_path, "second").start()
    try:
        async with second.session(token) as http:
            st = await status_when(
                http, lambda b: b["config"]["pending"] == 0 and b["asterisk"]["connected"], 60)
            assert st.body["config"]["last_error"] is None
        pool = await asyncpg.create_pool(svc_cfg.database.dsn, min_size=1, max_size=2)
        try:
            snap = await assert_disk_matches_database(svc_cfg, pool)
        finally:
            await pool.close()
        assert len(snap.agents) == 6
        assert {str(a["extension"]) for a in created} <= await endpoints(svc_cfg)
        for agent in random.Random(1).sample(created, 2):
            sip = agent["credentials"]["sip"]
            reg = await sipp.register(HOST, svc_cfg.pbx.sip_port, sip["username"],
                                      sip["password"], realm=sip["realm"])
            assert reg.ok and reg.status == 200, reg
    finally:
        assert await second.stop() == 0


async def _waiting_on_locks(conn: asyncpg.Connection) -> int:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    return int(await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query = $1", config_state.BUMP))


@pytest.mark.pbx
async def test_sigterm_drains_a_slow_request_then_exits_0(
        svc_cfg: Config, token: str, tmp_path: Path) -> None:
    serve = await _serve(svc_cfg, tmp_path, "drain").start()
    blocker = await asyncpg.connect(svc_cfg.database.dsn)
    try:
        async with serve.session(token) as http:
            # A create that waits at its last statement (the version bump): slow.
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("SELECT 1 FROM config_state WHERE id = 1 FOR UPDATE")
            slow = asyncio.ensure_future(call(http, "POST", "/api/v1/agents", json=_body(1)))
            deadline = time.monotonic() + 15
            while await _waiting_on_locks(blocker) < 1:
                assert time.monotonic() < deadline, "the request never reached the database"
                await asyncio.sleep(0.05)

            serve.signal(signal.SIGTERM)
            # Wait until the service has begun to drain (its log says so), not for a time.
            deadline = time.monotonic() + 15
            while "stopping: draining requests" not in serve.output():
                assert serve.running(), "exited with a request in flight"
                assert time.monotonic() < deadline, "SIGTERM did not start the drain"
                await asyncio.sleep(0.05)
            assert serve.running(), "exited with a request in flight"
            assert not slow.done()
            # it no longer accepts new connections while it drains
            async with aiohttp.ClientSession() as other:
                with pytest.raises(aiohttp.ClientConnectionError):
                    async with other.get(serve.url + "/api/v1/health") as resp:
                        await resp.read()

            await tx.commit()  # the slow request can finish now
            r = await slow
            assert r.status == 201, r.body
            assert r.body["credentials"]["sip"]["password"]
        assert await serve.wait_exit(30) == 0
    finally:
        await blocker.close()
        if serve.running():
            await serve.kill()
    log = serve.output()
    # in order: stop accepting and drain the requests, then the applier, then exit
    draining = log.index("stopping: draining requests and the applier")
    assert draining < log.index("applier stopped") < log.index("sipprov.server: stopped")

    # the change of the drained request was committed; nothing of it is lost
    conn = await asyncpg.connect(svc_cfg.database.dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM users WHERE login = 'ml1'") == 1
        state = await config_state.read(conn)
    finally:
        await conn.close()
    assert state.version >= 1
    again = await _serve(svc_cfg, tmp_path, "again").start()
    try:
        async with again.session(token) as http:
            await status_when(http, lambda b: b["config"]["pending"] == 0
                              and b["config"]["applied_version"] >= state.version, 30)
        assert str(r.body["extension"]) in await endpoints(svc_cfg)
    finally:
        assert await again.stop() == 0


# A writer that rewrites pjsip.conf for ever, alternating two big contents.
_WRITER = r"""
import sys
from pathlib import Path
from sipprov.apply import files
directory = Path(sys.argv[1])
a = b"; version A\n" + b"[a]\ntype=aor\n" * 400_000
b = b"; version B\n" + b"[b]\ntype=aor\n" * 400_000
print("ready", flush=True)
while True:
    files.write_changed(directory, {"pjsip.conf": a}, 0o640)
    files.write_changed(directory, {"pjsip.conf": b}, 0o640)
"""


def test_writer_killed_mid_write_leaves_whole_files(tmp_path: Path) -> None:
    a_head, b_head = b"; version A\n", b"; version B\n"
    size = len(a_head) + len(b"[a]\ntype=aor\n") * 400_000
    rng = random.Random(8)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.kill()
        proc.wait(10)
        data = (tmp_path / "pjsip.conf").read_bytes()
        assert len(data) == size and data[:len(a_head)] in (a_head, b_head), len(data)
        assert data in (a_head + b"[a]\ntype=aor\n" * 400_000,
                        b_head + b"[b]\ntype=aor\n" * 400_000)
        assert (tmp_path / "pjsip.conf").stat().st_mode & 0o777 == 0o640
    # a dead writer's temp file is inert (Asterisk includes the exact names only) and
    # the next write removes it
    files_mod.write_changed(tmp_path, {"pjsip.conf": b"; after\n"}, 0o640)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pjsip.conf"]
