"""Fault: a reload that Asterisk refuses, and one it does not answer in time.

Against the real Asterisk 22 of the tests' PBX:

- refused: the operator's own extensions.conf `#include`s a file that does not exist,
  so Asterisk answers pbx_config.so's reload with "An unknown error occurred". The
  applier rolls back to the last good copies; with none yet (the first apply), it
  leaves the files as written: nothing is emptied, the agents already loaded by
  res_pjsip stay registrable.
- not answered: Asterisk is stopped (SIGSTOP) while the applier reloads. That is
  Unavailable, not a refusal: nothing is rolled back, and once Asterisk runs again the
  apply completes by itself, without waiting for another change.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from sipprov import pbx as pbx_mod
from sipprov.agents import extensions
from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate
from sipprov.apply import files as files_mod
from sipprov.apply.applier import Applier
from sipprov.config import Config
from sipprov.db import database
from sipprov.db.sql import config_state
from sipprov.db.transaction import run
from tests.faults.pbxutil import clean_asterisk, config_for, endpoints, ensure_running

pytestmark = pytest.mark.pbx


@pytest.fixture
async def env(pbx, pbx_config: Config, db_dsn: str) -> AsyncIterator[tuple[Config, asyncpg.Pool]]:
    cfg = config_for(pbx_config, db_dsn)
    await clean_asterisk(cfg)  # no generated objects, no last good copies
    pool = await database.create_pool(db_dsn, cfg.database)
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)
    try:
        yield cfg, pool
    finally:
        await pool.close()
        await ensure_running(pbx_config)
        await clean_asterisk(pbx_config)


async def _create(pool: asyncpg.Pool, cfg: Config, n: int) -> agents.AgentCreated:
    data = AgentCreate(first_name="Reload", last_name="Fault", login=f"reload{n}",
                       email=f"reload{n}@example.com", role="extension")
    return await run(pool, agents.create_agent, cfg, data, "test")


async def _until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


@contextlib.contextmanager
def operator_include_missing(cfg: Config):  # type: ignore[no-untyped-def]
    """The operator's extensions.conf includes a file that is not there."""
    path = cfg.pbx.instance_dir / "etc/asterisk/extensions.conf"
    original = path.read_text()
    pbx_mod.write_atomic(path, original + "#include operator-missing.conf\n")
    try:
        yield
    finally:
        pbx_mod.write_atomic(path, original)


async def test_refused_reload_rolls_back_and_never_empties(
        env: tuple[Config, asyncpg.Pool]) -> None:
    cfg, pool = env
    gen = Path(cfg.generated_dir)
    first = await _create(pool, cfg, 1)
    ext1 = str(first.agent.extension)
    applier = Applier(pool, cfg)
    try:
        with operator_include_missing(cfg):
            # the first apply: no last good copy exists yet
            await applier.start()
            await _until(lambda: applier.status()["last_error"] is not None, 30,
                         "the refusal was not recorded")
            error = applier.status()["last_error"]
            assert "rejected the reload of pbx_config.so" in error, error
            assert applier.applied_version < first.config_version
            # nothing emptied: the files are as rendered, the agent is in Asterisk
            assert f"[{ext1}]" in (gen / "pjsip.conf").read_text()
            assert f"exten => {ext1}," in (gen / "extensions.conf").read_text()
            assert ext1 in await endpoints(cfg)
            assert "An unknown error occurred" in error and "no accepted copy" in error
            assert not any((gen / (n + files_mod.PREV_SUFFIX)).exists()
                           for n in ("pjsip.conf", "extensions.conf", "queues.conf"))
            state = await config_state.read(pool)
            assert state.applied_version < state.version and "rejected" in state.last_error

        # the operator fixes the include: the next change applies everything
        second = await _create(pool, cfg, 2)
        assert await applier.wait_applied(second.config_version, 30), applier.status()
        good = (gen / "pjsip.conf").read_bytes()
        assert (gen / "pjsip.conf.prev").read_bytes() == good

        with operator_include_missing(cfg):
            third = await _create(pool, cfg, 3)
            await _until(lambda: (applier.status()["last_error"] or "").find(
                "pbx_config.so") >= 0, 30, "the second refusal was not recorded")
            # rolled back to the last good copy, and Asterisk reloaded it
            assert (gen / "pjsip.conf").read_bytes() == good
            loaded = await endpoints(cfg)
            assert {ext1, str(second.agent.extension)} <= loaded
            assert str(third.agent.extension) not in loaded
            assert applier.applied_version < third.config_version
    finally:
        await applier.stop()


async def test_unanswered_reload_is_not_a_refusal(env: tuple[Config, asyncpg.Pool]) -> None:
    cfg, pool = env
    cfg.asterisk = dataclasses.replace(cfg.asterisk, ami_timeout_s=1.0)
    gen = Path(cfg.generated_dir)
    applier = Applier(pool, cfg)
    pid = pbx_mod.status(cfg).pid
    assert pid is not None
    stopped = False
    try:
        first = await _create(pool, cfg, 1)
        await applier.start()
        assert await applier.wait_applied(first.config_version, 30), applier.status()
        good = (gen / "pjsip.conf").read_bytes()
        reloads = applier.status()["reloads"]["res_pjsip.so"]

        os.kill(pid, signal.SIGSTOP)
        stopped = True
        second = await _create(pool, cfg, 2)
        ext2 = str(second.agent.extension)
        await _until(lambda: "no answer within" in (applier.status()["last_error"] or ""), 30,
                     "the timeout was not recorded")
        error = applier.status()["last_error"]
        assert "rejected" not in error, error
        # no rollback: the new agent stays in the files, the good copy is the old one
        assert f"[{ext2}]" in (gen / "pjsip.conf").read_text()
        assert (gen / "pjsip.conf.prev").read_bytes() == good
        assert applier.applied_version < second.config_version
        await asyncio.sleep(1.5)  # retries meanwhile (backoff at most 1 s) change nothing
        assert f"[{ext2}]" in (gen / "pjsip.conf").read_text()

        # Asterisk runs again: applied without another change (retry with backoff)
        os.kill(pid, signal.SIGCONT)
        stopped = False
        t0 = time.monotonic()
        assert await applier.wait_applied(second.config_version, 30), applier.status()
        assert time.monotonic() - t0 < 30
        assert ext2 in await endpoints(cfg)
        st = applier.status()
        assert st["last_error"] is None and st["reloads"]["res_pjsip.so"] > reloads
        assert (gen / "pjsip.conf.prev").read_bytes() == (gen / "pjsip.conf").read_bytes()
    finally:
        if stopped:
            os.kill(pid, signal.SIGCONT)
        await applier.stop()
