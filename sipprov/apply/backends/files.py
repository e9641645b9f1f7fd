"""FilesBackend: Asterisk holds a snapshot through the three generated files.

    render -> write only changed files -> reload only the modules whose files changed
    (pjsip.conf -> res_pjsip.so, extensions.conf -> pbx_config.so,
    queues.conf -> app_queue.so) -> verify over AMI -> keep them as the last good copies

A reload Asterisk rejects puts the last good files (`.prev`) back and reloads them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sipprov.apply import files as files_mod
from sipprov.apply import render as render_mod
from sipprov.apply.ami import AmiClient, AmiError
from sipprov.apply.backends import ApplyRequest, BackendResult
from sipprov.apply.errors import Rejected, Unavailable
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
        # Files written whose module has not been reloaded successfully since.
        self.unreloaded: set[str] = set()

    def stale(self) -> None:
        # A previous run may have written the files and died before the reload.
        self.unreloaded.update(render_mod.FILES)

    async def apply(self, snap: Snapshot, req: ApplyRequest) -> BackendResult:
        phases = req.phases
        t = time.monotonic()
        try:
            rendered = await self.worker.run(render_mod.render, snap, self.cfg)
        except render_mod.UnsafeValueError as exc:
            raise Rejected(f"render refused a value: {exc}") from exc
        phases["render"] = _ms(t)
        t = time.monotonic()
        changed = await self.worker.run(
            files_mod.write_changed, self.directory, rendered, self.cfg.security.file_mode
        )
        phases["write"] = _ms(t)
        self.unreloaded.update(changed)
        if req.force:
            self.unreloaded.update(render_mod.FILES)
        if not self.unreloaded and not req.pending:
            # Nothing written, nothing new: Asterisk already has it.
            if not self.verifier.known:
                self.verifier.verified(snap)
            return BackendResult([], [], noop=True)
        if changed:
            log.info("version %d: wrote %s (%d agents, %d voice queues)",
                     snap.version, ", ".join(changed), len(snap.agents), len(snap.queues))
        ami = await req.ami()
        reloaded: list[str] = []
        for name in render_mod.FILES:
            if name not in self.unreloaded:
                continue
            module = render_mod.MODULE_FOR_FILE[name]
            t = time.monotonic()
            try:
                await ami.reload(module)
            except AmiError as exc:
                if not ami.connected:
                    raise Unavailable(str(exc)) from exc
                await self._roll_back(ami, req, f"Asterisk rejected the reload of {module}: {exc}")
            phases[f"reload {module}"] = _ms(t)
            req.count_reload(module)
            self.unreloaded.discard(name)
            reloaded.append(module)
        return BackendResult(changed, reloaded, ami=ami)

    async def verify(self, snap: Snapshot, ami: AmiClient, force: bool) -> None:
        await self.verifier.verify(ami, snap, force)

    async def accepted(self, snap: Snapshot) -> None:
        self.verifier.verified(snap)
        await self.worker.run(files_mod.keep_good, self.directory, render_mod.FILES)

    async def _roll_back(self, ami: AmiClient, req: ApplyRequest, reason: str) -> None:
        """Put the last good files back, reload them, raise Rejected(reason)."""
        log.error("%s; restoring the last good files", reason)
        restored = await self.worker.run(
            files_mod.restore_good, self.directory, render_mod.FILES, self.cfg.security.file_mode
        )
        for name in render_mod.FILES:
            if name not in restored and name not in self.unreloaded:
                continue
            module = render_mod.MODULE_FOR_FILE[name]
            try:
                await ami.reload(module)
                req.count_reload(module)
                self.unreloaded.discard(name)
            except AmiError as exc:
                log.error("reload of %s after restoring failed: %s", module, exc)
        self.verifier.forget()
        raise Rejected(reason)
