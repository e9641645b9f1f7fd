"""Nothing is dropped silently (issue 13 item 2): a change that would take away an
agent's extension and queue memberships, a queue's members or a department's users is
refused with 409 `confirmation_required` saying what would be lost, and changes nothing,
until confirmed - `?force=true` in the API, `--force` in the CLI, a `force` column in CSV.
"""

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


async def _agent_in_queues(admin: aiohttp.ClientSession, n: int = 1, **over: Any) -> dict[str, Any]:
    for name in ("support", "sales"):
        await call(admin, "POST", "/api/v1/queues", json={"name": name})
    r = await call(admin, "POST", AGENTS,
                   json=agent_body(n, queues=[{"name": "support"}, {"name": "sales"}], **over))
    assert r.status == 201, r.body
    return r.body


async def test_role_without_sip_needs_force(admin: aiohttp.ClientSession) -> None:
    a = await _agent_in_queues(admin)
    url = f"{AGENTS}/{a['id']}"
    r = await call(admin, "PATCH", url, json={"role": "end-user"})
    assert r.status == 409, r.body
    err = r.body["error"]
    assert (err["code"], err["field"]) == ("confirmation_required", "role")
    assert err["lost"] == {"extension": a["extension"], "queues": ["sales", "support"]}
    assert str(a["extension"]) in err["message"] and "sales, support" in err["message"]
    assert "force=true" in err["message"]
    after = (await call(admin, "GET", url)).body
    assert (after["role"], after["extension"], len(after["queues"])) == ("agent", a["extension"], 2)

    # is_agent false is the same loss.
    r = await call(admin, "PATCH", url, json={"is_agent": False})
    assert r.status == 409 and r.body["error"]["field"] == "is_agent"
    # A bad force value is refused before anything happens.
    r = await call(admin, "PATCH", url + "?force=maybe", json={"role": "end-user"})
    assert r.status == 422 and r.body["error"]["field"] == "force"

    r = await call(admin, "PATCH", url + "?force=true", json={"role": "end-user"})
    assert r.status == 200, r.body
    assert (r.body["role"], r.body["extension"], r.body["queues"]) == ("end-user", None, [])


async def test_changes_that_lose_nothing_need_no_force(admin: aiohttp.ClientSession) -> None:
    r = await call(admin, "POST", AGENTS, json=agent_body(1, role="end-user"))
    url = f"{AGENTS}/{r.body['id']}"
    r = await call(admin, "PATCH", url, json={"role": "qa", "first_name": "Janek"})
    assert r.status == 200 and r.body["role"] == "qa"


async def test_queue_with_members_needs_force(admin: aiohttp.ClientSession) -> None:
    a = await _agent_in_queues(admin)
    r = await call(admin, "DELETE", "/api/v1/queues/support")
    assert r.status == 409, r.body
    err = r.body["error"]
    assert (err["code"], err["field"]) == ("confirmation_required", "name")
    assert (err["lost"]["members"], err["lost"]["member_logins"]) == (1, [a["login"]])
    assert (await call(admin, "GET", "/api/v1/queues/support")).body["member_count"] == 1
    r = await call(admin, "DELETE", "/api/v1/queues/support?force=true")
    assert r.status == 204
    got = (await call(admin, "GET", f"{AGENTS}/{a['id']}")).body
    assert [q["name"] for q in got["queues"]] == ["sales"]
    # An empty queue goes without asking.
    await call(admin, "POST", "/api/v1/queues", json={"name": "empty"})
    assert (await call(admin, "DELETE", "/api/v1/queues/empty")).status == 204


async def test_department_in_use_needs_force(admin: aiohttp.ClientSession) -> None:
    await call(admin, "POST", "/api/v1/departments", json={"name": "Obsługa"})
    made = [(await call(admin, "POST", AGENTS, json=agent_body(n, department="Obsługa"))).body
            for n in (1, 2)]
    r = await call(admin, "DELETE", "/api/v1/departments/Obsługa")
    assert r.status == 409
    assert r.body["error"]["lost"] == {"users": 2, "logins": sorted(a["login"] for a in made)}
    assert (await call(admin, "GET", "/api/v1/departments/Obsługa")).status == 200
    assert (await call(admin, "DELETE", "/api/v1/departments/Obsługa?force=true")).status == 204
    assert (await call(admin, "GET", f"{AGENTS}/{made[0]['id']}")).body["department"] is None


async def test_role_sip_off_needs_force(admin: aiohttp.ClientSession) -> None:
    r = await call(admin, "POST", "/api/v1/roles", json={"name": "night", "sip_allowed": True})
    assert r.status == 201, r.body
    a = await _agent_in_queues(admin, role="night")
    b = (await call(admin, "POST", AGENTS, json=agent_body(2, role="night", is_agent=False))).body
    assert a["extension"] is not None and b["extension"] is None
    r = await call(admin, "PATCH", "/api/v1/roles/night", json={"sip_allowed": False})
    assert r.status == 409, r.body
    err = r.body["error"]
    assert (err["code"], err["field"]) == ("confirmation_required", "sip_allowed")
    assert err["lost"] == {"sip_accounts": 1, "logins": [a["login"]]}
    assert a["login"] in err["message"] and "force=true" in err["message"]
    assert (await call(admin, "GET", "/api/v1/roles/night")).body["sip_allowed"] is True
    assert (await call(admin, "GET", f"{AGENTS}/{a['id']}")).body["extension"] == a["extension"]

    r = await call(admin, "PATCH", "/api/v1/roles/night?force=true", json={"sip_allowed": False})
    assert r.status == 200 and r.body["sip_allowed"] is False, r.body
    got = (await call(admin, "GET", f"{AGENTS}/{a['id']}")).body
    assert (got["role"], got["extension"], got["queues"]) == ("night", None, [])
    # The freed number is free again; turning SIP back on while the role has users is refused.
    r = await call(admin, "PATCH", "/api/v1/roles/night", json={"sip_allowed": True})
    assert r.status == 409 and r.body["error"]["code"] == "role_in_use"
    audit = (await call(admin, "GET", "/api/v1/audit?entity=agent")).body["items"]
    assert any(str(e["entity_id"]) == str(a["id"]) and "sip_allowed turned off" in str(e["details"])
               for e in audit), audit


async def test_openapi_documents_force(admin: aiohttp.ClientSession) -> None:
    doc = (await call(admin, "GET", "/api/v1/openapi.json")).body
    for path, method in [("/api/v1/agents/{id}", "patch"), ("/api/v1/queues/{name}", "delete"),
                         ("/api/v1/roles/{name}", "patch"),
                         ("/api/v1/departments/{name}", "delete")]:
        op = doc["paths"][path][method]
        assert "force" in {p["name"] for p in op["parameters"]}, path
        assert "409" in op["responses"]


# --- CLI and CSV -----------------------------------------------------------------------


def test_cli_set_needs_force(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(conf), "agents", "create", "--first-name", "Ewa", "--last-name", "Żak",
                 "--email", "ewa@example.com"]) == 0
    capsys.readouterr()
    assert main(["-c", str(conf), "agents", "set", "ewa.zak", "--role", "end-user"]) == 2
    err = capsys.readouterr().err
    assert "confirm with --force" in err and "extension" in err and "--role:" in err
    assert main(["-c", str(conf), "agents", "set", "ewa.zak", "--role", "end-user", "--force",
                 "--json"]) == 0
    assert '"extension": null' in capsys.readouterr().out


def test_cli_roles_set_needs_force(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(conf), "roles", "create", "night", "--sip-allowed"]) == 0
    assert main(["-c", str(conf), "agents", "create", "--first-name", "Ewa", "--last-name", "Nocna",
                 "--email", "ewa.nocna@example.com", "--role", "night"]) == 0
    capsys.readouterr()
    assert main(["-c", str(conf), "roles", "set", "night", "--no-sip-allowed"]) == 2
    err = capsys.readouterr().err
    assert "confirm with --force" in err and "ewa.nocna" in err
    assert main(["-c", str(conf), "roles", "set", "night", "--no-sip-allowed", "--force", "--json"]) == 0
    assert '"sip_allowed": false' in capsys.readouterr().out
    assert main(["-c", str(conf), "agents", "show", "ewa.nocna", "--json"]) == 0
    assert '"extension": null' in capsys.readouterr().out


async def test_csv_force_column(cfg: Config, agent_pool: asyncpg.Pool, admin: aiohttp.ClientSession,
                                tmp_path: Path) -> None:
    a = await _agent_in_queues(admin)
    path = tmp_path / "demote.csv"

    def write(force: str | None) -> None:
        cols = ["login", "role"] + (["force"] if force is not None else [])
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            w.writerow([a["login"], "end-user"] + ([force] if force is not None else []))

    write(None)
    report = await bulk.import_file(agent_pool, cfg, path, bulk.ImportOptions(progress=False, wait=False))
    assert not report.committed
    [bad] = report.errors
    assert bad.field == "role" and "force column" in (bad.error or "") and "support" in (bad.error or "")
    assert (await call(admin, "GET", f"{AGENTS}/{a['id']}")).body["extension"] == a["extension"]

    write("true")
    (tmp_path / "demote.credentials.csv").unlink(missing_ok=True)
    report = await bulk.import_file(agent_pool, cfg, path, bulk.ImportOptions(progress=False, wait=False))
    assert report.committed and report.count("update") == 1, report.to_dict()
    got = (await call(admin, "GET", f"{AGENTS}/{a['id']}")).body
    assert (got["role"], got["extension"], got["queues"]) == ("end-user", None, [])
