"""Running one instance: start (and wait for boot and AMI), stop, kill, status, rx.

Several instances (the developer's "dev", the tests' "test") share one root: each has
its own folder <root>/srv/sipprov/<instance> with its own etc/run/log/spool/lib, its own
asterisk.conf pointing there, its own control socket, AMI port and SIP port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sipprov.config import Config, PbxConfig
from sipprov.pbx.baseconfig import write_base_config
from sipprov.pbx.build import _asterisk_version, build_root
from sipprov.pbx.errors import PbxError
from sipprov.pbx.mounts import _ensure_mounts, _release_mounts
from sipprov.pbx.paths import (
    FILE_MODE,
    _conf_in_root,
    _locked,
    _log_dir,
    _root,
    _run_dir,
    _tail,
    is_built,
)
from sipprov.pbx.procfs import _processes_in_root, alive
from sipprov.pbx.realtime import release_socket


@dataclass
class PbxStatus:
    """What `sipprov pbx status` shows."""

    instance: str
    root: Path
    root_built: bool
    running: bool
    pid: int | None
    version: str
    ami_port: int
    sip_port: int


def _is_instance_daemon(pid: int, cfg: PbxConfig) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = [a.decode("utf-8", "replace") for a in fh.read().split(b"\0") if a]
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state in ("Z", "X") or not argv:
        return False
    if os.path.basename(argv[0]) != "asterisk" or _conf_in_root(cfg) not in argv:
        return False
    # remote consoles (-r, -rx, -x) name the same config; the daemon has none of those
    return not any(a.startswith("-r") or a.startswith("-R") or a == "-x" for a in argv[1:])


def _find_pid(cfg: PbxConfig) -> int | None:
    """The instance's running Asterisk, found by its root and its own asterisk.conf."""
    root = _root(cfg)
    if not root.exists():
        return None
    for pid in _processes_in_root(root):
        if _is_instance_daemon(pid, cfg):
            return pid
    return None


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


def _asterisk_argv(cfg: PbxConfig, *args: str) -> list[str]:
    return ["chroot", str(_root(cfg)), "asterisk", "-C", _conf_in_root(cfg), *args]


def rx(cfg: Config, command: str, timeout: float = 30.0) -> str:
    """Run one Asterisk CLI command on the instance (diagnostics, tests, shutdown)."""
    try:
        res = subprocess.run(_asterisk_argv(cfg.pbx, "-rx", command), capture_output=True,
                             text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise PbxError(f"asterisk -rx {command!r} timed out after {timeout} s") from exc
    if res.returncode != 0 or res.stdout.startswith("Unable to connect"):
        raise PbxError(f"asterisk -rx {command!r} failed: "
                       f"{(res.stdout + res.stderr).strip()[:500]}")
    return res.stdout


def _ami_login(host: str, port: int, user: str, secret: str, timeout: float) -> None:
    """One AMI Login over a plain socket: proves the manager is up with our account."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        buf = b""
        while b"\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise OSError("AMI closed the connection before its banner")
            buf += chunk
        sock.sendall(f"Action: Login\r\nUsername: {user}\r\nSecret: {secret}\r\n"
                     "Events: off\r\nActionID: sipprov-boot\r\n\r\n".encode())
        while b"\r\n\r\n" not in buf.split(b"\r\n", 1)[1]:
            chunk = sock.recv(4096)
            if not chunk:
                raise OSError("AMI closed the connection during Login")
            buf += chunk
        answer = buf.split(b"\r\n", 1)[1].decode("utf-8", "replace")
        if "Response: Success" not in answer:
            raise PbxError(f"AMI refused Login for {user!r}: "
                           f"{answer.strip().splitlines()[-1] if answer.strip() else ''}")
        sock.sendall(b"Action: Logoff\r\n\r\n")


def _log_tails(cfg: PbxConfig) -> str:
    parts = []
    for name in ("startup.log", "messages.log"):
        tail = _tail(_log_dir(cfg) / name, 25)
        if tail:
            parts.append(f"--- {_log_dir(cfg) / name}:\n{tail}")
    return "\n".join(parts) or "(no log output)"


def _kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, 10)


def _clear_run_dir(cfg: PbxConfig) -> None:
    for name in ("asterisk.ctl", "asterisk.pid"):
        with contextlib.suppress(FileNotFoundError):
            (_run_dir(cfg) / name).unlink()


def start(cfg: Config) -> None:
    """Start the instance and return once it is fully booted and AMI accepts our Login.

    Idempotent: an instance already running is left alone.
    """
    pbx = cfg.pbx
    if _find_pid(pbx) is not None:
        return
    build_root(pbx, progress=sys.stderr.isatty())
    with _locked(pbx):
        if _find_pid(pbx) is not None:
            return
        _check_ports_free(cfg)
        write_base_config(cfg)
        _ensure_mounts(pbx)
        _clear_run_dir(pbx)
        startup_log = _log_dir(pbx) / "startup.log"
        with open(startup_log, "wb") as out:
            os.fchmod(out.fileno(), FILE_MODE)
            try:
                # -F: fork into the background; the parent exits once the child runs.
                res = subprocess.run(_asterisk_argv(pbx, "-F", "-n"), stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     timeout=30)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise PbxError(f"cannot start asterisk: {exc}\n{_log_tails(pbx)}") from exc
        if res.returncode != 0:
            raise PbxError(f"asterisk exited with {res.returncode} at start\n"
                           f"{_log_tails(pbx)}")
        try:
            _wait_booted(cfg)
        except PbxError:
            pid = _find_pid(pbx)
            if pid is not None:
                _kill_pid(pid)
            release_socket(cfg)
            _release_mounts(pbx)
            raise


def _wait_booted(cfg: Config) -> None:
    """Wait until `core waitfullybooted` answers on the instance's control socket and
    AMI accepts our Login; PbxError with the log tails after cfg.pbx.boot_timeout_s."""
    pbx, ast = cfg.pbx, cfg.asterisk
    started = time.monotonic()
    deadline = started + pbx.boot_timeout_s
    last = ""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise PbxError(f"asterisk did not boot within {pbx.boot_timeout_s:g} s "
                           f"({last})\n{_log_tails(pbx)}")
        # -F forks before the parent exits, so the daemon is visible right away
        if _find_pid(pbx) is None and time.monotonic() - started > 1.0:
            raise PbxError(f"asterisk exited during boot\n{_log_tails(pbx)}")
        try:
            rx(cfg, "core waitfullybooted", timeout=max(1.0, left))
            break
        except PbxError as exc:
            last = str(exc)
            time.sleep(0.1)
    while True:
        left = deadline - time.monotonic()
        try:
            _ami_login("127.0.0.1", ast.ami_port, ast.ami_user, ast.ami_secret,
                       timeout=max(0.5, min(5.0, left)))
            return
        except OSError as exc:
            if left <= 0:
                raise PbxError(f"AMI on 127.0.0.1:{ast.ami_port} did not answer: {exc}\n"
                               f"{_log_tails(pbx)}") from exc
            time.sleep(0.1)


def _check_ports_free(cfg: Config) -> None:
    """Refuse to start when another program (or instance) holds our AMI or SIP port:
    Asterisk would boot without them and our AMI check could reach the wrong PBX."""
    ami_port, sip_port = cfg.asterisk.ami_port, cfg.pbx.sip_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        if tcp.connect_ex(("127.0.0.1", ami_port)) == 0:
            raise PbxError(f"AMI port 127.0.0.1:{ami_port} is already in use (another "
                           "PBX instance?); set asterisk.ami_port")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.bind(("127.0.0.1", sip_port))
        except OSError as exc:
            raise PbxError(f"SIP port 127.0.0.1:{sip_port}/udp is already in use "
                           f"({exc.strerror}); set pbx.sip_port") from None


def stop(cfg: Config, timeout: float = 15.0) -> None:
    """Stop the instance (`core stop now`, SIGKILL after timeout); unmount if last.

    Idempotent: a stopped instance is fine.
    """
    pbx = cfg.pbx
    if not _root(pbx).exists():
        return
    with _locked(pbx):
        pid = _find_pid(pbx)
        if pid is not None:
            with contextlib.suppress(PbxError):
                rx(cfg, "core stop now", timeout=timeout)
            if not _wait_gone(pid, timeout):
                _kill_pid(pid)
        _clear_run_dir(pbx)
        release_socket(cfg)
        _release_mounts(pbx)


def kill(cfg: Config) -> None:
    """SIGKILL the instance's Asterisk (a crash, for fault tests); mounts stay."""
    pid = _find_pid(cfg.pbx)
    if pid is not None:
        _kill_pid(pid)


def status(cfg: Config) -> PbxStatus:
    """What is built and running, without changing anything."""
    pbx = cfg.pbx
    built = is_built(pbx)
    pid = _find_pid(pbx) if built else None
    return PbxStatus(
        instance=pbx.instance,
        root=_root(pbx),
        root_built=built,
        running=pid is not None,
        pid=pid,
        version=_asterisk_version(_root(pbx)) if built else "",
        ami_port=cfg.asterisk.ami_port,
        sip_port=pbx.sip_port,
    )
