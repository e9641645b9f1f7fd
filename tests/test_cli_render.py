"""`sipprov render --out/--diff` and `sipprov apply` through the CLI entry point."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from sipprov import config as config_mod
from sipprov.agents import extensions
from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate
from sipprov.cli.main import main
from sipprov.db.transaction import run

from .cli_helpers import run_db, toml_config


@pytest.fixture
def conf(db_dsn: str, tmp_path: Path) -> Path:
    path = tmp_path / "sipprov.toml"
    path.write_text(toml_config(db_dsn, tmp_path))

    async def one_agent(pool: asyncpg.Pool, cfg: config_mod.Config) -> None:
        async with pool.acquire() as conn:
            await extensions.sync_pool(conn, cfg.extensions)
        await run(
            pool, agents.create_agent, cfg,
            AgentCreate(first_name="Jan", last_name="Kowalski", email="jan@example.com"),
            "test",
        )

    run_db(path, one_agent)
    return path


def test_render_out_writes_the_three_files(conf: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["-c", str(conf), "render", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["extensions.conf", "pjsip.conf", "queues.conf"]
    pjsip = (out / "pjsip.conf").read_text()
    assert "[1000]" in pjsip and "password_digest=MD5:" in pjsip
    assert "password=" not in pjsip.replace("password_digest=", "")
    assert (out / "pjsip.conf").stat().st_mode & 0o777 == 0o640
    assert "wrote" in capsys.readouterr().out
    # Rendering again changes nothing.
    assert main(["-c", str(conf), "render", "--out", str(out)]) == 0
    assert "nothing changed" in capsys.readouterr().out


def test_render_diff_exit_codes(conf: Path, capsys) -> None:
    cfg = config_mod.load(conf)
    assert main(["-c", str(conf), "render", "--diff"]) == 1
    diff = capsys.readouterr().out
    assert "+[1000]" in diff
    assert "MD5:" not in diff or "redacted" in diff  # digests are never shown whole
    assert main(["-c", str(conf), "render", "--out", str(cfg.generated_dir)]) == 0
    capsys.readouterr()
    assert main(["-c", str(conf), "render", "--diff"]) == 0
    assert capsys.readouterr().out == ""


def test_apply_without_asterisk_reports_unavailable(conf: Path, capsys) -> None:
    assert main(["-c", str(conf), "apply", "--timeout", "3"]) == 3
    assert "sipprov:" in capsys.readouterr().err
