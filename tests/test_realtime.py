"""The realtime backend against the real Asterisk 22, PostgreSQL and SIPp: Asterisk reads
the agents from the asterisk.* views (migration 005); a change writes no file and
reloads no module. The key scenarios run on both backends (`backend` parameter).
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate, AgentUpdate, QueueAssignment, QueueCreate
from sipprov.apply import realtimeconf
from sipprov.apply.ami import AmiClient
from sipprov.config import Config
from sipprov.db.transaction import run
from sipprov.directory import queues
from sipprov.http.agents import registration
from sipprov.pbx import sipp
from sipprov.pbx.sipclient import SipClient
from tests.applier_env import Env, start_env
from tests.faults.service import SIPPROV
from tests.pbx_fixtures import REALTIME_DB_PASSWORD, clean_asterisk, point_realtime_at

pytestmark = pytest.mark.pbx

HOST = "127.0.0.1"
APPLY_TIMEOUT = 60.0


EnvFactory = Callable[..., Awaitable[Env]]


@pytest.fixture
async def make_env(pbx, pbx_config: Config, db_dsn: str) -> AsyncIterator[EnvFactory]:
    """Appliers with the given backend and a phone tracker on this test's database
    (tests/applier_env.py); the PBX's realtime driver points at the same database."""
    made: list[Env] = []
    await point_realtime_at(pbx_config, db_dsn)

    async def make(backend: str = "realtime", cache: bool = False) -> Env:
        env = await start_env(pbx_config, db_dsn, debounce_ms=20, backend=backend,
                              cache=cache, phones=True)
        made.append(env)
        return env

    yield make
    for env in made:
        await env.stop()
    await clean_asterisk(pbx_config)
    await point_realtime_at(pbx_config, pbx_config.database.dsn)


def _letters(n: int) -> str:
    return "".join("abcdefghij"[int(d)] for d in str(n))


async def _create(env: Env, n: int, **kw) -> agents.AgentCreated:
    body = AgentCreate(first_name="Agent", last_name=f"Rt{_letters(n)}",
                       email=f"rt{n}@example.com", login=f"rt{n}", **kw)
    return await run(env.pool, agents.create_agent, env.cfg, body, "test")


async def _applied(env: Env, version: int | None) -> None:
    assert version is not None
    ok = await env.applier.wait_applied(version, APPLY_TIMEOUT)
    assert ok, f"version {version} not applied: {env.applier.status()}"


async def _contacts(ami: AmiClient, aor: str) -> list[dict[str, str]]:
    return [c for c in await ami.pjsip_contacts() if c.get("Aor") == aor]


BACKENDS = pytest.mark.parametrize("backend", ["realtime", "files"])


# ----------------------------------------------------------------------------- the role


async def test_asterisk_role_reads_only_the_views(make_env: EnvFactory, db_dsn: str) -> None:
    env = await make_env("realtime")
    created = await _create(env, 1)
    await _applied(env, created.config_version)
    host, port, dbname = realtimeconf.dsn_parts(db_dsn)
    conn = await asyncpg.connect(host=host, port=port, database=dbname,
                                 user=env.cfg.asterisk.realtime_db_user,
                                 password=REALTIME_DB_PASSWORD)
    try:
        row = await conn.fetchrow("SELECT * FROM ps_auths WHERE id = $1",
                                  str(created.agent.extension))
        assert row["auth_type"] == "digest"
        assert row["password_digest"].startswith("MD5:")
        assert await conn.fetchval("SELECT count(*) FROM ps_endpoints") == 1
        for table in ("public.users", "public.api_tokens", "public.audit_log",
                      "public.avatars", "public.realtime_settings", "public.config_state",
                      # the definitions behind the tables Asterisk reads (migration 016)
                      "asterisk_src.agents", "asterisk_src.ps_auths"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(f"SELECT * FROM {table} LIMIT 1")
        for view in ("ps_endpoints", "ps_auths", "ps_aors", "queue_members"):
            for privilege in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
                assert not await conn.fetchval("SELECT has_table_privilege($1, $2)",
                                               view, privilege)
        # the one table it writes: the shared registrations (migration 013)
        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            assert await conn.fetchval("SELECT has_table_privilege('ps_contacts', $1)",
                                       privilege)
        for privilege in ("TRUNCATE", "REFERENCES", "TRIGGER"):
            assert not await conn.fetchval("SELECT has_table_privilege('ps_contacts', $1)",
                                           privilege)
        await conn.execute("INSERT INTO ps_contacts (id, uri) VALUES ('1^3B@x', 'sip:x')")
        assert await conn.fetchval("DELETE FROM ps_contacts RETURNING id") == "1^3B@x"
        # no plaintext password column anywhere Asterisk can read
        columns = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'asterisk'")
        names = {c["column_name"] for c in columns}
        assert "password" not in names and "md5_cred" not in names
    finally:
        await conn.close()


# ----------------------------------------------------------------------------- scenarios


@BACKENDS
async def test_create_register_without_reload(make_env: EnvFactory, backend: str,
                                              ami: AmiClient) -> None:
    env = await make_env(backend)
    reloads = env.reloads()
    created = await _create(env, 1)
    assert created.sip is not None
    await _applied(env, created.config_version)
    sip = created.sip
    ok = await sipp.register(HOST, env.sip_port, sip.username, sip.password, realm=sip.realm)
    assert ok.ok and ok.status == 200, ok
    wrong = await sipp.register(HOST, env.sip_port, sip.username, sip.password + "x")
    assert not wrong.ok and wrong.status in (401, 403), wrong
    if backend == "realtime":
        assert env.reloads() == reloads, "a realtime create reloaded a module"
        pj = (Path(env.cfg.generated_dir) / "pjsip.conf").read_text()
        assert "type=endpoint" not in pj
        # no all-agents query is answered (allow_unqualified_fetch=no), so res_pjsip's
        # start-up and reloads never load every agent (docs/apply.md, "Start-up with
        # many agents"); the agent is read when asked for, also after a reload
        assert await ami.pjsip_endpoint_exists(sip.username)
        assert sip.username not in await ami.pjsip_endpoints()
        await ami.reload("res_pjsip.so")
        again = await sipp.register(HOST, env.sip_port, sip.username, sip.password,
                                    realm=sip.realm)
        assert again.ok and again.status == 200, again
    else:
        assert env.reloads() == reloads + 2  # pjsip.conf and extensions.conf
    await sipp.unregister(HOST, env.sip_port, sip.username, sip.password)


@BACKENDS
async def test_rotation_ends_the_old_registration(make_env: EnvFactory, backend: str,
                                                 ami: AmiClient) -> None:
    env = await make_env(backend)
    a = await _create(env, 1)
    b = await _create(env, 2)
    await _applied(env, b.config_version)
    assert a.sip and b.sip
    reg_a = await sipp.register(HOST, env.sip_port, a.sip.username, a.sip.password, expires=600)
    reg_b = await sipp.register(HOST, env.sip_port, b.sip.username, b.sip.password, expires=600)
    assert reg_a.ok and reg_b.ok
    assert await _contacts(ami, a.sip.username)

    new_sip, version = await run(env.pool, agents.rotate_sip_password, env.cfg, a.agent.id, None,
                                                        "test")
    await _applied(env, version)
    # the phone registered with the old password is gone at once, B's stays
    assert await _contacts(ami, a.sip.username) == []
    assert await _contacts(ami, b.sip.username)
    old = await sipp.register(HOST, env.sip_port, a.sip.username, a.sip.password)
    assert not old.ok and old.status in (401, 403), old
    new = await sipp.register(HOST, env.sip_port, new_sip.username, new_sip.password)
    assert new.ok, new
    await sipp.unregister(HOST, env.sip_port, new_sip.username, new_sip.password)
    await sipp.unregister(HOST, env.sip_port, b.sip.username, b.sip.password)


@BACKENDS
async def test_delete_and_deactivation_end_registrations(make_env: EnvFactory, backend: str,
                                                        ami: AmiClient) -> None:
    env = await make_env(backend)
    a = await _create(env, 1)
    b = await _create(env, 2)
    await _applied(env, b.config_version)
    assert a.sip and b.sip
    for s in (a.sip, b.sip):
        assert (await sipp.register(HOST, env.sip_port, s.username, s.password)).ok
    version = await run(env.pool, agents.delete_agent, env.cfg, a.agent.id, "test")
    await _applied(env, version)
    assert await _contacts(ami, a.sip.username) == []
    assert not await ami.pjsip_endpoint_exists(a.sip.username)
    gone = await sipp.register(HOST, env.sip_port, a.sip.username, a.sip.password)
    assert not gone.ok, gone
    # no longer an agent: no endpoint, no registration
    updated = await run(env.pool, agents.update_agent, env.cfg, b.agent.id,
                                        AgentUpdate(is_agent=False), "test", force=True)
    await _applied(env, updated.config_version)
    assert await _contacts(ami, b.sip.username) == []
    assert not await ami.pjsip_endpoint_exists(b.sip.username)


@BACKENDS
async def test_deactivate_ends_registration_and_reactivate_restores(
        make_env: EnvFactory, backend: str, ami: AmiClient) -> None:
    """Deactivated: the phone's contact goes at once and it cannot register; the
    extension and queue membership stay its own (a new agent gets another number);
    reactivated: the same SIP password registers again."""
    env = await make_env(backend)
    await run(env.pool, queues.create_queue, env.cfg, QueueCreate(name="support"), "test")
    a = await _create(env, 1, queues=[QueueAssignment(name="support")])
    await _applied(env, a.config_version)
    assert a.sip and a.agent.extension is not None
    assert (await sipp.register(HOST, env.sip_port, a.sip.username, a.sip.password,
                                expires=600)).ok
    assert await _contacts(ami, a.sip.username)

    off = await run(env.pool, agents.update_agent, env.cfg, a.agent.id,
                    AgentUpdate(active=False), "test")
    await _applied(env, off.config_version)
    assert off.agent.active is False
    assert off.agent.extension == a.agent.extension
    assert [q["name"] for q in off.agent.queues] == ["support"]
    assert await _contacts(ami, a.sip.username) == []
    assert not await ami.pjsip_endpoint_exists(a.sip.username)
    refused = await sipp.register(HOST, env.sip_port, a.sip.username, a.sip.password)
    assert not refused.ok and refused.status in (401, 403, 404), refused
    # the number is not released to the pool meanwhile
    c = await _create(env, 3)
    assert c.agent.extension != a.agent.extension

    on = await run(env.pool, agents.update_agent, env.cfg, a.agent.id,
                   AgentUpdate(active=True), "test")
    await _applied(env, on.config_version)
    assert on.agent.active is True and on.agent.extension == a.agent.extension
    again = await sipp.register(HOST, env.sip_port, a.sip.username, a.sip.password)
    assert again.ok and again.status == 200, again
    await sipp.unregister(HOST, env.sip_port, a.sip.username, a.sip.password)


async def test_unknown_number_fails_cleanly(make_env: EnvFactory, ami: AmiClient) -> None:
    env = await make_env("realtime")
    a = await _create(env, 1)
    await _applied(env, a.config_version)
    assert a.sip
    result = await sipp.call(HOST, env.sip_port, a.sip.username, a.sip.password, "998",
                             hold_s=0.1, timeout=10)
    assert not result.ok and result.status in (404, 480, 503, 603), result


_FRESH = iter(random.Random().sample(range(900, 990), 60))


@BACKENDS
async def test_queue_rings_a_member_created_after_asterisk_started(
        make_env: EnvFactory, backend: str, ami: AmiClient) -> None:
    """The device-state trap: an endpoint Asterisk never saw before must be rung by
    app_queue (an extension no earlier test of this session used)."""
    env = await make_env(backend)
    _, version = await run(env.pool, queues.create_queue, env.cfg,
                                           QueueCreate(name="sales", number=next(_FRESH)),
                                           "test")
    caller = await _create(env, 1)
    member = await _create(env, 2, extension=next(_FRESH),
                           queues=[QueueAssignment(name="sales")])
    await _applied(env, member.config_version)
    assert caller.sip and member.sip
    qnum = (await queues.get_queue(env.pool, "sales")).number
    async with await sipp.start_uas(HOST, env.sip_port, member.sip.username,
                                    member.sip.password, timeout=25) as phone:
        if backend == "realtime":
            # app_queue sees the new member as available (1 = not in use), not as
            # unknown or unavailable
            iface = f"PJSIP/{member.agent.extension}"
            deadline = time.monotonic() + 10
            while True:
                status = {m.interface: m.status
                          for m in (await ami.queue_status("sales")).get("sales", [])}
                if status.get(iface) == 1:
                    break
                assert time.monotonic() < deadline, status
                await asyncio.sleep(0.05)
        result = await sipp.call(HOST, env.sip_port, caller.sip.username, caller.sip.password,
                                 str(qnum), hold_s=0.3, timeout=20)
        assert await phone.wait(10), f"the queue did not ring the new member ({result})"
        assert result.ok, result
    await sipp.unregister(HOST, env.sip_port, member.sip.username, member.sip.password)


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_registration_is_visible(make_env: EnvFactory, tmp_path: Path,
                                       db_dsn: str) -> None:
    """API (the agent's `registration`, /status's count) and CLI (`agents show`)."""
    env = await make_env("realtime")
    a = await _create(env, 1)
    await _applied(env, a.config_version)
    assert a.sip and a.agent.extension is not None
    ext = a.agent.extension
    await _until(lambda: env.phones.connected)
    assert registration(env.phones, ext) == {"registered": False, "contacts": []}
    counted = env.phones.registered_count()
    reg = await sipp.register(HOST, env.sip_port, a.sip.username, a.sip.password, expires=600)
    assert reg.ok
    await _until(lambda: bool(env.phones.registrations(ext)))
    shown = registration(env.phones, ext)
    assert shown is not None and shown["registered"]
    (contact,) = shown["contacts"]
    assert contact["contact"].startswith(f"sip:{ext}@127.0.0.1:")
    assert contact["since"] and contact["expires_at"]
    assert env.phones.registered_count() == counted + 1
    # the CLI asks Asterisk itself
    conf = tmp_path / "sipprov.toml"
    conf.write_text(
        f'[database]\ndsn = "{db_dsn}"\n'
        f'[asterisk]\nami_port = {env.cfg.asterisk.ami_port}\nbackend = "realtime"\n'
        f'config_dir = "{env.cfg.generated_dir}"\n')
    out = await asyncio.to_thread(
        subprocess.run, [SIPPROV, "-c", str(conf), "agents", "show", str(a.agent.id),
                         "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["registration"]["registered"] is True
    assert data["registration"]["contacts"][0]["user_agent"] == contact["user_agent"]
    # unregistering shows at once
    await sipp.unregister(HOST, env.sip_port, a.sip.username, a.sip.password)
    await _until(lambda: not env.phones.registrations(ext))
    assert registration(env.phones, ext) == {"registered": False, "contacts": []}


async def test_switching_backends_loses_no_agent_and_no_registration(
        make_env: EnvFactory, ami: AmiClient) -> None:
    """files -> realtime -> files on a running Asterisk (no restart): every agent stays
    registrable, the registered phone stays registered and reachable."""
    env = await make_env("files")
    a = await _create(env, 1)
    b = await _create(env, 2)
    await _applied(env, b.config_version)
    assert a.sip and b.sip
    # a's phone registers now and must still get a call after both switches
    phone = await sipp.start_uas(HOST, env.sip_port, a.sip.username, a.sip.password,
                                 timeout=120)
    async with phone:
        generated = Path(env.cfg.generated_dir) / "pjsip.conf"

        async def check(current: Env) -> int:
            assert await ami.pjsip_endpoint_exists(a.sip.username)
            assert await _contacts(ami, a.sip.username), "the registration was lost"
            assert (await sipp.register(HOST, current.sip_port, b.sip.username,
                                        b.sip.password)).ok
            async with current.pool.acquire() as conn:
                views = await conn.fetchval("SELECT count(*) FROM asterisk.ps_endpoints")
            return views

        for backend in ("realtime", "files"):
            await env.phones.stop()
            await env.applier.stop()
            env = await make_env(backend)
            views = await check(env)
            if backend == "realtime":
                assert views == 2 and "type=endpoint" not in generated.read_text()
            else:
                assert views == 0 and "type=endpoint" in generated.read_text()
            c = await _create(env, 3 if backend == "realtime" else 4)
            await _applied(env, c.config_version)
            assert c.sip
            assert (await sipp.register(HOST, env.sip_port, c.sip.username, c.sip.password)).ok
        result = await sipp.call(HOST, env.sip_port, b.sip.username, b.sip.password,
                                 a.sip.username, hold_s=0.2, timeout=15)
        assert result.ok and await phone.wait(10), result


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
async def test_digest_md5_and_sha256_both_register(make_env: EnvFactory, algorithm: str) -> None:
    """ps_auths has both digests and both algorithms on offer (the in-process client
    answers the challenge of either; SIPp only does MD5)."""
    env = await make_env("realtime")
    a = await _create(env, 1)
    await _applied(env, a.config_version)
    assert a.sip
    client = await SipClient.open(HOST, env.sip_port)
    try:
        ok = await client.register(a.sip.username, a.sip.password, algorithm=algorithm)
        assert ok.ok and ok.algorithm == algorithm, ok
        bad = await client.register(a.sip.username, a.sip.password + "x", algorithm=algorithm)
        assert bad.status in (401, 403), bad
        assert (await client.register(a.sip.username, a.sip.password, expires=0)).ok
    finally:
        client.close()
