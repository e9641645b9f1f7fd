"""Apply backends: how Asterisk is made to hold one snapshot.

The applier's loop (coalescing, lock, snapshot, recording the applied version) is the
same whatever the backend; a backend owns everything between "here is a snapshot" and
"Asterisk holds it": rendering, writing, reloading, rolling back, verifying.

- FilesBackend (`backends/files.py`): every agent in the generated pjsip.conf, reloads
  of res_pjsip / pbx_config / app_queue.
- RealtimeBackend (`backends/realtime.py`): Asterisk reads agents from PostgreSQL
  views (no pjsip reload), queues.conf / extensions.conf still written, changed
  agents' cached objects expired over AMI.

Both end the registrations of agents whose credentials went away (apply/realtime.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg

from sipprov.apply.ami import AmiClient
from sipprov.apply.render import Quarantined
from sipprov.apply.snapshot import Snapshot


async def _no_quarantine(items: list[Quarantined]) -> None:
    return None


@dataclass
class ApplyRequest:
    """What the loop hands a backend for one apply."""

    # Reload and verify everything, whatever changed.
    force: bool
    # The snapshot is newer than the recorded applied version.
    pending: bool
    # A connected AMI client (raises Unavailable): only asked for when needed.
    ami: Callable[[], Awaitable[AmiClient]]
    # Called once per successful module reload (status()["reloads"]).
    count_reload: Callable[[str], None]
    # Phase name -> milliseconds, filled in by the backend.
    phases: dict[str, int] = field(default_factory=dict)
    # Called once per apply, right after rendering, with every agent and queue the
    # render left out (the applier records them; an empty list releases them all).
    quarantine: Callable[[list[Quarantined]], Awaitable[None]] = _no_quarantine
    # The applier's own database connection (raises Unavailable): the shared
    # registrations (asterisk.ps_contacts) are ended there, not over AMI.
    db: Callable[[], Awaitable[asyncpg.Connection]] | None = None


@dataclass
class BackendResult:
    # Files (or other artefacts) whose content changed.
    changed: list[str]
    # Modules reloaded.
    reloaded: list[str]
    # True: nothing to do (Asterisk already holds this snapshot); not verified again.
    noop: bool = False
    # The AMI client the apply used (None when it needed none).
    ami: AmiClient | None = None
    # What Asterisk was made to hold: the snapshot without the quarantined rows (None:
    # the snapshot as given). Verified and remembered instead of the snapshot.
    held: Snapshot | None = None


class ApplyBackend(Protocol):
    """Makes Asterisk hold a snapshot. Raises Unavailable, NotVerified or Rejected."""

    async def prepare(self, conn: asyncpg.Connection) -> None:
        """Before the snapshot of an apply: database state the backend needs (the
        realtime views' settings)."""

    async def settled(self, conn: asyncpg.Connection) -> None:
        """After an apply was recorded: database state that must follow it (the files
        backend turns the realtime views off once its files are live)."""

    def stale(self) -> None:
        """A previous run may have changed things without telling Asterisk: bring
        everything in again on the next apply."""

    async def apply(self, snap: Snapshot, req: ApplyRequest) -> BackendResult:
        """Render, write, reload what changed (rolling back only what Asterisk
        explicitly refused)."""

    async def verify(self, snap: Snapshot, ami: AmiClient, force: bool) -> None:
        """Check over AMI that Asterisk shows `snap`; NotVerified if not."""

    async def accepted(self, snap: Snapshot) -> None:
        """`snap` is live and verified: remember it (last good copies, verified state)."""
