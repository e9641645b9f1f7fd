"""The tables Asterisk reads (migration 016) always equal their definition (the
asterisk_src views), whatever changes an agent: the triggers rewrite them in the same
transaction. Real PostgreSQL, no Asterisk needed."""

from __future__ import annotations

import dataclasses

import asyncpg
import pytest

from sipprov.agents import extensions
from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate, AgentUpdate
from sipprov.apply import realtime as realtime_mod
from sipprov.config import Config
from sipprov.db.transaction import run as in_tx

RELATIONS = ("ps_endpoints", "ps_auths", "ps_aors")


async def _assert_in_sync(conn: asyncpg.Connection) -> dict[str, set[str]]:
    """Tables == views, row for row; returns the ids per table."""
    ids: dict[str, set[str]] = {}
    for rel in RELATIONS:
        extra = await conn.fetch(f"SELECT * FROM asterisk.{rel} EXCEPT SELECT * FROM asterisk_src.{rel}")
        missing = await conn.fetch(f"SELECT * FROM asterisk_src.{rel} EXCEPT SELECT * FROM asterisk.{rel}")
        assert not extra and not missing, (rel, extra, missing)
        ids[rel] = {r["id"] for r in await conn.fetch(f"SELECT id FROM asterisk.{rel}")}
    assert ids["ps_endpoints"] == ids["ps_auths"] == ids["ps_aors"]
    return ids


@pytest.fixture
def rt_cfg(cfg: Config) -> Config:
    cfg.asterisk = dataclasses.replace(cfg.asterisk, backend="realtime")
    return cfg


async def _create(pool: asyncpg.Pool, cfg: Config, last: str) -> agents.AgentCreated:
    return await in_tx(pool, agents.create_agent, cfg, AgentCreate(
        first_name="Tab", last_name=last, email=f"{last.lower()}@example.com"), "test")


async def test_tables_follow_every_change(pool: asyncpg.Pool, rt_cfg: Config) -> None:
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, rt_cfg.extensions)
        await realtime_mod.prepare(conn, rt_cfg)
    a = await _create(pool, rt_cfg, "Alpha")
    b = await _create(pool, rt_cfg, "Bravo")
    ext_a, ext_b = str(a.agent.extension), str(b.agent.extension)
    async with pool.acquire() as conn:
        assert {ext_a, ext_b} <= (await _assert_in_sync(conn))["ps_auths"]
        digest = await conn.fetchval("SELECT password_digest FROM asterisk.ps_auths WHERE id = $1", ext_a)

    # a rotated password is the new digest at once
    await in_tx(pool, agents.rotate_sip_password, rt_cfg, a.agent.id, None, "test")
    async with pool.acquire() as conn:
        await _assert_in_sync(conn)
        assert await conn.fetchval(
            "SELECT password_digest FROM asterisk.ps_auths WHERE id = $1", ext_a) != digest

    # caller ID and priority (an unrelated edit rewrites nothing it does not change)
    await in_tx(pool, agents.update_agent, rt_cfg, a.agent.id,
                AgentUpdate(caller_id="Alpha Desk"), "test")
    async with pool.acquire() as conn:
        await _assert_in_sync(conn)
        assert "Alpha Desk" in await conn.fetchval(
            "SELECT callerid FROM asterisk.ps_endpoints WHERE id = $1", ext_a)

    # a new extension leaves the old number and takes the new one
    await in_tx(pool, agents.update_agent, rt_cfg, b.agent.id,
                AgentUpdate(extension=int(ext_b) + 50), "test")
    async with pool.acquire() as conn:
        ids = await _assert_in_sync(conn)
        assert ext_b not in ids["ps_endpoints"] and str(int(ext_b) + 50) in ids["ps_endpoints"]
    ext_b = str(int(ext_b) + 50)

    # deactivation and reactivation
    await in_tx(pool, agents.update_agent, rt_cfg, a.agent.id, AgentUpdate(active=False), "test")
    async with pool.acquire() as conn:
        assert ext_a not in (await _assert_in_sync(conn))["ps_auths"]
    await in_tx(pool, agents.update_agent, rt_cfg, a.agent.id, AgentUpdate(active=True), "test")
    async with pool.acquire() as conn:
        assert ext_a in (await _assert_in_sync(conn))["ps_auths"]

    async with pool.acquire() as conn:
        # the quarantine holds an agent out, and lets it back
        await conn.execute("INSERT INTO apply_quarantine (kind, id, reason) VALUES ('agent', $1, 't')",
                           a.agent.id)
        assert ext_a not in (await _assert_in_sync(conn))["ps_auths"]
        await conn.execute("DELETE FROM apply_quarantine WHERE kind = 'agent' AND id = $1", a.agent.id)
        assert ext_a in (await _assert_in_sync(conn))["ps_auths"]

        # a role that loses its SIP accounts takes its agents out
        role = await conn.fetchval("SELECT role_id FROM users WHERE id = $1", b.agent.id)
        await conn.execute("UPDATE roles SET sip_allowed = false WHERE id = $1", role)
        assert not (await _assert_in_sync(conn))["ps_auths"] & {ext_a, ext_b}
        await conn.execute("UPDATE roles SET sip_allowed = true WHERE id = $1", role)
        assert {ext_a, ext_b} <= (await _assert_in_sync(conn))["ps_auths"]

        # a changed setting is in every row; a rolled-back change in none
        codecs = dataclasses.replace(rt_cfg.asterisk, codecs=["ulaw"])
        await realtime_mod.prepare(conn, dataclasses.replace(rt_cfg, asterisk=codecs))
        await _assert_in_sync(conn)
        assert set(await conn.fetch("SELECT DISTINCT allow FROM asterisk.ps_endpoints")) == {("ulaw",)}
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await conn.execute("DELETE FROM users WHERE id = $1", b.agent.id)
                raise RuntimeError("rolled back")
        assert ext_b in (await _assert_in_sync(conn))["ps_auths"]

        # the files backend empties them; back to realtime fills them again
        await realtime_mod.disable_views(conn, rt_cfg)
        assert not (await _assert_in_sync(conn))["ps_auths"]
        await realtime_mod.prepare(conn, rt_cfg)
        assert {ext_a, ext_b} <= (await _assert_in_sync(conn))["ps_auths"]

    await in_tx(pool, agents.delete_agent, rt_cfg, a.agent.id, "test")
    async with pool.acquire() as conn:
        assert ext_a not in (await _assert_in_sync(conn))["ps_auths"]


async def test_bulk_insert_of_many_agents_lands_in_one_statement(pool: asyncpg.Pool,
                                                                rt_cfg: Config) -> None:
    """A bulk statement (the importer's, the bench's) refreshes every row it touched."""
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, rt_cfg.extensions)
        await realtime_mod.prepare(conn, rt_cfg)
        before = len((await _assert_in_sync(conn))["ps_auths"])
        await conn.execute("""
            INSERT INTO users (first_name, last_name, login, email, role_id, account_type_id,
                               is_agent, extension, caller_id_name, chat_name, sip_ha1_md5)
            SELECT 'Bulk', 'Agent' || g, 'bulk' || g, 'bulk' || g || '@example.com',
                   (SELECT id FROM roles WHERE name = 'extension'),
                   (SELECT id FROM account_types WHERE name = 'standard'),
                   true, 500 + g, 'Bulk ' || g, 'Bulk ' || g, md5(g::text)
              FROM generate_series(1, 300) g""")
        assert len((await _assert_in_sync(conn))["ps_auths"]) == before + 300
        await conn.execute("UPDATE users SET sip_ha1_md5 = md5('x' || id) WHERE login LIKE 'bulk%'")
        await _assert_in_sync(conn)
        await conn.execute("DELETE FROM users WHERE login LIKE 'bulk%'")
        assert len((await _assert_in_sync(conn))["ps_auths"]) == before
