"""Which `sipprov serve` instance runs the applier loop and the phone tracker.

Several instances may serve the API on one PostgreSQL; exactly one of them, the
leader, applies and watches the phones. The lease is a session-level advisory lock
held on a connection of its own (docs/decisions.md, docs/scale-out.md):

- a follower tries `pg_try_advisory_lock` every `leader_poll_s`; when the leader's
  process dies, its socket closes, PostgreSQL ends the session and frees the lock at
  once, and the next try wins (takeover within leader_poll_s plus the applier's start);
- the leader confirms its connection every `leader_check_s`; when it cannot confirm for
  `leader_lease_s` (PostgreSQL away, network cut) it stops acting as leader (within
  STEP_DOWN_S more) and drops the connection. The connection asks PostgreSQL for TCP
  keepalives that give up later than that (idle leader_lease_s + STEP_DOWN_S, then 3
  probes 1 s apart), so a leader cut off from the database has stepped down before
  PostgreSQL frees the lock for another;
- the connection's application_name names the instance, so anyone can ask the
  database who leads (pg_locks joined with pg_stat_activity: leader_sql.HOLDER).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from sipprov.apply.tasks import cancel_and_wait
from sipprov.config import ApplierConfig
from sipprov.db.sql import leader as leader_sql

log = logging.getLogger(__name__)

# Stepping down (on_deposed: the applier and the phone tracker stop) may take this long.
STEP_DOWN_S = 2.0
# PostgreSQL's TCP keepalive on the lease connection: probes after `leader_lease_s` +
# STEP_DOWN_S of silence, KEEPALIVE_COUNT of them KEEPALIVE_INTERVAL_S apart, then the
# session ends and the lease is free: 3 s later than a cut-off leader has stepped down.
KEEPALIVE_INTERVAL_S = 1
KEEPALIVE_COUNT = 3
APPLICATION_PREFIX = "sipprov-leader "


def instance_id(configured: str = "") -> str:
    """This instance's name: the configured one, else hostname:pid."""
    return configured or f"{socket.gethostname()}:{os.getpid()}"


def server_settings(ident: str, cfg: ApplierConfig) -> dict[str, str]:
    """Session settings of the lease connection (see the module docstring)."""
    return {
        "application_name": (APPLICATION_PREFIX + ident)[:63],
        "tcp_keepalives_idle": str(math.ceil(cfg.leader_lease_s + STEP_DOWN_S)),
        "tcp_keepalives_interval": str(KEEPALIVE_INTERVAL_S),
        "tcp_keepalives_count": str(KEEPALIVE_COUNT),
    }


async def current_leader(conn: asyncpg.Connection | asyncpg.Pool) -> str | None:
    """The instance holding the lease now, as the database sees it (None: nobody)."""
    name = await conn.fetchval(leader_sql.HOLDER)
    return name[len(APPLICATION_PREFIX):] if name else None


class Leadership:
    """Holds or waits for the lease; calls on_elected() / on_deposed() as it changes.

    on_deposed is given STEP_DOWN_S and then cancelled: it must stop the applier's work
    first and clean up after (stepping down is what keeps two appliers apart).
    """

    def __init__(self, dsn: str, cfg: ApplierConfig, ident: str, *,
                 on_elected: Callable[[], Awaitable[None]],
                 on_deposed: Callable[[], Awaitable[None]]) -> None:
        self.dsn = dsn
        self.cfg = cfg
        self.ident = ident
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.is_leader = False
        self.since: float | None = None  # time.time() of the election
        self.terms = 0
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Make the first try now (a lone instance leads before it serves), then keep
        trying or confirming in the background."""
        await self._try_once()
        self._task = asyncio.create_task(self._run(), name="sipprov-leadership")

    async def stop(self) -> None:
        """Step down (the lock is released by closing the session) and stop trying."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self._step_down("stopping")

    # ------------------------------------------------------------------ internals

    async def _connect(self) -> asyncpg.Connection:
        conn = await asyncio.wait_for(
            asyncpg.connect(self.dsn, server_settings=server_settings(self.ident, self.cfg)),
            self.cfg.leader_lease_s)
        lost = self._lost

        def on_lost(_conn: Any) -> None:
            lost.set()

        conn.add_termination_listener(on_lost)
        return conn

    async def _try_once(self) -> None:
        """One follower's try: connect if needed, take the lock if it is free."""
        try:
            if self._conn is None or self._conn.is_closed():
                self._lost.clear()
                self._conn = await self._connect()
            got = await asyncio.wait_for(self._conn.fetchval(leader_sql.TRY_LOCK),
                                         self.cfg.leader_lease_s)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the database is away: try again later
            log.debug("leadership: cannot try the lease: %s", exc)
            await self._drop_connection()
            return
        if got:
            self.is_leader = True
            self.since = time.time()
            self.terms += 1
            log.info("leadership: %s is the applier leader now", self.ident)
            try:
                await self.on_elected()
            except Exception:
                log.exception("leadership: starting the applier failed; stepping down")
                await self._step_down("the applier did not start")

    async def _run(self) -> None:
        while True:
            if not self.is_leader:
                await asyncio.sleep(self.cfg.leader_poll_s)
                await self._try_once()
                continue
            await self._hold()

    async def _hold(self) -> None:
        """While leader: confirm the session every leader_check_s; step down when it is
        lost, or when no confirmation came for leader_lease_s."""
        confirmed = time.monotonic()
        while self.is_leader:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self.cfg.leader_check_s)
            if self._lost.is_set():
                await self._step_down("the lease connection was closed")
                return
            left = confirmed + self.cfg.leader_lease_s - time.monotonic()
            try:
                assert self._conn is not None
                held = await asyncio.wait_for(self._conn.fetchval(leader_sql.HOLDS),
                                              max(0.05, left))
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - cannot confirm: the lease runs out
                await self._step_down(f"cannot confirm the lease: {type(exc).__name__}")
                return
            if not held:
                await self._step_down("the lock is no longer held")
                return
            confirmed = time.monotonic()

    async def _step_down(self, why: str) -> None:
        was = self.is_leader
        self.is_leader = False
        self.since = None
        if was:
            log.warning("leadership: %s steps down: %s", self.ident, why)
            try:
                await asyncio.wait_for(self.on_deposed(), STEP_DOWN_S)
            except TimeoutError:
                log.warning("leadership: the applier's clean-up outlasted %.0f s", STEP_DOWN_S)
            except Exception:
                log.exception("leadership: stopping the applier failed")
        await self._drop_connection()

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # terminate(): no goodbye round trip that could hang on a dead network.
            with contextlib.suppress(Exception):
                conn.terminate()
