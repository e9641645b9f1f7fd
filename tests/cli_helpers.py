"""Shared by the CLI tests: a TOML config on the test database, and running service
calls against it from a synchronous test."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from sipprov import config as config_mod
from sipprov.db import database


def toml_config(dsn: str, tmp: Path, ami_port: int = 1) -> str:
    # AMI on port 1: nothing listens, so --wait can never touch a developer's PBX.
    return (
        "[database]\n"
        f"dsn = {json.dumps(dsn)}\n"
        "pool_min = 1\npool_max = 4\n"
        "[extensions]\nfirst = 1000\nlast = 9999\n"
        "[asterisk]\n"
        f"config_dir = {json.dumps(str(tmp / 'asterisk'))}\n"
        f"ami_port = {ami_port}\n"
        'backend = "files"\n'
        "ami_timeout_s = 1.0\n"
        "[applier]\nbackoff_min_s = 0.1\nbackoff_max_s = 0.2\n"
    )


def run_db(conf: Path, fn: Callable[[asyncpg.Pool, config_mod.Config], Awaitable[Any]]) -> Any:
    """Run `fn(pool, cfg)` against the config's database (from a sync test)."""
    cfg = config_mod.load(conf)

    async def go() -> Any:
        pool = await database.create_pool(cfg.database.dsn, cfg.database)
        try:
            return await fn(pool, cfg)
        finally:
            await pool.close()

    return asyncio.run(go())
