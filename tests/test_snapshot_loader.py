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


async def _agents(pool: asyncpg.Pool, cfg: Config, n: int, tag: str) -> list[agents.AgentCreated]:
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)
    return [await in_tx(pool, agents.create_agent, cfg, AgentCreate(
        first_name="Jo", last_name=f"Urnal{tag}{chr(97 + i % 26)}{chr(97 + i // 26)}",
        email=f"journal{tag}{i}@example.com"), "t") for i in range(n)]


async def test_a_change_committed_after_a_later_one_is_not_skipped(
        pool: asyncpg.Pool, cfg: Config) -> None:
    """The journal is read from the previous snapshot's xmin, not from the last row
    seen: a transaction that began first and commits last is still picked up."""
    made = await _agents(pool, cfg, 2, "a")
    x, y = made[0].agent.id, made[1].agent.id
    loader = snapshot_mod.SnapshotLoader()
    slow = await pool.acquire()
    try:
        async with pool.acquire() as conn:
            await _same(loader, conn)
            tx = slow.transaction()
            await tx.start()
            await slow.execute("UPDATE users SET caller_id_name = 'Slow One' WHERE id = $1", x)
            await conn.execute("UPDATE users SET caller_id_name = 'Quick One' WHERE id = $1", y)
            snap = await loader.load(conn, prune=True)
            by_id = {a.id: a for a in snap.agents}
            assert by_id[y].caller_id_name == "Quick One"
            assert by_id[x].caller_id_name != "Slow One"
            await tx.commit()
            snap = await _same(loader, conn)
            assert {a.id: a for a in snap.agents}[x].caller_id_name == "Slow One"
    finally:
        await pool.release(slow)


async def test_pruning_past_a_loader_makes_it_read_everything(pool: asyncpg.Pool, cfg: Config) -> None:
    made = await _agents(pool, cfg, 3, "b")
    leader, other = snapshot_mod.SnapshotLoader(), snapshot_mod.SnapshotLoader()
    async with pool.acquire() as conn:
        await leader.load(conn, prune=True)
        await _same(other, conn)
        await in_tx(pool, agents.update_agent, cfg, made[0].agent.id,
                    AgentUpdate(caller_id="Pruned Desk"), "t")
        await leader.load(conn, prune=True)
        # the leader consumed (and deleted) the row the other loader has not read
        assert await conn.fetchval("SELECT count(*) FROM agent_journal") == 0
        assert await conn.fetchval("SELECT pruned_below FROM agent_journal_state") > 0
        snap = await _same(other, conn)
        assert {a.id: a for a in snap.agents}[made[0].agent.id].caller_id_name == "Pruned Desk"
        # the leader itself goes on incrementally
        await in_tx(pool, agents.update_agent, cfg, made[1].agent.id,
                    AgentUpdate(caller_id="Next Desk"), "t")
        before = leader.changelog
        snap = await leader.load(conn, prune=True)
        assert snap == await snapshot_mod.load(conn)
        assert snap.changelog is before
        assert before.between(snap.generation - 1, snap.generation) == {made[1].agent.extension}


async def test_many_changes_and_swapped_extensions_equal_a_full_read(
        pool: asyncpg.Pool, cfg: Config) -> None:
    made = await _agents(pool, cfg, 6, "c")
    loader = snapshot_mod.SnapshotLoader()
    async with pool.acquire() as conn:
        first = await _same(loader, conn)
        a, b = made[0].agent, made[1].agent
        assert a.extension is not None and b.extension is not None
        # two agents swap numbers in one transaction (through a free one)
        async with conn.transaction():
            await conn.execute("UPDATE users SET extension = NULL WHERE id = $1", a.id)
            await conn.execute("UPDATE users SET extension = $2 WHERE id = $1", b.id, a.extension)
            await conn.execute("UPDATE users SET extension = $2 WHERE id = $1", a.id, b.extension)
        snap = await _same(loader, conn)
        assert snapshot_mod.touched_between(first, snap) == {a.extension, b.extension}
        assert snap.extensions()[a.extension].id == b.id
        # more changed agents than are moved one by one (here: 2): one sort
        loader.IN_PLACE_MAX = 2
        await conn.execute("UPDATE users SET caller_id_name = 'Bulk ' || id WHERE is_agent")
        await conn.execute("UPDATE users SET active = false WHERE id = $1", made[2].agent.id)
        snap2 = await _same(loader, conn)
        assert snapshot_mod.touched_between(snap, snap2) == set(snap.extensions())
        assert len(snap2.agents) == len(snap.agents) - 1
        assert all(a.caller_id_name.startswith("Bulk ") for a in snap2.agents)


def test_change_log_knows_only_what_it_kept() -> None:
    log = snapshot_mod.ChangeLog()
    log.add(1, None)
    log.add(2, frozenset({101}))
    log.add(3, frozenset({102, 103}))
    assert log.between(2, 3) == {102, 103}
    assert log.between(1, 3) == {101, 102, 103}
    assert log.between(0, 3) is None      # a full read in between
    assert log.between(3, 3) == set()
    for g in range(4, 4 + snapshot_mod.ChangeLog.MAX_LOADS):
        log.add(g, frozenset({g}))
    assert log.between(2, 10) is None     # forgotten
    assert log.between(10, 12) == {11, 12}
