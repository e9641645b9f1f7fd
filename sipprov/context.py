"""What a running sipprov holds: handed to the HTTP layer so handlers reach the
service layer and the applier without globals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg

from sipprov.config import Config

if TYPE_CHECKING:
    from sipprov.apply.appliedwatch import AppliedWatcher
    from sipprov.apply.applier import Applier
    from sipprov.apply.leadership import Leadership
    from sipprov.apply.phones import PhoneTracker
    from sipprov.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class Services:
    cfg: Config
    pool: asyncpg.Pool
    # None when the service runs without Asterisk (e.g. some tests) or when this
    # instance is not the applier leader; then ?wait=applied relies on `watcher`
    # (answers 202 at once without one) and status reports Asterisk as not connected.
    applier: Applier | None = None
    # Registrations and phone states from AMI events (None: not watched here).
    phones: PhoneTracker | None = None
    # Several instances (`sipprov serve`): who leads; None: a lone in-process service.
    leadership: Leadership | None = None
    # Reads config_state for ?wait=applied on an instance that does not apply.
    watcher: AppliedWatcher | None = None
    # This instance's name (/status, /health, /metrics).
    instance: str = ""
    metrics: Metrics | None = field(default=None, repr=False)

    @property
    def is_leader(self) -> bool:
        """Does this instance run the applier (a lone service with one always does)?"""
        if self.leadership is not None:
            return self.leadership.is_leader
        return self.applier is not None

    async def wait_applied(self, version: int, timeout: float) -> bool:
        """True once `version` is applied (by whichever instance leads); False after
        `timeout` s, or at once when nothing here can tell."""
        waits: list[Awaitable[bool]] = []
        if self.applier is not None:
            waits.append(self.applier.wait_applied(version, timeout))
        if self.watcher is not None:
            waits.append(self.watcher.wait(version, timeout))
        if not waits:
            return False
        tasks = [asyncio.ensure_future(w) for w in waits]
        try:
            for done in asyncio.as_completed(tasks):
                try:
                    if await done:
                        return True
                except Exception as exc:  # noqa: BLE001 - another waiter may still answer
                    log.warning("waiting for config version %d: %s", version,
                                type(exc).__name__)
            return False
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
