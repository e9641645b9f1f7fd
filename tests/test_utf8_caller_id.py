"""Caller-ID names in any letters (issue 13 item 3, first part): `Ewa Żak` and
`Trần Thị Hương` are accepted through the API and CSV and written into pjsip.conf as
UTF-8 between quotes, while the characters that could leave the quotes stay refused."""

from __future__ import annotations

import csv
from pathlib import Path

import aiohttp
import asyncpg

from sipprov.apply.render import render
from sipprov.apply.snapshot import AgentConf, Snapshot
from sipprov.bulk import importer as bulk
from sipprov.config import Config
from tests.api_helpers import agent_body, call

pytest_plugins = ["tests.api_fixtures"]


async def test_api_accepts_utf8_caller_ids(admin: aiohttp.ClientSession) -> None:
    for n, name in enumerate(["Ewa Żak", "Trần Thị Hương", "Łukasz Żółć"], start=1):
        r = await call(admin, "POST", "/api/v1/agents", json=agent_body(n, caller_id=name))
        assert r.status == 201, r.body
        assert r.body["caller_id"] == name
    for bad in ['Ewa "Boss" Żak', "Ewa\nŻak", "Ewa;Żak", "Ewa\\Żak", "Ewa\u202eŻak"]:
        r = await call(admin, "POST", "/api/v1/agents", json=agent_body(9, caller_id=bad))
        assert r.status == 422 and r.body["error"]["field"] == "caller_id", bad


async def test_csv_accepts_utf8_caller_ids(cfg: Config, agent_pool: asyncpg.Pool, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    with open(path, "w", newline="", encoding="utf-8-sig") as fh:
        w = csv.writer(fh, delimiter=";")
        w.writerow(["first_name", "last_name", "email", "caller_id"])
        w.writerow(["Hương", "Trần Thị", "h@example.com", "Trần Thị Hương"])
    report = await bulk.import_file(agent_pool, cfg, path, bulk.ImportOptions(progress=False, wait=False))
    assert report.committed, report.to_dict()
    assert await agent_pool.fetchval("SELECT caller_id_name FROM users") == "Trần Thị Hương"


def test_rendered_as_utf8_between_quotes() -> None:
    agent = AgentConf(id=1, extension=1001, caller_id_name="Trần Thị Hương", ha1_md5="a" * 32,
                      ha1_sha256=None, realm="sipprov", outbound_allowed=False, outbound_number=None,
                      mute_mic=False, autologin_phone=False, priority=1)
    cfg = Config()
    cfg.asterisk.backend = "files"  # the realtime backend keeps agents out of pjsip.conf
    files = render(Snapshot(version=1, agents=[agent], queues=[]), cfg)
    text = files["pjsip.conf"].decode("utf-8")
    assert 'callerid="Trần Thị Hương" <1001>' in text
