"""pytest plugin: the real Asterisk (the "test" instance of the development PBX) and SIPp.

Loaded with `pytest_plugins = ["tests.pbx_fixtures"]` in tests/conftest.py.

The test instance runs from the same root as the developer's "dev" instance but on its
own ports and folders, so a developer's PBX is never touched: in CI the instance "test"
on AMI 15038 / SIP 15070, elsewhere one instance per pytest process ("test-<pid>", free
ports) so that parallel test runs on one machine do not stop each other's Asterisk.
It is started clean for each test session: empty generated files, empty astdb.
Without root, SIPp or a buildable PBX root the PBX tests are skipped, except in CI
(CI=true), where that is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import os
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from sipprov import pbx as pbx_mod
from sipprov.apply import files as files_mod
from sipprov.apply import render as render_mod
from sipprov.apply.ami import AmiClient
from sipprov.config import Config

# The password of Asterisk's realtime role (sipprov_asterisk) in the tests.
REALTIME_DB_PASSWORD = "sipprov-test-realtime"
TEST_AMI_PORT = 15038
TEST_SIP_PORT = 15070
IN_CI = os.environ.get("CI") == "true"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"the PBX is required in CI: {reason}", pytrace=False)
    pytest.skip(f"PBX unavailable: {reason}")


def write_generated(cfg: Config, name: str, text: str) -> Path:
    """Write one generated Asterisk file (pjsip.conf, extensions.conf, queues.conf) the
    way the applier does: atomically, mode 0640."""
    path = Path(cfg.generated_dir) / name
    pbx_mod.write_atomic(path, text, cfg.security.file_mode)
    return path


async def clean_asterisk(cfg: Config) -> None:
    """Leave the shared PBX as we found it: no generated objects, nothing to restore."""
    directory = Path(cfg.generated_dir)
    files_mod.write_changed(directory, {n: b"" for n in render_mod.FILES},
                            cfg.security.file_mode)
    for name in render_mod.FILES:
        (directory / (name + files_mod.PREV_SUFFIX)).unlink(missing_ok=True)
    if pbx_mod.status(cfg).running:
        client = AmiClient(cfg.asterisk)
        await client.connect()
        try:
            for module in render_mod.MODULE_FOR_FILE.values():
                await client.reload(module)
        finally:
            await client.close()


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def pbx_config() -> Config:
    """A Config for this test session's own PBX instance.

    CI uses the instance "test" on AMI 15038 / SIP 15070. Elsewhere each pytest process
    gets its own instance and free ports, so several test runs on one machine (two
    developers' sessions, a CI run beside a dev PBX) never stop each other's Asterisk.
    """
    cfg = Config()
    if IN_CI:
        instance, ami_port, sip_port = "test", TEST_AMI_PORT, TEST_SIP_PORT
    else:
        instance = f"test-{os.getpid()}"
        ami_port, sip_port = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    cfg.pbx = dataclasses.replace(cfg.pbx, instance=instance, sip_port=sip_port)
    # tests run the files backend unless they ask for realtime; the instance serves
    # both (it maps pjsip.conf and the realtime views)
    cfg.asterisk = dataclasses.replace(
        cfg.asterisk, ami_port=ami_port, sip_server=f"127.0.0.1:{sip_port}",
        ami_timeout_s=15.0, backend="files", realtime_db_password=REALTIME_DB_PASSWORD)
    return cfg


def _reap_stale_instances(cfg: Config) -> None:
    """Stop and delete the instances of test sessions that died without cleaning up
    (test-<pid>, and its nodes test-<pid>-<node>, whose pytest process is gone), so
    they do not pile up."""
    base = cfg.pbx.instance_dir.parent
    if not base.is_dir():
        return
    for folder in base.glob("test-*"):
        pid = folder.name.removeprefix("test-").split("-")[0]
        if not pid.isdigit() or int(pid) == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        stale = copy.deepcopy(cfg)
        stale.pbx = dataclasses.replace(cfg.pbx, instance=folder.name)
        with contextlib.suppress(pbx_mod.PbxError, OSError):
            pbx_mod.stop(stale)
            shutil.rmtree(folder)


async def point_realtime_at(cfg: Config, dsn: str, site: str | None = None) -> None:
    """Make the test instance's res_config_pgsql read `dsn` (each test has its own
    database; the cluster, and so the socket, is the session's), as a node of `site`."""
    from sipprov.pbx.realtime import write_realtime_config

    write_realtime_config(cfg, dsn, site)
    async with AmiClient(cfg.asterisk) as client:
        await client.reload("res_config_pgsql.so")


async def _idle_database(base_dsn: str, template: str, name: str) -> str:
    """A migrated database of the session that Asterisk's realtime driver reads while no
    realtime test runs (its views are empty, as with the files backend); the role
    Asterisk logs in as gets LOGIN and the tests' password."""
    from sipprov.apply import realtimeconf
    from sipprov.db.sql import realtime as realtime_sql
    from tests.conftest import _dsn_for

    conn = await asyncpg.connect(base_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        await realtime_sql.set_role_login(conn, "sipprov_asterisk", REALTIME_DB_PASSWORD)
    finally:
        await conn.close()
    assert realtimeconf.dsn_parts(_dsn_for(base_dsn, name))[2] == name
    return _dsn_for(base_dsn, name)


@pytest.fixture(scope="session")
def pbx(pbx_config: Config, pg_base_dsn: str, pg_template: str) -> Iterator[pbx_mod.PbxStatus]:
    """The running test instance (started clean once per session, stopped at the end).
    Its realtime driver reads an idle database of the session; realtime tests point it
    at their own (point_realtime_at) and back."""
    idle = asyncio.run(_idle_database(pg_base_dsn, pg_template,
                                      f"sipprov_pbx_{pbx_config.pbx.instance.replace('-', '_')}"))
    pbx_config.database = dataclasses.replace(pbx_config.database, dsn=idle)
    if os.geteuid() != 0:
        _unavailable("needs root (chroot, mount)")
    if not shutil.which("sipp"):
        _unavailable("sipp is not installed (apt-get install sip-tester)")
    _reap_stale_instances(pbx_config)
    try:
        pbx_mod.stop(pbx_config)
        # a clean instance: no generated config or registrations from earlier sessions
        for name in ("pjsip.conf", "extensions.conf", "queues.conf"):
            path = Path(pbx_config.generated_dir) / name
            if path.exists():
                write_generated(pbx_config, name, "")
        astdb = pbx_config.pbx.instance_dir / "lib/astdb.sqlite3"
        astdb.unlink(missing_ok=True)
        pbx_mod.start(pbx_config)
    except pbx_mod.PbxError as exc:
        _unavailable(str(exc))
    try:
        yield pbx_mod.status(pbx_config)
    finally:
        pbx_mod.stop(pbx_config)
        if pbx_config.pbx.instance != "test":
            shutil.rmtree(pbx_config.pbx.instance_dir, ignore_errors=True)


@pytest.fixture
async def ami(pbx: pbx_mod.PbxStatus, pbx_config: Config) -> AsyncIterator[AmiClient]:
    """A logged-in AMI client on the test instance, closed after the test."""
    client = AmiClient(pbx_config.asterisk)
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="session")
def pbx2(pbx: pbx_mod.PbxStatus, pbx_config: Config) -> Iterator[Config]:
    """A second Asterisk node from the same root (own instance, own free ports),
    started only for the tests that ask for it (several nodes: tests/test_nodes.py),
    reading the same idle database as the first. Yields its Config (as pbx_config is
    the first's); a test may stop and start it (pbx_mod.stop/start)."""
    cfg = copy.deepcopy(pbx_config)
    instance = f"{pbx_config.pbx.instance}-node2"
    ami_port, sip_port = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    cfg.pbx = dataclasses.replace(cfg.pbx, instance=instance, sip_port=sip_port)
    cfg.asterisk = dataclasses.replace(cfg.asterisk, ami_port=ami_port,
                                       sip_server=f"127.0.0.1:{sip_port}")
    try:
        pbx_mod.stop(cfg)
        for name in render_mod.FILES:
            if (Path(cfg.generated_dir) / name).exists():
                write_generated(cfg, name, "")
        (cfg.pbx.instance_dir / "lib/astdb.sqlite3").unlink(missing_ok=True)
        pbx_mod.start(cfg)
    except pbx_mod.PbxError as exc:
        _unavailable(str(exc))
    try:
        yield cfg
    finally:
        pbx_mod.stop(cfg)
        shutil.rmtree(cfg.pbx.instance_dir, ignore_errors=True)
