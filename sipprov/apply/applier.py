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

Several Asterisk nodes ([[asterisk.nodes]], nodes.py): each snapshot goes to every
node side by side, each node getting what its site serves. A node that is Unavailable
keeps its old version (node_state) and is retried with backoff while the others go on;
the version counts as applied (config_state, ?wait=applied) once every reachable node
holds it. Only when no node is reachable is the apply Unavailable as a whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from sipprov.apply import quarantine as quarantine_mod
from sipprov.apply import snapshot as snapshot_mod
from sipprov.apply.amilink import AmiFactory, AmiLink
from sipprov.apply.backends import ApplyBackend, ApplyRequest, BackendResult
from sipprov.apply.coalesce import Coalescer
from sipprov.apply.connection import DB_ERRORS, ApplyConnection
from sipprov.apply.errors import ApplyError, NotVerified, Rejected, Unavailable
from sipprov.apply.listen import Listener
from sipprov.apply.nodes import NodeRunner
from sipprov.apply.quarantine import QuarantineEntry
from sipprov.apply.render import Quarantined
from sipprov.apply.snapshot import Snapshot
from sipprov.apply.stats import ApplyStats
from sipprov.apply.worker import Worker
from sipprov.config import Config
from sipprov.db.sql import config_state
from sipprov.db.sql import nodes as nodes_sql

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
    # Nodes that were unreachable (they keep their old version; retried with backoff).
    lagging: list[str] = field(default_factory=list)


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
        # `backend` (tests) is the one node's.
        self.nodes = [NodeRunner(cfg, node, self.worker, ami_factory,
                                 backend if i == 0 else None)
                      for i, node in enumerate(cfg.nodes)]
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
        self._quarantine_lock = asyncio.Lock()
        # re-reads only changed agents (snapshot.SnapshotLoader)
        self._snapshots = snapshot_mod.SnapshotLoader()

    @property
    def backend(self) -> ApplyBackend:
        """The first node's backend (the only one without [[asterisk.nodes]])."""
        return self.nodes[0].backend

    @property
    def ami(self) -> AmiLink:
        """The first node's AMI link."""
        return self.nodes[0].ami

    def backends(self) -> list[ApplyBackend]:
        return [n.backend for n in self.nodes]

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
        recorded = await nodes_sql.read_all(conn)
        for node in self.nodes:
            row = recorded.get(node.name)
            if row is not None:
                node.applied_version = max(node.applied_version, row.applied_version)
                node.applied_at = node.applied_at or row.applied_at
            elif len(self.nodes) == 1:  # recorded before node_state existed
                node.applied_version = max(node.applied_version, state.applied_version)
            if state.pending or node.applied_version < state.version:
                node.backend.stale()

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
        for node in self.nodes:
            await node.ami.close()
        await self.db.release()
        self.worker.shutdown()
        log.info("applier stopped (applied version %d)", self._applied_version)

    async def abort(self, timeout: float = 2.0) -> None:
        """Stop at once, within about `timeout` (leadership lost): the apply in flight is
        cancelled, not drained, and the applier's session is ended, which frees the
        apply lock it may hold for the next leader."""
        self._stopping = True
        self._stop_event.set()
        self.coalescer.wake.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=timeout)
        await self.listener.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*(n.ami.close() for n in self.nodes)),
                                   timeout)
        conn, self.db.conn = self.db.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.release(conn), timeout)
        self.worker.shutdown()
        log.info("applier aborted (applied version %d)", self._applied_version)

    def notify(self) -> None:
        """Something changed (in this process): apply soon."""
        self.coalescer.changed()

    @property
    def stats(self) -> ApplyStats:
        return self._stats

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
            nodes=[n.status() for n in self.nodes],
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
        lagging = 0
        while not self._stopping:
            await wake.wait()
            if self._stopping:
                break
            await self.coalescer.debounce(self.cfg.applier.debounce_ms / 1000,
                                          lambda: self._stopping)
            if self._stopping:
                break
            try:
                result = await self.apply_once()
                failures = 0
                if result.lagging:
                    # some nodes are away: try them again, but let changes through
                    lagging += 1
                    delay = self._backoff(lagging)
                    log.warning("node(s) %s unreachable, retrying in %.1f s",
                                ", ".join(result.lagging), delay)
                    await self._sleep(delay, wake_early=True)
                    wake.set()
                else:
                    lagging = 0
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
                for node in self.nodes:
                    await node.backend.prepare(conn)
                t_snap = time.monotonic()
                snap = await self._snapshots.load(conn, prune=True)
                phases = {"snapshot": _ms(t_snap)}
            except ApplyError:
                raise
            except DB_ERRORS as exc:
                await self.db.release()
                raise Unavailable(f"database: {exc}") from exc
            result = await self._apply_nodes(conn, snap, force, t0, phases)
            # a noop still records a version the nodes hold but config_state does not
            # (Asterisk got it, then recording it failed)
            if not result.noop or snap.version > self._applied_version:
                try:
                    await config_state.mark_applied(conn, snap.version, result.duration_ms)
                except DB_ERRORS as exc:
                    # Asterisk has it; recorded by the retry (no reload needed then).
                    await self.db.release()
                    raise Unavailable(f"applied version {snap.version} but could not "
                                      f"record it: {exc}") from exc
            try:
                for node in self.nodes:
                    await node.backend.settled(conn)
            except DB_ERRORS as exc:  # tried again after the next apply
                log.warning("after version %d: %s", snap.version, exc)
            await self._set_applied(snap.version)
            return result
        finally:
            if locked:
                await self.db.unlock(conn)

    async def _apply_nodes(self, conn: asyncpg.Connection, snap: Snapshot, force: bool,
                           t0: float, phases: dict[str, int]) -> ApplyResult:
        """Every node gets the snapshot (side by side); record what each holds.

        Unavailable nodes lag (retried by the loop); the apply fails as a whole only
        when no node is reachable, or a reachable one rejected or failed to verify."""
        self._attempted_version = snap.version
        self._config_version = max(self._config_version, snap.version)
        several = len(self.nodes) > 1
        node_phases: list[dict[str, int]] = [{} for _ in self.nodes]
        outcomes = await asyncio.gather(
            *(self._apply_node(n, snap, force, p) for n, p in zip(self.nodes, node_phases, strict=True)),
            return_exceptions=True)
        done: list[BackendResult] = []
        errors: list[BaseException] = []
        lagging: list[str] = []
        for node, out, p in zip(self.nodes, outcomes, node_phases, strict=True):
            phases.update({f"{node.name}: {k}" if several else k: v for k, v in p.items()})
            if isinstance(out, BackendResult):
                node.succeeded(snap.version)
                done.append(out)
                continue
            message = f"{node.name}: {out}" if several else str(out)
            node.failed(message, reachable=not isinstance(out, Unavailable))
            if isinstance(out, Unavailable):
                lagging.append(node.name)
            errors.append(out)
        try:
            await nodes_sql.record(conn, [n.record_row() for n in self.nodes])
        except DB_ERRORS as exc:  # recorded with the next apply
            log.warning("could not record the nodes' state: %s", exc)
        for error in errors:
            if not isinstance(error, ApplyError):
                raise error
        if errors and (not done or any(not isinstance(e, Unavailable) for e in errors)):
            worst = next((e for e in errors if isinstance(e, Rejected)),
                         next((e for e in errors if isinstance(e, NotVerified)), errors[0]))
            message = "; ".join(str(n.last_error) for n in self.nodes if n.last_error)
            raise type(worst)(message) from worst
        changed = sorted({c for d in done for c in d.changed})
        reloaded = sorted({r for d in done for r in d.reloaded})
        ms = _ms(t0)
        if all(d.noop for d in done):
            return ApplyResult(snap.version, [], [], ms, noop=True, lagging=lagging)
        self._stats.succeeded(ms, changed, phases)
        log.info("applied version %d in %d ms%s (reloaded: %s; %s)", snap.version, ms,
                 f" (unreachable: {', '.join(lagging)})" if lagging else "",
                 ", ".join(reloaded) or "nothing",
                 ", ".join(f"{k} {v} ms" for k, v in phases.items()))
        return ApplyResult(snap.version, changed, reloaded, ms, lagging=lagging)

    async def _apply_node(self, node: NodeRunner, full: Snapshot, force: bool,
                          phases: dict[str, int]) -> BackendResult:
        """Hand one node its part of the snapshot, verify, remember it as good."""
        snap = snapshot_mod.for_site(full, node.node.site)

        async def quarantine(items: list[Quarantined]) -> None:
            await self._record_quarantine_for(snap, full, items)

        req = ApplyRequest(force=force, pending=full.version > node.applied_version,
                           ami=node.ami.get, count_reload=self._stats.count_reload,
                           phases=phases, quarantine=quarantine, db=self._db_for_backend)
        done = await node.backend.apply(snap, req)
        if done.noop:
            return done
        held = done.held or snap
        if self.cfg.applier.verify:
            t = time.monotonic()
            ami = done.ami or await node.ami.get()
            await node.backend.verify(held, ami, force)
            phases["verify"] = _ms(t)
        await node.backend.accepted(held)
        return done

    async def _db_for_backend(self) -> asyncpg.Connection:
        try:
            return await self.db.get()
        except DB_ERRORS as exc:
            await self.db.release()
            raise Unavailable(f"database: {exc}") from exc

    # ------------------------------------------------------------------ state

    async def _record_quarantine_for(self, scope: Snapshot, full: Snapshot,
                                     items: list[Quarantined]) -> None:
        """One node's render decided about the rows of `scope` (its site's part): keep
        what other nodes decided about the rest of `full`, so nodes of different sites
        do not release each other's quarantine."""
        async with self._quarantine_lock:
            if scope is full:
                await self._record_quarantine(items)
                return
            mine = ({("agent", a.id) for a in scope.agents}
                    | {("queue", q.id) for q in scope.queues})
            exists = ({("agent", a.id) for a in full.agents}
                      | {("queue", q.id) for q in full.queues})
            kept = [Quarantined(q.kind, q.id, q.reason) for q in self._quarantine
                    if (q.kind, q.id) not in mine and (q.kind, q.id) in exists]
            await self._record_quarantine(kept + items)

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
