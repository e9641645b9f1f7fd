"""Each user's `language` (issue 16) through every door: the HTTP API (create, update,
show, OpenAPI), the CLI (`--language`), CSV import/export and the configuration's
default; an unknown value is refused with the valid ones listed and changes nothing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from sipprov import config as config_mod
from sipprov.agents import extensions
from sipprov.bulk import importer as bulk
from sipprov.cli.main import main
from sipprov.config import Config
from tests.api_helpers import agent_body, call
from tests.cli_helpers import run_db, toml_config

pytest_plugins = ["tests.api_fixtures"]

VALID = "'pl', 'vi' or 'en'"


# --- HTTP API ------------------------------------------------------------------------------


async def test_api_create_show_update(admin: aiohttp.ClientSession, cfg: Config) -> None:
    r = await call(admin, "POST", "/api/v1/agents", json=agent_body(1, language="pl"))
    assert r.status == 201, r.body
    assert r.body["language"] == "pl"
    agent_id = r.body["id"]
    # Upper case is the same language (spreadsheets, hand-typed values).
    r = await call(admin, "POST", "/api/v1/agents", json=agent_body(2, language="VI"))
    assert r.status == 201 and r.body["language"] == "vi"

    r = await call(admin, "PATCH", f"/api/v1/agents/{agent_id}", json={"language": "vi"})
    assert r.status == 200, r.body
    shown = await call(admin, "GET", f"/api/v1/agents/{agent_id}")
    assert shown.body["language"] == "vi"
    listed = await call(admin, "GET", "/api/v1/agents")
    assert {a["language"] for a in listed.body["items"]} == {"vi"}


async def test_api_default_comes_from_the_configuration(admin: aiohttp.ClientSession,
                                                        cfg: Config) -> None:
    r = await call(admin, "POST", "/api/v1/agents", json=agent_body(1))
    assert r.body["language"] == "en"
    cfg.defaults.language = "vi"
    r = await call(admin, "POST", "/api/v1/agents", json=agent_body(2))
    assert r.status == 201 and r.body["language"] == "vi"
    # Changing something else keeps the stored language even when the default moves.
    cfg.defaults.language = "pl"
    r = await call(admin, "PATCH", f"/api/v1/agents/{r.body['id']}", json={"priority": 3})
    assert r.body["language"] == "vi"


@pytest.mark.parametrize("value", ["de", "polski", "", "pl-PL", 1, ["pl"]])
async def test_api_refuses_unknown_languages(admin: aiohttp.ClientSession, pool: asyncpg.Pool,
                                             value: object) -> None:
    r = await call(admin, "POST", "/api/v1/agents", json=agent_body(1, language=value))
    assert r.status == 422, r.body
    assert r.body["error"]["field"] == "language"
    if isinstance(value, str):
        assert VALID in r.body["error"]["message"]
    assert await pool.fetchval("SELECT count(*) FROM users") == 0

    ok = await call(admin, "POST", "/api/v1/agents", json=agent_body(2, language="pl"))
    for bad in (value, None):
        r = await call(admin, "PATCH", f"/api/v1/agents/{ok.body['id']}", json={"language": bad})
        assert r.status == 422 and r.body["error"]["field"] == "language"
    assert await pool.fetchval("SELECT language FROM users") == "pl"


async def test_openapi_lists_the_languages(admin: aiohttp.ClientSession) -> None:
    doc = (await call(admin, "GET", "/api/v1/openapi.json")).body
    schemas = doc["components"]["schemas"]
    create = schemas["AgentCreate"]["properties"]["language"]
    assert {"enum": ["pl", "vi", "en"], "type": "string"} in create["anyOf"]
    update = schemas["AgentUpdate"]["properties"]["language"]
    assert update["enum"] == ["pl", "vi", "en"]  # not nullable on update
    assert schemas["Agent"]["properties"]["language"]["enum"] == ["pl", "vi", "en"]
    assert "language" in schemas["Agent"]["required"]


async def test_the_database_refuses_other_values_too(agent_pool: asyncpg.Pool,
                                                     admin: aiohttp.ClientSession) -> None:
    r = await call(admin, "POST", "/api/v1/agents", json=agent_body(1))
    with pytest.raises(asyncpg.CheckViolationError):
        await agent_pool.execute("UPDATE users SET language = 'de' WHERE id = $1", r.body["id"])


def test_configuration_default_is_checked(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[defaults]\nlanguage = "vi"\n')
    assert config_mod.load(good, env={}).defaults.language == "vi"
    bad = tmp_path / "bad.toml"
    bad.write_text('[defaults]\nlanguage = "de"\n')
    with pytest.raises(config_mod.ConfigError) as exc:
        config_mod.load(bad, env={})
    assert "defaults.language" in str(exc.value) and VALID in str(exc.value)


# --- CLI -----------------------------------------------------------------------------------


@pytest.fixture
def conf(db_dsn: str, tmp_path: Path) -> Path:
    path = tmp_path / "sipprov.toml"
    path.write_text(toml_config(db_dsn, tmp_path) + '[defaults]\nlanguage = "pl"\n')

    async def go(pool: asyncpg.Pool, cfg: Config) -> None:
        async with pool.acquire() as conn:
            await extensions.sync_pool(conn, cfg.extensions)

    run_db(path, go)
    return path


def cli(conf: Path, *argv: str) -> int:
    return main(["-c", str(conf), "agents", *argv])


def test_cli_create_set_show(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(conf, "create", "--first-name", "Trần", "--last-name", "Thị Bích Ngọc",
               "--email", "ngoc@example.com", "--language", "vi", "--json") == 0
    assert json.loads(capsys.readouterr().out)["language"] == "vi"
    # Without --language: the configuration's default (pl here).
    assert cli(conf, "create", "--first-name", "Łukasz", "--last-name", "Żółć",
               "--email", "lz@example.com", "--json") == 0
    assert json.loads(capsys.readouterr().out)["language"] == "pl"

    assert cli(conf, "set", "lukasz.zolc", "--language", "en") == 0
    capsys.readouterr()
    assert cli(conf, "show", "lukasz.zolc") == 0
    shown = capsys.readouterr().out
    assert any(line.split() == ["language", "en"] for line in shown.splitlines()), shown


def test_cli_refuses_unknown_language(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli(conf, "create", "--first-name", "A", "--last-name", "B", "--email", "ab@example.com",
            "--language", "de")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--language" in err and "'pl', 'vi', 'en'" in err
    assert run_db(conf, lambda pool, cfg: pool.fetchval("SELECT count(*) FROM users")) == 0


# --- CSV -----------------------------------------------------------------------------------


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def opts(**kw: object) -> bulk.ImportOptions:
    return bulk.ImportOptions(wait=False, progress=False, actor="test", **kw)  # type: ignore[arg-type]


async def test_csv_import_export_and_rejected_row(cfg: Config, agent_pool: asyncpg.Pool,
                                                  tmp_path: Path) -> None:
    cfg.defaults.language = "vi"
    rows = [
        {"first_name": "Łukasz", "last_name": "Żółć", "email": "lz@example.com", "language": "pl"},
        {"first_name": "Bích Ngọc", "last_name": "Trần", "email": "bn@example.com", "language": "VI"},
        {"first_name": "Mary", "last_name": "Smith", "email": "ms@example.com", "language": "en"},
        {"first_name": "Anna", "last_name": "Nowak", "email": "an@example.com", "language": ""},
        {"first_name": "Hans", "last_name": "Müller", "email": "hm@example.com", "language": "de"},
    ]
    src = write_rows(tmp_path / "team.csv", rows)
    report = await bulk.import_file(agent_pool, cfg, src, opts(continue_on_error=True))
    assert report.count("create") == 4
    [bad] = report.errors
    assert bad.line == 6 and "language" in (bad.error or "") and VALID in (bad.error or "")
    rejected = read_rows(Path(report.rejects_path or ""))
    assert [r["email"] for r in rejected] == ["hm@example.com"]
    stored = dict(await agent_pool.fetch("SELECT email, language FROM users"))
    assert stored == {"lz@example.com": "pl", "bn@example.com": "vi", "ms@example.com": "en",
                      "an@example.com": "vi"}  # empty cell: the configured default

    # An update: a new language changes it, an empty cell keeps it.
    again = write_rows(tmp_path / "again.csv", [
        {"email": "lz@example.com", "language": "en"},
        {"email": "bn@example.com", "language": ""},
    ])
    report = await bulk.import_file(agent_pool, cfg, again, opts(credentials_path=tmp_path / "c.csv"))
    assert [r.action for r in report.rows] == ["update", "unchanged"]
    assert await agent_pool.fetchval("SELECT language FROM users WHERE email = 'lz@example.com'") == "en"
    assert await agent_pool.fetchval("SELECT language FROM users WHERE email = 'bn@example.com'") == "vi"

    out = tmp_path / "out.csv"
    await bulk.export_file(agent_pool, out, progress=False)
    exported = {r["email"]: r["language"] for r in read_rows(out)}
    assert exported == {"lz@example.com": "en", "bn@example.com": "vi", "ms@example.com": "en",
                        "an@example.com": "vi"}
