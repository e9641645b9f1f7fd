"""One Asterisk node as the applier drives it: its own backend (files, verifier state,
what was reloaded), its own AMI link, and what it holds.

The applier hands every node the same snapshot, cut down to what the node serves
(snapshot.for_site), and applies them side by side: a node that is down (Unavailable)
keeps its old version and is tried again with backoff, while the others go on
(docs/scale-out.md, "Several Asterisk nodes").
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sipprov.apply.amilink import AmiFactory, AmiLink
from sipprov.apply.backends import ApplyBackend
from sipprov.apply.backends.files import FilesBackend
from sipprov.apply.backends.realtime import RealtimeBackend
from sipprov.apply.stats import iso, now
from sipprov.apply.worker import Worker
from sipprov.config import Config, Node

# Several nodes: connecting and logging in to one node's AMI may take this long; to a
# node that was unreachable at the last try, this long (an Asterisk that is back logs
# in within milliseconds; one still hung then costs every apply only this much).
NODE_CONNECT_TIMEOUT_S = 5.0
NODE_RETRY_CONNECT_TIMEOUT_S = 1.0


def node_config(cfg: Config, node: Node) -> Config:
    """The configuration as one node's backend sees it: the node's AMI settings and
    files folder."""
    ast = dataclasses.replace(node.asterisk, config_dir=node.config_dir)
    return dataclasses.replace(cfg, asterisk=ast)


class NodeRunner:
    """A node's backend, AMI link and recorded state."""

    def __init__(self, cfg: Config, node: Node, worker: Worker,
                 ami_factory: AmiFactory | None = None,
                 backend: ApplyBackend | None = None) -> None:
        self.node = node
        self.cfg = node_config(cfg, node)
        self.backend: ApplyBackend = backend or (
            RealtimeBackend(self.cfg, worker) if cfg.asterisk.backend == "realtime"
            else FilesBackend(self.cfg, worker))
        # With several nodes, a node that hangs (accepts, never answers) is given up on
        # quickly, so the others' apply (and ?wait=applied) is not held back for the
        # whole asterisk.ami_timeout_s.
        self.several = len(cfg.nodes) > 1
        self.ami = AmiLink(self.cfg.asterisk, ami_factory,
                           connect_timeout_s=self._connect_timeout(NODE_CONNECT_TIMEOUT_S))
        self.applied_version = 0
        self.applied_at: datetime | None = None
        # None: not tried yet in this process.
        self.reachable: bool | None = None
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None

    @property
    def name(self) -> str:
        return self.node.name

    def _connect_timeout(self, seconds: float) -> float | None:
        if not self.several:
            return None
        return min(seconds, self.cfg.asterisk.ami_timeout_s)

    def succeeded(self, version: int) -> None:
        if version > self.applied_version:
            self.applied_version = version
            self.applied_at = now()
        self.reachable = True
        self.last_error = None
        self.last_error_at = None
        self.ami.connect_timeout_s = self._connect_timeout(NODE_CONNECT_TIMEOUT_S)

    def failed(self, message: str, reachable: bool) -> None:
        self.reachable = reachable
        self.ami.connect_timeout_s = self._connect_timeout(
            NODE_CONNECT_TIMEOUT_S if reachable else NODE_RETRY_CONNECT_TIMEOUT_S)
        if message != self.last_error:
            self.last_error_at = now()
        self.last_error = message

    def record_row(self) -> tuple[str, str | None, int, bool | None, str | None]:
        return (self.name, self.node.site, self.applied_version, self.reachable,
                self.last_error)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "site": self.node.site,
            "ami": f"{self.cfg.asterisk.ami_host}:{self.cfg.asterisk.ami_port}",
            "sip_server": self.cfg.asterisk.sip_server,
            "reachable": self.reachable,
            "ami_connected": self.ami.connected,
            "asterisk_version": self.ami.asterisk_version,
            "system_name": self.ami.system_name,
            "applied_version": self.applied_version,
            "applied_at": iso(self.applied_at),
            "last_error": self.last_error,
            "last_error_at": iso(self.last_error_at),
        }
