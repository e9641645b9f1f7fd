"""The development SIP front: Kamailio (Debian's `kamailio` package) in front of PBX
nodes, as a real process on loopback.

It runs the shipped templates/kamailio/kamailio.cfg unchanged (dispatcher with OPTIONS
probing and failover, path with add_path_received); this module only writes the
dispatcher list (one line per node) and passes the listen address, the list, the
probing interval and the control socket on the command line. The tests
(tests/cluster_fixtures.py), the scale-out benchmark (bench/scaleout.py) and
`sipprov pbx front-up|front-down|front-status` (in front of [[asterisk.nodes]]) use it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sipprov._resources import template_root
from sipprov.pbx.errors import PbxError
from sipprov.pbx.paths import write_atomic
from sipprov.pbx.procfs import alive

CONFIG = "kamailio/kamailio.cfg"


def config_path() -> Path:
    return template_root() / "templates" / CONFIG


@dataclass(frozen=True)
class Node:
    """One Asterisk the front dispatches to."""

    host: str
    port: int

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{int(self.port)}"


@dataclass
class Front:
    """A running Kamailio: its SIP port, folder and process id."""

    host: str
    port: int
    folder: Path
    pid: int

    @property
    def ctl(self) -> str:
        return f"unix:{self.folder / 'kamailio.ctl'}"


def kamailio_binary() -> str:
    found = shutil.which("kamailio") or (
        "/usr/sbin/kamailio" if os.path.exists("/usr/sbin/kamailio") else None)
    if not found:
        raise PbxError("kamailio is not installed (apt-get install kamailio)")
    return found


def dispatcher_list(nodes: list[Node]) -> str:
    """Set 1: every node, in order (the hash picks among the active ones)."""
    return "".join(f"1 {n.uri}\n" for n in nodes)


def _pid_file(folder: Path) -> Path:
    return folder / "kamailio.pid"


def _answers_options(host: str, port: int, timeout: float) -> bool:
    """The front answers an OPTIONS to itself (its keepalive reply)."""
    branch = f"z9hG4bK-sipprov-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        local = sock.getsockname()[1]
        msg = (f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {host}:{local};branch={branch};rport\r\n"
               "Max-Forwards: 10\r\n"
               f"From: <sip:probe@{host}>;tag=probe\r\nTo: <sip:{host}:{port}>\r\n"
               f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
        sock.settimeout(timeout)
        sock.sendto(msg.encode(), (host, port))
        try:
            data = sock.recv(4096)
        except OSError:
            return False
    return data.startswith(b"SIP/2.0 200")


def start(folder: Path, port: int, nodes: list[Node], host: str = "127.0.0.1",
          ping_interval_s: int = 1, timeout: float = 15.0) -> Front:
    """Start Kamailio on host:port dispatching to `nodes`; return once it answers."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    ds_list = folder / "dispatcher.list"
    write_atomic(ds_list, dispatcher_list(nodes))
    log = folder / "kamailio.log"
    argv = [
        kamailio_binary(), "-f", str(config_path()), "-DD", "-E",
        "-l", f"udp:{host}:{int(port)}",
        "-m", "256", "-M", "8",
        "-P", str(_pid_file(folder)), "-Y", str(folder), "-w", str(folder),
        "-A", f'DS_LIST="{ds_list}"',
        "-A", f"DS_PING_INTERVAL={int(ping_interval_s)}",
        "-A", f'CTL_SOCKET="unix:{folder / "kamailio.ctl"}"',
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    front = Front(host, port, folder, proc.pid)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise PbxError(f"kamailio exited at start ({proc.returncode}): "
                           f"{log.read_text(errors='replace')[-2000:]}")
        if _answers_options(host, port, 0.2):
            return front
        if time.monotonic() > deadline:
            stop(front)
            raise PbxError(f"kamailio did not answer on {host}:{port} within {timeout:g} s")


def stop(front: Front, timeout: float = 10.0) -> None:
    """Stop the front (its process group: Kamailio forks its workers). Idempotent."""
    if not alive(front.pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(front.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(front.pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(front.pid, os.WNOHANG)
        time.sleep(0.05)
    if alive(front.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(front.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(front.pid, 0)


def running(folder: Path, host: str = "127.0.0.1", port: int = 0) -> Front | None:
    """The front started in `folder` (its pid file), if that Kamailio still runs."""
    try:
        pid = int(_pid_file(folder).read_text().split()[0])
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    if not alive(pid) or not argv or not argv[0].endswith(b"kamailio"):
        return None
    return Front(host, port, folder, pid)


def destinations(front: Front) -> dict[str, str]:
    """What the dispatcher thinks of each node: uri -> flags ("AP" active and probed,
    "IP"/"TP" inactive or trying)."""
    res = subprocess.run(["kamcmd", "-s", front.ctl, "dispatcher.list"],
                         capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        raise PbxError(f"kamcmd dispatcher.list failed: {res.stderr.strip()}")
    found: dict[str, str] = {}
    uri = None
    for line in res.stdout.splitlines():
        text = line.strip()
        if text.startswith("URI:"):
            uri = text.split(":", 1)[1].strip()
        elif text.startswith("FLAGS:") and uri:
            found[uri] = text.split(":", 1)[1].strip()
            uri = None
    return found
