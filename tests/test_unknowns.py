"""Unknown things are errors, not empty results (issue 13 item 5), and search ignores
diacritics for every word (item 4): through the API, the CLI and CSV."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from sipprov.bulk import importer as bulk
from sipprov.cli.main import main
from sipprov.config import Config
from tests.api_helpers import agent_body, call

pytest_plugins = ["tests.api_fixtures"]

AGENTS = "/api/v1/agents"


async def test_unknown_filters_name_the_value(admin: aiohttp.ClientSession) -> None:
    await call(admin, "POST", "/api/v1/departments", json={"name": "Sprzedaż"})
    await call(admin, "POST", "/api/v1/queues", json={"name": "support"})
    assert (await call(admin, "POST", AGENTS, json=agent_body(1, department="Sprzedaż",
                                                              queues=[{"name": "support"}]))).status == 201
    for param, value in [("role", "agnet"), ("department", "Sprzedaz"), ("queue", "suport")]:
        r = await call(admin, "GET", AGENTS, params={param: value})
        assert r.status == 422, (param, r.body)
        assert r.body["error"]["field"] == param and value in r.body["error"]["message"]
    # Known ones filter (any case).
    for param, value in [("role", "AGENT"), ("department", "sprzedaż"), ("queue", "Support")]:
        r = await call(admin, "GET", AGENTS, params={param: value})
        assert r.status == 200 and len(r.body["items"]) == 1, (param, r.body)


@pytest.mark.parametrize("method,path", [
    ("GET", AGENTS), ("GET", "/api/v1/queues"), ("GET", "/api/v1/roles"),
    ("POST", AGENTS), ("GET", "/api/v1/health"),
])
async def test_unknown_query_parameter_is_refused(admin: aiohttp.ClientSession, method: str,
                                                  path: str) -> None:
    kw: dict[str, Any] = {"json": agent_body(1)} if method == "POST" else {}
    r = await call(admin, method, path, params={"departmnet": "x"}, **kw)
    assert r.status == 422, r.body
    assert r.body["error"]["field"] == "departmnet"
    assert "unknown query parameter" in r.body["error"]["message"]
    if method == "POST":  # nothing was created
        assert (await call(admin, "GET", AGENTS)).body["items"] == []


@pytest.mark.parametrize("value", ["0123", "01", "12a", " 1 2", "1e3", True])
async def test_extension_must_be_written_as_the_number(admin: aiohttp.ClientSession,
                                                       value: Any) -> None:
    r = await call(admin, "POST", AGENTS, json=agent_body(1, extension=value))
    assert r.status == 422, r.body
    assert r.body["error"]["field"] == "extension"
    r = await call(admin, "POST", "/api/v1/queues", json={"name": "q", "number": value})
    assert r.status == 422 and r.body["error"]["field"] == "number"


async def test_extension_as_text_without_leading_zero(admin: aiohttp.ClientSession, cfg: Config) -> None:
    number = cfg.extensions.first + 5
    r = await call(admin, "POST", AGENTS, json=agent_body(1, extension=str(number)))
    assert r.status == 201 and r.body["extension"] == number


async def test_search_ignores_diacritics_for_every_word(admin: aiohttp.ClientSession) -> None:
    people = [("An", "Nguyễn Văn", "an@example.com"), ("Łukasz", "Żółć", "lz@example.com"),
              ("Đức", "Trần", "duc@example.com"), ("Anna", "Nowak", "anna@example.com")]
    for first, last, email in people:
        r = await call(admin, "POST", AGENTS, json={"first_name": first, "last_name": last,
                                                    "email": email})
        assert r.status == 201, r.body

    async def names(q: str) -> list[str]:
        r = await call(admin, "GET", AGENTS, params={"q": q})
        assert r.status == 200, r.body
        return [f"{a['first_name']} {a['last_name']}" for a in r.body["items"]]

    assert await names("Nguyen Van") == ["An Nguyễn Văn"]
    assert await names("nguyễn văn an") == ["An Nguyễn Văn"]
    assert await names("van nguyen") == ["An Nguyễn Văn"]  # any order
    assert await names("NGUYEN") == ["An Nguyễn Văn"]
    assert await names("lukasz zolc") == ["Łukasz Żółć"]
    assert await names("ŻÓŁĆ") == ["Łukasz Żółć"]
    assert await names("duc tran") == ["Đức Trần"]
    assert await names("anna kowalski") == []  # every word must match
    assert await names("nowak@") == []
    assert await names("anna@example") == ["Anna Nowak"]
    assert await names("an%") == []  # LIKE wildcards are literal


async def test_search_uses_the_folded_index(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN SELECT id FROM users u WHERE sipprov_fold(u.first_name || ' ' || u.last_name"
            " || ' ' || u.login || ' ' || u.email) LIKE sipprov_fold('%nguyen%')"))
    assert "users_search_folded_idx" in plan, plan


# --- CLI and CSV -----------------------------------------------------------------------


def test_cli_unknown_filter_and_folded_search(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["-c", str(conf), "agents"]
    assert main(base + ["create", "--first-name", "An", "--last-name", "Nguyễn Văn",
                        "--email", "an@example.com"]) == 0
    capsys.readouterr()
    assert main(base + ["list", "--department", "nope"]) == 2
    assert "unknown department nope" in capsys.readouterr().err
    assert main(base + ["list", "-q", "nguyen van", "--json"]) == 0
    assert '"last_name": "Nguyễn Văn"' in capsys.readouterr().out


def _write(path: Path, header: list[str], *rows: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


async def test_csv_unknown_login_to_update_is_an_error(cfg: Config, agent_pool: asyncpg.Pool,
                                                       admin: aiohttp.ClientSession,
                                                       tmp_path: Path) -> None:
    a = (await call(admin, "POST", AGENTS, json=agent_body(1))).body
    opts = bulk.ImportOptions(progress=False, wait=False, dry_run=True)
    path = _write(tmp_path / "a.csv", ["login", "phone"], [a["login"], "+48 600 1"],
                  ["jan.kowalsky", "+48 600 2"])
    report = await bulk.import_file(agent_pool, cfg, path, opts)
    [bad] = report.errors
    assert (bad.line, bad.field) == (3, "login") and "jan.kowalsky" in (bad.error or "")
    assert report.count("update") == 1

    # An explicit action: update/delete of nobody, create of somebody.
    path = _write(tmp_path / "b.csv", ["action", "login", "first_name", "last_name", "email"],
                  ["update", "nobody", "No", "Body", "nobody@example.com"],
                  ["delete", "nobody2", "", "", ""],
                  ["create", a["login"], "Jan", "Kowalski", "other@example.com"],
                  ["rename", a["login"], "", "", ""])
    report = await bulk.import_file(agent_pool, cfg, path, opts)
    assert [(e.line, e.field) for e in report.errors] == [
        (2, "login"), (3, "login"), (4, "login"), (5, "action")]
    assert "nobody" in (report.errors[0].error or "") and "exists" in (report.errors[2].error or "")

    # Extension with a leading zero in CSV.
    path = _write(tmp_path / "c.csv", ["login", "extension"], [a["login"], "0123"])
    report = await bulk.import_file(agent_pool, cfg, path, opts)
    assert [(e.field) for e in report.errors] == ["extension"]


async def test_csv_delete(cfg: Config, agent_pool: asyncpg.Pool, admin: aiohttp.ClientSession,
                          tmp_path: Path) -> None:
    a = (await call(admin, "POST", AGENTS, json=agent_body(1))).body
    b = (await call(admin, "POST", AGENTS, json=agent_body(2))).body
    path = _write(tmp_path / "d.csv", ["action", "login"], ["delete", a["login"]], ["", b["login"]])
    report = await bulk.import_file(agent_pool, cfg, path, bulk.ImportOptions(progress=False, wait=False))
    assert report.committed and (report.count("delete"), report.count("unchanged")) == (1, 1)
    assert report.config_version is not None  # its extension left Asterisk
    assert (await call(admin, "GET", f"{AGENTS}/{a['id']}")).status == 404
    assert (await call(admin, "GET", f"{AGENTS}/{b['id']}")).status == 200
    assert await agent_pool.fetchval("SELECT owner FROM extension_pool WHERE number = $1",
                                     a["extension"]) is None
