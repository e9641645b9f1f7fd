"""The applier's logic against a real PostgreSQL and a fake Asterisk (no PBX needed):
coalescing, nothing lost while AMI is away, rollback of a rejected reload, recorded
errors, start-up behaviour, draining, LISTEN from another connection and reconnects,
and the CLI glue. The fake loads the generated files with the test parser of Asterisk's
syntax on every reload, so "what Asterisk holds" follows the files like the real one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from sipprov.agents import extensions
from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate, QueueAssignment, QueueCreate
from sipprov.apply import render as render_mod
from sipprov.apply.ami import AmiError, QueueMember, ReloadFailed
from sipprov.apply.applier import Applier
from sipprov.cli import renderops as render_cli
from sipprov.config import Config
from sipprov.db.sql import config_state
from sipprov.db.transaction import run
from sipprov.directory import queues as queues_mod
from tests.asterisk_conf import parse
from tests.service_helpers import wait_first_apply


class FakeAsterisk:
    """What a PBX holds, loaded from the generated files on reload."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.up = True
        self.reject: set[str] = set()  # modules whose reload answers Error
        # modules whose reload answers Error with this message (e.g. a reload in progress)
        self.answer_error: dict[str, str] = {}
        self.drop_endpoints: set[str] = set()  # loaded "with errors": silently missing
        self.reload_delay = 0.0
        self.reloads: list[str] = []
        self.endpoints: set[str] = set()
        self.queues: dict[str, list[tuple[str, int, str]]] = {}

    def load(self, module: str) -> None:
        if module == "res_pjsip.so":
            conf = parse((self.directory / "pjsip.conf").read_text())
            self.endpoints = {s.name for s in conf.sections
                              if s.get("type") == ["endpoint"]} - self.drop_endpoints
        elif module == "app_queue.so":
            conf = parse((self.directory / "queues.conf").read_text())
            self.queues = {}
            for s in conf.sections:
                members = []
                for m in s.get("member"):
                    iface, penalty, name = m.split(",", 2)
                    members.append((iface, int(penalty), name))
                self.queues[s.name] = members


class FakeAmi:
    def __init__(self, pbx: FakeAsterisk) -> None:
        self.pbx = pbx
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected and self.pbx.up

    async def connect(self) -> None:
        if not self.pbx.up:
            raise AmiError("AMI at 127.0.0.1:1: cannot connect: Connection refused")
        self._connected = True

    async def close(self) -> None:
        self._connected = False

    async def command(self, cmd: str) -> str:
        self._check("Command")
        return "Asterisk has fully booted."

    def _check(self, what: str) -> None:
        if not self.connected:
            self._connected = False
            raise AmiError(f"AMI {what}: not connected")

    async def reload(self, module: str, timeout: float | None = None) -> None:
        self._check("Reload")
        if self.pbx.reload_delay:
            await asyncio.sleep(self.pbx.reload_delay)
        if module in self.pbx.answer_error:
            raise ReloadFailed(module, self.pbx.answer_error[module])
        if module in self.pbx.reject:
            raise ReloadFailed(module, "An unknown error occurred")
        self.pbx.reloads.append(module)
        self.pbx.load(module)

    async def pjsip_endpoint_exists(self, name: str) -> bool:
        self._check("PJSIPShowEndpoint")
        return name in self.pbx.endpoints

    async def pjsip_endpoints(self) -> set[str]:
        self._check("PJSIPShowEndpoints")
        return set(self.pbx.endpoints)

    async def pjsip_contacts(self) -> list[dict[str, str]]:
        # no phone registers against the fake: nothing to end on rotation or delete
        self._check("PJSIPShowContacts")
        return []

    async def astdb_contacts(self, aor: str) -> list[str]:
        self._check("Command")
        return []

    async def queue_status(self, queue: str | None = None) -> dict[str, list[QueueMember]]:
        self._check("QueueStatus")
        out = {}
        for name, members in self.pbx.queues.items():
            if queue is None or queue == name:
                out[name] = [QueueMember(name, i, n, p, "static") for i, p, n in members]
        return out


@pytest.fixture
def fake_pbx(cfg: Config) -> FakeAsterisk:
    return FakeAsterisk(Path(cfg.generated_dir))


@pytest.fixture
async def applier_cfg(cfg: Config, pool: asyncpg.Pool) -> Config:
    cfg.applier = dataclasses.replace(cfg.applier, debounce_ms=50, backoff_min_s=0.05,
                                      backoff_max_s=0.2)
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)
    return cfg


@pytest.fixture
async def applier(applier_cfg: Config, pool: asyncpg.Pool,
                  fake_pbx: FakeAsterisk) -> AsyncIterator[Applier]:
    a = Applier(pool, applier_cfg, lambda: FakeAmi(fake_pbx))  # type: ignore[arg-type,return-value]
    await a.start()
    await _settled(a)
    yield a
    await a.stop()


async def _settled(a: Applier, timeout: float = 10) -> None:
    """Wait for the first apply attempt to be over."""
    await wait_first_apply(a, timeout, attempted=True)


async def _until(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def _sip_only(n: int, **kw: Any) -> AgentCreate:
    # role "extension": a SIP account and no web password, so no slow hashing here
    letters = "".join("abcdefghij"[int(d)] for d in str(n))
    return AgentCreate(first_name="Desk", last_name=f"Phone{letters}", role="extension",
                       email=f"phone{n}@example.com", login=f"phone{n}", **kw)


async def _create(pool: asyncpg.Pool, cfg: Config, n: int, **kw: Any) -> agents.AgentCreated:
    return await run(pool, agents.create_agent, cfg, _sip_only(n, **kw), "test")


# ----------------------------------------------------------------------------- tests


async def test_first_apply_writes_reloads_and_records(applier: Applier, fake_pbx: FakeAsterisk,
                                                      applier_cfg: Config, pool: asyncpg.Pool) -> None:
    # empty database, no files yet: all three written, reloaded, verified, recorded
    assert sorted(fake_pbx.reloads) == sorted(render_mod.MODULE_FOR_FILE.values())
    st = applier.status()
    assert st["applies"] == 1 and st["pending"] == 0 and st["ami_connected"]
    for name in render_mod.FILES:
        path = Path(applier_cfg.generated_dir) / name
        assert path.stat().st_mode & 0o777 == 0o640
        assert (path.parent / (name + ".prev")).read_bytes() == path.read_bytes()
    state = await config_state.read(pool)
    assert state.applied_at is not None and state.last_apply_ms is not None


async def test_change_reloads_only_its_modules(applier: Applier, fake_pbx: FakeAsterisk,
                                               applier_cfg: Config, pool: asyncpg.Pool) -> None:
    fake_pbx.reloads.clear()
    created = await _create(pool, applier_cfg, 1)
    assert await applier.wait_applied(created.config_version, 10)
    # a new agent: endpoint + dialplan; no queue changed
    assert fake_pbx.reloads == ["res_pjsip.so", "pbx_config.so"]
    assert str(created.agent.extension) in fake_pbx.endpoints
    fake_pbx.reloads.clear()
    _, version = await run(pool, queues_mod.create_queue, applier_cfg, QueueCreate(name="support"), "t")
    assert await applier.wait_applied(version, 10)
    assert fake_pbx.reloads == ["app_queue.so"]
    assert fake_pbx.queues == {"support": []}


async def test_burst_is_coalesced(applier: Applier, fake_pbx: FakeAsterisk,
                                  applier_cfg: Config, pool: asyncpg.Pool) -> None:
    before = applier.status()
    results = await asyncio.gather(*(_create(pool, applier_cfg, i) for i in range(300)))
    last = max(r.config_version for r in results if r.config_version)
    assert await applier.wait_applied(last, 30)
    st = applier.status()
    applies = st["applies"] - before["applies"]
    assert 1 <= applies <= 5, st
    assert st["reloads"]["res_pjsip.so"] - before["reloads"]["res_pjsip.so"] == applies
    assert {str(r.agent.extension) for r in results} <= fake_pbx.endpoints


async def test_ami_down_keeps_changes_pending(applier: Applier, fake_pbx: FakeAsterisk,
                                              applier_cfg: Config, pool: asyncpg.Pool) -> None:
    fake_pbx.up = False
    created = [await _create(pool, applier_cfg, i) for i in range(5)]
    last = created[-1].config_version
    await _until(lambda: applier.status()["last_error"] is not None)
    assert not await applier.wait_applied(last, 0.5)
    st = applier.status()
    assert st["pending"] >= 1 and not st["ami_connected"]
    assert "Connection refused" in st["last_error"]
    state = await config_state.read(pool)
    assert state.applied_version < last and "Connection refused" in state.last_error
    # the files are already there for an Asterisk that boots now
    text = (Path(applier_cfg.generated_dir) / "pjsip.conf").read_text()
    assert all(f"[{c.agent.extension}]" in text for c in created)

    fake_pbx.up = True
    assert await applier.wait_applied(last, 10)
    assert {str(c.agent.extension) for c in created} <= fake_pbx.endpoints
    st = applier.status()
    assert st["pending"] == 0 and st["last_error"] is None and st["ami_connected"]
    state = await config_state.read(pool)
    assert state.applied_version == last and state.last_error is None


async def test_rejected_reload_restores_the_good_files(applier: Applier, fake_pbx: FakeAsterisk,
                                                       applier_cfg: Config, pool: asyncpg.Pool) -> None:
    good = await _create(pool, applier_cfg, 1)
    assert await applier.wait_applied(good.config_version, 10)
    pj = Path(applier_cfg.generated_dir) / "pjsip.conf"
    good_bytes = pj.read_bytes()

    fake_pbx.reject = {"res_pjsip.so"}
    bad = await _create(pool, applier_cfg, 2)
    await _until(lambda: applier.status()["last_error"] is not None)
    st = applier.status()
    assert "rejected the reload of res_pjsip.so" in st["last_error"], st
    assert applier.applied_version < bad.config_version
    assert pj.read_bytes() == good_bytes  # rolled back
    state = await config_state.read(pool)
    assert "rejected" in state.last_error and state.applied_version < bad.config_version

    # fixed on the Asterisk side: the next change applies everything pending
    fake_pbx.reject = set()
    third = await _create(pool, applier_cfg, 3)
    assert await applier.wait_applied(third.config_version, 10)
    assert {str(bad.agent.extension), str(third.agent.extension)} <= fake_pbx.endpoints
    assert applier.status()["last_error"] is None


async def test_failed_verification_is_recorded_not_applied(applier: Applier, fake_pbx: FakeAsterisk,
                                                           applier_cfg: Config,
                                                           pool: asyncpg.Pool) -> None:
    fake_pbx.drop_endpoints = {"100"}
    created = await _create(pool, applier_cfg, 1)
    assert created.agent.extension == 100
    await _until(lambda: applier.status()["last_error"] is not None)
    assert not await applier.wait_applied(created.config_version, 0.2)
    assert "1 endpoint(s) missing in Asterisk (e.g. 100)" in applier.status()["last_error"]
    # Asterisk loads it on a later try (e.g. after the next change)
    fake_pbx.drop_endpoints = set()
    second = await _create(pool, applier_cfg, 2)
    assert await applier.wait_applied(second.config_version, 10)


async def test_queue_members_are_verified(applier: Applier, fake_pbx: FakeAsterisk,
                                          applier_cfg: Config, pool: asyncpg.Pool) -> None:
    await run(pool, queues_mod.create_queue, applier_cfg, QueueCreate(name="support"), "t")
    created = await _create(pool, applier_cfg, 1, priority=3,
                            queues=[QueueAssignment(name="support")])
    assert await applier.wait_applied(created.config_version, 10)
    assert fake_pbx.queues["support"] == [("PJSIP/100", 2, created.agent.caller_id)]


async def test_a_value_the_render_refuses_quarantines_only_its_row(
        applier: Applier, fake_pbx: FakeAsterisk, applier_cfg: Config, pool: asyncpg.Pool) -> None:
    await run(pool, queues_mod.create_queue, applier_cfg, QueueCreate(name="support"), "t")
    bad = await _create(pool, applier_cfg, 1, queues=[QueueAssignment(name="support")])
    good = await _create(pool, applier_cfg, 2, queues=[QueueAssignment(name="support")])
    assert await applier.wait_applied(good.config_version, 10)
    # values that slipped past validation (written behind the service's back)
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("UPDATE users SET caller_id_name = $1 WHERE id = $2",
                               "x\n[evil]", bad.agent.id)
            general = await conn.fetchval(
                "INSERT INTO queues (name, kind, strategy) VALUES ($1, 'voice', 'ringall')"
                " RETURNING id", "general")
            await config_state.bump(conn)
    third = await _create(pool, applier_cfg, 3, queues=[QueueAssignment(name="support")])
    # everything else is applied
    assert await applier.wait_applied(third.config_version, 10), applier.status()
    st = applier.status()
    assert st["last_error"] is None and st["pending"] == 0
    text = (Path(applier_cfg.generated_dir) / "pjsip.conf").read_text()
    assert "evil" not in text and f"[{bad.agent.extension}]" not in text
    assert {str(good.agent.extension), str(third.agent.extension)} <= fake_pbx.endpoints
    assert str(bad.agent.extension) not in fake_pbx.endpoints
    assert [m[0] for m in fake_pbx.queues["support"]] == [
        f"PJSIP/{good.agent.extension}", f"PJSIP/{third.agent.extension}"]
    assert "general" not in fake_pbx.queues
    # the reason is reported (naming the row and the rule, never the value) and recorded
    held = {(q["kind"], q["id"]): q["reason"] for q in st["quarantined"]}
    assert sorted(held) == [("agent", bad.agent.id), ("queue", general)], held
    reason = held[("agent", bad.agent.id)]
    assert f"agent {bad.agent.id}" in reason and "line break" in reason and "evil" not in reason
    queue_reason = held[("queue", general)]
    assert "reserved" in queue_reason
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT kind, id, reason FROM apply_quarantine ORDER BY kind")
        since = await conn.fetchval("SELECT since FROM apply_quarantine WHERE kind = 'agent'")
    assert [(r["kind"], r["reason"]) for r in rows] == [("agent", reason), ("queue", queue_reason)]
    assert (await agents.get_agent(pool, bad.agent.id)).quarantine["reason"] == reason
    assert (await agents.get_agent(pool, good.agent.id)).quarantine is None

    # another change leaves the quarantine as it was (same row: same reason, same since)
    fourth = await _create(pool, applier_cfg, 4)
    assert await applier.wait_applied(fourth.config_version, 10)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT since FROM apply_quarantine WHERE kind = 'agent'") == since

    # the data is fixed: released by the next apply, back in Asterisk
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("UPDATE users SET caller_id_name = 'Fixed Name' WHERE id = $1",
                               bad.agent.id)
            await conn.execute("DELETE FROM queues WHERE name = 'general'")
            version = await config_state.bump(conn)
    assert await applier.wait_applied(version, 10)
    assert applier.status()["quarantined"] == []
    assert str(bad.agent.extension) in fake_pbx.endpoints
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM apply_quarantine") == 0
    assert (await agents.get_agent(pool, bad.agent.id)).quarantine is None


async def test_notify_from_another_connection_wakes_it(applier_cfg: Config, pool: asyncpg.Pool,
                                                       fake_pbx: FakeAsterisk, db_dsn: str) -> None:
    a = Applier(pool, applier_cfg, lambda: FakeAmi(fake_pbx))  # type: ignore[arg-type,return-value]
    # The listener's own version check (the safety net for a missed NOTIFY) runs only
    # once an hour here: only the NOTIFY can wake the applier within the test.
    a.listener.check_s = 3600.0
    await a.start()
    try:
        await _settled(a)
        await _until(lambda: a.status()["listening"])
        conn = await asyncpg.connect(db_dsn)
        try:
            async with conn.transaction():
                version = await config_state.bump(conn)
        finally:
            await conn.close()
        t0 = time.monotonic()
        assert await a.wait_applied(version, 3)
        assert time.monotonic() - t0 < 3
    finally:
        await a.stop()


async def test_busy_reload_is_retried_not_rolled_back(applier: Applier, fake_pbx: FakeAsterisk,
                                                      applier_cfg: Config, pool: asyncpg.Pool) -> None:
    pj = Path(applier_cfg.generated_dir) / "pjsip.conf"
    good = pj.read_bytes()
    # Asterisk answers "A reload is in progress" (an operator's `core reload`, say)
    fake_pbx.answer_error = {"res_pjsip.so": "A reload is in progress"}
    created = await _create(pool, applier_cfg, 1)
    await _until(lambda: "in progress" in (applier.status()["last_error"] or ""))
    assert "rejected" not in applier.status()["last_error"]
    # not rolled back: the new agent stays written, the good copy is the old one
    assert f"[{created.agent.extension}]" in pj.read_text()
    assert (pj.parent / "pjsip.conf.prev").read_bytes() == good
    assert not await applier.wait_applied(created.config_version, 0.3)
    # the other reload ends: applied by the retries alone (backoff), no new change
    fake_pbx.answer_error = {}
    assert await applier.wait_applied(created.config_version, 5)
    assert str(created.agent.extension) in fake_pbx.endpoints


async def test_listen_reconnects(applier: Applier, db_dsn: str, pool: asyncpg.Pool) -> None:
    admin = await asyncpg.connect(db_dsn)
    try:
        assert applier.status()["listening"]
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()")
        assert killed >= 1
        deadline = time.monotonic() + 15
        # the listener notices at its next check and listens again
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            listeners = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'")
            if listeners and applier.status()["listening"]:
                break
        async with admin.transaction():
            version = await config_state.bump(admin)
        assert await applier.wait_applied(version, 10)
    finally:
        await admin.close()


async def test_start_applies_what_a_previous_run_left_pending(applier_cfg: Config, pool: asyncpg.Pool,
                                                              fake_pbx: FakeAsterisk) -> None:
    # a change committed while no applier ran
    created = await _create(pool, applier_cfg, 1)
    a = Applier(pool, applier_cfg, lambda: FakeAmi(fake_pbx))  # type: ignore[arg-type,return-value]
    await a.start()
    try:
        assert await a.wait_applied(created.config_version, 10)
        assert str(created.agent.extension) in fake_pbx.endpoints
    finally:
        await a.stop()
    # restart with nothing pending and identical files: no reload at all
    fake_pbx.reloads.clear()
    b = Applier(pool, applier_cfg, lambda: FakeAmi(fake_pbx))  # type: ignore[arg-type,return-value]
    await b.start()
    try:
        await _settled(b)
        assert fake_pbx.reloads == []
        assert b.status()["applied_version"] == created.config_version
    finally:
        await b.stop()
    # files edited by hand while stopped: rewritten and reloaded at start
    (Path(applier_cfg.generated_dir) / "extensions.conf").write_text("; edited\n")
    c = Applier(pool, applier_cfg, lambda: FakeAmi(fake_pbx))  # type: ignore[arg-type,return-value]
    await c.start()
    try:
        await _settled(c)
        assert fake_pbx.reloads == ["pbx_config.so"]
        assert "edited" not in (Path(applier_cfg.generated_dir) / "extensions.conf").read_text()
    finally:
        await c.stop()


async def test_stop_drains_the_apply_in_flight(applier: Applier, fake_pbx: FakeAsterisk,
                                               applier_cfg: Config, pool: asyncpg.Pool) -> None:
    fake_pbx.reload_delay = 0.5
    created = await _create(pool, applier_cfg, 1)
    deadline = time.monotonic() + 5
    while not applier.status()["busy"] and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert applier.status()["busy"]
    await applier.stop()
    state = await config_state.read(pool)
    assert state.applied_version == created.config_version


async def test_wait_applied_times_out(applier: Applier) -> None:
    t0 = time.monotonic()
    assert not await applier.wait_applied(10**9, 0.2)
    assert time.monotonic() - t0 < 1.0
    assert await applier.wait_applied(0, 0.1)


async def test_apply_now_forces_every_module(applier_cfg: Config, pool: asyncpg.Pool,
                                             fake_pbx: FakeAsterisk) -> None:
    a = Applier(pool, applier_cfg, lambda: FakeAmi(fake_pbx))  # type: ignore[arg-type,return-value]
    out = await a.apply_now(5)
    assert out["ok"] and out["error"] is None
    assert sorted(out["reloaded"]) == sorted(render_mod.MODULE_FOR_FILE.values())
    out = await a.apply_now(5)  # again: nothing changed, still reloaded and verified
    assert out["ok"] and out["changed"] == [] and len(out["reloaded"]) == 3
    fake_pbx.up = False
    out = await a.apply_now(0.5)
    assert not out["ok"] and "Connection refused" in out["error"]
    await a.stop()


async def test_render_cli(applier_cfg: Config, pool: asyncpg.Pool, tmp_path: Path) -> None:
    created = await _create(pool, applier_cfg, 1)
    out = tmp_path / "out"
    assert sorted(await render_cli.render_to_dir(applier_cfg, out)) == sorted(render_mod.FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(render_mod.FILES)
    assert await render_cli.render_to_dir(applier_cfg, out) == []  # unchanged: not rewritten
    diff = await render_cli.render_diff(applier_cfg)  # nothing applied yet: all new
    assert f"+[{created.agent.extension}]" in diff
    assert "password_digest=MD5:<redacted " in diff
    async with pool.acquire() as conn:
        md5 = await conn.fetchval("SELECT sip_ha1_md5 FROM users WHERE id = $1", created.agent.id)
    assert md5 not in diff
    # after writing the same render to the live dir, there is no difference
    await render_cli.render_to_dir(applier_cfg, applier_cfg.generated_dir)
    assert await render_cli.render_diff(applier_cfg) == ""


@pytest.mark.parametrize("files_era", [False, True])
async def test_realtime_start_reloads_res_pjsip_only_to_drop_file_agents(
        applier_cfg: Config, pool: asyncpg.Pool, fake_pbx: FakeAsterisk, files_era: bool) -> None:
    """A (re)start of the service on the realtime backend must not reload res_pjsip for
    nothing: that reload loads every realtime endpoint again (minutes at 50,000, other
    REGISTERs stalled). It must when pjsip.conf last held agents (a switch from files)."""
    applier_cfg.asterisk = dataclasses.replace(applier_cfg.asterisk, backend="realtime")
    folder = Path(applier_cfg.generated_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if files_era:
        (folder / "pjsip.conf.prev").write_bytes(b"[100]\ntype=endpoint\n")
    a = Applier(pool, applier_cfg, lambda: FakeAmi(fake_pbx))  # type: ignore[arg-type,return-value]
    await a.start()
    try:
        await _settled(a)
        assert a.status()["applies"] == 1, a.status()
        assert ("res_pjsip.so" in fake_pbx.reloads) is files_era
        assert {"pbx_config.so", "app_queue.so"} <= set(fake_pbx.reloads)
    finally:
        await a.stop()
