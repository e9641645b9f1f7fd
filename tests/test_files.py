"""Atomic writes of the generated files: only changed bytes are written, with the
configured mode, and the last good copy can be restored."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sipprov.apply import files


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_changed_writes_new_and_changed_only(tmp_path: Path) -> None:
    d = tmp_path / "gen"
    assert files.write_changed(d, {"a.conf": b"A", "b.conf": b"B"}) == ["a.conf", "b.conf"]
    assert (d / "a.conf").read_bytes() == b"A"
    ino_b = (d / "b.conf").stat().st_ino
    assert files.write_changed(d, {"a.conf": b"A2", "b.conf": b"B"}) == ["a.conf"]
    assert (d / "a.conf").read_bytes() == b"A2"
    # unchanged bytes: the file is not touched (same inode)
    assert (d / "b.conf").stat().st_ino == ino_b
    assert files.write_changed(d, {"a.conf": b"A2", "b.conf": b"B"}) == []


def test_mode_is_exact_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        files.write_changed(tmp_path, {"x.conf": b"1"}, mode=0o640)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "x.conf") == 0o640
    os.chmod(tmp_path / "x.conf", 0o666)
    # same bytes, wrong mode: fixed, but not reported as a change
    assert files.write_changed(tmp_path, {"x.conf": b"1"}, mode=0o640) == []
    assert _mode(tmp_path / "x.conf") == 0o640


def test_write_is_by_rename_and_leaves_no_temp_files(tmp_path: Path) -> None:
    files.write_changed(tmp_path, {"x.conf": b"1"})
    ino = (tmp_path / "x.conf").stat().st_ino
    files.write_changed(tmp_path, {"x.conf": b"2" * 1_000_000})
    assert (tmp_path / "x.conf").stat().st_ino != ino  # a new file renamed over
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.conf"]


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files.write_changed(tmp_path, {"x.conf": b"old"})

    def boom(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        files.write_changed(tmp_path, {"x.conf": b"new"})
    monkeypatch.undo()
    assert (tmp_path / "x.conf").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.conf"]


def test_names_must_be_plain(tmp_path: Path) -> None:
    for bad in ("../x.conf", "a/b", ".hidden", "x.conf.prev", ""):
        with pytest.raises(ValueError):
            files.write_changed(tmp_path, {bad: b"1"})


def test_keep_good_and_restore(tmp_path: Path) -> None:
    files.write_changed(tmp_path, {"p.conf": b"good", "q.conf": b"q-good"})
    files.keep_good(tmp_path, ["p.conf", "q.conf"])
    assert (tmp_path / "p.conf.prev").read_bytes() == b"good"
    files.keep_good(tmp_path, ["p.conf"])  # idempotent
    files.write_changed(tmp_path, {"p.conf": b"bad", "q.conf": b"q-good"})
    # the good copy is untouched by the new write
    assert (tmp_path / "p.conf.prev").read_bytes() == b"good"
    assert files.restore_good(tmp_path, ["p.conf", "q.conf"]) == files.Restored(["p.conf"], [])
    assert (tmp_path / "p.conf").read_bytes() == b"good"
    assert _mode(tmp_path / "p.conf") == 0o640
    # a later write after the restore still leaves the good copy intact
    files.write_changed(tmp_path, {"p.conf": b"newer"})
    assert (tmp_path / "p.conf.prev").read_bytes() == b"good"


def test_restore_without_good_copy_leaves_the_file(tmp_path: Path) -> None:
    # never emptied: an empty file would drop every agent at the next reload
    files.write_changed(tmp_path, {"p.conf": b"never accepted", "q.conf": b"q"})
    files.keep_good(tmp_path, ["q.conf"])
    files.write_changed(tmp_path, {"q.conf": b"q2"})
    assert files.restore_good(tmp_path, ["p.conf", "q.conf"]) == files.Restored(["q.conf"], ["p.conf"])
    assert (tmp_path / "p.conf").read_bytes() == b"never accepted"
    assert (tmp_path / "q.conf").read_bytes() == b"q"


def test_diff_names(tmp_path: Path) -> None:
    files.write_changed(tmp_path, {"a.conf": b"A"})
    assert files.diff_names(tmp_path, {"a.conf": b"A", "b.conf": b""}) == ["b.conf"]
    assert files.diff_names(tmp_path, {"a.conf": b"X"}) == ["a.conf"]
