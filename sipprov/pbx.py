"""The managed development PBX: Asterisk 22 from a Debian-unstable root, no Docker.

Debian 12 has no Asterisk package, so we build a small Debian-unstable root once
(debootstrap + apt-get, about a minute and 650 MB) and run Asterisk chrooted into it.
Several instances (the developer's "dev", the tests' "test") share one root: each has
its own folder <root>/srv/sipprov/<instance> with its own etc/run/log/spool/lib, its own
asterisk.conf pointing there, its own control socket, AMI port and SIP port.

Everything here is synchronous and plain: it is used by the CLI (`sipprov pbx ...`)
and by the test fixtures, never on the request path.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .config import Config, PbxConfig

# The packages installed into the root (no recommends: keeps it at ~650 MB).
PACKAGES = ("asterisk", "asterisk-modules", "asterisk-config")
# Written into the root as the last build step; a root without it is half-built.
MARKER = ".sipprov-root-complete"
# Mode of the files and folders we write: Asterisk runs as root, nobody else needs them.
FILE_MODE = 0o640
DIR_MODE = 0o750

# The modules an instance loads (modules.conf has autoload=no so it boots in about a
# second). Found by testing: this is what digest registration, calls between two
# endpoints, queues with static members, AMI and the security log need.
MODULES = (
    # sorcery back ends (pjsip objects from files, contacts in astdb)
    "res_sorcery_config.so",
    "res_sorcery_memory.so",
    "res_sorcery_astdb.so",
    # PJSIP core, registrar, digest auth, calls
    "res_pjproject.so",
    "res_pjsip.so",
    "res_pjsip_authenticator_digest.so",
    "res_pjsip_endpoint_identifier_user.so",
    "res_pjsip_registrar.so",
    "res_pjsip_session.so",
    "res_pjsip_pubsub.so",
    "res_pjsip_sdp_rtp.so",
    "res_pjsip_nat.so",
    "res_pjsip_caller_id.so",
    "res_pjsip_logger.so",
    "chan_pjsip.so",
    "func_pjsip_endpoint.so",
    # media
    "res_rtp_asterisk.so",
    "res_timing_timerfd.so",
    "codec_ulaw.so",
    "codec_alaw.so",
    "codec_a_mu.so",
    "format_pcm.so",
    "format_wav.so",
    "format_gsm.so",
    "codec_gsm.so",
    "format_sln.so",
    # bridging (Dial and Queue connect two channels through a bridge)
    "bridge_simple.so",
    "bridge_native_rtp.so",
    "bridge_holding.so",
    # dialplan and applications
    "pbx_config.so",
    "app_dial.so",
    "app_queue.so",
    "app_playback.so",
    "app_echo.so",
    "res_musiconhold.so",
    "func_callerid.so",
    "func_channel.so",
    "func_strings.so",
    "func_logic.so",
    # failed registrations land in the security log
    "res_security_log.so",
)

# Asterisk core reads these at boot; missing ones only log warnings, but writing
# small versions keeps the log clean and the behaviour explicit.
_CORE_FILES = {
    "cdr.conf": "[general]\nenable = no\n",
    "cel.conf": "[general]\nenable = no\n",
    "features.conf": "[general]\n",
    "ccss.conf": "[general]\n",
    "udptl.conf": "[general]\n",
    "acl.conf": "",
    "dnsmgr.conf": "[general]\nenable = no\n",
    "http.conf": "[general]\nenabled = no\n",
    "stasis.conf": "",
    "pjproject.conf": "[startup]\nlog_level = 1\n",
    "sorcery.conf": "",
    "rtp.conf": "[general]\nrtpstart = 20000\nrtpend = 30000\n",
    "indications.conf": (
        "[general]\ncountry = us\n\n"
        "[us]\ndescription = United States / North America\n"
        "ringcadence = 2000,4000\n"
        "dial = 350+440\n"
        "busy = 480+620/500,0/500\n"
        "ring = 440+480/2000,0/4000\n"
        "congestion = 480+620/250,0/250\n"
        "callwaiting = 440/300,0/10000\n"
        "dialrecall = !350+440/100,!0/100,!350+440/100,!0/100,!350+440/100,!0/100,350+440\n"
        "record = 1400/500,0/15000\n"
        "info = !950/330,!1400/330,!1800/330,0\n"
    ),
    "queuerules.conf": "",
}

# Characters that must never reach a config file through a configured value.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f;\[\]#\"\s]")


class PbxError(RuntimeError):
    """The development PBX could not be built, started or reached; says why."""


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


# ----------------------------------------------------------------------------- paths


def _root(cfg: PbxConfig) -> Path:
    return Path(cfg.root).absolute()


def _etc(cfg: PbxConfig) -> Path:
    return cfg.instance_dir / "etc/asterisk"


def _conf_in_root(cfg: PbxConfig) -> str:
    return f"{cfg.instance_dir_in_root}/etc/asterisk/asterisk.conf"


def _log_dir(cfg: PbxConfig) -> Path:
    return cfg.instance_dir / "log"


def _run_dir(cfg: PbxConfig) -> Path:
    return cfg.instance_dir / "run"


def _lock_path(cfg: PbxConfig) -> Path:
    root = _root(cfg)
    return root.parent / f".{root.name}.lock"


def _mounts_record(cfg: PbxConfig) -> Path:
    # Next to the root, not in it: the root may be rebuilt while this is kept.
    root = _root(cfg)
    return root.parent / f".{root.name}.mounts.json"


def is_built(cfg: PbxConfig) -> bool:
    """A root is usable only once the build wrote its marker (as the last step)."""
    return (_root(cfg) / MARKER).is_file()


@contextlib.contextmanager
def _locked(cfg: PbxConfig) -> Iterator[None]:
    """Serialise build/start/stop of instances of one root (dev and tests may race)."""
    path = _lock_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# ----------------------------------------------------------------------------- build


def _mountpoints_under(path: Path) -> list[str]:
    """Mount points at or below path, deepest first (so they can be unmounted in order)."""
    prefix = str(path.resolve() if path.exists() else path.absolute())
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt == prefix or mnt.startswith(prefix + "/"):
                found.append(mnt)
    return sorted(found, key=len, reverse=True)


def _is_mountpoint(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/self/mountinfo") as fh:
        return any(line.split()[4].replace("\\040", " ") == target for line in fh)


def _remove_tree(path: Path) -> None:
    """Delete a (half-built) root, never following into something mounted in it."""
    if not path.exists() and not path.is_symlink():
        return
    if _processes_in_root(path):
        raise PbxError(f"cannot remove {path}: processes are running in it")
    for mnt in _mountpoints_under(path):
        subprocess.run(["umount", mnt], capture_output=True)
        if _is_mountpoint(Path(mnt)):
            subprocess.run(["umount", "-l", mnt], capture_output=True)
    left = _mountpoints_under(path)
    if left:
        raise PbxError(f"cannot remove {path}: still mounted: {', '.join(left)}")
    shutil.rmtree(path)


class _Progress:
    """Stage lines, and a tqdm bar on a terminal (silent when progress=False)."""

    def __init__(self, enabled: bool, stages: int) -> None:
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.stages = stages
        self.n = 0
        self.bar = None
        self.t0 = time.monotonic()

    def stage(self, text: str) -> None:
        self.n += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(
                desc=f"[{self.n}/{self.stages}] {text}",
                unit=" lines",
                file=sys.stderr,
                leave=True,
                dynamic_ncols=True,
            )
        else:
            print(f"[{self.n}/{self.stages}] {text} ...", file=sys.stderr, flush=True)

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text[:60], refresh=False)
            self.bar.update(1)

    def done(self, text: str) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.enabled:
            took = time.monotonic() - self.t0
            print(f"{text} ({took:.0f} s)", file=sys.stderr, flush=True)


def _run_logged(argv: list[str], log: Path, progress: _Progress, what: str,
                env: dict[str, str] | None = None) -> None:
    """Run a build step, appending its output to the build log; PbxError with the tail."""
    with open(log, "ab") as fh:
        fh.write(f"\n$ {' '.join(argv)}\n".encode())
        fh.flush()
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env)
        except OSError as exc:
            raise PbxError(f"{what}: cannot run {argv[0]}: {exc}") from exc
        assert proc.stdout is not None
        for raw in proc.stdout:
            fh.write(raw)
            progress.line(raw.decode("utf-8", "replace").strip())
        rc = proc.wait()
    if rc != 0:
        raise PbxError(f"{what} failed (exit {rc}); last lines of {log}:\n{_tail(log)}")


def _ensure_debootstrap(log: Path, progress: _Progress) -> None:
    if shutil.which("debootstrap"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run_logged(["apt-get", "update"], log, progress, "apt-get update", env)
    _run_logged(["apt-get", "install", "-y", "--no-install-recommends", "debootstrap"],
                log, progress, "installing debootstrap", env)
    if not shutil.which("debootstrap"):
        raise PbxError("debootstrap is still missing after apt-get install debootstrap")


def build_root(cfg: PbxConfig, progress: bool = True) -> Path:
    """Build the Debian-unstable root with Asterisk once; return its path.

    Built into a temp folder next to the root and renamed into place when complete, so
    an interrupted build never leaves a root that looks usable; a half-built root (no
    marker) is removed and built again. A complete root is returned as it is.
    """
    root = _root(cfg)
    with _locked(cfg):
        if is_built(cfg):
            return root
        if os.geteuid() != 0:
            raise PbxError("building the PBX root needs root (debootstrap, chroot)")
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = root.parent / f".{root.name}.partial"
        log = root.parent / f"{root.name}.build.log"
        log.write_bytes(b"")
        os.chmod(log, FILE_MODE)
        prog = _Progress(progress, stages=4)
        try:
            _remove_tree(tmp)
            if root.exists():
                # No marker: a half-built or foreign root; build it afresh.
                _remove_tree(root)
            prog.stage("checking debootstrap")
            _ensure_debootstrap(log, prog)
            prog.stage(f"debootstrap --variant=minbase {cfg.suite}")
            argv = ["debootstrap", "--variant=minbase", cfg.suite, str(tmp)]
            if cfg.mirror:
                argv.append(cfg.mirror)
            _run_logged(argv, log, prog, "debootstrap")
            # Never let package scripts start services inside the root.
            policy = tmp / "usr/sbin/policy-rc.d"
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            prog.stage("apt-get update (in the root)")
            _run_logged(["chroot", str(tmp), "apt-get", "-o",
                         "Acquire::Check-Valid-Until=false", "update"],
                        log, prog, "apt-get update in the root", env)
            prog.stage("apt-get install " + " ".join(PACKAGES))
            _run_logged(["chroot", str(tmp), "apt-get", "install", "-y",
                         "--no-install-recommends", *PACKAGES],
                        log, prog, "apt-get install asterisk in the root", env)
            _run_logged(["chroot", str(tmp), "apt-get", "clean"], log, prog, "apt-get clean")
            version = _asterisk_version(tmp)
            if not version:
                raise PbxError(f"asterisk -V gives nothing in the new root; see {log}")
            for mnt in _mountpoints_under(tmp):
                subprocess.run(["umount", mnt], capture_output=True)
            (tmp / "srv/sipprov").mkdir(parents=True, exist_ok=True)
            os.chmod(tmp / "srv/sipprov", DIR_MODE)
            (tmp / MARKER).write_text(json.dumps(
                {"suite": cfg.suite, "asterisk": version, "built_at": time.time()}) + "\n")
            os.rename(tmp, root)
        except BaseException:
            prog.done("build failed")
            raise
        prog.done(f"PBX root ready at {root}: {_asterisk_version(root)}")
        return root


def _asterisk_version(root: Path) -> str:
    try:
        out = subprocess.run(["chroot", str(root), "asterisk", "-V"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


# ----------------------------------------------------------------------------- config


def write_atomic(path: Path, text: str, mode: int = FILE_MODE) -> None:
    """Atomic write (temp + fsync + rename) with the final mode set before the rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        data = memoryview(text.encode())
        while data:
            data = data[os.write(fd, data):]
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _mkdir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)


def _checked(name: str, value: str) -> str:
    """A configured value that goes into a config file: reject what could become config."""
    if not value or _UNSAFE.search(value):
        raise PbxError(f"{name} may not be empty or contain whitespace, control "
                       f"characters, ';', '#', '\"', '[' or ']'")
    return value


def _module_dir(root: Path) -> str:
    for cand in sorted((root / "usr/lib").glob("*/asterisk/modules")):
        return "/" + str(cand.relative_to(root))
    if (root / "usr/lib/asterisk/modules").is_dir():
        return "/usr/lib/asterisk/modules"
    raise PbxError(f"no asterisk modules folder in {root}; rebuild the root")


def _generated_include_dir(cfg: Config) -> str:
    """How Asterisk (inside the chroot) names the generated-files folder."""
    gen = Path(cfg.generated_dir).absolute()
    if gen == _etc(cfg.pbx).absolute() / "sipprov":
        return "sipprov"
    root = _root(cfg.pbx)
    try:
        return "/" + str(gen.relative_to(root))
    except ValueError:
        raise PbxError(f"asterisk.config_dir {gen} is outside the PBX root {root}: the "
                       "chrooted Asterisk could not read it") from None


def write_base_config(cfg: Config) -> None:
    """Write the instance's own Asterisk files (rewritten every `up`: they are ours).

    The generated files in sipprov/ (cfg.generated_dir) are the applier's: they are
    created empty when missing and never overwritten here.
    """
    pbx, ast = cfg.pbx, cfg.asterisk
    root = _root(pbx)
    inst = pbx.instance_dir
    in_root = pbx.instance_dir_in_root
    user = _checked("asterisk.ami_user", ast.ami_user)
    secret = _checked("asterisk.ami_secret", ast.ami_secret)
    transport = _checked("asterisk.transport", ast.transport)
    realm = _checked("asterisk.sip_realm", ast.sip_realm)
    include = _generated_include_dir(cfg)
    module_dir = _module_dir(root)
    for sub in ("", "etc", "etc/asterisk", "run", "log", "spool", "lib", "lib/keys",
                "cache", "spool/outgoing", "spool/tmp"):
        _mkdir(inst / sub)
    etc = _etc(pbx)

    write_atomic(etc / "asterisk.conf", (
        "; Written by sipprov for the development PBX instance "
        f"'{pbx.instance}'; rewritten on every start.\n"
        "[directories]\n"
        f"astetcdir => {in_root}/etc/asterisk\n"
        f"astmoddir => {module_dir}\n"
        f"astvarlibdir => {in_root}/lib\n"
        f"astdbdir => {in_root}/lib\n"
        f"astkeydir => {in_root}/lib/keys\n"
        "astdatadir => /usr/share/asterisk\n"
        "astagidir => /usr/share/asterisk/agi-bin\n"
        f"astspooldir => {in_root}/spool\n"
        f"astrundir => {in_root}/run\n"
        f"astlogdir => {in_root}/log\n"
        f"astcachedir => {in_root}/cache\n"
        "astsbindir => /usr/sbin\n"
        "\n[options]\n"
        f"systemname = sipprov-{pbx.instance}\n"
        "verbose = 0\n"
        "debug = 0\n"
        "hideconnect = yes\n"
        "maxfiles = 65536\n"
        "documentation_language = en_US\n"
        "\n[files]\n"
        "astctlpermissions = 0600\n"
        "astctl = asterisk.ctl\n"
    ))
    write_atomic(etc / "modules.conf", (
        "; Only what sipprov needs, so the instance boots in about a second.\n"
        "[modules]\nautoload = no\n" + "".join(f"load => {m}\n" for m in MODULES)
    ))
    write_atomic(etc / "logger.conf", (
        "[general]\n"
        "dateformat = %F %T.%3q\n"
        "\n[logfiles]\n"
        "messages.log => notice,warning,error\n"
        "security.log => security\n"
    ))
    write_atomic(etc / "manager.conf", (
        "[general]\n"
        "enabled = yes\n"
        "webenabled = no\n"
        f"port = {int(ast.ami_port)}\n"
        "bindaddr = 127.0.0.1\n"
        "displayconnects = no\n"
        "timestampevents = no\n"
        "\n"
        f"[{user}]\n"
        f"secret = {secret}\n"
        "deny = 0.0.0.0/0.0.0.0\n"
        "permit = 127.0.0.1/255.255.255.255\n"
        "read = system,call,command,reporting,config,agent,user,originate\n"
        "write = system,call,command,reporting,config,agent,user,originate\n"
        "; big event lists (10,000 endpoints) to a busy client must not be cut off\n"
        "writetimeout = 10000\n"
    ))
    write_atomic(etc / "pjsip.conf", (
        "; The transport is the operator's; sipprov's endpoints are included below.\n"
        "[global]\n"
        "type = global\n"
        "; unknown users are challenged with the same realm as real ones, so the realm\n"
        "; does not tell which accounts exist\n"
        f"default_realm = {realm}\n"
        "; Only PJSIP's own backlog makes PJSIP drop new requests. With the default\n"
        "; (global) any overloaded taskprocessor does, and adding thousands of static\n"
        "; queue members floods app_queue's device-state subscriber: REGISTERs went\n"
        "; unanswered for about a minute (docs/apply.md, \"Asterisk settings\").\n"
        "taskprocessor_overload_trigger = pjsip_only\n"
        "\n"
        f"[{transport}]\n"
        "type = transport\n"
        "protocol = udp\n"
        f"bind = 127.0.0.1:{int(pbx.sip_port)}\n"
        "\n"
        f"#tryinclude {include}/pjsip.conf\n"
    ))
    write_atomic(etc / "extensions.conf", (
        "[general]\nstatic = yes\nwriteprotect = yes\n\n[globals]\n\n"
        f"#tryinclude {include}/extensions.conf\n"
    ))
    write_atomic(etc / "queues.conf", f"[general]\n\n#tryinclude {include}/queues.conf\n")
    for name, text in _CORE_FILES.items():
        write_atomic(etc / name, text)
    # Queue callers hear music on hold; the package ships no music, so the default
    # class plays one second of silence (signed linear, 8 kHz) from the instance.
    _mkdir(inst / "lib/moh")
    silence = inst / "lib/moh/silence.sln"
    if not silence.exists():
        write_atomic(silence, "\0" * 16000)
    write_atomic(etc / "musiconhold.conf", (
        f"[general]\n\n[default]\nmode = files\ndirectory = {in_root}/lib/moh\n"
    ))

    gen = Path(cfg.generated_dir)
    _mkdir(gen)
    for name in ("pjsip.conf", "extensions.conf", "queues.conf"):
        path = gen / name
        if not path.exists():
            write_atomic(path, "", cfg.security.file_mode)


# ----------------------------------------------------------------------------- processes


def _processes_in_root(root: Path) -> list[int]:
    """Pids of processes chrooted into root (any instance, or an `asterisk -rx`)."""
    target = str(root.resolve() if root.exists() else root)
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry.name}/root") == target:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


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


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def _others_running(cfg: PbxConfig) -> bool:
    return bool(_processes_in_root(_root(cfg)))


def _ensure_mounts(cfg: PbxConfig) -> None:
    """Mount proc and bind /dev into the root unless already there; record what we did."""
    root = _root(cfg)
    record = _mounts_record(cfg)
    try:
        ours = set(json.loads(record.read_text()))
    except (OSError, ValueError):
        ours = set()
    for target, argv in (
        (root / "proc", ["mount", "-t", "proc", "proc"]),
        (root / "dev", ["mount", "--bind", "/dev"]),
    ):
        if _is_mountpoint(target):
            continue
        target.mkdir(exist_ok=True)
        res = subprocess.run([*argv, str(target)], capture_output=True, text=True)
        if res.returncode != 0:
            raise PbxError(f"cannot mount {target}: {res.stderr.strip()}")
        ours.add(str(target))
    write_atomic(record, json.dumps(sorted(ours)) + "\n")


def _release_mounts(cfg: PbxConfig) -> None:
    """Undo the mounts we made, once nothing runs in the root any more."""
    if _others_running(cfg):
        return
    record = _mounts_record(cfg)
    try:
        ours = json.loads(record.read_text())
    except (OSError, ValueError):
        return
    left = []
    for target in sorted(ours, key=len, reverse=True):
        if not _is_mountpoint(Path(target)):
            continue
        res = subprocess.run(["umount", target], capture_output=True)
        if res.returncode != 0:
            res = subprocess.run(["umount", "-l", target], capture_output=True)
        if res.returncode != 0:
            left.append(target)
    if left:
        write_atomic(record, json.dumps(left) + "\n")
    else:
        record.unlink(missing_ok=True)


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


# ----------------------------------------------------------------------------- CLI


def _print_status(st: PbxStatus) -> None:
    print(f"instance:  {st.instance}")
    print(f"root:      {st.root} ({'built' if st.root_built else 'not built'})")
    print(f"asterisk:  {st.version or '-'}")
    print(f"running:   {'yes, pid %d' % st.pid if st.running else 'no'}")
    print(f"AMI:       127.0.0.1:{st.ami_port}")
    print(f"SIP (UDP): 127.0.0.1:{st.sip_port}")


def pbx_main(cfg: Config, action: str) -> int:
    """`sipprov pbx up|down|status|build`: human output, exit code 0 on success."""
    try:
        if action == "build":
            build_root(cfg.pbx, progress=True)
            _print_status(status(cfg))
        elif action == "up":
            t0 = time.monotonic()
            start(cfg)
            st = status(cfg)
            _print_status(st)
            print(f"up in {time.monotonic() - t0:.1f} s; generated files: {cfg.generated_dir}")
        elif action == "down":
            stop(cfg)
            print(f"PBX instance {cfg.pbx.instance!r} stopped")
        elif action == "status":
            st = status(cfg)
            _print_status(st)
            return 0 if st.running else 3
        else:
            print(f"unknown pbx action {action!r} (up, down, status, build)", file=sys.stderr)
            return 2
    except PbxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
