"""Helpers around the tests' shared PBX instance: leave it clean, read what Asterisk
holds, and check the generated files on disk."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import time
from pathlib import Path

import asyncpg

from sipprov import pbx as pbx_mod
from sipprov.apply import files as files_mod
from sipprov.apply import render as render_mod
from sipprov.apply import snapshot as snapshot_mod
from sipprov.apply.ami import AmiClient, AmiError
from sipprov.config import Config
from sipprov.db.sql import config_state
from tests.faults.expect import assert_files_mean

HOST = "127.0.0.1"


def config_for(pbx_config: Config, dsn: str, **applier: object) -> Config:
    """The PBX's Config (ports, generated dir) on this test's database; a fast applier."""
    cfg = copy.deepcopy(pbx_config)
    cfg.database = dataclasses.replace(cfg.database, dsn=dsn, pool_min=1, pool_max=10,
                                       acquire_timeout_s=3.0)
    cfg.applier = dataclasses.replace(cfg.applier, debounce_ms=100, backoff_min_s=0.2,
                                      backoff_max_s=1.0, **applier)
    return cfg


async def clean_asterisk(cfg: Config) -> None:
    """Empty our generated files and drop the last-good copies; reload when running."""
    directory = Path(cfg.generated_dir)
    await asyncio.to_thread(files_mod.write_changed, directory,
                            {n: b"" for n in render_mod.FILES}, cfg.security.file_mode)
    for name in render_mod.FILES:
        (directory / (name + files_mod.PREV_SUFFIX)).unlink(missing_ok=True)
    if not await asyncio.to_thread(lambda: pbx_mod.status(cfg).running):
        return
    client = AmiClient(cfg.asterisk)
    try:
        await client.connect()
        for module in render_mod.MODULE_FOR_FILE.values():
            await client.reload(module)
    except AmiError:
        pass
    finally:
        await client.close()


async def ensure_running(cfg: Config) -> None:
    await asyncio.to_thread(pbx_mod.start, cfg)


async def endpoints(cfg: Config) -> set[str]:
    client = AmiClient(cfg.asterisk)
    await client.connect()
    try:
        return await client.pjsip_endpoints()
    finally:
        await client.close()


async def wait_all_applied(pool: asyncpg.Pool, timeout: float) -> config_state.ConfigState:
    """Poll the database until applied_version == version (what `status` reports)."""
    deadline = time.monotonic() + timeout
    state = await config_state.read(pool)
    while time.monotonic() < deadline:
        state = await config_state.read(pool)
        if state.version > 0 and state.applied_version == state.version:
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"not applied within {timeout} s: {state}")


def stray_files(directory: Path) -> list[str]:
    """Anything in the generated folder but our three files and their last-good copies
    (a temp file left by an interrupted write, say)."""
    allowed = set(render_mod.FILES) | {n + files_mod.PREV_SUFFIX for n in render_mod.FILES}
    return sorted(p.name for p in Path(directory).iterdir() if p.name not in allowed)


async def assert_disk_matches_database(cfg: Config, pool: asyncpg.Pool) -> snapshot_mod.Snapshot:
    """The files on disk are whole and mean exactly what the database holds now."""
    async with pool.acquire() as conn:
        snap = await snapshot_mod.load(conn)
    directory = Path(cfg.generated_dir)
    on_disk = {name: (directory / name).read_bytes() for name in render_mod.FILES}
    assert_files_mean(on_disk, snap, cfg)
    assert on_disk == render_mod.render(snap, cfg)
    assert stray_files(directory) == []
    for name in render_mod.FILES:
        mode = (directory / name).stat().st_mode & 0o777
        assert mode == cfg.security.file_mode == 0o640, (name, oct(mode))
    return snap
