"""Import identity (issue 13 item 1): a row matches an agent by login; an e-mail match
whose name (or login) differs is a rejected row naming the existing agent, unless
e-mail matching is asked for; a dry run shows every update field by field."""

from __future__ import annotations

import csv
from pathlib import Path

import asyncpg
import pytest

from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate
from sipprov.bulk import importer as bulk
from sipprov.cli.main import main
from sipprov.config import Config
from sipprov.db.transaction import run


def write(path: Path, header: list[str], *rows: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


async def _anna(pool: asyncpg.Pool, cfg: Config) -> None:
    await run(pool, agents.create_agent, cfg, AgentCreate(
        first_name="Anna", last_name="Nowak", email="anna@example.com", phone="+48 600 000 001"), "t")


async def test_email_of_another_person_is_rejected(cfg: Config, agent_pool: asyncpg.Pool,
                                                   tmp_path: Path) -> None:
    await _anna(agent_pool, cfg)
    path = write(tmp_path / "dup.csv", ["first_name", "last_name", "email", "caller_id"],
                 ["Duplikat", "Maila", "anna@example.com", "Duplikat"])
    report = await bulk.import_file(agent_pool, cfg, path, bulk.ImportOptions(progress=False, wait=False))
    assert not report.committed
    [bad] = report.errors
    assert bad.field == "email" and "anna.nowak" in (bad.error or "") and "Anna Nowak" in (bad.error or "")
    anna = await agents.find_agent(agent_pool, "anna.nowak")
    assert anna is not None and (anna.first_name, anna.caller_id) == ("Anna", "a.nowak")

    # A login that matches nobody with Anna's e-mail: not a silent rename either.
    path = write(tmp_path / "login.csv", ["login", "email", "phone"],
                 ["a.nowak2", "anna@example.com", "+48 600 000 002"])
    report = await bulk.import_file(agent_pool, cfg, path, bulk.ImportOptions(progress=False, wait=False))
    assert [(e.field, "anna.nowak" in (e.error or "")) for e in report.errors] == [("login", True)]

    # Same person, written without diacritics and in other case: the same agent.
    path = write(tmp_path / "same.csv", ["first_name", "last_name", "email", "phone"],
                 ["ANNA", "nowak", "anna@example.com", "+48 600 000 003"])
    report = await bulk.import_file(agent_pool, cfg, path, bulk.ImportOptions(progress=False, wait=False))
    assert report.committed and report.count("update") == 1, report.to_dict()

    # Asked for explicitly: the e-mail is the identity.
    path = write(tmp_path / "dup2.csv", ["first_name", "last_name", "email"],
                 ["Duplikat", "Maila", "anna@example.com"])
    report = await bulk.import_file(agent_pool, cfg, path,
                                    bulk.ImportOptions(progress=False, wait=False, match_email=True,
                                                       credentials_path=tmp_path / "c.csv"))
    assert report.committed and report.count("update") == 1
    assert (await agents.find_agent(agent_pool, "anna@example.com")).first_name == "Duplikat"  # type: ignore[union-attr]


def test_cli_dry_run_shows_field_changes(conf: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    c = ["-c", str(conf), "agents"]
    assert main(c + ["create", "--first-name", "Anna", "--last-name", "Nowak", "--email",
                     "anna@example.com", "--phone", "+48 600 000 001"]) == 0
    capsys.readouterr()
    path = write(tmp_path / "up.csv", ["login", "phone", "priority"],
                 ["anna.nowak", "+48 600 000 009", "4"])
    assert main(c + ["import", str(path), "--dry-run", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "line 2: update anna.nowak" in out
    assert "phone: +48600000001 -> +48600000009" in out and "priority: 1 -> 4" in out

    dup = write(tmp_path / "dup.csv", ["first_name", "last_name", "email"],
                ["Duplikat", "Maila", "anna@example.com"])
    assert main(c + ["import", str(dup), "--dry-run", "--no-progress"]) == 2
    assert "belongs to anna.nowak" in capsys.readouterr().err
    assert main(c + ["import", str(dup), "--dry-run", "--no-progress", "--match-email"]) == 0
    out = capsys.readouterr().out
    assert "first_name: Anna -> Duplikat" in out
