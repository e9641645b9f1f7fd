"""The applier's incremental snapshot (SnapshotLoader re-reads only agents whose row
changed) always equals a full read, whatever changed in between. Real PostgreSQL."""

from __future__ import annotations

import asyncpg

from sipprov.agents import extensions
from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate, AgentUpdate
from sipprov.apply import snapshot as snapshot_mod
from sipprov.config import Config
from sipprov.db.transaction import run as in_tx


async def _same(loader: snapshot_mod.SnapshotLoader, conn: asyncpg.Connection) -> snapshot_mod.Snapshot:
    incremental = await loader.load(conn)
    full = await snapshot_mod.load(conn)
    assert incremental == full
    return incremental


async def test_incremental_snapshot_equals_a_full_read(pool: asyncpg.Pool, cfg: Config) -> None:
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)
    made = [await in_tx(pool, agents.create_agent, cfg, AgentCreate(
        first_name="Snap", last_name=f"Agent{chr(97 + i)}", email=f"snap{i}@example.com"), "t")
        for i in range(4)]
    loader = snapshot_mod.SnapshotLoader()
    async with pool.acquire() as conn:
        first = await _same(loader, conn)
        assert {a.id for a in first.agents} >= {m.agent.id for m in made}
        # nothing changed: the same AgentConf objects, nothing re-read
        again = await _same(loader, conn)
        assert all(a is b for a, b in zip(first.agents, again.agents, strict=True))

    await in_tx(pool, agents.rotate_sip_password, cfg, made[0].agent.id, None, "t")
    await in_tx(pool, agents.update_agent, cfg, made[1].agent.id,
                AgentUpdate(caller_id="Snap Desk", priority=7), "t")
    await in_tx(pool, agents.update_agent, cfg, made[2].agent.id, AgentUpdate(active=False), "t")
    await in_tx(pool, agents.delete_agent, cfg, made[3].agent.id, "t")
    async with pool.acquire() as conn:
        snap = await _same(loader, conn)
        by_id = {a.id: a for a in snap.agents}
        assert by_id[made[0].agent.id].ha1_md5 != {a.id: a for a in first.agents}[made[0].agent.id].ha1_md5
        assert by_id[made[1].agent.id].caller_id_name == "Snap Desk"
        assert made[2].agent.id not in by_id and made[3].agent.id not in by_id
        # a role that loses SIP takes its agents out; back again, they return
        role = await conn.fetchval("SELECT role_id FROM users WHERE id = $1", made[0].agent.id)
        await conn.execute("UPDATE roles SET sip_allowed = false WHERE id = $1", role)
        assert made[0].agent.id not in {a.id for a in (await _same(loader, conn)).agents}
        await conn.execute("UPDATE roles SET sip_allowed = true WHERE id = $1", role)
        assert made[0].agent.id in {a.id for a in (await _same(loader, conn)).agents}
    await in_tx(pool, agents.update_agent, cfg, made[2].agent.id, AgentUpdate(active=True), "t")
    async with pool.acquire() as conn:
        assert made[2].agent.id in {a.id for a in (await _same(loader, conn)).agents}
