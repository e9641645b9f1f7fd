"""Deactivating an agent without deleting it (issue 13 item 7), through the API, the CLI
and CSV: no web login, extension and queues kept, reactivation restores it. The phone
side (registration ended, refused, registers again) is in tests/test_realtime.py on both
backends."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import aiohttp
import asyncpg

from sipprov import config as config_mod
from sipprov.agents import service as agents
from tests.api_helpers import agent_body, call

from .cli_helpers import run_db
from .test_cli_agents import cli, setup_queues

pytest_plugins = ["tests.api_fixtures"]

AGENTS = "/api/v1/agents"
PASSWORD = "correct horse battery"


async def test_api_deactivate_refuses_login_keeps_number(admin: aiohttp.ClientSession,
                                                         readonly: aiohttp.ClientSession) -> None:
    a = (await call(admin, "POST", AGENTS, json=agent_body(1, password=PASSWORD))).body
    b = (await call(admin, "POST", AGENTS, json=agent_body(2))).body
    assert a["active"] is True
    login = {"login": a["login"], "password": PASSWORD}
    assert (await call(admin, "POST", "/api/v1/auth/login", json=login)).status == 200

    r = await call(admin, "PATCH", f"{AGENTS}/{a['id']}", json={"active": False})
    assert r.status == 200, r.body
    assert r.body["active"] is False and r.body["extension"] == a["extension"]

    r = await call(admin, "POST", "/api/v1/auth/login", json=login)
    assert r.status == 401
    assert r.body["error"]["code"] == "account_deactivated"
    assert "deactivated" in r.body["error"]["message"]
    # a wrong password tells nothing about the account
    r = await call(admin, "POST", "/api/v1/auth/login",
                   json={"login": a["login"], "password": "wrong password!"})
    assert r.status == 401 and r.body["error"]["code"] == "invalid_credentials"

    # the number stays owned: a new agent gets another one
    c = (await call(admin, "POST", AGENTS, json=agent_body(3))).body
    assert c["extension"] not in (a["extension"], b["extension"])

    r = await call(readonly, "GET", AGENTS, params={"active": "false"})
    assert [x["login"] for x in r.body["items"]] == [a["login"]]
    r = await call(readonly, "GET", AGENTS, params={"active": "true"})
    assert a["login"] not in [x["login"] for x in r.body["items"]]
    assert len(r.body["items"]) == 2
    r = await call(readonly, "GET", AGENTS, params={"active": "maybe"})
    assert r.status in (400, 422) and "active" in json.dumps(r.body)
    r = await call(admin, "PATCH", f"{AGENTS}/{a['id']}", json={"active": None})
    assert r.status == 422 and "active" in json.dumps(r.body)

    r = await call(admin, "PATCH", f"{AGENTS}/{a['id']}", json={"active": True})
    assert r.status == 200 and r.body["active"] is True
    assert (await call(admin, "POST", "/api/v1/auth/login", json=login)).status == 200

    r = await call(readonly, "GET", "/api/v1/audit", params={"agent": a["login"]})
    changes = [e for e in r.body["items"] if e["action"] == "update"]
    assert len(changes) == 2


def test_cli_deactivate_reactivate(conf: Path, capsys) -> None:
    setup_queues(conf)
    assert cli(conf, "create", "--first-name", "Ewa", "--last-name", "Żak",
               "--email", "ez@example.com", "--queue", "support", "--json") == 0
    created = json.loads(capsys.readouterr().out)

    assert cli(conf, "deactivate", "ewa.zak") == 0
    out = capsys.readouterr().out
    assert out.startswith("deactivated: agent ewa.zak") and out.count("\n") == 1
    assert cli(conf, "deactivate", "ewa.zak") == 0
    assert capsys.readouterr().out.startswith("already deactivated: agent ewa.zak")
    assert cli(conf, "show", "ewa.zak", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["active"] is False and shown["extension"] == created["extension"]
    assert [q["name"] for q in shown["queues"]] == ["support"]

    assert cli(conf, "reactivate", "ewa.zak", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["active"] is True and out["extension"] == created["extension"]

    assert cli(conf, "deactivate", "nobody.here") != 0


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _active(conf: Path) -> dict[str, bool]:
    async def go(pool: asyncpg.Pool, cfg: config_mod.Config) -> dict[str, bool]:
        return {r["login"]: r["active"] for r in await pool.fetch("SELECT login, active FROM users")}
    return run_db(conf, go)


def test_csv_bulk_deactivate_reactivate(conf: Path, tmp_path: Path, capsys) -> None:
    setup_queues(conf)
    people = [{"first_name": "Anna", "last_name": f"Nowak{c}", "email": f"an{c}@example.com",
               "queues": "sales"} for c in "abc"]
    assert cli(conf, "import", str(_write(tmp_path / "new.csv", people)), "--no-wait",
               "--no-progress") == 0
    capsys.readouterr()
    numbers = run_db(conf, lambda pool, cfg: pool.fetch(
        "SELECT login, extension FROM users ORDER BY login"))

    off = _write(tmp_path / "off.csv", [
        {"login": "anna.nowaka", "action": "deactivate"},
        {"login": "anna.nowakb", "action": "deactivate"},
    ])
    assert cli(conf, "import", str(off), "--no-wait", "--no-progress", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["updated"] == 2, report
    assert _active(conf) == {"anna.nowaka": False, "anna.nowakb": False, "anna.nowakc": True}
    after = run_db(conf, lambda pool, cfg: pool.fetch(
        "SELECT login, extension FROM users ORDER BY login"))
    assert [tuple(r) for r in after] == [tuple(r) for r in numbers]

    # a contradiction or an unknown login is a rejected row, and the file changes nothing
    bad = _write(tmp_path / "bad.csv", [
        {"login": "anna.nowaka", "action": "reactivate", "active": "false"},
        {"login": "nobody.here", "action": "reactivate", "active": ""},
    ])
    assert cli(conf, "import", str(bad), "--no-wait", "--no-progress") != 0
    err = capsys.readouterr()
    text = err.out + err.err
    assert "contradicts" in text and "nobody.here" in text
    assert _active(conf)["anna.nowaka"] is False

    on = _write(tmp_path / "on.csv", [{"login": "anna.nowaka", "action": "reactivate"}])
    assert cli(conf, "import", str(on), "--no-wait", "--no-progress") == 0
    capsys.readouterr()
    assert _active(conf) == {"anna.nowaka": True, "anna.nowakb": False, "anna.nowakc": True}

    async def members(pool: asyncpg.Pool, cfg: config_mod.Config) -> int:
        return len((await agents.get_agent(pool, (await pool.fetchval(
            "SELECT id FROM users WHERE login = 'anna.nowakb'")))).queues)
    assert run_db(conf, members) == 1
