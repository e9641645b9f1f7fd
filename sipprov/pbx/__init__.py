"""The managed development PBX: Asterisk 22 from a Debian-unstable root, no Docker.

Debian 12 has no Asterisk package, so we build a small Debian-unstable root once
(debootstrap + apt-get, about a minute and 650 MB) and run Asterisk chrooted into it.
Several instances (the developer's "dev", the tests' "test") share one root: each has
its own folder <root>/srv/sipprov/<instance> with its own etc/run/log/spool/lib, its own
asterisk.conf pointing there, its own control socket, AMI port and SIP port.

Everything here is synchronous and plain: it is used by the CLI (`sipprov pbx ...`)
and by the test fixtures, never on the request path.

The parts, one job each (imports only go down this list):

- errors: PbxError
- paths: where a root's and an instance's files are, their modes, the lock, write_atomic
- procfs: the mounts and chrooted processes /proc shows under a root
- build: building the root once (build_root)
- baseconfig: the instance's own Asterisk files (write_base_config, MODULES)
- mounts: proc and /dev in the root while instances run
- instance: start, stop, kill, status, rx
- front: the development SIP front, Kamailio in front of the nodes
- cli: `sipprov pbx up|down|status|build|front-up|front-down|front-status` (pbx_main)

This package re-exports the public names, so `from sipprov import pbx` callers use
`pbx.start(cfg)`, `pbx.PbxError`, ... without knowing the parts.
"""

from __future__ import annotations

from sipprov.pbx.baseconfig import MODULES, write_base_config
from sipprov.pbx.build import PACKAGES, build_root
from sipprov.pbx.cli import pbx_main
from sipprov.pbx.errors import PbxError
from sipprov.pbx.instance import PbxStatus, kill, rx, start, status, stop
from sipprov.pbx.paths import DIR_MODE, FILE_MODE, MARKER, is_built, write_atomic

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "MARKER",
    "MODULES",
    "PACKAGES",
    "PbxError",
    "PbxStatus",
    "build_root",
    "is_built",
    "kill",
    "pbx_main",
    "rx",
    "start",
    "status",
    "stop",
    "write_atomic",
    "write_base_config",
]
