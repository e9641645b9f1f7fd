"""Where a PBX root and its instances keep their files, the modes of what we write
there, the lock that serialises work on one root, and the small file helpers every
part of the PBX shares (atomic write, tail of a log)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from sipprov.apply import files
from sipprov.config import PbxConfig

# Written into the root as the last build step; a root without it is half-built.
MARKER = ".sipprov-root-complete"
# Mode of the files and folders we write: Asterisk runs as root, nobody else needs them.
FILE_MODE = 0o640
DIR_MODE = 0o750


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


def write_atomic(path: Path, text: str, mode: int = FILE_MODE) -> None:
    """Atomic write (temp + fsync + rename) with the final mode set before the rename.

    Text with the PBX's file mode by default; the write itself is files.write_atomic.
    """
    files.write_atomic(path, text.encode(), mode)
