"""pytest plugin: two Asterisk nodes sharing one PostgreSQL (issue 15).

Two more named instances of the development PBX root (sipprov/pbx/instance.py), each
with its own AMI and SIP ports, both with the realtime backend and shared contacts
(asterisk.ps_contacts): they are started once per test module and reused; each test
points both at its own database (as tests/test_realtime.py does with the session's
PBX). The applier of a test drives both as [[asterisk.nodes]] (per-node apply: each
gets its generated files, cache expiry, verification).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import pytest

from sipprov import pbx as pbx_mod
from sipprov.agents import extensions
from sipprov.apply.applier import Applier
from sipprov.apply.backends.files import FilesBackend
from sipprov.apply.phones import PhoneTracker
from sipprov.config import Config, NodeConfig
from sipprov.db import database
from sipprov.pbx import front as front_mod
from tests.pbx_fixtures import (
    _free_port,
    _idle_database,
    _unavailable,
    clean_asterisk,
    point_realtime_at,
)
from tests.service_helpers import wait_first_apply

NODE_NAMES = ("n1", "n2")


def node_config(base: Config, name: str, dsn: str) -> Config:
    """A node: its own instance of the root, free ports, realtime with shared contacts
    and Path support (phones may register through a SIP front), no Contact rewriting."""
    cfg = copy.deepcopy(base)
    ami_port, sip_port = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    cfg.pbx = dataclasses.replace(base.pbx, instance=f"{base.pbx.instance}-{name}",
                                  sip_port=sip_port)
    cfg.asterisk = dataclasses.replace(
        base.asterisk, ami_port=ami_port, sip_server=f"127.0.0.1:{sip_port}",
        backend="realtime", shared_contacts=True, support_path=True, config_dir=None,
        # behind a front, the REGISTER's source is the front: the phone's own Contact
        # must be kept (the front's Path carries its real address)
        rewrite_contact=False)
    cfg.database = dataclasses.replace(base.database, dsn=dsn)
    return cfg


def _start_clean(cfg: Config) -> None:
    pbx_mod.stop(cfg)
    shutil.rmtree(cfg.pbx.instance_dir, ignore_errors=True)
    pbx_mod.start(cfg)


def _remove(cfg: Config) -> None:
    pbx_mod.stop(cfg)
    shutil.rmtree(cfg.pbx.instance_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def nodes(pbx: pbx_mod.PbxStatus, pbx_config: Config, pg_base_dsn: str,
          pg_template: str) -> Iterator[list[Config]]:
    """Two running nodes (started clean per module, stopped and removed after)."""
    name = f"sipprov_nodes_{pbx_config.pbx.instance.replace('-', '_')}"
    idle = asyncio.run(_idle_database(pg_base_dsn, pg_template, name))
    made = [node_config(pbx_config, n, idle) for n in NODE_NAMES]
    try:
        for cfg in made:
            _start_clean(cfg)
    except pbx_mod.PbxError as exc:
        for cfg in made:
            _remove(cfg)
        _unavailable(str(exc))
    try:
        yield made
    finally:
        for cfg in made:
            _remove(cfg)


@pytest.fixture(scope="module")
def front(nodes: list[Config], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[front_mod.Front]:
    """Kamailio (templates/kamailio/kamailio.cfg) on a free loopback port in front of
    both nodes, probing them every second; stopped after the module."""
    if not shutil.which("kamailio"):
        _unavailable("kamailio is not installed (apt-get install kamailio)")
    folder = tmp_path_factory.mktemp("front")
    try:
        running = front_mod.start(folder, _free_port(socket.SOCK_DGRAM),
                                  [front_mod.Node("127.0.0.1", n.pbx.sip_port) for n in nodes])
    except pbx_mod.PbxError as exc:
        _unavailable(str(exc))
    try:
        yield running
    finally:
        front_mod.stop(running)


@dataclass
class Cluster:
    """Both nodes on one test database, an applier and phone tracker on node 1."""

    nodes: list[Config]  # the instances' own configs, in node order
    dsn: str
    pool: asyncpg.Pool
    applier: Applier
    phones: PhoneTracker

    cfg: Config  # the applier's: both nodes as [[asterisk.nodes]]

    def sip_port(self, node: int) -> int:
        return self.nodes[node].pbx.sip_port


    async def restart(self, node: int) -> None:
        """Start a killed node again on this test's database."""
        await asyncio.to_thread(pbx_mod.start, self.nodes[node])
        await point_realtime_at(self.nodes[node], self.dsn)

    def node_of(self, reg_server: str) -> int:
        """Which node took a registration (ps_contacts.reg_server is its systemname)."""
        names = [f"sipprov-{n.pbx.instance}" for n in self.nodes]
        return names.index(reg_server)


@pytest.fixture
async def cluster(nodes: list[Config], db_dsn: str) -> AsyncIterator[Cluster]:
    for node in nodes:
        await point_realtime_at(node, db_dsn)
    cfg = copy.deepcopy(nodes[0])
    cfg.database = dataclasses.replace(cfg.database, dsn=db_dsn, pool_min=1, pool_max=10)
    cfg.asterisk = dataclasses.replace(cfg.asterisk, nodes=[
        NodeConfig(name=n.pbx.instance, ami_port=n.asterisk.ami_port,
                   sip_server=n.asterisk.sip_server, config_dir=n.generated_dir)
        for n in nodes])
    cfg.applier = dataclasses.replace(cfg.applier, debounce_ms=20,
                                      backoff_min_s=0.2, backoff_max_s=1.0)
    pool = await database.create_pool(db_dsn, cfg.database)
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)
    applier = Applier(pool, cfg)
    phones = PhoneTracker(cfg)
    for backend in applier.backends():
        assert isinstance(backend, FilesBackend)
        backend.on_registrations_ended = phones.forget
    await applier.start()
    await phones.start()
    made = Cluster(list(nodes), db_dsn, pool, applier, phones, cfg)
    try:
        await wait_first_apply(applier)
        yield made
    finally:
        await phones.stop()
        await applier.stop()
        await pool.close()
        for node in nodes:
            if not pbx_mod.status(node).running:  # a test killed it
                await asyncio.to_thread(pbx_mod.start, node)
            await clean_asterisk(node)
            await point_realtime_at(node, node.database.dsn)

