"""Shared fixtures: a real PostgreSQL for the whole session (the embedded server), a
fresh database per test cloned from a migrated template, and the real PBX (see
tests/pbx_fixtures.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from sipprov import config as config_mod
from sipprov.db import database

pytest_plugins = ["tests.pbx_fixtures", "tests.cluster_fixtures"]

IN_CI = os.environ.get("CI") == "true"


def _dsn_for(base_dsn: str, dbname: str) -> str:
    # Embedded DSNs look like postgresql://postgres:@/postgres?host=/path
    head, sep, query = base_dsn.partition("?")
    head = head.rsplit("/", 1)[0] + "/" + dbname
    return head + sep + query


@pytest.fixture(scope="session")
def pg_base_dsn() -> Iterator[str]:
    """A real PostgreSQL for the test session: SIPPROV_TEST_DSN, else the embedded one."""
    dsn = os.environ.get("SIPPROV_TEST_DSN")
    if dsn:
        yield dsn
        return
    data_dir = Path(tempfile.mkdtemp(prefix="sipprov-test-pg-"))
    try:
        dsn = database.start_embedded(data_dir)
    except Exception as exc:  # pragma: no cover - environment failure
        if IN_CI:
            pytest.fail(f"PostgreSQL could not be started: {exc}")
        pytest.skip(f"PostgreSQL could not be started: {exc}")
    yield dsn


@pytest.fixture(scope="session")
def pg_template(pg_base_dsn: str) -> str:
    """A migrated database that each test's database is cloned from (fast)."""
    name = "sipprov_template"

    async def build() -> None:
        conn = await asyncpg.connect(pg_base_dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name}")
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        conn = await asyncpg.connect(_dsn_for(pg_base_dsn, name))
        try:
            await database.upgrade(conn)
        finally:
            await conn.close()

    asyncio.run(build())
    return name


@contextlib.asynccontextmanager
async def cloned_database(pg_base_dsn: str, pg_template: str) -> AsyncIterator[str]:
    """Yield the DSN of a new database cloned from the migrated template; drop it after."""
    name = "t_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(pg_base_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    finally:
        await conn.close()
    yield _dsn_for(pg_base_dsn, name)
    conn = await asyncpg.connect(pg_base_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture
async def db_dsn(pg_base_dsn: str, pg_template: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    async with cloned_database(pg_base_dsn, pg_template) as dsn:
        yield dsn


@pytest.fixture
def cfg(db_dsn: str, tmp_path: Path) -> config_mod.Config:
    """A Config on the test's database; generated files go to a temp folder."""
    c = config_mod.Config()
    c.database = dataclasses.replace(c.database, dsn=db_dsn, pool_min=1, pool_max=10)
    # the files backend unless a test asks for realtime (tests/realtime_helpers.py)
    c.asterisk = dataclasses.replace(c.asterisk, config_dir=tmp_path / "asterisk",
                                     backend="files")
    return c


@pytest.fixture
async def pool(cfg: config_mod.Config) -> AsyncIterator[asyncpg.Pool]:
    p = await database.create_pool(cfg.database.dsn, cfg.database)
    yield p
    await p.close()


@pytest.fixture
def conf(db_dsn: str, tmp_path: Path) -> Path:
    """A TOML config file on the test's database, for tests that run the CLI."""
    from tests.cli_helpers import toml_config

    path = tmp_path / "sipprov.toml"
    path.write_text(toml_config(db_dsn, tmp_path))
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skipped test is a failure: the real stack must be there."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped in CI (CI=true requires the real stack): {reason}"


@pytest.fixture
async def agent_pool(cfg: config_mod.Config, pool: asyncpg.Pool) -> asyncpg.Pool:
    """`pool` with the extension pool synced to cfg.extensions, as the service does on
    start (tests that change cfg.extensions sync again themselves)."""
    from sipprov.agents import extensions

    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)
    return pool


@pytest.fixture
async def audit_guard(db_dsn: str) -> AsyncIterator[None]:
    """After the test: no audit row holds a secret-looking key or any stored password
    hash or SIP digest (use with `pytestmark = pytest.mark.usefixtures("audit_guard")`)."""
    import json

    from sipprov import audit

    yield
    conn = await asyncpg.connect(db_dsn)
    try:
        stored = await conn.fetch(
            "SELECT web_password_hash, sip_ha1_md5, sip_ha1_sha256 FROM users"
        )
        rows = await conn.fetch("SELECT action, details::text AS details FROM audit_log")
    finally:
        await conn.close()
    secrets = {v for r in stored for v in r.values() if v}

    def keys(value: object) -> set[str]:
        if isinstance(value, dict):
            return set(value) | set().union(*(keys(v) for v in value.values()))
        if isinstance(value, list):
            return set().union(*(keys(v) for v in value))
        return set()

    for row in rows:
        bad = {k for k in keys(json.loads(row["details"])) if audit.is_secret_key(k)}
        assert not bad, f"audit row {row['action']} has secret keys {bad}"
        assert not any(s in row["details"] for s in secrets), f"audit row {row['action']} holds a secret"
        assert "$argon2" not in row["details"] and "$pbkdf2" not in row["details"]
