"""Atomic writes of the generated Asterisk files, and the last good copy of each.

Asterisk may read a file at any moment (a reload, a restart), so a file is never
written in place: temp file in the same folder, fsync, rename over, fsync the folder.
A file whose bytes would not change is not touched (no write, no reload).

`<name>.prev` is the last copy Asterisk accepted (saved by keep_good() after a
verified apply); restore_good() puts it back when a reload is rejected (a file without
one is left alone, never emptied). Asterisk only
includes the exact names, so the temp and .prev files beside them are inert.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

PREV_SUFFIX = ".prev"
# `.<name>.tmp<pid>`: the temp file of a write (or of keep_good) in progress.
_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>[0-9]+)$")


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith(".") or name.endswith(PREV_SUFFIX):
        raise ValueError(f"not a plain file name: {name!r}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write one file atomically: temp file beside it created with mode (fchmod'ed, so
    the umask cannot change it), fsync, rename over. The folder is not fsynced here
    (write_changed does that once for all its files). Also writes the development
    PBX's own files (sipprov.pbx.write_atomic)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fchmod(fd, mode)  # the umask may have narrowed the mode given to open()
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    os.close(fd)
    os.rename(tmp, path)


def ensure_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(directory: Path) -> list[str]:
    """Remove the temp files of writers that died mid-write (SIGKILL, power loss).

    Asterisk never reads them (it includes the exact names only), but each is as big as
    the file it was to replace and its pid-named path is never reused. Only temp files
    whose process is gone are touched; returns their names.
    """
    removed = []
    for entry in os.scandir(directory):
        m = _TEMP.match(entry.name)
        if m is None:
            continue
        pid = int(m.group("pid"))
        if pid == os.getpid() or _alive(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            removed.append(entry.name)
    return removed


def has_sections(data: bytes | None) -> bool:
    """Whether a config file defines anything (a `[section]` line); comments do not."""
    return any(line.lstrip().startswith(b"[") for line in (data or b"").splitlines())


def write_changed(directory: Path, files: dict[str, bytes], mode: int = 0o640) -> list[str]:
    """Write each file whose bytes differ from the disk; return the changed names, sorted.

    A file with the same bytes but another mode gets its mode fixed (not a change).
    """
    directory = Path(directory)
    ensure_dir(directory)
    remove_stale_temps(directory)
    changed = []
    for name in sorted(files):
        _check_name(name)
        path = directory / name
        data = files[name]
        if read_bytes(path) == data:
            if (path.stat().st_mode & 0o7777) != mode:
                os.chmod(path, mode)
            continue
        write_atomic(path, data, mode)
        changed.append(name)
    if changed:
        _fsync_dir(directory)
    return changed


def diff_names(directory: Path, files: dict[str, bytes]) -> list[str]:
    """The names whose bytes differ from the disk (what write_changed would write)."""
    return sorted(n for n, data in files.items() if read_bytes(Path(directory) / n) != data)


def keep_good(directory: Path, names: list[str] | tuple[str, ...]) -> None:
    """Record the current files as the last good copies (`<name>.prev`).

    Hard link + rename: no copy, and safe because files are only ever replaced by
    rename (a new inode), never written in place.
    """
    directory = Path(directory)
    done = False
    for name in names:
        _check_name(name)
        path = directory / name
        prev = directory / (name + PREV_SUFFIX)
        if not path.exists():
            with contextlib.suppress(FileNotFoundError):
                prev.unlink()
                done = True
            continue
        with contextlib.suppress(OSError):
            if os.path.samefile(path, prev):
                continue
        tmp = directory / f".{name}{PREV_SUFFIX}.tmp{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.link(path, tmp)
        os.rename(tmp, prev)
        done = True
    if done:
        _fsync_dir(directory)


@dataclass(frozen=True)
class Restored:
    # Files put back to their last good copy (their content changed).
    changed: list[str]
    # Files with no good copy (never accepted yet): left as they were.
    no_good_copy: list[str]


def restore_good(directory: Path, names: list[str] | tuple[str, ...], mode: int = 0o640) -> Restored:
    """Put the last good copies back.

    A file with no good copy yet (nothing was ever accepted) is left as it is, never
    emptied: an empty file would drop every agent from Asterisk at the next reload for
    a fault that may lie elsewhere (an operator's include, another module).
    """
    directory = Path(directory)
    restored = {}
    missing = []
    for name in names:
        _check_name(name)
        good = read_bytes(directory / (name + PREV_SUFFIX))
        if good is None:
            missing.append(name)
        else:
            restored[name] = good
    return Restored(write_changed(directory, restored, mode), missing)
