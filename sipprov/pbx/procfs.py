"""What /proc says about a root: the mounts below it and the processes chrooted in it."""

from __future__ import annotations

import os
from pathlib import Path


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


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
