"""An applier (and, as the service runs it, a phone tracker) on a test's database and
the test's PBX instance: what test_apply and test_realtime build for every test."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import asyncpg

from sipprov.agents import extensions
from sipprov.apply.applier import Applier
from sipprov.apply.backends.files import FilesBackend
from sipprov.apply.phones import PhoneTracker
from sipprov.config import Config, ExtensionsConfig
from sipprov.db import database
from tests.service_helpers import wait_first_apply


@dataclass
class Env:
    cfg: Config
    pool: asyncpg.Pool
    applier: Applier
    phones: PhoneTracker | None = None

    @property
    def sip_port(self) -> int:
        return self.cfg.pbx.sip_port

    def reloads(self, module: str | None = None) -> int:
        """Reloads of `module` so far (None: of every module)."""
        counts = self.applier.status()["reloads"]
        if module is not None:
            return int(counts[module])
        return sum(int(v) for v in counts.values())

    async def stop(self) -> None:
        if self.phones is not None:
            await self.phones.stop()
        await self.applier.stop()
        await self.pool.close()


async def start_env(pbx_config: Config, db_dsn: str, *, debounce_ms: int,
                    backend: str | None = None, cache: bool = False,
                    ext: ExtensionsConfig | None = None, phones: bool = False) -> Env:
    """The applier's Config from the PBX's (ports, generated dir) and this database;
    started, its first apply done. phones: a PhoneTracker told of ended registrations."""
    cfg = copy.deepcopy(pbx_config)
    cfg.database = dataclasses.replace(cfg.database, dsn=db_dsn, pool_min=1, pool_max=10)
    if backend is not None:
        cfg.asterisk = dataclasses.replace(cfg.asterisk, backend=backend, realtime_cache=cache)
    cfg.applier = dataclasses.replace(cfg.applier, debounce_ms=debounce_ms,
                                      backoff_min_s=0.2, backoff_max_s=1.0)
    if ext is not None:
        cfg.extensions = ext
    pool = await database.create_pool(db_dsn, cfg.database)
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)
    applier = Applier(pool, cfg)
    env = Env(cfg, pool, applier)
    if phones:
        env.phones = PhoneTracker(cfg)
        assert isinstance(applier.backend, FilesBackend)
        applier.backend.on_registrations_ended = env.phones.forget
    await applier.start()
    if env.phones is not None:
        await env.phones.start()
    await wait_first_apply(applier)
    return env
