"""The proc and /dev mounts a root needs while Asterisk runs in it: made once for all
its instances, recorded next to the root, and undone when the last one stops."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sipprov.config import PbxConfig
from sipprov.pbx.errors import PbxError
from sipprov.pbx.paths import _mounts_record, _root, write_atomic
from sipprov.pbx.procfs import _is_mountpoint, _processes_in_root


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
