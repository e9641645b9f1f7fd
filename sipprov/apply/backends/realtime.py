"""RealtimeBackend: Asterisk reads the agents from PostgreSQL (the asterisk.* views of
migration 005) through res_config_pgsql + res_sorcery_realtime.

An agent change (create, delete, SIP password, priority, queue membership) writes no
file and reloads no module: the row is what Asterisk reads on the next REGISTER or
QueueStatus. What is still written is the FilesBackend's, with the realtime render:
pjsip.conf empty, the agent dialplan static (one pattern per extension length),
queues.conf without members; those reload only when queue definitions or numbers
change (or once, when switching from the files backend).

Per apply, over AMI: with the sorcery memory cache, expire exactly the changed agents'
endpoint, auth and AOR (everything on the first apply) before the version counts as
applied; end the registrations of agents whose credentials went away; verify.
"""

from __future__ import annotations

import logging
import time

import asyncpg

from sipprov.apply import realtime as realtime_mod
from sipprov.apply.ami import AmiClient, AmiError
from sipprov.apply.backends import ApplyRequest
from sipprov.apply.backends.files import FilesBackend
from sipprov.apply.errors import NotVerified, Unavailable
from sipprov.apply.snapshot import Snapshot
from sipprov.apply.verify import Verifier
from sipprov.apply.worker import Worker
from sipprov.config import Config

log = logging.getLogger(__name__)


class RealtimeBackend(FilesBackend):
    """The files backend's queue/dialplan files plus realtime agents."""

    def __init__(self, cfg: Config, worker: Worker) -> None:
        super().__init__(cfg, worker)
        self.verifier = Verifier(realtime=True)
        self.prepared = False

    async def prepare(self, conn: asyncpg.Connection) -> None:
        """Once per start, before the first snapshot: the views' settings from the
        configuration and the views on (before pjsip.conf is emptied, so a switch from
        the files backend never leaves Asterisk without the agents), and the role's
        login."""
        if not self.prepared:
            await realtime_mod.prepare(conn, self.cfg)
            self.prepared = True

    async def settled(self, conn: asyncpg.Connection) -> None:
        return None

    async def agents_changed(self, ami: AmiClient, snap: Snapshot, req: ApplyRequest) -> None:
        """Expire the changed agents from the cache first (so the old credentials are
        refused from now on), then end the registrations made with them."""
        if self.cfg.asterisk.realtime_cache:
            changes = self.verifier.changes(snap)
            t = time.monotonic()
            try:
                await realtime_mod.expire_cache(
                    ami, self.cfg,
                    None if not self.verifier.known or req.force else set(changes.changed))
            except AmiError as exc:
                if not ami.connected:
                    raise Unavailable(str(exc)) from exc
                raise NotVerified(f"expiring the realtime cache: {exc}") from exc
            req.phases["cache"] = int((time.monotonic() - t) * 1000)
        await super().agents_changed(ami, snap, req)
