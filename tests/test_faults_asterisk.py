"""Fault: Asterisk is SIGKILLed in the middle of an apply, while a burst of creates is
being accepted, and then started again.

Nothing accepted may be lost: every change ends up applied (applied_version ==
version), every agent's endpoint is loaded (AMI), the files on disk were whole at the
moment of the crash and are whole and exact afterwards (no temp file left), and the
agents register with SIPp.

The kill is placed deterministically: the applier's AMI client SIGKILLs Asterisk
(sipprov.pbx.kill) right after it has sent the res_pjsip reload (the files are written,
Asterisk is reading them), or in the middle of the verification that follows it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sipprov import pbx as pbx_mod
from sipprov.agents import extensions
from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate, QueueAssignment, QueueCreate
from sipprov.apply import render as render_mod
from sipprov.apply import snapshot as snapshot_mod
from sipprov.apply.ami import AmiClient
from sipprov.apply.applier import Applier
from sipprov.apply.snapshot import Snapshot
from sipprov.config import Config
from sipprov.db import database
from sipprov.db.sql import config_state
from sipprov.db.transaction import run
from sipprov.directory import queues
from sipprov.pbx import sipp
from tests.faults.expect import assert_files_mean, read_back
from tests.faults.pbxutil import (
    HOST,
    assert_disk_matches_database,
    clean_asterisk,
    config_for,
    endpoints,
    ensure_running,
    stray_files,
    wait_all_applied,
)

pytestmark = pytest.mark.pbx

BURST = 240
APPLY_TIMEOUT = 90.0


class Crash:
    """Where and whether to kill Asterisk; what the disk held at that moment."""

    def __init__(self, cfg: Config, at: str) -> None:
        self.cfg = cfg
        self.at = at  # "reload" or "verify"
        self.armed = False
        self.killed = asyncio.Event()
        self.files_at_kill: dict[str, bytes] = {}
        self.stray_at_kill: list[str] = []

    async def kill(self) -> None:
        self.armed = False
        directory = Path(self.cfg.generated_dir)
        await asyncio.to_thread(pbx_mod.kill, self.cfg)
        self.files_at_kill = {n: (directory / n).read_bytes() for n in render_mod.FILES}
        self.stray_at_kill = stray_files(directory)
        self.killed.set()


def crashing_ami(crash: Crash) -> Any:
    class CrashingAmi(AmiClient):
        async def reload(self, module: str, timeout: float | None = None) -> None:
            if crash.armed and crash.at == "reload" and module == "res_pjsip.so":
                sent = asyncio.ensure_future(AmiClient.reload(self, module, timeout))
                await asyncio.sleep(0.005)  # on the wire: Asterisk is reloading
                await crash.kill()
                await sent  # the answer never comes: AmiError
            await AmiClient.reload(self, module, timeout)

        async def pjsip_endpoints(self) -> set[str]:
            if crash.armed and crash.at == "verify":
                await crash.kill()
            return await AmiClient.pjsip_endpoints(self)

        async def pjsip_endpoint_exists(self, name: str) -> bool:
            if crash.armed and crash.at == "verify":
                await crash.kill()
            return await AmiClient.pjsip_endpoint_exists(self, name)

    return lambda: CrashingAmi(crash.cfg.asterisk)


@pytest.fixture
async def asterisk_up(pbx, pbx_config: Config) -> AsyncIterator[None]:
    yield
    # whatever happened, the shared PBX is running and clean for the next test
    await ensure_running(pbx_config)
    await clean_asterisk(pbx_config)


def _subset(snap: Snapshot, extensions_present: set[int]) -> Snapshot:
    """The snapshot restricted to some agents (and the queue members among them)."""
    agents_in = [a for a in snap.agents if a.extension in extensions_present]
    queues_in = [replace(q, members=tuple(m for m in q.members
                                          if m.extension in extensions_present))
                 for q in snap.queues]
    return Snapshot(snap.version, agents_in, queues_in)


@pytest.mark.parametrize("at", ["reload", "verify"])
async def test_asterisk_killed_mid_apply_during_a_burst(
        at: str, asterisk_up: None, pbx_config: Config, db_dsn: str) -> None:
    cfg = config_for(pbx_config, db_dsn)
    pool = await database.create_pool(db_dsn, cfg.database)
    crash = Crash(cfg, at)
    applier = Applier(pool, cfg, ami_factory=crashing_ami(crash))
    try:
        async with pool.acquire() as conn:
            await extensions.sync_pool(conn, cfg.extensions)
        await run(pool, queues.create_queue, cfg, QueueCreate(name="support", number=999), "test")
        await applier.start()
        await wait_all_applied(pool, 30)

        async def create(i: int) -> agents.AgentCreated:
            # role "extension": SIP only, no web password to hash (keeps the burst fast)
            data = AgentCreate(first_name="Crash", last_name="Test", login=f"crash{i}",
                               email=f"crash{i}@example.com", role="extension",
                               priority=1 + i % 5, queues=[QueueAssignment(name="support")])
            return await run(pool, agents.create_agent, cfg, data, "test")

        crash.armed = True
        first = await asyncio.gather(*(create(i) for i in range(BURST // 2)))
        # the first apply of the burst crashes Asterisk; creates are still accepted
        await asyncio.wait_for(crash.killed.wait(), 30)
        second = await asyncio.gather(*(create(i) for i in range(BURST // 2, BURST)))
        created = first + second
        assert len({c.agent.extension for c in created}) == BURST

        # Asterisk is away: everything accepted is pending, nothing is marked applied
        state = await config_state.read(pool)
        assert state.applied_version < state.version
        await asyncio.sleep(0.5)
        st = applier.status()
        assert not st["ami_connected"] and st["pending"] > 0 and st["last_error"], st

        # The files on disk at the moment of the crash were whole: each is a complete
        # render of the agents it names (atomic rename, never a half-written file)
        assert crash.stray_at_kill == []
        async with pool.acquire() as conn:
            now = await snapshot_mod.load(conn)
        present = {int(s.name) for s in
                   read_back("pjsip.conf", crash.files_at_kill["pjsip.conf"]).sections}
        assert 0 < len(present) <= BURST // 2, "the crash was not in the middle of the burst"
        assert_files_mean(crash.files_at_kill, _subset(now, present), cfg)

        # Asterisk comes back; the applier reconnects by itself and applies the rest
        await ensure_running(cfg)
        final = await wait_all_applied(pool, APPLY_TIMEOUT)
        assert final.last_error is None
        await applier.wait_applied(final.version, 10)
        st = applier.status()
        assert st["pending"] == 0 and st["ami_connected"], st

        snap = await assert_disk_matches_database(cfg, pool)
        assert len(snap.agents) == BURST
        loaded = await endpoints(cfg)
        assert {str(c.agent.extension) for c in created} <= loaded
        client = AmiClient(cfg.asterisk)
        await client.connect()
        try:
            members = (await client.queue_status("support"))["support"]
        finally:
            await client.close()
        assert {(m.interface, m.penalty) for m in members} == {
            (f"PJSIP/{c.agent.extension}", c.agent.priority - 1) for c in created}

        for c in random.Random(at).sample(created, 4):
            assert c.sip is not None
            reg = await sipp.register(HOST, cfg.pbx.sip_port, c.sip.username, c.sip.password,
                                      realm=c.sip.realm)
            assert reg.ok and reg.status == 200, reg
    finally:
        await applier.stop()
        await pool.close()
