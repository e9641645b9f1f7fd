"""The applier: makes Asterisk match the database, coalescing bursts of changes.

Woken by an in-process notify() or a PostgreSQL NOTIFY (listen.py: the CLI or another
process changed something), it waits for the changes to stop arriving (coalesce.py),
then, holding the cross-process apply lock (connection.py):

    load one snapshot -> backend.apply (render, write, reload: backends/files.py)
    -> backend.verify (over AMI: verify.py) -> mark_applied(snapshot.version)

Failures never lose a change, they leave it pending (errors.py):
- Unavailable (Asterisk/AMI or PostgreSQL away): retry with exponential backoff; the
  files may already be written (a fresh Asterisk reads them at boot) but the version is
  only marked applied after a reload and a verification.
- Rejected (Asterisk refused a reload; the backend rolled back): recorded
  (config_state.last_error) and tried again on the next change or after a while.
- NotVerified (an endpoint missing, a queue member wrong): recorded, retried with
  backoff; nothing is rolled back (the rest of the change is live and correct).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from sipprov.apply import quarantine as quarantine_mod
from sipprov.apply import snapshot as snapshot_mod
from sipprov.apply.amilink import AmiFactory, AmiLink
from sipprov.apply.backends import ApplyBackend, ApplyRequest
from sipprov.apply.backends.files import FilesBackend
from sipprov.apply.backends.realtime import RealtimeBackend
from sipprov.apply.coalesce import Coalescer
from sipprov.apply.connection import DB_ERRORS, ApplyConnection
from sipprov.apply.errors import ApplyError, NotVerified, Rejected, Unavailable
from sipprov.apply.listen import Listener
from sipprov.apply.quarantine import QuarantineEntry
from sipprov.apply.render import Quarantined
from sipprov.apply.snapshot import Snapshot
from sipprov.apply.stats import ApplyStats
from sipprov.apply.worker import Worker
from sipprov.config import Config
from sipprov.db.sql import config_state

__all__ = ["Applier", "ApplyError", "ApplyResult", "NotVerified", "Rejected", "Unavailable"]

log = logging.getLogger(__name__)

# After a rejected reload (or a refused value), retry on the next change or after this
# long: a rejection is rarely cured by retrying at once, and each retry reloads.
REJECTED_RETRY_S = 60.0


@dataclass
class ApplyResult:
    version: int
    changed: list[str]
    reloaded: list[str]
    duration_ms: int
    # True: nothing to do (files identical, version already applied).
    noop: bool = False


def _ms(t0: float) -> int:
    return int((time.monotonic() - t0) * 1000)


class Applier:
    """The service's applier task. start() once; stop() drains the apply in flight."""

    def __init__(self, pool: asyncpg.Pool, cfg: Config, ami_factory: AmiFactory | None = None,
                 backend: ApplyBackend | None = None):
        self.pool = pool
        self.cfg = cfg
        self.directory = Path(cfg.generated_dir)
        self.worker = Worker()
        self.backend: ApplyBackend = backend or (
            RealtimeBackend(cfg, self.worker) if cfg.asterisk.backend == "realtime"
            else FilesBackend(cfg, self.worker))
        self.ami = AmiLink(cfg.asterisk, ami_factory)
        self.db = ApplyConnection(pool)
        self.coalescer = Coalescer()
        self.listener = Listener(pool, on_notify=self._on_notify, on_version=self._on_version,
                                 on_connected=self.coalescer.wake.set, backoff=self._backoff)
        self._stop_event = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._mutex = asyncio.Lock()
        self._applied_cond = asyncio.Condition()
        self._config_version = 0
        self._applied_version = 0
        # The version of the last snapshot an apply was attempted with.
        self._attempted_version = -1
        self._state_loaded = False
        self._stats = ApplyStats()
        # What the last render left out, as recorded (None: not recorded yet).
        self._quarantine: list[QuarantineEntry] = []
        self._quarantine_key: frozenset[tuple[str, int, str]] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Read the recorded state, start listening and apply whatever is pending.

        The first apply also runs when the versions match: if the files on disk differ
        from the render (edited, deleted, another release's templates) they are
        rewritten and reloaded.
        """
        if self._task is not None:
            return
        self._stopping = False
        self._stop_event.clear()
        try:
            await self._load_state(self.pool)
        except Exception as exc:  # read again by the first apply
            log.warning("applier: cannot read config_state yet: %s", exc)
        self.coalescer.wake.set()
        self._task = asyncio.create_task(self._run(), name="sipprov-applier")
        self.listener.start()
        log.info("applier started (config version %d, applied %d, files in %s)",
                 self._config_version, self._applied_version, self.directory)

    async def _load_state(self, conn: asyncpg.Connection | asyncpg.Pool) -> None:
        """What the previous runs recorded (once per Applier)."""
        state = await config_state.read(conn)
        self._state_loaded = True
        self._config_version = max(self._config_version, state.version)
        self._applied_version = max(self._applied_version, state.applied_version)
        self._stats.last_apply_ms = state.last_apply_ms
        self._stats.last_apply_at = state.applied_at
        self._stats.last_error = state.last_error
        self._stats.last_error_at = state.last_error_at
        if state.pending:
            self.backend.stale()

    async def stop(self) -> None:
        """Stop: the apply in flight finishes (drain), then the tasks end."""
        self._stopping = True
        self._stop_event.set()
        self.coalescer.wake.set()
        await self.listener.stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self.ami.close()
        await self.db.release()
        self.worker.shutdown()
        log.info("applier stopped (applied version %d)", self._applied_version)

    def notify(self) -> None:
        """Something changed (in this process): apply soon."""
        self.coalescer.changed()

    @property
    def applied_version(self) -> int:
        return self._applied_version

    async def wait_applied(self, version: int, timeout: float) -> bool:
        """True once `version` (or a later one) is applied; False after `timeout` s."""
        if self._applied_version >= version:
            return True
        try:
            async with self._applied_cond:
                await asyncio.wait_for(
                    self._applied_cond.wait_for(lambda: self._applied_version >= version),
                    timeout,
                )
        except TimeoutError:
            return self._applied_version >= version
        return True

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "config_version": self._config_version,
            "applied_version": self._applied_version,
            "pending": max(0, self._config_version - self._applied_version),
        }
        out.update(self._stats.as_dict())
        out.update(
            ami_connected=self.ami.connected,
            asterisk_version=self.ami.asterisk_version,
            listening=self.listener.listening,
            running=self._task is not None and not self._task.done(),
            busy=self._busy,
            quarantined=[q.to_dict() for q in self._quarantine],
        )
        return out

    # ------------------------------------------------------------------ the loop

    def _backoff(self, failures: int) -> float:
        a = self.cfg.applier
        return min(a.backoff_max_s, a.backoff_min_s * (2 ** max(0, failures - 1)))

    async def _sleep(self, seconds: float, wake_early: bool) -> None:
        """Sleep; stop() ends it early, and so does a change when wake_early."""
        waiters = [asyncio.ensure_future(self._stop_event.wait())]
        if wake_early:
            waiters.append(asyncio.ensure_future(self.coalescer.wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    def _on_notify(self, version: int | None) -> None:
        if version is not None:
            self._config_version = max(self._config_version, version)
        self.coalescer.changed()

    def _on_version(self, version: int) -> None:
        self._config_version = max(self._config_version, version)
        if version > max(self._applied_version, self._attempted_version):
            self.coalescer.wake.set()

    async def _run(self) -> None:
        wake = self.coalescer.wake
        failures = 0
        while not self._stopping:
            await wake.wait()
            if self._stopping:
                break
            await self.coalescer.debounce(self.cfg.applier.debounce_ms / 1000,
                                          lambda: self._stopping)
            if self._stopping:
                break
            try:
                await self.apply_once()
                failures = 0
            except (Unavailable, NotVerified) as exc:
                failures += 1
                delay = self._backoff(failures)
                log.warning("apply deferred, retrying in %.1f s: %s", delay, exc)
                await self._sleep(delay, wake_early=False)
                wake.set()
            except Rejected as exc:
                failures = 0
                log.error("apply failed (will retry on the next change or in %.0f s): %s",
                          REJECTED_RETRY_S, exc)
                await self._sleep(REJECTED_RETRY_S, wake_early=True)
                wake.set()
            except Exception as exc:  # a bug: keep the service up, retry later
                failures += 1
                delay = self._backoff(failures)
                log.exception("apply crashed, retrying in %.1f s", delay)
                await self._record_error(f"internal error: {type(exc).__name__}: {exc}")
                await self._sleep(delay, wake_early=False)
                wake.set()

    # ------------------------------------------------------------------ one apply

    async def apply_now(self, timeout: float) -> dict[str, Any]:
        """Force an apply (reload every module, verify everything) and wait for it,
        retrying with backoff until `timeout`. Returns status() plus `ok`/`error`."""
        deadline = time.monotonic() + timeout
        failures = 0
        error = ""
        while True:
            try:
                result = await self.apply_once(force=True)
                out = self.status()
                out.update(ok=True, error=None, version=result.version,
                           changed=result.changed, reloaded=result.reloaded)
                return out
            except ApplyError as exc:
                error = str(exc)
                failures += 1
                delay = self._backoff(failures)
                if isinstance(exc, Rejected) or time.monotonic() + delay > deadline:
                    break
                await asyncio.sleep(delay)
        out = self.status()
        out.update(ok=False, error=error)
        return out

    async def apply_once(self, force: bool = False) -> ApplyResult:
        """One apply, now. Raises Unavailable, NotVerified or Rejected (an ApplyError);
        the change then stays pending."""
        async with self._mutex:
            self._busy = True
            self._stats.attempts += 1
            try:
                return await self._apply_locked(force)
            except ApplyError as exc:
                self._stats.failures += 1
                await self._record_error(str(exc))
                raise
            finally:
                self._busy = False

    async def _apply_locked(self, force: bool) -> ApplyResult:
        t0 = time.monotonic()
        conn = await self.db.get()
        locked = False
        try:
            try:
                locked = await self.db.lock(conn)
                if not self._state_loaded:
                    await self._load_state(conn)
                await self.backend.prepare(conn)
                t_snap = time.monotonic()
                snap = await snapshot_mod.load(conn)
                phases = {"snapshot": _ms(t_snap)}
            except ApplyError:
                raise
            except DB_ERRORS as exc:
                await self.db.release()
                raise Unavailable(f"database: {exc}") from exc
            result = await self._apply_snapshot(snap, force, t0, phases)
            if not result.noop:
                try:
                    await config_state.mark_applied(conn, snap.version, result.duration_ms)
                except DB_ERRORS as exc:
                    # Asterisk has it; recorded by the retry (no reload needed then).
                    await self.db.release()
                    raise Unavailable(f"applied version {snap.version} but could not "
                                      f"record it: {exc}") from exc
            try:
                await self.backend.settled(conn)
            except DB_ERRORS as exc:  # tried again after the next apply
                log.warning("after version %d: %s", snap.version, exc)
            await self._set_applied(snap.version)
            return result
        finally:
            if locked:
                await self.db.unlock(conn)

    async def _apply_snapshot(self, snap: Snapshot, force: bool, t0: float,
                              phases: dict[str, int]) -> ApplyResult:
        """Hand one snapshot to the backend, verify, remember it as good."""
        self._attempted_version = snap.version
        self._config_version = max(self._config_version, snap.version)
        req = ApplyRequest(force=force, pending=snap.version > self._applied_version,
                           ami=self.ami.get, count_reload=self._stats.count_reload,
                           phases=phases, quarantine=self._record_quarantine,
                           db=self._db_for_backend)
        done = await self.backend.apply(snap, req)
        if done.noop:
            return ApplyResult(snap.version, [], [], _ms(t0), noop=True)
        held = done.held or snap
        if self.cfg.applier.verify:
            t = time.monotonic()
            ami = done.ami or await self.ami.get()
            await self.backend.verify(held, ami, force)
            phases["verify"] = _ms(t)
        await self.backend.accepted(held)
        ms = _ms(t0)
        self._stats.succeeded(ms, done.changed, phases)
        log.info("applied version %d in %d ms (reloaded: %s; %s)", snap.version, ms,
                 ", ".join(done.reloaded) or "nothing",
                 ", ".join(f"{k} {v} ms" for k, v in phases.items()))
        return ApplyResult(snap.version, done.changed, done.reloaded, ms)

    async def _db_for_backend(self) -> asyncpg.Connection:
        try:
            return await self.db.get()
        except DB_ERRORS as exc:
            await self.db.release()
            raise Unavailable(f"database: {exc}") from exc

    # ------------------------------------------------------------------ state

    async def _record_quarantine(self, items: list[Quarantined]) -> None:
        """Record what the render left out (only when it differs from the last record)."""
        key = frozenset((q.kind, q.id, q.reason) for q in items)
        if key == self._quarantine_key:
            return
        conn = await self.db.get()
        try:
            self._quarantine = await quarantine_mod.record(conn, items)
        except DB_ERRORS as exc:
            await self.db.release()
            raise Unavailable(f"database: {exc}") from exc
        self._quarantine_key = key

    async def _set_applied(self, version: int) -> None:
        async with self._applied_cond:
            if version > self._applied_version:
                self._applied_version = version
            self._applied_cond.notify_all()

    async def _record_error(self, message: str) -> None:
        """Record in the database first, then in status(): whoever sees the error in
        status() finds it in the database too (GET /status reads the database)."""
        try:
            conn = self.db.alive()
            if conn is not None:
                await config_state.mark_error(conn, message)
            else:
                await asyncio.wait_for(config_state.mark_error(self.pool, message), 5)
        except Exception as exc:
            log.debug("could not record the apply error: %s", exc)
        finally:
            self._stats.failed(message)
