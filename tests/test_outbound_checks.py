"""Outbound settings that cannot work are refused or flagged (issue 13 item 12): an
outbound number on an agent who may not call out is refused (API, CLI, CSV);
outbound_allowed without an outbound route is reported on the agent and in /status."""

from __future__ import annotations

import csv
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from sipprov.bulk import importer as bulk
from sipprov.cli.main import main
from sipprov.config import Config
from tests.api_helpers import agent_body, call

pytest_plugins = ["tests.api_fixtures"]

AGENTS = "/api/v1/agents"


async def test_outbound_number_needs_outbound_allowed(admin: aiohttp.ClientSession) -> None:
    r = await call(admin, "POST", AGENTS, json=agent_body(1, outbound_number="+48221234567"))
    assert r.status == 422 and r.body["error"]["field"] == "outbound_number", r.body
    assert (await call(admin, "GET", AGENTS)).body["items"] == []

    r = await call(admin, "POST", AGENTS, json=agent_body(
        1, outbound_allowed=True, outbound_number="+48221234567"))
    assert r.status == 201, r.body
    url = f"{AGENTS}/{r.body['id']}"
    # Taking the permission away while a number is stored: refused, naming both.
    r = await call(admin, "PATCH", url, json={"outbound_allowed": False})
    assert r.status == 422 and r.body["error"]["field"] == "outbound_allowed"
    assert "outbound_number" in r.body["error"]["message"]
    r = await call(admin, "PATCH", url, json={"outbound_allowed": False, "outbound_number": None})
    assert r.status == 200 and (r.body["outbound_allowed"], r.body["outbound_number"]) == (False, None)
    r = await call(admin, "PATCH", url, json={"outbound_number": "+48221234567"})
    assert r.status == 422 and r.body["error"]["field"] == "outbound_number"


async def test_outbound_without_route_is_flagged(admin: aiohttp.ClientSession, cfg: Config) -> None:
    assert not cfg.asterisk.outbound_dial  # the test configuration has no route out
    status = (await call(admin, "GET", "/api/v1/status")).body
    assert status["outbound"] == {"route_configured": False, "agents_allowed": 0}
    assert status["warnings"] == []

    r = await call(admin, "POST", AGENTS, json=agent_body(1, outbound_allowed=True))
    assert r.status == 201
    assert len(r.body["warnings"]) == 1 and "outbound_dial" in r.body["warnings"][0]
    got = (await call(admin, "GET", f"{AGENTS}/{r.body['id']}")).body
    assert got["warnings"] == r.body["warnings"]
    listed = (await call(admin, "GET", AGENTS)).body["items"][0]
    assert listed["warnings"] == r.body["warnings"]
    plain = (await call(admin, "POST", AGENTS, json=agent_body(2))).body
    assert plain["warnings"] == []

    status = (await call(admin, "GET", "/api/v1/status")).body
    assert status["outbound"] == {"route_configured": False, "agents_allowed": 1}
    assert len(status["warnings"]) == 1 and "1 agents" in status["warnings"][0]


async def test_route_configured_means_no_warning(services, admin: aiohttp.ClientSession) -> None:
    services.cfg.asterisk.outbound_dial = "PJSIP/${EXTEN}@trunk"
    r = await call(admin, "POST", AGENTS, json=agent_body(1, outbound_allowed=True))
    assert r.status == 201 and r.body["warnings"] == []
    status = (await call(admin, "GET", "/api/v1/status")).body
    assert status["outbound"] == {"route_configured": True, "agents_allowed": 1}
    assert status["warnings"] == []


def test_cli_outbound(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["-c", str(conf), "agents"]
    assert main(base + ["create", "--first-name", "Ewa", "--last-name", "Żak", "--email",
                        "ewa@example.com", "--outbound-number", "+48221234567"]) == 2
    assert "--outbound-number:" in capsys.readouterr().err
    assert main(base + ["create", "--first-name", "Ewa", "--last-name", "Żak", "--email",
                        "ewa@example.com", "--outbound-allowed"]) == 0
    capsys.readouterr()
    assert main(base + ["show", "ewa.zak"]) == 0
    assert "no outbound route" in capsys.readouterr().out


async def test_csv_outbound_number_refused(cfg: Config, agent_pool: asyncpg.Pool, tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["first_name", "last_name", "email", "outbound_allowed", "outbound_number"])
        w.writerow(["Jan", "Nowak", "jn@example.com", "false", "+48221234567"])
        w.writerow(["Ewa", "Nowak", "en@example.com", "true", "+48221234567"])
    report = await bulk.import_file(agent_pool, cfg, path,
                                    bulk.ImportOptions(progress=False, wait=False, dry_run=True))
    assert [(e.line, e.field) for e in report.errors] == [(2, "outbound_number")]
