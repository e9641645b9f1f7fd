"""Building the Debian-unstable root with Asterisk 22 (debootstrap + apt-get, once).

Debian 12 has no Asterisk package, so we build a small Debian-unstable root once
(debootstrap + apt-get, about a minute and 650 MB) and run Asterisk chrooted into it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sipprov.config import PbxConfig
from sipprov.pbx.errors import PbxError
from sipprov.pbx.paths import DIR_MODE, FILE_MODE, MARKER, _locked, _root, _tail, is_built
from sipprov.pbx.procfs import _is_mountpoint, _mountpoints_under, _processes_in_root

# The packages installed into the root (no recommends: keeps it at ~650 MB).
PACKAGES = ("asterisk", "asterisk-modules", "asterisk-config")


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
