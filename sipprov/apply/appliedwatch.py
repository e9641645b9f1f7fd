"""`?wait=applied` on any instance: wait until config_state says a version is applied.

An instance that is not the leader applies nothing, so it cannot learn from its own
applier when a change is live; it reads config_state, as the CLI's --wait does. One
poller per process serves every waiting request (the database sees one read every
POLL_S however many requests wait), and it runs only while someone waits. On the
leader the in-process applier answers as well, whichever is first.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from sipprov.apply.tasks import cancel_and_wait
from sipprov.db.sql import config_state

log = logging.getLogger(__name__)

POLL_S = 0.1


class AppliedWatcher:
    def __init__(self, pool: asyncpg.Pool, poll_s: float = POLL_S) -> None:
        self.pool = pool
        self.poll_s = poll_s
        self.applied_version = 0
        self._cond = asyncio.Condition()
        self._waiters = 0
        self._task: asyncio.Task[None] | None = None

    async def wait(self, version: int, timeout: float) -> bool:
        """True once config_state.applied_version >= version; False after `timeout`."""
        if self.applied_version >= version:
            return True
        self._waiters += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="sipprov-applied-watch")
        try:
            async with self._cond:
                await asyncio.wait_for(
                    self._cond.wait_for(lambda: self.applied_version >= version), timeout)
            return True
        except TimeoutError:
            return self.applied_version >= version
        finally:
            self._waiters -= 1

    async def _poll(self) -> None:
        while self._waiters > 0:
            try:
                state = await config_state.read(self.pool)
            except Exception as exc:  # noqa: BLE001 - the database is away: keep trying
                log.debug("applied watch: %s", type(exc).__name__)
            else:
                if state.applied_version > self.applied_version:
                    async with self._cond:
                        self.applied_version = state.applied_version
                        self._cond.notify_all()
            await asyncio.sleep(self.poll_s)

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
