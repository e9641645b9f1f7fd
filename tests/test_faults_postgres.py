"""Fault: PostgreSQL restarts (fast shutdown, then a crash) while HTTP requests are in
flight.

The service here is the real thing in-process: the aiohttp app on a real port, its
pool and the applier (on the tests' Asterisk), over a PostgreSQL of this module's own
(tests/faults/pg.py: never the session-wide test server). Requests during the outage
answer 503 with a clear JSON body; no change is half-applied (an agent exists with its
extension, its queue membership and its audit row, or not at all); and the same
process - app, pool and applier - works again once PostgreSQL is back, with no restart.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from sipprov.access import tokens
from sipprov.agents import extensions
from sipprov.apply import applier as applier_mod
from sipprov.apply.applier import Applier
from sipprov.config import Config
from sipprov.context import Services
from sipprov.db import database
from sipprov.db.sql import config_state
from sipprov.http import create_app
from tests.api_helpers import Reply, call
from tests.faults.pbxutil import (
    assert_disk_matches_database,
    clean_asterisk,
    config_for,
    endpoints,
    ensure_running,
    wait_all_applied,
)
from tests.faults.pg import ControlledPostgres

pytestmark = pytest.mark.pbx

RECOVER_S = 20.0


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[ControlledPostgres]:
    pg = ControlledPostgres()
    try:
        yield pg
    finally:
        pg.destroy()


@dataclass
class Env:
    pg: ControlledPostgres
    cfg: Config
    dsn: str
    pool: asyncpg.Pool
    applier: Applier
    http: aiohttp.ClientSession

    async def create(self, n: int, **over: Any) -> Reply:
        body = {"first_name": "Piotr", "last_name": "Zielinski", "login": f"pz{n}",
                "email": f"pz{n}@example.com", "department": "Sales",
                "queues": [{"name": "support"}], **over}
        return await call(self.http, "POST", "/api/v1/agents", json=body)


@pytest.fixture
async def env(own_postgres: ControlledPostgres, pbx, pbx_config: Config) -> AsyncIterator[Env]:
    if not own_postgres.running():
        await own_postgres.astart()
    dsn = await own_postgres.create_database("o_" + uuid.uuid4().hex[:10])
    cfg = config_for(pbx_config, dsn)
    pool = await database.create_pool(dsn, cfg.database)
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)
    token = (await tokens.create_token(pool, "outage", "admin"))[1]
    applier = Applier(pool, cfg)
    await applier.start()
    server = TestServer(create_app(Services(cfg=cfg, pool=pool, applier=applier)),
                        host="127.0.0.1")
    await server.start_server()
    http = aiohttp.ClientSession(base_url=str(server.make_url("")),
                                 headers={"Authorization": f"Bearer {token}"})
    e = Env(own_postgres, cfg, dsn, pool, applier, http)
    for path, body in (("/api/v1/queues", {"name": "support", "number": 999}),
                       ("/api/v1/departments", {"name": "Sales"})):
        r = await call(http, "POST", path, json=body)
        assert r.status == 201, r.body
    try:
        yield e
    finally:
        if not own_postgres.running():
            await own_postgres.astart()
        await http.close()
        await server.close()
        await applier.stop()
        await pool.close()
        await ensure_running(pbx_config)
        await clean_asterisk(pbx_config)


def assert_503(r: Reply, what: str) -> None:
    assert r.status == 503, (what, r.status, r.body)
    assert r.headers.get("Content-Type", "").startswith("application/json"), what
    assert r.body == {"error": {"code": "database_unavailable",
                                "message": "the database is unavailable; try again shortly",
                                "field": None}}, (what, r.body)
    assert r.headers.get("Retry-After") == "5", what


async def _waiting_on_locks(conn: asyncpg.Connection) -> int:
    """Requests waiting at the version bump (not the applier waiting on the same row)."""
    # (inside a transaction the statistics views are a snapshot taken once: refresh it)
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    return int(await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query = $1", config_state.BUMP))


async def assert_whole(env: Env) -> dict[str, asyncpg.Record]:
    """Every user is whole: extension owned in the pool, the queue membership asked
    for, the audit row of its creation; no audit row or pool entry without its user."""
    conn = await asyncpg.connect(env.dsn)
    try:
        users = {r["login"]: r for r in await conn.fetch(
            "SELECT u.id, u.login, u.extension, u.web_password_hash, p.owner,"
            " (SELECT count(*) FROM queue_members qm JOIN queues q ON q.id = qm.queue_id"
            "   WHERE qm.user_id = u.id AND q.name = 'support') AS memberships,"
            " (SELECT count(*) FROM audit_log a WHERE a.entity = 'agent'"
            "   AND a.action = 'create' AND a.entity_id = u.id::text) AS audits"
            " FROM users u LEFT JOIN extension_pool p ON p.number = u.extension")}
        for u in users.values():
            assert u["extension"] is not None and u["owner"] == f"user:{u['id']}", dict(u)
            assert u["memberships"] == 1 and u["audits"] == 1, dict(u)
            assert u["web_password_hash"], dict(u)
        orphans = await conn.fetchval(
            "SELECT count(*) FROM audit_log a WHERE a.entity = 'agent' AND a.action = 'create'"
            " AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id::text = a.entity_id)")
        assert orphans == 0
        owners = await conn.fetchval(
            "SELECT count(*) FROM extension_pool p WHERE p.owner LIKE 'user:%'"
            " AND NOT EXISTS (SELECT 1 FROM users u WHERE 'user:' || u.id = p.owner"
            "   AND u.extension = p.number)")
        assert owners == 0
    finally:
        await conn.close()
    return users


async def assert_recovered(env: Env, n: int) -> Reply:
    """The same process serves again once PostgreSQL is back: no restart."""
    deadline = time.monotonic() + RECOVER_S
    while True:
        r = await env.create(n)
        if r.status == 201 or time.monotonic() > deadline:
            break
        assert_503(r, "while PostgreSQL starts")
        await asyncio.sleep(0.2)
    assert r.status == 201, r.body
    assert (await call(env.http, "GET", "/api/v1/health")).status == 200
    st = await call(env.http, "GET", "/api/v1/status")
    assert st.status == 200, st.body
    return r


async def assert_applied_everything(env: Env) -> None:
    await wait_all_applied(env.pool, 60)
    deadline = time.monotonic() + 15
    while not env.applier.status()["listening"] and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    st = env.applier.status()
    assert st["listening"] and st["running"], st
    snap = await assert_disk_matches_database(env.cfg, env.pool)
    assert {str(a.extension) for a in snap.agents} <= await endpoints(env.cfg)


async def test_requests_in_flight_when_postgres_stops(env: Env) -> None:
    assert (await env.create(0)).status == 201

    # Hold the config_state row: creates then wait at their last statement (the version
    # bump), with the user, membership and audit row already written in their
    # transaction - the worst moment for the database to go away.
    blocker = await asyncpg.connect(env.dsn)
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("SELECT 1 FROM config_state WHERE id = 1 FOR UPDATE")
    in_flight = [asyncio.ensure_future(env.create(n)) for n in range(1, 5)]
    deadline = time.monotonic() + 15
    while await _waiting_on_locks(blocker) < 4:
        assert time.monotonic() < deadline, "the creates did not reach the version bump"
        await asyncio.sleep(0.05)

    await env.pg.astop("fast")
    try:
        for n, r in enumerate(await asyncio.gather(*in_flight), 1):
            assert_503(r, f"in flight pz{n}")
        # requests during the outage: all 503, same body; health says so too
        assert_503(await env.create(10), "create")
        assert_503(await call(env.http, "GET", "/api/v1/agents"), "list")
        assert_503(await call(env.http, "GET", "/api/v1/status"), "status")
        assert_503(await call(env.http, "PATCH", "/api/v1/agents/1",
                              json={"priority": 3}), "update")
        assert_503(await call(env.http, "POST", "/api/v1/agents/1/sip-password"), "rotate")
        health = await call(env.http, "GET", "/api/v1/health")
        assert health.status == 503 and health.body["status"] == "unavailable"
        assert health.body["database"] == "unavailable"
    finally:
        await env.pg.astart()
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            await blocker.execute("SELECT 1")
        await blocker.close()

    await assert_recovered(env, 11)
    users = await assert_whole(env)
    # the interrupted creates were rolled back entirely; no later request was half-done
    assert set(users) == {"pz0", "pz11"}, sorted(users)
    await assert_applied_everything(env)


async def test_postgres_crash_under_load(env: Env) -> None:
    """Four clients create agents without pause; PostgreSQL crashes (immediate stop:
    no clean shutdown) and comes back. Every answer is 201 or 503; every 201 is
    there, whole; every 503 is either whole or absent (a COMMIT can succeed with its
    answer lost); the applier catches up by itself."""
    outcomes: dict[str, int] = {}
    stop = asyncio.Event()

    async def client(worker: int) -> None:
        n = 0
        while not stop.is_set():
            login_n = 1000 * (worker + 1) + n
            r = await env.create(login_n)
            assert r.status in (201, 503), (r.status, r.body)
            if r.status == 503:
                assert_503(r, "under load")
                await asyncio.sleep(0.05)
            outcomes[f"pz{login_n}"] = r.status
            n += 1

    def count(status: int) -> int:
        return list(outcomes.values()).count(status)

    async def until(what: str, condition: Callable[[], bool], timeout: float = 60) -> None:
        """Wait for a state of the load, not for a time."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"{what}: {outcomes}"
            await asyncio.sleep(0.02)

    workers = [asyncio.ensure_future(client(w)) for w in range(4)]
    await until("creates before the crash", lambda: count(201) >= 8)
    await env.pg.astop("immediate")
    failed_before = count(503)
    await until("503s during the outage", lambda: count(503) >= failed_before + 4)
    await env.pg.astart()
    created_before = count(201)
    await until("creates after the restart", lambda: count(201) >= created_before + 4)
    stop.set()
    await asyncio.gather(*workers)

    statuses = list(outcomes.values())
    assert statuses.count(201) >= 8 and statuses.count(503) >= 4, outcomes
    await assert_recovered(env, 1)
    users = await assert_whole(env)
    ok = {login for login, status in outcomes.items() if status == 201}
    assert ok <= set(users)
    await assert_applied_everything(env)


async def test_applied_while_postgres_goes_away_is_recorded_later(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL disappears between the reload and the record of the applied version:
    Asterisk has the change, and the record must follow once PostgreSQL is back - with
    no further change and no restart - or `status` would report it pending for ever."""
    real = config_state.mark_applied
    armed = True

    async def away_before_recording(conn: Any, version: int, ms: int) -> None:
        nonlocal armed
        if armed:
            armed = False
            await env.pg.astop("fast")
        await real(conn, version, ms)

    await wait_all_applied(env.pool, 30)
    failures = env.applier.status()["failures"]
    monkeypatch.setattr(applier_mod.config_state, "mark_applied", away_before_recording)
    r = await env.create(1)
    assert r.status == 201, r.body
    version = int(r.headers["X-Sipprov-Config-Version"])
    extension = str(r.body["extension"])
    # Asterisk gets the change although PostgreSQL went away before it was recorded
    deadline = time.monotonic() + 30
    while extension not in await endpoints(env.cfg):
        assert time.monotonic() < deadline, "the change never reached Asterisk"
        await asyncio.sleep(0.1)
    while armed or env.pg.running():
        assert time.monotonic() < deadline, "the record was never tried"
        await asyncio.sleep(0.1)
    # The applier has met the outage (a failed record) before PostgreSQL comes back.
    while env.applier.status()["failures"] <= failures:
        assert time.monotonic() < deadline, f"the failed record was not noticed: {env.applier.status()}"
        await asyncio.sleep(0.05)
    reloads = env.applier.status()["reloads"]["res_pjsip.so"]
    await env.pg.astart()
    state = await wait_all_applied(env.pool, 30)
    assert state.applied_version == version
    assert await env.applier.wait_applied(version, 10)
    # recorded without reloading Asterisk again
    assert env.applier.status()["reloads"]["res_pjsip.so"] == reloads
    st = await call(env.http, "GET", "/api/v1/status")
    assert st.status == 200 and st.body["config"]["pending"] == 0, st.body


def test_a_connection_broken_mid_exchange_counts_as_unavailable() -> None:
    """asyncpg's InternalClientError (a COMMIT whose connection the stopping server
    closed) was answered 500; it is the database going away: 503, retry later."""
    assert database.is_unavailable(asyncpg.exceptions.InternalClientError("protocol state"))
    assert not database.is_unavailable(asyncpg.exceptions.UniqueViolationError("dup"))
