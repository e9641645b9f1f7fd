"""The audit log is readable (issue 13 item 8): GET /api/v1/audit by agent, actor and
time range, paged; `sipprov audit`; avatar changes and tokens audited like the rest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from sipprov.cli.main import main
from tests.api_helpers import agent_body, call

pytest_plugins = ["tests.api_fixtures"]

AGENTS = "/api/v1/agents"
AUDIT = "/api/v1/audit"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def test_audit_by_agent_actor_time_and_pages(admin: aiohttp.ClientSession,
                                                   readonly: aiohttp.ClientSession) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    a = (await call(admin, "POST", AGENTS, json=agent_body(1))).body
    b = (await call(admin, "POST", AGENTS, json=agent_body(2))).body
    url = f"{AGENTS}/{a['id']}"
    assert (await call(admin, "PATCH", url, json={"phone": "+48 600 100 200"})).status == 200
    r = await call(admin, "PUT", url + "/avatar", data=PNG, headers={"Content-Type": "image/png"})
    assert r.status == 204
    assert (await call(admin, "DELETE", url + "/avatar")).status == 204
    assert (await call(admin, "DELETE", url + "/avatar")).status == 204  # nothing left: no entry

    r = await call(readonly, "GET", AUDIT, params={"agent": a["login"]})
    assert r.status == 200, r.body
    assert [e["action"] for e in r.body["items"]] == ["delete_avatar", "set_avatar", "update", "create"]
    assert r.body["items"][1]["details"] == {"content_type": "image/png", "bytes": len(PNG)}
    assert {e["actor"] for e in r.body["items"]} == {"token:test-admin"}
    assert r.body["next"] is None
    by_id = await call(readonly, "GET", AUDIT, params={"agent": str(a["id"])})
    assert by_id.body == r.body

    # Paging: newest first, `next` until the end, no entry twice.
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": "2", "actor": "TOKEN:test-admin", "since": start.isoformat()}
        if cursor:
            params["cursor"] = cursor
        page = (await call(readonly, "GET", AUDIT, params=params)).body
        seen += [e["id"] for e in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 5
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert (await call(readonly, "GET", AUDIT, params={"since": later})).body["items"] == []
    everything = (await call(readonly, "GET", AUDIT, params={"until": later})).body["items"]
    # ... and the two test tokens the fixtures made.
    assert [e["entity"] for e in everything].count("token") == 2 and len(everything) == 7
    assert ("agent", str(b["id"]), "create") in {(e["entity"], e["entity_id"], e["action"])
                                                  for e in everything}


@pytest.mark.parametrize("params,field", [
    ({"agent": "nobody"}, "agent"), ({"since": "yesterday"}, "since"),
    ({"since": "2026-11-29T10:00:00"}, "since"), ({"cursor": "abc"}, "cursor"),
    ({"limit": "0"}, "limit"), ({"agent": "1", "entity": "queue"}, "agent"),
    ({"since": "2026-11-29T10:00:00Z", "until": "2026-11-29T09:00:00Z"}, "until"),
    ({"user": "x"}, "user"),
])
async def test_audit_bad_filters(readonly: aiohttp.ClientSession, params: dict[str, str],
                                 field: str) -> None:
    r = await call(readonly, "GET", AUDIT, params=params)
    assert r.status == 422, r.body
    assert r.body["error"]["field"] == field


# --- CLI ---------------------------------------------------------------------------------


def test_cli_audit(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["-c", str(conf)]
    assert main(base + ["agents", "create", "--first-name", "Ewa", "--last-name", "Żak",
                        "--email", "ewa@example.com"]) == 0
    assert main(base + ["agents", "set", "ewa.zak", "--phone", "+48 600 100 200"]) == 0
    assert main(base + ["token", "create", "--name", "ops", "--role", "readonly"]) == 0
    assert main(base + ["token", "revoke", "ops"]) == 0
    capsys.readouterr()

    assert main(base + ["audit", "--agent", "ewa.zak", "--json"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert [e["action"] for e in page["items"]] == ["update", "create"]
    assert page["items"][0]["actor"].startswith("cli")

    assert main(base + ["audit", "--entity", "token"]) == 0
    out = capsys.readouterr().out
    assert "revoke" in out and "create" in out and '"name": "ops"' in out and "spv_" not in out

    assert main(base + ["audit", "--limit", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[-1].startswith("next page: --cursor ")
    cursor = out[-1].split()[-1]
    assert main(base + ["audit", "--limit", "1", "--cursor", cursor]) == 0
    assert capsys.readouterr().out.splitlines()[0] != out[0]

    assert main(base + ["audit", "--agent", "nobody"]) == 2
    assert "--agent" in capsys.readouterr().err
    assert main(base + ["audit", "--limit", "0"]) == 2
    assert "--limit" in capsys.readouterr().err


async def test_token_changes_are_audited(pool: asyncpg.Pool) -> None:
    from sipprov import audit
    from sipprov.access import tokens
    from sipprov.db.transaction import transaction

    async with transaction(pool) as conn:
        info, secret = await tokens.create_token(conn, "deploy", "admin", "cli:root")
        await tokens.revoke_token(conn, "deploy", "cli:root")
    entries = await audit.list_entries(pool, entity="token", entity_id=info.id)
    assert [(e.action, e.actor) for e in entries] == [("revoke", "cli:root"), ("create", "cli:root")]
    assert secret not in json.dumps([e.to_dict() for e in entries])
