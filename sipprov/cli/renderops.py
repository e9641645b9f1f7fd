"""What `sipprov render --out DIR`, `sipprov render --diff` and `sipprov apply` do.

Plain async functions (the CLI module wires arguments and exit codes): each opens its
own pool, reads one snapshot and renders it exactly as the applier would.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from pathlib import Path
from typing import Any

from sipprov.apply import files as files_mod
from sipprov.apply import render as render_mod
from sipprov.apply import snapshot as snapshot_mod
from sipprov.apply.applier import Applier
from sipprov.cli.commands.common import open_pool
from sipprov.config import Config

# A digest is password-equivalent for its realm: a diff shows a fingerprint instead.
_DIGEST_LINE = re.compile(r"^(password_digest\s*=\s*[A-Za-z0-9-]+:)([0-9a-fA-F]+)\s*$")


async def _render(cfg: Config) -> tuple[int, dict[str, bytes]]:
    async with open_pool(cfg) as pool:
        snap = await snapshot_mod.load_from_pool(pool)
    # As the applier renders: rows it would quarantine are left out here too.
    return snap.version, render_mod.render_isolating(snap, cfg).files


async def render_to_dir(cfg: Config, out_dir: Path | str) -> list[str]:
    """Render into out_dir (atomic writes, mode from the config) without applying.
    Returns the names of the files that were written (unchanged ones are left)."""
    _, rendered = await _render(cfg)
    return files_mod.write_changed(Path(out_dir), rendered, cfg.security.file_mode)


def _redact(line: str) -> str:
    m = _DIGEST_LINE.match(line.rstrip("\n"))
    if not m:
        return line
    fingerprint = hashlib.sha256(m.group(2).encode()).hexdigest()[:12]
    return f"{m.group(1)}<redacted {fingerprint}>\n"


def diff_text(directory: Path, rendered: dict[str, bytes]) -> str:
    """Unified diff of the files on disk against `rendered`; "" when identical."""
    out: list[str] = []
    for name in sorted(rendered):
        old = files_mod.read_bytes(directory / name)
        new = rendered[name]
        if old == new:
            continue
        old_lines = [_redact(x) for x in (old or b"").decode("utf-8", "replace").splitlines(True)]
        new_lines = [_redact(x) for x in new.decode("utf-8").splitlines(True)]
        out.extend(difflib.unified_diff(
            old_lines, new_lines,
            fromfile=f"{directory / name}" if old is not None else "/dev/null",
            tofile=f"{directory / name} (rendered)",
        ))
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
    return "".join(out)


async def render_diff(cfg: Config) -> str:
    """What an apply would change in cfg.generated_dir (digests shown as fingerprints)."""
    _, rendered = await _render(cfg)
    return diff_text(Path(cfg.generated_dir), rendered)


async def apply_now(cfg: Config, timeout: float = 60.0) -> dict[str, Any]:
    """Force an apply (every module reloaded and verified) and wait for it.

    Safe next to a running service: applies are serialised by a database lock.
    The result is the applier's status plus `ok` and `error`.
    """
    async with open_pool(cfg) as pool:
        applier = Applier(pool, cfg)
        try:
            return await applier.apply_now(timeout)
        finally:
            await applier.stop()
