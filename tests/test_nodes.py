"""Several Asterisk nodes driven by one sipprov ([[asterisk.nodes]], docs/scale-out.md):
two real Asterisk instances from the development PBX root, on both backends.

Every node gets every change; a node that is down does not hold the others back and
gets what it missed when it returns; rotation ends registrations on every node; an
agent or queue with a site exists only on that site's nodes.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from sipprov import pbx as pbx_mod
from sipprov.agents import extensions
from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate, AgentUpdate, QueueAssignment, QueueCreate
from sipprov.apply.ami import AmiClient
from sipprov.apply.applier import Applier
from sipprov.apply.backends.files import FilesBackend
from sipprov.apply.phones import PhoneTracker
from sipprov.config import Config, NodeConfig
from sipprov.db import database
from sipprov.db.sql import nodes as nodes_sql
from sipprov.db.transaction import run
from sipprov.directory import queues
from sipprov.pbx.sipclient import SipClient
from tests.faults.service import SIPPROV
from tests.pbx_fixtures import clean_asterisk, point_realtime_at

pytestmark = pytest.mark.pbx

HOST = "127.0.0.1"
APPLY_TIMEOUT = 60.0
BACKENDS = pytest.mark.parametrize("backend", ["realtime", "files"])


@dataclass
class Nodes:
    cfg: Config
    pool: asyncpg.Pool
    applier: Applier
    phones: PhoneTracker
    # the two instances' own configs (pbx_config, pbx2), in node order
    pbx: list[Config]
    db_dsn: str
    sites: tuple[str | None, str | None]

    def node_status(self, i: int) -> dict:
        return self.applier.status()["nodes"][i]

    async def ami(self, i: int) -> AmiClient:
        client = AmiClient(self.pbx[i].asterisk)
        await client.connect()
        return client

    async def has_endpoint(self, i: int, ext: int) -> bool:
        async with AmiClient(self.pbx[i].asterisk) as client:
            return await client.pjsip_endpoint_exists(str(ext))

    async def contacts(self, i: int, aor: str) -> list[dict[str, str]]:
        async with AmiClient(self.pbx[i].asterisk) as client:
            return [c for c in await client.pjsip_contacts() if c.get("Aor") == aor]

    async def restart(self, i: int) -> None:
        """Start a stopped node again, reading this test's database as before."""
        node_cfg = copy.deepcopy(self.pbx[i])
        node_cfg.database = dataclasses.replace(node_cfg.database, dsn=self.db_dsn)
        await asyncio.to_thread(pbx_mod.start, node_cfg)
        await point_realtime_at(self.pbx[i], self.db_dsn, self.sites[i])


    def toml(self, path: Path) -> Path:
        """This setup as a configuration file (for the CLI)."""
        lines = ["[database]", f"dsn = {json.dumps(self.db_dsn)}", "pool_min = 1",
                 "pool_max = 2", "[asterisk]", f'backend = "{self.cfg.asterisk.backend}"',
                 "ami_timeout_s = 2.0"]
        for n in self.cfg.asterisk.nodes:
            lines += ["[[asterisk.nodes]]", f'name = "{n.name}"', f"ami_port = {n.ami_port}",
                      f'sip_server = "{n.sip_server}"',
                      f"config_dir = {json.dumps(str(n.config_dir))}"]
            if n.site:
                lines.append(f'site = "{n.site}"')
        path.write_text("\n".join(lines) + "\n")
        return path

    async def cli_status(self, conf: Path) -> tuple[int, dict, str]:
        """`sipprov status --json` and `sipprov status`: exit code, JSON, text."""
        base = [SIPPROV, "-c", str(conf), "status"]
        js = await asyncio.to_thread(subprocess.run, [*base, "--json"], capture_output=True,
                                     text=True, timeout=60)
        text = await asyncio.to_thread(subprocess.run, base, capture_output=True, text=True,
                                       timeout=60)
        assert js.returncode == text.returncode, (js, text)
        assert js.stderr == "" and text.stderr == "", (js.stderr, text.stderr)
        return js.returncode, json.loads(js.stdout), text.stdout


NodesFactory = Callable[..., Awaitable[Nodes]]


async def _until(what: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float,
                 message: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(message())


@pytest.fixture
async def make_nodes(pbx, pbx2: Config, pbx_config: Config,
                     db_dsn: str) -> AsyncIterator[NodesFactory]:
    """An applier driving both instances as [[asterisk.nodes]] on this test's database."""
    made: list[Nodes] = []
    instances = [pbx_config, pbx2]

    async def make(backend: str = "realtime",
                   sites: tuple[str | None, str | None] = (None, None)) -> Nodes:
        for inst, site in zip(instances, sites, strict=True):
            await point_realtime_at(inst, db_dsn, site)
        cfg = copy.deepcopy(pbx_config)
        cfg.database = dataclasses.replace(cfg.database, dsn=db_dsn, pool_min=1, pool_max=10)
        cfg.asterisk = dataclasses.replace(
            cfg.asterisk, backend=backend, ami_timeout_s=5.0,
            nodes=[NodeConfig(name=inst.pbx.instance, ami_port=inst.asterisk.ami_port,
                              sip_server=inst.asterisk.sip_server, site=site or "",
                              config_dir=inst.generated_dir)
                   for inst, site in zip(instances, sites, strict=True)])
        cfg.applier = dataclasses.replace(cfg.applier, debounce_ms=20,
                                          backoff_min_s=0.2, backoff_max_s=1.0)
        pool = await database.create_pool(db_dsn, cfg.database)
        async with pool.acquire() as conn:
            await extensions.sync_pool(conn, cfg.extensions)
        applier = Applier(pool, cfg)
        phones = PhoneTracker(cfg)
        for b in applier.backends():
            assert isinstance(b, FilesBackend)
            b.on_registrations_ended = phones.forget
        env = Nodes(cfg, pool, applier, phones, instances, db_dsn, sites)
        made.append(env)
        await applier.start()
        await phones.start()
        await _until(lambda: applier.status()["applies"] >= 1 and not applier.status()["busy"],
                     30, lambda: f"no first apply: {applier.status()}")
        return env

    yield make
    for env in made:
        await env.phones.stop()
        await env.applier.stop()
        await env.pool.close()
    for inst in instances:
        if not pbx_mod.status(inst).running:  # a test stopped it and failed
            node_cfg = copy.deepcopy(inst)
            await asyncio.to_thread(pbx_mod.start, node_cfg)
        await clean_asterisk(inst)
        await point_realtime_at(inst, inst.database.dsn)


def _letters(n: int) -> str:
    return "".join("abcdefghij"[int(d)] for d in str(n))


async def _create(env: Nodes, n: int, **kw) -> agents.AgentCreated:
    body = AgentCreate(first_name="Node", last_name=f"Agent{_letters(n)}",
                       email=f"node{n}@example.com", login=f"node{n}", **kw)
    return await run(env.pool, agents.create_agent, env.cfg, body, "test")


async def _applied(env: Nodes, version: int | None, timeout: float = APPLY_TIMEOUT) -> None:
    assert version is not None
    ok = await env.applier.wait_applied(version, timeout)
    assert ok, f"version {version} not applied: {env.applier.status()}"


@BACKENDS
async def test_every_node_gets_every_agent(make_nodes: NodesFactory, backend: str) -> None:
    env = await make_nodes(backend)
    created = await _create(env, 1)
    await _applied(env, created.config_version)
    ext = created.agent.extension
    assert ext is not None
    assert await env.has_endpoint(0, ext) and await env.has_endpoint(1, ext)
    # each node's recorded state: reachable, at the version
    rows = await nodes_sql.read_all(env.pool)
    assert sorted(rows) == sorted(p.pbx.instance for p in env.pbx)
    for row in rows.values():
        assert row.reachable is True and row.last_error is None
        assert row.applied_version >= created.config_version
    for st in env.applier.status()["nodes"]:
        assert st["reachable"] is True and st["applied_version"] >= created.config_version
    # a SIP phone registers on either node
    assert created.sip is not None
    for inst in env.pbx:
        client = await SipClient.open(HOST, inst.pbx.sip_port)
        try:
            answer = await client.register(created.sip.username, created.sip.password)
            assert answer.ok, answer
            await client.register(created.sip.username, created.sip.password, expires=0)
        finally:
            client.close()
    # deleted: gone from both
    version = await run(env.pool, agents.delete_agent, env.cfg, created.agent.id, "test")
    await _applied(env, version)
    assert not await env.has_endpoint(0, ext) and not await env.has_endpoint(1, ext)


@BACKENDS
async def test_a_node_down_holds_nobody_back_and_catches_up(make_nodes: NodesFactory,
                                                           backend: str,
                                                           tmp_path: Path) -> None:
    env = await make_nodes(backend)
    conf = env.toml(tmp_path / "nodes.toml")
    names = [p.pbx.instance for p in env.pbx]
    await asyncio.to_thread(pbx_mod.stop, env.pbx[1])
    try:
        created = await _create(env, 2)
        t0 = time.monotonic()
        # ?wait=applied's rule: applied on every reachable node (node 2 is not)
        await _applied(env, created.config_version, timeout=15)
        waited = time.monotonic() - t0
        assert waited < 10, waited
        ext = created.agent.extension
        assert ext is not None and await env.has_endpoint(0, ext)
        down = env.node_status(1)
        assert down["reachable"] is False and down["last_error"]
        assert down["applied_version"] < created.config_version
        row = (await nodes_sql.read_all(env.pool))[env.pbx[1].pbx.instance]
        assert row.reachable is False and row.applied_version < created.config_version
        # another change while it is down: node 1 still follows at once
        second = await _create(env, 3)
        await _applied(env, second.config_version, timeout=15)
        assert second.agent.extension is not None
        assert await env.has_endpoint(0, second.agent.extension)
        # `sipprov status`: node 2 unreachable and behind, exit 1
        code, js, text = await env.cli_status(conf)
        assert code == 1
        assert js["config"]["applied_version"] >= second.config_version
        assert [n["name"] for n in js["nodes"]] == names
        up, gone = js["nodes"]
        assert up["reachable"] is True and up["applied_version"] >= second.config_version
        # (the session's first instance may hold other tests' registrations)
        assert isinstance(up["registered"], int) and up["last_error"] is None
        assert gone["reachable"] is False and gone["registered"] is None
        assert gone["applied_version"] < created.config_version and gone["last_error"]
        lines = text.splitlines()
        assert lines[0].startswith(f"config version {js['config']['version']}, applied ")
        assert lines[1].split()[:2] == [names[0], "reachable"]
        assert lines[2].split()[:2] == [names[1], "unreachable"] and "error:" in lines[2]
        assert "is Asterisk running there" in lines[3]  # what to do about it
    finally:
        await env.restart(1)
    # back: it gets what it missed, without a new change
    t_back = time.monotonic()
    await _until(lambda: env.node_status(1)["applied_version"] >= second.config_version,
                 30, lambda: f"node 2 did not catch up: {env.applier.status()['nodes']}")
    print(f"\n{backend}: create -> applied with node 2 down {waited:.2f} s; node 2 caught "
          f"up {time.monotonic() - t_back:.2f} s after it was back")
    assert await env.has_endpoint(1, ext) and await env.has_endpoint(1, second.agent.extension)
    assert env.node_status(1)["reachable"] is True
    assert env.node_status(1)["last_error"] is None
    code, js, text = await env.cli_status(conf)
    assert code == 0, text
    assert all(n["reachable"] and n["applied_version"] >= second.config_version
               and n["last_error"] is None for n in js["nodes"]), js


@BACKENDS
async def test_rotation_ends_registrations_on_every_node(make_nodes: NodesFactory,
                                                         backend: str) -> None:
    env = await make_nodes(backend)
    created = await _create(env, 4)
    await _applied(env, created.config_version)
    assert created.sip is not None
    clients = [await SipClient.open(HOST, inst.pbx.sip_port) for inst in env.pbx]
    try:
        for client in clients:
            assert (await client.register(created.sip.username, created.sip.password)).ok
        for i in (0, 1):
            assert await env.contacts(i, created.sip.username)
        new_sip, version = await run(env.pool, agents.rotate_sip_password, env.cfg,
                                     created.agent.id, None, "test")
        await _applied(env, version)
        for i in (0, 1):
            assert await env.contacts(i, created.sip.username) == [], i
        for client in clients:
            old = await client.register(created.sip.username, created.sip.password)
            assert not old.ok and old.status in (401, 403), old
            assert (await client.register(new_sip.username, new_sip.password)).ok
            await client.register(new_sip.username, new_sip.password, expires=0)
    finally:
        for client in clients:
            client.close()


async def _custom_state(env: Nodes, i: int, ext: int) -> str:
    async with AmiClient(env.pbx[i].asterisk) as client:
        answer = await client.send({"Action": "Getvar",
                                    "Variable": f"DEVICE_STATE(Custom:sipprov{ext})"})
        first = answer[0] if isinstance(answer, list) else answer
        return str(first.get("Value") or "")


async def test_a_phone_on_one_node_is_available_on_every_node(make_nodes: NodesFactory) -> None:
    """Realtime queue members ring by Custom:sipprov<ext>: a phone registered through
    node 2 must be NOT_INUSE on node 1 too (so node 1's queues ring it), and
    UNAVAILABLE on both once it unregisters."""
    env = await make_nodes("realtime")
    created = await _create(env, 7)
    await _applied(env, created.config_version)
    ext = created.agent.extension
    assert ext is not None and created.sip is not None
    client = await SipClient.open(HOST, env.pbx[1].pbx.sip_port)
    try:
        assert (await client.register(created.sip.username, created.sip.password)).ok
        for i in (0, 1):
            await _until(lambda i=i: _is(env, i, ext, "NOT_INUSE"), 15,
                         lambda i=i: f"node {i + 1}: not NOT_INUSE")
        assert [r.uri for r in env.phones.registrations(ext)]
        # the contact lives on node 2 only (contacts are not shared here)
        assert await env.contacts(0, created.sip.username) == []
        assert env.phones.nodes()[env.pbx[1].pbx.instance]["registered"] >= 1
        assert (await client.register(created.sip.username, created.sip.password,
                                      expires=0)).ok
        for i in (0, 1):
            await _until(lambda i=i: _is(env, i, ext, "UNAVAILABLE"), 15,
                         lambda i=i: f"node {i + 1}: not UNAVAILABLE")
    finally:
        client.close()


async def _is(env: Nodes, i: int, ext: int, state: str) -> bool:
    return await _custom_state(env, i, ext) == state


@BACKENDS
async def test_a_site_is_served_only_by_its_nodes(make_nodes: NodesFactory,
                                                  backend: str) -> None:
    env = await make_nodes(backend, sites=("waw", "hcm"))
    waw = await _create(env, 5, site="waw")
    everywhere = await _create(env, 6)
    await run(env.pool, queues.create_queue, env.cfg,
              QueueCreate(name="waw-support", kind="voice", site="waw"), "test")
    await run(env.pool, queues.create_queue, env.cfg,
              QueueCreate(name="all-support", kind="voice"), "test")
    update = AgentUpdate(queues=[QueueAssignment(name="waw-support"),
                                 QueueAssignment(name="all-support")])
    version = (await run(env.pool, agents.update_agent, env.cfg, waw.agent.id, update,
                         "test")).config_version
    await _applied(env, version)
    w, e = waw.agent.extension, everywhere.agent.extension
    assert w is not None and e is not None
    assert await env.has_endpoint(0, w) and await env.has_endpoint(0, e)
    assert not await env.has_endpoint(1, w)
    assert await env.has_endpoint(1, e)
    # the site's queue only on its node; the shared queue without the other site's agent
    async with AmiClient(env.pbx[0].asterisk) as a0, AmiClient(env.pbx[1].asterisk) as a1:
        q0 = await a0.queue_status("waw-support")
        assert [m.interface for m in q0.get("waw-support", [])] == [f"PJSIP/{w}"]
        assert "waw-support" not in await a1.queue_status("waw-support")
        shared1 = await a1.queue_status("all-support")
        assert "all-support" in shared1 and shared1["all-support"] == []
    # moved to the other site: leaves node 1, reaches node 2
    version = (await run(env.pool, agents.update_agent, env.cfg, waw.agent.id,
                         AgentUpdate(site="hcm"), "test")).config_version
    await _applied(env, version)
    assert not await env.has_endpoint(0, w)
    assert await env.has_endpoint(1, w)


async def test_migration_015_also_works_after_016(pg_base_dsn: str) -> None:
    """A database that had migration 016 (realtime tables) before 015 existed gets the
    site column and rule on the tables when 015 arrives; the tables still match their
    definitions, and the Asterisk role sees only what its session's site serves."""
    import uuid

    from sipprov.db import database as db_mod
    from tests.conftest import _dsn_for

    name = "t_mig_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(pg_base_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        conn = await asyncpg.connect(_dsn_for(pg_base_dsn, name))
        try:
            migrations = db_mod.available_migrations()
            for mig in migrations:
                if mig.version != 15:
                    async with conn.transaction():
                        await conn.execute(mig.sql)
            await conn.execute(next(m.sql for m in migrations if m.version == 15))
            for rel in ("ps_endpoints", "ps_auths", "ps_aors"):
                table = await conn.fetch(
                    "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass"
                    " AND attnum > 0 AND NOT attisdropped ORDER BY attnum", f"asterisk.{rel}")
                view = await conn.fetch(
                    "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass"
                    " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                    f"asterisk_src.{rel}")
                assert [r[0] for r in table] == [r[0] for r in view]
                assert table[-1][0] == "site"
                assert await conn.fetchval(
                    "SELECT count(*) FROM pg_policies WHERE schemaname = 'asterisk'"
                    " AND tablename = $1 AND policyname = 'node_site'", rel) == 1
            await conn.execute("SELECT asterisk_src.refresh(NULL)")
            await conn.execute("SET application_name = 'sipprov-site:waw'")
            assert await conn.fetchval("SELECT asterisk.node_site()") == "waw"
            await conn.execute("SET application_name = 'sipprov-site:a;b'")
            assert await conn.fetchval("SELECT asterisk.node_site()") is None
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def test_a_hung_node_holds_nobody_back(pbx, pbx_config: Config, db_dsn: str,
                                             tmp_path: Path) -> None:
    """A node whose AMI accepts connections and never answers (a hung box): given up on
    after NODE_CONNECT_TIMEOUT_S (then NODE_RETRY_CONNECT_TIMEOUT_S per retry), not
    asterisk.ami_timeout_s, so the node that works applies and ?wait=applied answers
    within seconds."""
    from sipprov.apply.nodes import NODE_CONNECT_TIMEOUT_S, NODE_RETRY_CONNECT_TIMEOUT_S

    held: list[asyncio.StreamWriter] = []
    hung = await asyncio.start_server(lambda _r, w: held.append(w), HOST, 0)
    hung_port = hung.sockets[0].getsockname()[1]
    cfg = copy.deepcopy(pbx_config)
    cfg.database = dataclasses.replace(cfg.database, dsn=db_dsn, pool_min=1, pool_max=4)
    cfg.asterisk = dataclasses.replace(
        cfg.asterisk, backend="files", ami_timeout_s=30.0,
        nodes=[NodeConfig(name="up", ami_port=pbx_config.asterisk.ami_port,
                          config_dir=pbx_config.generated_dir),
               NodeConfig(name="hung", ami_port=hung_port, config_dir=tmp_path / "hung")])
    cfg.applier = dataclasses.replace(cfg.applier, debounce_ms=20, backoff_min_s=0.2,
                                      backoff_max_s=1.0)
    pool = await database.create_pool(db_dsn, cfg.database)
    applier = Applier(pool, cfg)
    try:
        async with pool.acquire() as conn:
            await extensions.sync_pool(conn, cfg.extensions)
        await applier.start()
        # the first apply finds the node hung (NODE_CONNECT_TIMEOUT_S)
        await _until(lambda: applier.status()["nodes"][1]["reachable"] is False,
                     NODE_CONNECT_TIMEOUT_S + 10, lambda: f"{applier.status()['nodes']}")
        body = AgentCreate(first_name="Hung", last_name="Node", email="hung@example.com")
        created = await run(pool, agents.create_agent, cfg, body, "test")
        t0 = time.monotonic()
        assert await applier.wait_applied(created.config_version, 20), applier.status()
        waited = time.monotonic() - t0
        # at most a retry in flight plus this apply's own retry of the hung node
        assert waited < 2 * NODE_RETRY_CONNECT_TIMEOUT_S + 2, waited
        assert created.agent.extension is not None
        async with AmiClient(pbx_config.asterisk) as client:
            assert await client.pjsip_endpoint_exists(str(created.agent.extension))
        up, stuck = applier.status()["nodes"]
        assert up["reachable"] is True and up["applied_version"] >= created.config_version
        assert stuck["reachable"] is False and "no login within" in stuck["last_error"]
        print(f"\ncreate -> applied with one node hung: {waited:.2f} s")
    finally:
        await applier.stop()
        await pool.close()
        hung.close()
        for w in held:
            w.close()
        await clean_asterisk(pbx_config)
