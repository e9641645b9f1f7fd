"""`--wait` for CLI mutations: return once Asterisk has a config version.

The CLI does not know whether a service (`sipprov serve`) is running, and need not: it
checks config_state.applied_version and, while the version is not there, runs an apply
itself with the service's own Applier. Applies are serialised across processes by a
database lock and write only files whose bytes change, so when a service is running
too, whichever applies second finds the files already written and reloads nothing (it
only verifies); Asterisk reloads res_pjsip once either way. A CLI that cannot reach
AMI (e.g. an admin host with database access only) keeps polling, so a service that
can still makes the wait succeed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import asyncpg

from sipprov.apply.applier import Applier
from sipprov.apply.errors import Rejected, Unavailable
from sipprov.config import Config
from sipprov.db.sql import config_state

log = logging.getLogger(__name__)

POLL_S = 0.2


@dataclass(frozen=True)
class WaitResult:
    applied: bool
    version: int
    applied_version: int
    seconds: float
    # Who applied it: "cli" (this process) or "service"/"earlier" (someone else).
    by: str | None = None
    error: str | None = None


async def wait_applied(
    pool: asyncpg.Pool, cfg: Config, version: int, timeout: float, *, apply_self: bool = True
) -> WaitResult:
    """Wait until applied_version >= version (applying ourselves when needed)."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    applier = Applier(pool, cfg) if apply_self else None
    applied_here = False
    forced = False
    failures = 0
    error: str | None = None
    try:
        while True:
            state = await config_state.read(pool)
            if state.applied_version >= version:
                by = "cli" if applied_here else "service"
                return WaitResult(True, version, state.applied_version, time.monotonic() - t0, by)
            left = deadline - time.monotonic()
            if left <= 0:
                return WaitResult(False, version, state.applied_version, time.monotonic() - t0,
                                  None, error or "timed out")
            if applier is None:
                await asyncio.sleep(min(POLL_S, left))
                continue
            try:
                await asyncio.wait_for(applier.apply_once(force=forced), left)
                applied_here = True
                failures = 0
            except Rejected as exc:
                # A fresh Applier knows nothing of files written and never reloaded by a
                # process that died: one forced apply (every module reloaded) settles it.
                error = str(exc)
                if forced:
                    return WaitResult(False, version, state.applied_version,
                                      time.monotonic() - t0, None, error)
                forced = True
                log.warning("apply was refused (%s); trying once with every module reloaded", exc)
            except Unavailable as exc:
                error = str(exc)
                failures += 1
                delay = min(cfg.applier.backoff_max_s,
                            cfg.applier.backoff_min_s * 2 ** (failures - 1))
                await asyncio.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            except TimeoutError:
                error = "timed out while applying"
    finally:
        if applier is not None:
            await applier.stop()
