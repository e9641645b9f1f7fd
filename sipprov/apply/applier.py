"""The applier: makes Asterisk match the database, coalescing bursts of changes.

Woken by an in-process notify() or a PostgreSQL NOTIFY (the CLI or another process
changed something), it waits for the changes to stop arriving (debounce, bounded by a
window that grows while a burst goes on, so 1,000 creates give a handful of applies),
then:

    load one snapshot -> render -> write only changed files -> reload only the modules
    whose files changed -> verify over AMI -> mark_applied(snapshot.version)

Failures never lose a change, they leave it pending:
- Asterisk/AMI or PostgreSQL away: retry with exponential backoff (reconnecting); the
  files may already be written (a fresh Asterisk reads them at boot) but the version is
  only marked applied after a reload and a verification.
- Asterisk answers a reload with an error: the last good files (`.prev`) are put back
  and reloaded, the error is recorded (config_state.last_error) and the apply is tried
  again on the next change or after a while.
- Verification fails (an endpoint missing, a queue member wrong): recorded, retried
  later; nothing is rolled back (the rest of the change is live and correct).

One apply runs at a time across processes (a PostgreSQL advisory lock), so the service
and `sipprov apply` never interleave their writes and reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from sipprov.apply import files as files_mod
from sipprov.apply import render as render_mod
from sipprov.apply import snapshot as snapshot_mod
from sipprov.apply.ami import AmiClient, AmiError
from sipprov.apply.snapshot import AgentConf, QueueConf, Snapshot
from sipprov.config import Config
from sipprov.db.sql import config_state
from sipprov.db.sql import snapshot as snapshot_sql

log = logging.getLogger(__name__)

AmiFactory = Callable[[], AmiClient]

# Coalescing. A change waits for debounce_ms of quiet, so a lone create is applied at
# once. More than SMALL_BATCH changes pending at once (changes that arrived while the
# previous apply ran, or during this wait: a script or a bulk job, not a person) mean a
# burst: then quiet means no change for BURST_QUIET_S (gaps inside a busy burst are
# often longer than debounce_ms), and the wait is bounded by the burst window, which
# grows (2, 10, 50, 60 s) for as long as bursts keep hitting it and falls back to
# BURST_WINDOW_S once a wait ends in quiet. So 1,000 creates give a handful of applies,
# the end of any burst is applied about BURST_QUIET_S after its last change, and a
# client creating one agent after another with ?wait=applied is never taken for a burst.
SMALL_BATCH = 1
BURST_QUIET_S = 1.0
BURST_WINDOW_S = 2.0
BURST_GROWTH = 5.0
BURST_WINDOW_MAX_S = 60.0
# Up to this many added/changed/removed endpoints are checked one by one
# (PJSIPShowEndpoint); more, and one PJSIPShowEndpoints listing is compared instead.
VERIFY_ONE_BY_ONE_MAX = 50
# Up to this many changed queues are asked one by one (QueueStatus Queue=...).
VERIFY_QUEUES_ONE_BY_ONE_MAX = 20
# The LISTEN connection also reads the config version this often: a health check of
# the connection and a safety net for a missed NOTIFY.
LISTEN_CHECK_S = 5.0
# After a rejected reload (or a refused value), retry on the next change or after this
# long: a rejection is rarely cured by retrying at once, and each retry reloads.
REJECTED_RETRY_S = 60.0
# How long to wait for another process's apply to finish.
APPLY_LOCK_TIMEOUT_S = 120.0


_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


class ApplyError(Exception):
    """An apply did not complete; the change stays pending."""


class Unavailable(ApplyError):
    """Asterisk (AMI) or PostgreSQL cannot be reached: retry with backoff."""


class NotVerified(ApplyError):
    """Reloaded, but Asterisk does not show what was rendered (or could not be asked):
    retried with backoff; a retry without new changes only verifies again (cheap)."""


class Rejected(ApplyError):
    """Asterisk refused the reload, or the render refused a value: recorded, retried on
    the next change or after REJECTED_RETRY_S (a retry writes and reloads again)."""


@dataclass
class ApplyResult:
    version: int
    changed: list[str]
    reloaded: list[str]
    duration_ms: int
    # True: nothing to do (files identical, version already applied).
    noop: bool = False


@dataclass
class _Stats:
    applies: int = 0
    attempts: int = 0
    failures: int = 0
    last_apply_ms: int | None = None
    last_apply_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_changed: list[str] = field(default_factory=list)
    last_phases_ms: dict[str, int] = field(default_factory=dict)
    reloads: dict[str, int] = field(
        default_factory=lambda: {m: 0 for m in render_mod.MODULE_FOR_FILE.values()}
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class Applier:
    """The service's applier task. start() once; stop() drains the apply in flight."""

    def __init__(self, pool: asyncpg.Pool, cfg: Config, ami_factory: AmiFactory | None = None):
        self.pool = pool
        self.cfg = cfg
        self.ami_factory: AmiFactory = ami_factory or (lambda: AmiClient(cfg.asterisk))
        self.directory = Path(cfg.generated_dir)
        self._ami: AmiClient | None = None
        self._asterisk_version: str | None = None
        self._wake = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._listening = False
        self._busy = False
        self._mutex = asyncio.Lock()
        self._applied_cond = asyncio.Condition()
        self._config_version = 0
        self._applied_version = 0
        # The version of the last snapshot an apply was attempted with.
        self._attempted_version = -1
        # Files written whose module has not been reloaded successfully since.
        self._unreloaded: set[str] = set()
        # What Asterisk was last verified to hold (None: unknown, verify everything).
        self._verified_agents: dict[int, AgentConf] | None = None
        self._verified_queues: dict[str, QueueConf] | None = None
        self._burst_window = BURST_WINDOW_S
        # Changes signalled (NOTIFY or notify()), and how many the last apply covered.
        self._changes = 0
        self._changes_applied = 0
        self._state_loaded = False
        self._stats = _Stats()
        self._conn: asyncpg.Connection | None = None
        # Render and file writes run on a thread of their own: the default executor
        # may be queued full of password hashes during a bulk create.
        self._executor: ThreadPoolExecutor | None = None

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
        self._wake.set()
        self._task = asyncio.create_task(self._run(), name="sipprov-applier")
        self._listen_task = asyncio.create_task(self._listen(), name="sipprov-applier-listen")
        log.info("applier started (config version %d, applied %d, files in %s)",
                 self._config_version, self._applied_version, self.directory)

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sipprov-applier")
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(fn, *args))

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
            # A previous run may have written the files and died before the reload.
            self._unreloaded.update(render_mod.FILES)

    async def stop(self) -> None:
        """Stop: the apply in flight finishes (drain), then the tasks end."""
        self._stopping = True
        self._stop_event.set()
        self._wake.set()
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listen_task
            self._listen_task = None
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._close_ami()
        await self._release_connection()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        log.info("applier stopped (applied version %d)", self._applied_version)

    def notify(self) -> None:
        """Something changed (in this process): apply soon."""
        self._changed()

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
        s = self._stats
        return {
            "config_version": self._config_version,
            "applied_version": self._applied_version,
            "pending": max(0, self._config_version - self._applied_version),
            "applies": s.applies,
            "attempts": s.attempts,
            "failures": s.failures,
            "last_apply_ms": s.last_apply_ms,
            "last_apply_at": _iso(s.last_apply_at),
            "last_changed": list(s.last_changed),
            "last_phases_ms": dict(s.last_phases_ms),
            "last_error": s.last_error,
            "last_error_at": _iso(s.last_error_at),
            "reloads": dict(s.reloads),
            "ami_connected": bool(self._ami is not None and self._ami.connected),
            "asterisk_version": self._asterisk_version,
            "listening": self._listening,
            "running": self._task is not None and not self._task.done(),
            "busy": self._busy,
        }

    # ------------------------------------------------------------------ the loop

    def _backoff(self, failures: int) -> float:
        a = self.cfg.applier
        return min(a.backoff_max_s, a.backoff_min_s * (2 ** max(0, failures - 1)))

    async def _sleep(self, seconds: float, wake_early: bool) -> None:
        """Sleep; stop() ends it early, and so does a change when wake_early."""
        waiters = [asyncio.ensure_future(self._stop_event.wait())]
        if wake_early:
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    def _changed(self) -> None:
        self._changes += 1
        self._wake.set()

    async def _debounce(self) -> None:
        """Wait until the changes stop (see SMALL_BATCH, BURST_QUIET_S), at most the
        burst window; grow the window if it was hit, reset it otherwise."""
        debounce = max(0.0, self.cfg.applier.debounce_ms / 1000)
        window = self._burst_window
        start = time.monotonic()
        capped = False
        while not self._stopping:
            self._wake.clear()
            if debounce == 0:
                break
            left = start + window - time.monotonic()
            if left <= 0:
                capped = True
                break
            burst = self._changes - self._changes_applied > SMALL_BATCH
            quiet = max(debounce, BURST_QUIET_S) if burst else debounce
            try:
                await asyncio.wait_for(self._wake.wait(), min(quiet, left))
            except TimeoutError:
                capped = left <= quiet  # the window ran out, not the changes
                break
        log.debug("coalesced %d change(s) in %.2f s (window %.0f s%s)",
                  self._changes - self._changes_applied, time.monotonic() - start, window,
                  ", hit" if capped else "")
        # What the coming apply covers (changes after this point trigger the next one).
        self._changes_applied = self._changes
        self._burst_window = (
            min(BURST_WINDOW_MAX_S, window * BURST_GROWTH) if capped else BURST_WINDOW_S
        )

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            await self._wake.wait()
            if self._stopping:
                break
            await self._debounce()
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
                self._wake.set()
            except Rejected as exc:
                failures = 0
                log.error("apply failed (will retry on the next change or in %.0f s): %s",
                          REJECTED_RETRY_S, exc)
                await self._sleep(REJECTED_RETRY_S, wake_early=True)
                self._wake.set()
            except Exception as exc:  # a bug: keep the service up, retry later
                failures += 1
                delay = self._backoff(failures)
                log.exception("apply crashed, retrying in %.1f s", delay)
                await self._record_error(f"internal error: {type(exc).__name__}: {exc}")
                await self._sleep(delay, wake_early=False)
                self._wake.set()

    # ------------------------------------------------------------------ LISTEN

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._config_version = max(self._config_version, int(payload))
        self._changed()

    async def _listen(self) -> None:
        """LISTEN on a connection of its own; reconnect with backoff when it drops."""
        failures = 0
        while not self._stopping:
            conn: asyncpg.Connection | None = None
            lost = asyncio.Event()

            def on_lost(_conn: Any, lost: asyncio.Event = lost) -> None:
                lost.set()

            try:
                conn = await self.pool.acquire()
                conn.add_termination_listener(on_lost)
                await conn.add_listener(config_state.NOTIFY_CHANNEL, self._on_notify)
                self._listening = True
                failures = 0
                # Anything committed while we were not listening.
                self._wake.set()
                while not self._stopping:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(lost.wait(), LISTEN_CHECK_S)
                    if lost.is_set():
                        raise ConnectionError("the LISTEN connection was closed")
                    version = int(await conn.fetchval(snapshot_sql.VERSION))
                    self._config_version = max(self._config_version, version)
                    if version > max(self._applied_version, self._attempted_version):
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = self._backoff(failures)
                log.warning("LISTEN %s lost (%s); reconnecting in %.1f s",
                            config_state.NOTIFY_CHANNEL, exc, delay)
            finally:
                self._listening = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.remove_termination_listener(on_lost)
                    with contextlib.suppress(Exception):
                        await conn.remove_listener(config_state.NOTIFY_CHANNEL, self._on_notify)
                    with contextlib.suppress(Exception):
                        await self.pool.release(conn)
            if not self._stopping:
                await self._sleep(self._backoff(failures), wake_early=False)

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

    async def _connection(self) -> asyncpg.Connection:
        """The applier's own connection, kept between applies: taking one from the
        shared pool for every apply would queue it behind a burst of creates."""
        if self._conn is not None:
            try:
                if not self._conn.is_closed():
                    return self._conn
            except asyncpg.InterfaceError:
                # The connection died (PostgreSQL restarted) and the pool took it back:
                # the proxy is detached, and even is_closed() raises. Take a new one.
                self._conn = None
        await self._release_connection()
        try:
            self._conn = await self.pool.acquire()
        except Exception as exc:
            raise Unavailable(f"database: {exc}") from exc
        return self._conn

    async def _release_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await self.pool.release(conn)

    async def _apply_locked(self, force: bool) -> ApplyResult:
        t0 = time.monotonic()
        conn = await self._connection()
        locked = False
        try:
            try:
                locked = await self._lock(conn)
                if not self._state_loaded:
                    await self._load_state(conn)
                t_snap = time.monotonic()
                snap = await snapshot_mod.load(conn)
                phases = {"snapshot": self._ms(t_snap)}
            except ApplyError:
                raise
            except _DB_ERRORS as exc:
                await self._release_connection()
                raise Unavailable(f"database: {exc}") from exc
            result = await self._apply_snapshot(snap, force, t0, phases)
            if not result.noop:
                try:
                    await config_state.mark_applied(conn, snap.version, result.duration_ms)
                except _DB_ERRORS as exc:
                    # Asterisk has it; recorded by the retry (no reload needed then).
                    await self._release_connection()
                    raise Unavailable(f"applied version {snap.version} but could not "
                                      f"record it: {exc}") from exc
            await self._set_applied(snap.version)
            return result
        finally:
            if locked and self._conn is conn:
                try:
                    await conn.execute(snapshot_sql.APPLY_UNLOCK)
                except Exception:
                    await self._release_connection()

    async def _lock(self, conn: asyncpg.Connection) -> bool:
        deadline = time.monotonic() + APPLY_LOCK_TIMEOUT_S
        while True:
            if await conn.fetchval(snapshot_sql.TRY_APPLY_LOCK):
                return True
            if time.monotonic() > deadline:
                raise Unavailable("another process has been applying for too long")
            await asyncio.sleep(0.05)

    async def _apply_snapshot(self, snap: Snapshot, force: bool, t0: float,
                              phases: dict[str, int]) -> ApplyResult:
        """Render, write, reload, verify one snapshot; `phases` collects timings (ms)."""
        self._attempted_version = snap.version
        self._config_version = max(self._config_version, snap.version)
        t = time.monotonic()
        try:
            rendered = await self._in_thread(render_mod.render, snap, self.cfg)
        except render_mod.UnsafeValueError as exc:
            raise Rejected(f"render refused a value: {exc}") from exc
        phases["render"] = self._ms(t)
        t = time.monotonic()
        changed = await self._in_thread(
            files_mod.write_changed, self.directory, rendered, self.cfg.security.file_mode
        )
        phases["write"] = self._ms(t)
        self._unreloaded.update(changed)
        if force:
            self._unreloaded.update(render_mod.FILES)
        pending = snap.version > self._applied_version
        if not self._unreloaded and not pending:
            # Nothing written, nothing new: Asterisk already has it.
            if self._verified_agents is None:
                self._set_verified(snap)
            return ApplyResult(snap.version, [], [], self._ms(t0), noop=True)
        if changed:
            log.info("version %d: wrote %s (%d agents, %d voice queues)",
                     snap.version, ", ".join(changed), len(snap.agents), len(snap.queues))
        ami = await self._connected_ami()
        reloaded: list[str] = []
        for name in render_mod.FILES:
            if name not in self._unreloaded:
                continue
            module = render_mod.MODULE_FOR_FILE[name]
            t = time.monotonic()
            try:
                await ami.reload(module)
            except AmiError as exc:
                if not ami.connected:
                    raise Unavailable(str(exc)) from exc
                await self._roll_back(ami, f"Asterisk rejected the reload of {module}: {exc}")
            phases[f"reload {module}"] = self._ms(t)
            self._stats.reloads[module] += 1
            self._unreloaded.discard(name)
            reloaded.append(module)
        if self.cfg.applier.verify:
            t = time.monotonic()
            await self._verify(ami, snap, force)
            phases["verify"] = self._ms(t)
        self._set_verified(snap)
        await self._in_thread(files_mod.keep_good, self.directory, render_mod.FILES)
        ms = self._ms(t0)
        s = self._stats
        s.applies += 1
        s.last_apply_ms = ms
        s.last_apply_at = _now()
        s.last_changed = changed
        s.last_phases_ms = dict(phases)
        s.last_error = None
        s.last_error_at = None
        log.info("applied version %d in %d ms (reloaded: %s; %s)", snap.version, ms,
                 ", ".join(reloaded) or "nothing",
                 ", ".join(f"{k} {v} ms" for k, v in phases.items()))
        return ApplyResult(snap.version, changed, reloaded, ms)

    @staticmethod
    def _ms(t0: float) -> int:
        return int((time.monotonic() - t0) * 1000)

    async def _roll_back(self, ami: AmiClient, reason: str) -> None:
        """Put the last good files back, reload them, raise Rejected(reason)."""
        log.error("%s; restoring the last good files", reason)
        restored = await self._in_thread(
            files_mod.restore_good, self.directory, render_mod.FILES, self.cfg.security.file_mode
        )
        for name in render_mod.FILES:
            if name not in restored and name not in self._unreloaded:
                continue
            module = render_mod.MODULE_FOR_FILE[name]
            try:
                await ami.reload(module)
                self._stats.reloads[module] += 1
                self._unreloaded.discard(name)
            except AmiError as exc:
                log.error("reload of %s after restoring failed: %s", module, exc)
        # What Asterisk holds is no longer what was last verified.
        self._verified_agents = None
        self._verified_queues = None
        raise Rejected(reason)

    # ------------------------------------------------------------------ AMI

    async def _connected_ami(self) -> AmiClient:
        if self._ami is not None and self._ami.connected:
            return self._ami
        await self._close_ami()
        client = self.ami_factory()
        try:
            await client.connect()
        except AmiError as exc:
            with contextlib.suppress(Exception):
                await client.close()
            raise Unavailable(str(exc)) from exc
        except OSError as exc:
            raise Unavailable(f"AMI: {exc}") from exc
        try:
            # AMI answers while Asterisk still boots; a reload then is only queued and
            # queries are refused ("Permission denied"): wait for the end of the boot.
            await client.command("core waitfullybooted")
        except AmiError as exc:
            with contextlib.suppress(Exception):
                await client.close()
            raise Unavailable(f"Asterisk is not fully booted: {exc}") from exc
        self._ami = client
        try:
            self._asterisk_version = await client.version()
        except Exception as exc:  # informational only
            log.debug("could not read the Asterisk version: %s", exc)
        log.info("AMI connected to %s:%s (Asterisk %s)", self.cfg.asterisk.ami_host,
                 self.cfg.asterisk.ami_port, self._asterisk_version or "?")
        return client

    async def _close_ami(self) -> None:
        client, self._ami = self._ami, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()

    # ------------------------------------------------------------------ verify

    async def _verify(self, ami: AmiClient, snap: Snapshot, force: bool) -> None:
        # Against what was last verified, not against this attempt's reloads: a retry
        # after a failed verification reloads nothing but must still verify.
        try:
            await self._verify_endpoints(ami, snap, force)
            await self._verify_queues(ami, snap, force)
        except AmiError as exc:
            if not ami.connected:
                raise Unavailable(str(exc)) from exc
            raise NotVerified(f"verification: {exc}") from exc

    async def _verify_endpoints(self, ami: AmiClient, snap: Snapshot, force: bool) -> None:
        current = {a.extension: a for a in snap.agents}
        before = self._verified_agents
        if before is None or force:
            must_exist = set(current)
            removed = set(before or ()) - set(current)
        else:
            must_exist = {e for e, a in current.items() if before.get(e) != a}
            removed = set(before) - set(current)
        if not must_exist and not removed:
            return
        if not force and before is not None and len(must_exist) + len(removed) <= VERIFY_ONE_BY_ONE_MAX:
            missing = [e for e in sorted(must_exist)
                       if not await ami.pjsip_endpoint_exists(str(e))]
            still = [e for e in sorted(removed) if await ami.pjsip_endpoint_exists(str(e))]
        else:
            loaded = await ami.pjsip_endpoints()
            missing = [e for e in sorted(must_exist) if str(e) not in loaded]
            still = [e for e in sorted(removed) if str(e) in loaded]
        problems = []
        if missing:
            problems.append(f"{len(missing)} endpoint(s) missing in Asterisk "
                            f"(e.g. {', '.join(map(str, missing[:5]))})")
        if still:
            problems.append(f"{len(still)} removed endpoint(s) still in Asterisk "
                            f"(e.g. {', '.join(map(str, still[:5]))})")
        if problems:
            raise NotVerified("verification: " + "; ".join(problems))

    async def _verify_queues(self, ami: AmiClient, snap: Snapshot, force: bool) -> None:
        current = {q.name: q for q in snap.queues}
        before = self._verified_queues
        if before is None or force:
            check = set(current)
            removed = set(before or ()) - set(current)
        else:
            check = {n for n, q in current.items() if before.get(n) != q}
            removed = set(before) - set(current)
        if not check and not removed:
            return
        names = sorted(check | removed)
        if len(names) <= VERIFY_QUEUES_ONE_BY_ONE_MAX:
            status: dict[str, list[Any]] = {}
            for name in names:
                status.update(await ami.queue_status(name))
        else:
            status = await ami.queue_status()
        problems = []
        for name in sorted(check):
            if name not in status:
                problems.append(f"queue {name} missing")
                continue
            want = {f"PJSIP/{m.extension}": m.penalty for m in current[name].members}
            have = {m.interface: m.penalty for m in status[name]
                    if m.membership in ("static", "")}
            if have != want:
                wrong = sorted(set(want.items()) ^ set(have.items()))
                problems.append(f"queue {name}: {len(wrong)} member(s) differ "
                                f"(e.g. {', '.join(f'{i}:{p}' for i, p in wrong[:3])})")
        for name in sorted(removed):
            if status.get(name):
                problems.append(f"removed queue {name} still has members")
        if problems:
            raise NotVerified("verification: " + "; ".join(problems))

    def _set_verified(self, snap: Snapshot) -> None:
        self._verified_agents = {a.extension: a for a in snap.agents}
        self._verified_queues = {q.name: q for q in snap.queues}

    # ------------------------------------------------------------------ state

    async def _set_applied(self, version: int) -> None:
        async with self._applied_cond:
            if version > self._applied_version:
                self._applied_version = version
            self._applied_cond.notify_all()

    async def _record_error(self, message: str) -> None:
        self._stats.last_error = message
        self._stats.last_error_at = _now()
        try:
            conn = self._conn if self._conn is not None and not self._conn.is_closed() else None
            if conn is not None:
                await config_state.mark_error(conn, message)
            else:
                await asyncio.wait_for(config_state.mark_error(self.pool, message), 5)
        except Exception as exc:
            log.debug("could not record the apply error: %s", exc)
