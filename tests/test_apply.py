"""The apply pipeline against the real Asterisk 22 (the tests' PBX instance) and SIPp:
agents created, changed and deleted through the service layer reach Asterisk through
the applier (woken by PostgreSQL NOTIFY only: nothing here calls notify()).

The PBX instance is shared by the whole session, so every test starts from a fresh
database and leaves Asterisk clean: its generated files emptied and reloaded.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sipprov import pbx as pbx_mod
from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate, AgentUpdate, QueueAssignment, QueueCreate
from sipprov.apply import render as render_mod
from sipprov.apply.ami import AmiClient, AmiError
from sipprov.cli import renderops as render_cli
from sipprov.config import Config, ExtensionsConfig
from sipprov.db.sql import config_state
from sipprov.db.transaction import run
from sipprov.directory import queues
from sipprov.errors import ConflictError
from sipprov.pbx import sipp
from tests.applier_env import Env, start_env
from tests.pbx_fixtures import clean_asterisk

pytestmark = pytest.mark.pbx

HOST = "127.0.0.1"
APPLY_TIMEOUT = 60.0


EnvFactory = Callable[..., Awaitable[Env]]


@pytest.fixture
async def make_env(pbx, pbx_config: Config, db_dsn: str) -> AsyncIterator[EnvFactory]:
    """Appliers on this test's database (tests/applier_env.py); Asterisk cleaned
    afterwards."""
    made: list[Env] = []

    async def make(ext: ExtensionsConfig | None = None) -> Env:
        env = await start_env(pbx_config, db_dsn, debounce_ms=100, ext=ext)
        made.append(env)
        return env

    yield make
    for env in made:
        await env.stop()
    await clean_asterisk(pbx_config)


@pytest.fixture
async def env(make_env: EnvFactory) -> Env:
    return await make_env()


def _letters(n: int | str) -> str:
    """Names may not contain digits: 12 -> "bc"."""
    return "".join("abcdefghij"[int(d)] if d.isdigit() else d for d in str(n))


def _agent(n: int | str, **kw) -> AgentCreate:
    return AgentCreate(first_name="Agent", last_name=f"Number{_letters(n)}",
                       email=f"agent{n}@example.com", login=f"agent{n}", **kw)


async def _create(env: Env, n: int | str, **kw) -> agents.AgentCreated:
    return await run(env.pool, agents.create_agent, env.cfg, _agent(n, **kw), "test")


async def _applied(env: Env, version: int | None) -> None:
    assert version is not None
    ok = await env.applier.wait_applied(version, APPLY_TIMEOUT)
    assert ok, f"version {version} not applied: {env.applier.status()}"


async def _contacts(ami: AmiClient, aor: str) -> str:
    return await ami.command(f"pjsip show aor {aor}")


# ----------------------------------------------------------------------------- tests


async def test_created_agent_registers_within_one_apply(env: Env, ami: AmiClient) -> None:
    applies = env.applier.status()["applies"]
    created = await _create(env, 1)
    assert created.sip is not None
    await _applied(env, created.config_version)
    assert env.applier.status()["applies"] == applies + 1
    sip = created.sip
    ok = await sipp.register(HOST, env.sip_port, sip.username, sip.password, realm=sip.realm)
    assert ok.ok and ok.status == 200, ok
    wrong = await sipp.register(HOST, env.sip_port, sip.username, sip.password + "x")
    assert not wrong.ok and wrong.status in (401, 403), wrong
    # recorded where `status` survives a restart
    state = await config_state.read(env.pool)
    assert state.applied_version >= created.config_version and state.last_error is None
    # the generated files: mode 0640, digests only
    pj = Path(env.cfg.generated_dir) / "pjsip.conf"
    assert pj.stat().st_mode & 0o777 == 0o640
    text = pj.read_text()
    assert sip.password not in text and "\npassword=" not in text


async def test_sip_rotation_keeps_other_registrations(env: Env, ami: AmiClient) -> None:
    a = await _create(env, 1)
    b = await _create(env, 2)
    await _applied(env, b.config_version)
    assert a.sip and b.sip
    reg_b = await sipp.register(HOST, env.sip_port, b.sip.username, b.sip.password,
                                expires=600)
    assert reg_b.ok, reg_b
    assert "Contact:" in await _contacts(ami, b.sip.username)

    reloads = env.reloads("res_pjsip.so")
    new_sip, version = await run(env.pool, agents.rotate_sip_password, env.cfg, a.agent.id, None, "test")
    await _applied(env, version)
    assert env.reloads("res_pjsip.so") == reloads + 1
    old = await sipp.register(HOST, env.sip_port, a.sip.username, a.sip.password)
    assert not old.ok and old.status in (401, 403), old
    new = await sipp.register(HOST, env.sip_port, new_sip.username, new_sip.password)
    assert new.ok, new
    # B's contact survived the res_pjsip reload
    assert "Contact:" in await _contacts(ami, b.sip.username)


async def test_queue_penalty_follows_priority(env: Env, ami: AmiClient) -> None:
    _, version = await run(env.pool, queues.create_queue, env.cfg, QueueCreate(name="support"), "test")
    created = await _create(env, 1, priority=3, queues=[QueueAssignment(name="support")])
    await _applied(env, created.config_version)
    iface = f"PJSIP/{created.agent.extension}"

    async def members() -> list[tuple[str, int]]:
        status = await ami.queue_status("support")
        return [(m.interface, m.penalty) for m in status.get("support", [])]

    assert await members() == [(iface, 2)]
    updated = await run(env.pool, agents.update_agent, env.cfg, created.agent.id,
                                        AgentUpdate(priority=6), "test")
    await _applied(env, updated.config_version)
    assert await members() == [(iface, 5)]
    version = await run(env.pool, queues.remove_member, env.cfg, "support", created.agent.id, "test")
    await _applied(env, version)
    assert await members() == []


async def test_delete_removes_endpoint_and_dialplan(env: Env, ami: AmiClient) -> None:
    created = await _create(env, 1)
    await _applied(env, created.config_version)
    ext = str(created.agent.extension)
    context = env.cfg.asterisk.internal_context
    assert await ami.pjsip_endpoint_exists(ext)
    assert f"'{ext}' =>" in await ami.command(f"dialplan show {ext}@{context}")

    version = await run(env.pool, agents.delete_agent, env.cfg, created.agent.id, "test")
    await _applied(env, version)
    assert not await ami.pjsip_endpoint_exists(ext)
    with pytest.raises(AmiError, match="There is no existence"):
        await ami.command(f"dialplan show {ext}@{context}")


async def test_call_between_two_agents(env: Env, ami: AmiClient) -> None:
    a = await _create(env, 1)
    b = await _create(env, 2)
    await _applied(env, b.config_version)
    assert a.sip and b.sip
    async with await sipp.start_uas(HOST, env.sip_port, b.sip.username, b.sip.password,
                                    timeout=20) as phone:
        result = await sipp.call(HOST, env.sip_port, a.sip.username, a.sip.password,
                                 str(b.agent.extension), hold_s=0.3, timeout=15)
        assert result.ok and result.status == 200, result
        assert await phone.wait(10), "the second agent's phone did not get the call"


async def test_burst_of_1000_creates(make_env: EnvFactory, ami: AmiClient) -> None:
    # 1,000 agents do not fit the default 3-digit range (100-999 holds 900 numbers):
    # this test uses 4-digit extensions.
    env = await make_env(ExtensionsConfig(first=1000, last=2999))
    reloads = env.reloads("res_pjsip.so")
    applies = env.applier.status()["applies"]
    t0 = time.monotonic()
    results = await asyncio.gather(*(_create(env, f"b{i}") for i in range(1000)))
    created_s = time.monotonic() - t0
    versions = [r.config_version for r in results]
    await _applied(env, max(v for v in versions if v is not None))
    exts = [r.agent.extension for r in results]
    assert len(set(exts)) == 1000, "duplicate extensions"
    pjsip_reloads = env.reloads("res_pjsip.so") - reloads
    st = env.applier.status()
    print(f"\n1,000 creates in {created_s:.1f} s: {st['applies'] - applies} applies, "
          f"{pjsip_reloads} res_pjsip reloads, last apply {st['last_apply_ms']} ms")
    assert pjsip_reloads <= 5, st
    loaded = await ami.pjsip_endpoints()
    missing = {str(e) for e in exts} - loaded
    assert not missing, f"{len(missing)} agents missing in Asterisk"
    for r in random.Random(1).sample(results, 5):
        assert r.sip
        reg = await sipp.register(HOST, env.sip_port, r.sip.username, r.sip.password)
        assert reg.ok, reg


async def test_asterisk_down_then_back(env: Env, pbx_config: Config) -> None:
    await asyncio.to_thread(pbx_mod.stop, pbx_config)
    try:
        results = [await _create(env, i) for i in range(50)]
        last = max(r.config_version or 0 for r in results)
        # accepted, and pending: nothing marks them applied while Asterisk is away
        assert not await env.applier.wait_applied(last, 2.0)
        st = env.applier.status()
        assert st["pending"] > 0 and not st["ami_connected"] and st["last_error"], st
        state = await config_state.read(env.pool)
        assert state.applied_version < last and state.last_error
    finally:
        await asyncio.to_thread(pbx_mod.start, pbx_config)
    await _applied(env, last)
    st = env.applier.status()
    assert st["pending"] == 0 and st["ami_connected"] and st["last_error"] is None, st
    client = AmiClient(pbx_config.asterisk)
    await client.connect()
    try:
        loaded = await client.pjsip_endpoints()
    finally:
        await client.close()
    assert {str(r.agent.extension) for r in results} <= loaded
    for r in random.Random(2).sample(results, 5):
        assert r.sip
        reg = await sipp.register(HOST, env.sip_port, r.sip.username, r.sip.password)
        assert reg.ok, reg


async def test_cli_apply_now_next_to_the_service(env: Env, ami: AmiClient) -> None:
    """`sipprov apply` in another "process" (its own pool and applier) while the
    service's applier runs: serialised by the database lock, verified, recorded."""
    created = await _create(env, 1)
    out = await render_cli.apply_now(env.cfg, 30)
    assert out["ok"], out
    assert sorted(out["reloaded"]) == sorted(render_mod.MODULE_FOR_FILE.values())
    assert out["applied_version"] >= (created.config_version or 0)
    assert await ami.pjsip_endpoint_exists(str(created.agent.extension))
    assert await render_cli.render_diff(env.cfg) == ""


async def test_released_extension_never_rings_the_old_phone_for_a_new_agent(
        make_env: EnvFactory) -> None:
    """Issue 12 item 4: a deleted agent's phone stays registered; its number rests for
    [extensions] cooldown_s (short here) so the next agent gets another one and the old
    phone never rings for them; after the cooldown the number is handed out again."""
    cooldown = 8.0
    env = await make_env(ExtensionsConfig(first=100, last=199, cooldown_s=cooldown))
    caller = await _create(env, 1)
    old = await _create(env, 2)
    await _applied(env, old.config_version)
    assert caller.sip and old.sip
    number = old.agent.extension
    async with await sipp.start_uas(HOST, env.sip_port, old.sip.username, old.sip.password,
                                    timeout=40) as old_phone:
        await _applied(env, await run(env.pool, agents.delete_agent, env.cfg, old.agent.id, "test"))
        new = await _create(env, 3)
        assert new.sip and new.agent.extension != number, "the released number went to the next agent"
        with pytest.raises(ConflictError) as refused:
            await _create(env, 4, extension=number)
        assert (refused.value.code, refused.value.field) == ("extension_cooling_down", "extension")
        await _applied(env, new.config_version)
        async with await sipp.start_uas(HOST, env.sip_port, new.sip.username, new.sip.password,
                                        timeout=20) as new_phone:
            result = await sipp.call(HOST, env.sip_port, caller.sip.username, caller.sip.password,
                                     str(new.agent.extension), hold_s=0.3, timeout=15)
            assert result.ok and result.status == 200, result
            assert await new_phone.wait(10), "the new agent's phone did not get the call"
        assert not old_phone.answered, "the deleted agent's phone rang for the new agent"

    # Once the cooldown is over (the pool says so), the number is an ordinary free one.
    deadline = time.monotonic() + cooldown + 30
    while await env.pool.fetchval(
            "SELECT released_at > now() - make_interval(secs => $2::double precision)"
            " FROM extension_pool WHERE number = $1", number, cooldown):
        assert time.monotonic() < deadline, "the cooldown never ended"
        await asyncio.sleep(0.2)
    later = await _create(env, 5, extension=number)
    assert later.agent.extension == number
