"""Queue labels (issue 13 item 3): a display label in any letters, separate from the
ASCII name Asterisk sees; a name omitted on create is derived from the label (folded
like logins, `-` for spaces, a suffix when taken or reserved). API, CLI, definitions."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from sipprov.cli.main import main
from sipprov.config import Config
from sipprov.db.transaction import run
from sipprov.directory import definitions
from tests.api_helpers import call

pytest_plugins = ["tests.api_fixtures"]

QUEUES = "/api/v1/queues"


async def test_label_through_the_api(admin: aiohttp.ClientSession, pool: asyncpg.Pool,
                                     cfg: Config) -> None:
    r = await call(admin, "POST", QUEUES, json={"label": "Hỗ trợ", "number": 700})
    assert r.status == 201, r.body
    assert (r.body["name"], r.body["label"]) == ("ho-tro", "Hỗ trợ")
    assert r.headers["Location"] == f"{QUEUES}/ho-tro"
    r = await call(admin, "POST", QUEUES, json={"label": "Hỗ Trợ"})
    assert (r.status, r.body["name"]) == (201, "ho-tro2"), r.body
    r = await call(admin, "POST", QUEUES, json={"label": "Obsługa klienta", "kind": "chat"})
    assert (r.body["name"], r.body["label"]) == ("obsluga-klienta", "Obsługa klienta")
    # A reserved queues.conf section is never derived.
    r = await call(admin, "POST", QUEUES, json={"label": "General"})
    assert (r.status, r.body["name"]) == (201, "general2"), r.body
    # A given name is validated as before; no label shows the name.
    r = await call(admin, "POST", QUEUES, json={"name": "sales"})
    assert (r.body["name"], r.body["label"]) == ("sales", "sales")
    r = await call(admin, "POST", QUEUES, json={"name": "Hỗ-trợ", "label": "Hỗ trợ"})
    assert (r.status, r.body["error"]["field"]) == (422, "name")

    refused = [
        ({}, "name"),
        ({"label": "Поддержка"}, "name"),  # no Latin letters: nothing to derive from
        ({"label": "x]\n[general"}, "label"),
        ({"label": ""}, "label"),
    ]
    before = await pool.fetchval("SELECT count(*) FROM queues")
    for body, field in refused:
        r = await call(admin, "POST", QUEUES, json=body)
        assert (r.status, r.body["error"]["field"]) == (422, field), (body, r.body)
    assert await pool.fetchval("SELECT count(*) FROM queues") == before

    # The label is not seen by Asterisk: changing only it bumps no config version.
    r = await call(admin, "PATCH", f"{QUEUES}/ho-tro", json={"label": "Hỗ trợ kỹ thuật"})
    assert (r.status, r.body["label"], r.body["name"]) == (200, "Hỗ trợ kỹ thuật", "ho-tro")
    assert "X-Sipprov-Config-Version" not in r.headers
    r = await call(admin, "PATCH", f"{QUEUES}/ho-tro", json={"label": None})
    assert (r.status, r.body["error"]["field"]) == (422, "label")
    r = await call(admin, "GET", f"{QUEUES}/ho-tro")
    assert r.body["label"] == "Hỗ trợ kỹ thuật"
    listed = await call(admin, "GET", QUEUES)
    assert {q["name"]: q["label"] for q in listed.body["items"]}["obsluga-klienta"] == "Obsługa klienta"

    spec = await call(admin, "GET", "/api/v1/openapi.json")
    schemas = spec.body["components"]["schemas"]
    assert "label" in schemas["QueueCreate"]["properties"]
    assert "label" in schemas["Queue"]["properties"]

    # Definitions carry the label; an entry with only a label matches by label.
    exported = await definitions.export_definitions(pool)
    assert {"name": "ho-tro", "label": "Hỗ trợ kỹ thuật"}.items() <= next(
        q for q in exported["queues"] if q["name"] == "ho-tro").items()


def test_label_through_the_cli(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = ["-c", str(conf)]
    assert main(c + ["queues", "create", "--label", "Obsługa klienta", "--json"]) == 0
    q = json.loads(capsys.readouterr().out)
    assert (q["name"], q["label"]) == ("obsluga-klienta", "Obsługa klienta")
    assert main(c + ["queues", "create", "vip", "--label", "Khách hàng VIP"]) == 0
    assert "(Khách hàng VIP)" in capsys.readouterr().out
    assert main(c + ["queues", "set", "vip", "--label", "Klient VIP", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == "Klient VIP"
    assert main(c + ["queues", "create"]) == 2
    assert "name" in capsys.readouterr().err
    assert main(c + ["queues", "create", "--label", "a\nb"]) == 2
    assert "label" in capsys.readouterr().err
    assert main(c + ["queues", "list"]) == 0
    out = capsys.readouterr().out
    assert "obsluga-klienta" in out and "(Klient VIP)" in out


async def test_definitions_match_a_label_only_entry(pool: asyncpg.Pool, cfg: Config) -> None:
    data = {"format": definitions.FORMAT, "version": definitions.FORMAT_VERSION,
            "queues": [{"label": "Hỗ trợ", "kind": "chat"}]}
    first = await run(pool, definitions.import_definitions, cfg, data, "test")
    assert first.created == ["queue ho-tro"]
    again = await run(pool, definitions.import_definitions, cfg, data, "test")
    assert again.created == []
    assert await pool.fetchval("SELECT count(*) FROM queues") == 1
