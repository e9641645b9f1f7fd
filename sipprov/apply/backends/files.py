"""FilesBackend: Asterisk holds a snapshot through the three generated files.

    render -> write only changed files -> reload only the modules whose files changed
    (pjsip.conf -> res_pjsip.so, extensions.conf -> pbx_config.so,
    queues.conf -> app_queue.so) -> verify over AMI -> keep them as the last good copies

Only a reload Asterisk explicitly refuses puts the last good files (`.prev`) back and
reloads them; a timeout, "a reload is in progress" or a lost connection leaves the files
and retries the reload with backoff (Unavailable). The reload timeout follows the
module's measured reload times (reloadtimer.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg

from sipprov.apply import files as files_mod
from sipprov.apply import realtime as realtime_mod
from sipprov.apply import render as render_mod
from sipprov.apply.ami import AmiClient, AmiError, AmiTimeout, ReloadFailed
from sipprov.apply.backends import ApplyRequest, BackendResult
from sipprov.apply.errors import Rejected, Unavailable
from sipprov.apply.reloadtimer import ReloadTimer
from sipprov.apply.snapshot import Snapshot
from sipprov.apply.verify import Verifier
from sipprov.apply.worker import Worker
from sipprov.config import Config

log = logging.getLogger(__name__)


def _ms(t0: float) -> int:
    return int((time.monotonic() - t0) * 1000)


class FilesBackend:
    """Generated pjsip.conf / extensions.conf / queues.conf, reloaded module by module."""

    def __init__(self, cfg: Config, worker: Worker) -> None:
        self.cfg = cfg
        self.directory = Path(cfg.generated_dir)
        self.worker = worker
        self.verifier = Verifier()
        self.timer = ReloadTimer(cfg.asterisk.ami_timeout_s)
        # Files written whose module has not been reloaded successfully since.
        self.unreloaded: set[str] = set()
        # The realtime views were turned off (an Asterisk mapping both wizards).
        self.views_off = False
        # Told which extensions' registrations were ended (the service's PhoneTracker).
        self.on_registrations_ended: Callable[[set[int]], None] | None = None

    async def prepare(self, conn: asyncpg.Connection) -> None:
        return None

    async def settled(self, conn: asyncpg.Connection) -> None:
        """Once the files are live: the realtime views go empty, so an Asterisk that
        maps both wizards (switching back from realtime) never sees an agent twice."""
        if not self.views_off:
            await realtime_mod.disable_views(conn, self.cfg)
            self.views_off = True

    def stale(self) -> None:
        # A previous run may have written the files and died before the reload.
        self.unreloaded.update(render_mod.FILES)

    async def apply(self, snap: Snapshot, req: ApplyRequest) -> BackendResult:
        phases = req.phases
        t = time.monotonic()
        try:
            rendered = await self.worker.run(render_mod.render_isolating, snap, self.cfg)
        except render_mod.UnsafeValueError as exc:
            raise Rejected(f"render refused a value: {exc}") from exc
        phases["render"] = _ms(t)
        if rendered.quarantined:
            log.warning("version %d: %d agent(s)/queue(s) kept out of Asterisk: %s",
                        snap.version, len(rendered.quarantined),
                        "; ".join(q.reason for q in rendered.quarantined[:5]))
        await req.quarantine(rendered.quarantined)
        held = rendered.snapshot
        t = time.monotonic()
        before = files_mod.read_bytes(self.directory / render_mod.PJSIP_CONF)
        changed = await self.worker.run(
            files_mod.write_changed, self.directory, rendered.files, self.cfg.security.file_mode
        )
        phases["write"] = _ms(t)
        self.unreloaded.update(changed)
        if req.force:
            self.unreloaded.update(render_mod.FILES)
        if not self.unreloaded and not req.pending:
            # Nothing written, nothing new: Asterisk already has it.
            if not self.verifier.known:
                self.verifier.verified(held)
            return BackendResult([], [], noop=True, held=held)
        if changed:
            log.info("version %d: wrote %s (%d agents, %d voice queues)",
                     snap.version, ", ".join(changed), len(held.agents), len(held.queues))
        ami = await req.ami()
        reloaded: list[str] = []
        for name in render_mod.FILES:
            if name not in self.unreloaded:
                continue
            if name == render_mod.PJSIP_CONF and self._pjsip_holds_nothing(before, rendered.files[name]):
                # The realtime render (no endpoint in pjsip.conf), and neither the file
                # it replaced nor the last good copy had one: Asterisk holds nothing of
                # this file to drop. A
                # reload of res_pjsip would load every realtime endpoint again (minutes
                # at 50,000, REGISTERs stalled), e.g. at every start of the service.
                self.unreloaded.discard(name)
                continue
            module = render_mod.MODULE_FOR_FILE[name]
            t = time.monotonic()
            await self._reload(ami, req, module)
            phases[f"reload {module}"] = _ms(t)
            req.count_reload(module)
            self.unreloaded.discard(name)
            reloaded.append(module)
        await self.agents_changed(ami, held, req)
        return BackendResult(changed, reloaded, ami=ami, held=held)

    def _pjsip_holds_nothing(self, before: bytes | None, new: bytes) -> bool:
        if self.cfg.asterisk.backend != "realtime":
            return False
        prev = files_mod.read_bytes(self.directory / (render_mod.PJSIP_CONF + files_mod.PREV_SUFFIX))
        return not any(files_mod.has_sections(data) for data in (before, new, prev))

    async def agents_changed(self, ami: AmiClient, snap: Snapshot, req: ApplyRequest) -> None:
        """`snap`'s agents are live: end the registrations of agents whose credentials
        went away (a rotated password, a deleted or deactivated agent)."""
        t = time.monotonic()
        # shared registrations are rows in PostgreSQL: ended there, on every node
        # what Asterisk was last verified to hold (unknown: nothing is known to be gone)
        gone = set(self.verifier.changes(snap).credentials_gone) if self.verifier.known else set()
        db = (await req.db() if self.cfg.asterisk.shared_contacts and req.db is not None
              and gone else None)
        ended = await realtime_mod.end_gone_registrations(
            ami, gone, devstate=self.cfg.asterisk.backend == "realtime", db=db)
        if ended and self.on_registrations_ended is not None:
            self.on_registrations_ended(ended)
        req.phases["registrations"] = _ms(t)

    async def _reload(self, ami: AmiClient, req: ApplyRequest, module: str) -> None:
        """Reload one module. Only an explicit refusal rolls back (Rejected); a
        timeout, a busy Asterisk or a lost connection is Unavailable: the files stay,
        the reload is retried with backoff."""
        timeout = self.timer.timeout(module)
        t = time.monotonic()
        try:
            await ami.reload(module, timeout=timeout)
        except ReloadFailed as exc:
            if exc.kind == "busy":
                raise Unavailable(f"Asterisk is busy: {exc}") from exc
            if exc.kind == "unsupported":
                raise Rejected(f"Asterisk cannot reload {module}: {exc}") from exc
            await self._roll_back(ami, req, f"Asterisk rejected the reload of {module}: {exc}")
        except AmiTimeout as exc:
            self.timer.timed_out(module, timeout)
            # A late answer is of no use; the next try starts on a fresh connection.
            await ami.close()
            raise Unavailable(f"{exc} (reload of {module}; next wait "
                              f"{self.timer.timeout(module):g} s)") from exc
        except AmiError as exc:
            raise Unavailable(str(exc)) from exc
        self.timer.record(module, time.monotonic() - t)

    async def verify(self, snap: Snapshot, ami: AmiClient, force: bool) -> None:
        await self.verifier.verify(ami, snap, force)

    async def accepted(self, snap: Snapshot) -> None:
        self.verifier.verified(snap)
        await self.worker.run(files_mod.keep_good, self.directory, render_mod.FILES)

    async def _roll_back(self, ami: AmiClient, req: ApplyRequest, reason: str) -> None:
        """Put the last good files back, reload them, raise Rejected(reason).

        A file with no good copy yet is left as written (never emptied): the rejected
        module keeps its old objects in Asterisk anyway, and the others loaded theirs.
        """
        log.error("%s; restoring the last good files", reason)
        restored = await self.worker.run(
            files_mod.restore_good, self.directory, render_mod.FILES, self.cfg.security.file_mode
        )
        for name in render_mod.FILES:
            if name not in restored.changed:
                continue
            module = render_mod.MODULE_FOR_FILE[name]
            try:
                await ami.reload(module, timeout=self.timer.timeout(module))
                req.count_reload(module)
                self.unreloaded.discard(name)
            except AmiError as exc:
                log.error("reload of %s after restoring failed: %s", module, exc)
                self.unreloaded.add(name)
        self.verifier.forget()
        if restored.no_good_copy:
            reason += (f"; no accepted copy of {', '.join(restored.no_good_copy)} yet: "
                       "left as written")
        raise Rejected(reason)
