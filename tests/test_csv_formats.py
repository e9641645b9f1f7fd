"""CSV as admins produce it (issue 13 item 6): `;`-separated (Polish/Vietnamese Excel)
and tab-separated files, UTF-8 with or without a BOM and UTF-16, an unknown column
listing the valid ones, and the credentials file imported back."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import asyncpg
import pytest

from sipprov.agents import service as agents
from sipprov.bulk import csvformat as agentcsv
from sipprov.bulk import importer as bulk
from sipprov.config import Config
from sipprov.errors import ValidationError

ROWS = [["login", "first_name", "last_name", "email", "phone"],
        ["", "Łukasz", "Żółć", "lz@example.com", "+48 600 100 200"],
        ["", "An", "Nguyễn Văn", "an@example.com", ""]]


def opts(**kw: object) -> bulk.ImportOptions:
    return bulk.ImportOptions(progress=False, wait=False, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("delimiter,encoding", [
    (";", "utf-8-sig"), (";", "utf-8"), ("\t", "utf-8"), ("\t", "utf-16"), (",", "utf-8-sig"),
])
async def test_separators_and_encodings(cfg: Config, agent_pool: asyncpg.Pool, tmp_path: Path,
                                        delimiter: str, encoding: str) -> None:
    path = tmp_path / "excel.csv"
    with open(path, "w", newline="", encoding=encoding) as fh:
        csv.writer(fh, delimiter=delimiter).writerows(ROWS)
    report = await bulk.import_file(agent_pool, cfg, path, opts())
    assert report.committed and report.count("create") == 2, report.to_dict()
    found = await agents.find_agent(agent_pool, "lukasz.zolc")
    assert found is not None and (found.last_name, found.phone) == ("Żółć", "+48600100200")
    vn = await agents.find_agent(agent_pool, "an@example.com")
    assert vn is not None and vn.last_name == "Nguyễn Văn"


def test_a_cell_holding_the_separator_is_quoted() -> None:
    text = 'login;queues\njan;"support:2;sales"\n'
    parsed = agentcsv.parse_text(io.StringIO(text))
    assert parsed.rows[0].cells == {"login": "jan", "queues": "support:2;sales"}


def test_unknown_column_lists_the_valid_ones(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("login;imie;email\njan;Jan;j@example.com\n", encoding="utf-8")
    with pytest.raises(ValidationError) as exc:
        agentcsv.read_file(path)
    assert exc.value.field == "imie"
    for col in ("first_name", "last_name", "queues", "password", "action", "force"):
        assert col in exc.value.message


def test_other_encodings_are_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "cp1250.csv"
    path.write_bytes("login;first_name\njan;Łukasz\n".encode("cp1250"))
    with pytest.raises(ValidationError) as exc:
        agentcsv.read_file(path)
    assert "UTF-8" in exc.value.message


async def test_credentials_file_imports_back(cfg: Config, agent_pool: asyncpg.Pool,
                                             tmp_path: Path) -> None:
    path = tmp_path / "agents.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(ROWS)
    report = await bulk.import_file(agent_pool, cfg, path, opts())
    creds_path = Path(report.credentials_path or "")
    with open(creds_path, newline="", encoding="utf-8") as fh:
        creds = list(csv.DictReader(fh))
    assert set(creds[0]) == set(bulk.CREDENTIAL_COLUMNS)

    # Somebody changed the passwords meanwhile; importing the file puts its own back.
    for c in creds:
        agent = await agents.find_agent(agent_pool, c["login"])
        assert agent is not None
        async with agent_pool.acquire() as conn, conn.transaction():
            await agents.rotate_sip_password(conn, cfg, agent.id, None, "test")
    report = await bulk.import_file(agent_pool, cfg, creds_path,
                                    opts(credentials_path=tmp_path / "again.csv"))
    assert report.committed and report.count("update") == 2, report.to_dict()
    for c in creds:
        row = await agent_pool.fetchrow("SELECT sip_ha1_md5, sip_realm FROM users WHERE login = $1",
                                        c["login"])
        ha1 = hashlib.md5(f"{c['sip_username']}:{row['sip_realm']}:{c['sip_password']}".encode()).hexdigest()
        assert row["sip_ha1_md5"] == ha1
        assert (await agents.verify_login(agent_pool, c["login"], c["web_password"])).ok
