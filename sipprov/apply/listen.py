"""LISTEN for config changes committed by other processes (the CLI, another service).

On a connection of its own, reconnecting with backoff when it drops. The connection
also reads the config version every check_s seconds: a health check, and a safety net
for a NOTIFY that was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from sipprov.apply.tasks import cancel_and_wait
from sipprov.db.sql import config_state
from sipprov.db.sql import snapshot as snapshot_sql

log = logging.getLogger(__name__)

# The LISTEN connection also reads the config version this often.
LISTEN_CHECK_S = 5.0


class Listener:
    """Calls on_notify(version or None) for each NOTIFY, on_version(version) at each
    check and on_connected() each time it listens (anything committed meanwhile)."""

    def __init__(self, pool: asyncpg.Pool, *, on_notify: Callable[[int | None], None],
                 on_version: Callable[[int], None], on_connected: Callable[[], None],
                 backoff: Callable[[int], float], check_s: float = LISTEN_CHECK_S) -> None:
        self.pool = pool
        self.on_notify = on_notify
        self.on_version = on_version
        self.on_connected = on_connected
        self.backoff = backoff
        self.check_s = check_s
        self.listening = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sipprov-applier-listen")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        version: int | None = None
        with contextlib.suppress(ValueError):
            version = int(payload)
        self.on_notify(version)

    async def _run(self) -> None:
        failures = 0
        while True:
            conn: asyncpg.Connection | None = None
            lost = asyncio.Event()

            def on_lost(_conn: Any, lost: asyncio.Event = lost) -> None:
                lost.set()

            try:
                conn = await self.pool.acquire()
                conn.add_termination_listener(on_lost)
                await conn.add_listener(config_state.NOTIFY_CHANNEL, self._notified)
                self.listening = True
                failures = 0
                self.on_connected()
                while True:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(lost.wait(), self.check_s)
                    if lost.is_set():
                        raise ConnectionError("the LISTEN connection was closed")
                    self.on_version(int(await conn.fetchval(snapshot_sql.VERSION)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("LISTEN %s lost (%s); reconnecting in %.1f s",
                            config_state.NOTIFY_CHANNEL, exc, self.backoff(failures))
            finally:
                self.listening = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.remove_termination_listener(on_lost)
                    with contextlib.suppress(Exception):
                        await conn.remove_listener(config_state.NOTIFY_CHANNEL, self._notified)
                    with contextlib.suppress(Exception):
                        await self.pool.release(conn)
            await asyncio.sleep(self.backoff(failures))
