"""Files that hold secrets (generated passwords) or may (rejected import rows).

They are created with mode 0600 by the open(2) call itself (O_CREAT|O_EXCL), never
chmod-ed after the fact, so there is no instant in which another user could open them;
O_EXCL also means an existing file - perhaps last week's credentials - is never
overwritten or appended to, and a symlink planted at the path is not followed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TextIO

PRIVATE_MODE = 0o600


def create_private(path: Path | str) -> TextIO:
    """Open a new file for writing text, mode 0600; FileExistsError if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 PRIVATE_MODE)
    try:
        # The umask can only clear bits; this makes the mode exact whatever it is.
        os.fchmod(fd, PRIVATE_MODE)
        return os.fdopen(fd, "w", encoding="utf-8", newline="")
    except BaseException:
        os.close(fd)
        raise


def replace_private(path: Path | str, text: str) -> None:
    """Write `text` to path atomically (temp file 0600 + fsync + rename over)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        with create_private(tmp) as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
