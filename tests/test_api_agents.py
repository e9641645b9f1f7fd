"""Every agent endpoint over real HTTP against the real database: create (credentials
once), read, search, update, delete, both passwords, avatars, ?wait=applied, status,
and the directory lists."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from sipprov.apply.stats import ApplyStats
from sipprov.context import Services
from sipprov.http import create_app
from tests.api_helpers import agent_body, call

pytest_plugins = ["tests.api_fixtures"]

AGENTS = "/api/v1/agents"
SECRET_KEYS = {"password", "web_password", "sip_password", "web_password_hash",
               "sip_ha1_md5", "sip_ha1_sha256", "credentials"}


def assert_no_secrets(body: Any, *secrets: str) -> None:
    text = json.dumps(body)
    for s in secrets:
        assert s not in text

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            assert not SECRET_KEYS & set(value), value.keys()
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
    walk(body)


async def create(admin: aiohttp.ClientSession, n: int = 1, **over: Any) -> dict[str, Any]:
    r = await call(admin, "POST", AGENTS, json=agent_body(n, **over))
    assert r.status == 201, r.body
    return r.body


async def test_create_returns_agent_and_credentials_once(admin: aiohttp.ClientSession,
                                                         cfg) -> None:
    r = await call(admin, "POST", AGENTS, json={
        "first_name": "Łukasz", "last_name": "Żółć", "email": "lz@example.com",
        "phone": "+48 600 100 200", "priority": 3})
    assert r.status == 201, r.body
    body = r.body
    assert r.headers["Location"] == f"{AGENTS}/{body['id']}"
    assert int(r.headers["X-Sipprov-Config-Version"]) >= 1
    assert body["login"] == "lukasz.zolc"
    assert body["caller_id"] == "l.zolc"
    assert body["role"] == "agent" and body["is_agent"] is True and body["has_sip"] is True
    assert cfg.extensions.first <= body["extension"] <= cfg.extensions.last
    assert body["phone"] == "+48600100200" and body["priority"] == 3
    assert body["avatar_url"].startswith("https://www.gravatar.com/avatar/")
    creds = body["credentials"]
    assert len(creds["web_password"]) >= 10
    assert creds["sip"] == {"username": str(body["extension"]), "password": creds["sip"]["password"],
                            "realm": cfg.asterisk.sip_realm, "server": cfg.asterisk.sip_server}
    assert len(creds["sip"]["password"]) >= 12
    assert "credentials_email" not in body
    for key in ("web_password_hash", "sip_ha1_md5", "sip_ha1_sha256"):
        assert key not in body

    # Never again: not in GET, not in the list.
    got = await call(admin, "GET", r.headers["Location"])
    assert got.status == 200
    assert_no_secrets(got.body, creds["web_password"], creds["sip"]["password"])
    shown = dict(got.body)
    # the phone's registration (None: this test's service does not watch Asterisk)
    assert shown.pop("registration") is None
    assert {k: v for k, v in body.items() if k != "credentials"} == shown
    listed = await call(admin, "GET", AGENTS)
    assert_no_secrets(listed.body, creds["web_password"], creds["sip"]["password"])


async def test_given_password_is_not_returned(admin: aiohttp.ClientSession) -> None:
    body = await create(admin, password="my own good password", sip_password="SipSecret12345x")
    assert "web_password" not in body["credentials"]
    assert body["credentials"]["sip"]["password"] == "SipSecret12345x"


async def test_non_agent_and_extension_role(admin: aiohttp.ClientSession) -> None:
    r = await call(admin, "POST", AGENTS, json=agent_body(1, is_agent=False))
    assert r.status == 201
    assert r.body["extension"] is None and r.body["has_sip"] is False
    assert "sip" not in r.body["credentials"]
    assert "X-Sipprov-Config-Version" not in r.headers
    ext = await create(admin, 2, role="extension")
    assert "web_password" not in ext["credentials"] and "sip" in ext["credentials"]


async def test_search_filters_and_pages(admin: aiohttp.ClientSession) -> None:
    assert (await call(admin, "POST", "/api/v1/departments", json={"name": "Sales"})).status == 201
    made = [await create(admin, n, first_name=name, department="Sales" if n % 2 else None)
            for n, name in enumerate(["Anna", "Bartosz", "Celina", "Dawid", "Ewa"], start=1)]
    await create(admin, 6, first_name="Franek", is_agent=False)
    await create(admin, 7, first_name="Grzegorz", role="supervisor")

    r = await call(admin, "GET", AGENTS, params={"q": "celina"})
    assert [a["first_name"] for a in r.body["items"]] == ["Celina"]
    r = await call(admin, "GET", AGENTS, params={"q": str(made[3]["extension"])})
    assert [a["id"] for a in r.body["items"]] == [made[3]["id"]]
    r = await call(admin, "GET", AGENTS, params={"department": "Sales"})
    assert {a["first_name"] for a in r.body["items"]} == {"Anna", "Celina", "Ewa"}
    r = await call(admin, "GET", AGENTS, params={"role": "supervisor"})
    assert [a["first_name"] for a in r.body["items"]] == ["Grzegorz"]
    r = await call(admin, "GET", AGENTS, params={"agents_only": "true"})
    assert "Franek" not in {a["first_name"] for a in r.body["items"]}
    assert len(r.body["items"]) == 6

    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        r = await call(admin, "GET", AGENTS, params=params)
        assert r.status == 200 and len(r.body["items"]) <= 3
        seen += [a["id"] for a in r.body["items"]]
        cursor = r.body["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    r = await call(admin, "GET", AGENTS, params={"cursor": "garbage!"})
    assert r.status == 422 and r.body["error"]["field"] == "cursor"


async def test_update_agent(admin: aiohttp.ClientSession) -> None:
    a = await create(admin)
    url = f"{AGENTS}/{a['id']}"
    r = await call(admin, "PATCH", url, json={"phone": "600 700 800", "priority": 5,
                                              "mute_mic": True})
    assert r.status == 200, r.body
    assert r.body["phone"] == "600700800" and r.body["priority"] == 5 and r.body["mute_mic"]
    assert "credentials" not in r.body
    assert (await call(admin, "GET", url)).body["priority"] == 5

    # A new extension changes the SIP username: a new SIP password, shown once.
    new_ext = a["extension"] + 7
    r = await call(admin, "PATCH", url, json={"extension": new_ext})
    assert r.status == 200, r.body
    assert r.body["extension"] == new_ext
    assert r.body["credentials"]["sip"]["username"] == str(new_ext)

    r = await call(admin, "PATCH", url, json={"first_name": None})
    assert r.status == 422 and r.body["error"]["field"] == "first_name"
    r = await call(admin, "PATCH", f"{AGENTS}/424242", json={"phone": "600700800"})
    assert r.status == 404
    r = await call(admin, "PATCH", url, json={})
    assert r.status == 200 and r.body["id"] == a["id"]


async def test_delete_agent(admin: aiohttp.ClientSession) -> None:
    a = await create(admin)
    url = f"{AGENTS}/{a['id']}"
    r = await call(admin, "DELETE", url)
    assert r.status == 204 and r.raw == b""
    assert int(r.headers["X-Sipprov-Config-Version"]) >= 2
    assert (await call(admin, "GET", url)).status == 404
    assert (await call(admin, "DELETE", url)).status == 404
    # The extension rests (the deleted agent's phone may still be registered): asked for
    # by number it is a 409 naming the field; a new agent without one gets another number.
    r = await call(admin, "POST", AGENTS, json=agent_body(2, extension=a["extension"]))
    assert r.status == 409, r.body
    assert r.body["error"]["code"] == "extension_cooling_down"
    assert r.body["error"]["field"] == "extension"
    assert "held back until" in r.body["error"]["message"]
    again = await create(admin, 3)
    assert again["extension"] != a["extension"]


async def test_web_password_set_and_generated(admin: aiohttp.ClientSession) -> None:
    a = await create(admin, password="first password here")
    url = f"{AGENTS}/{a['id']}/password"
    r = await call(admin, "POST", url)
    assert r.status == 200 and len(r.body["web_password"]) >= 10
    generated = r.body["web_password"]
    login = {"login": a["login"], "password": generated}
    assert (await call(admin, "POST", "/api/v1/auth/login", json=login)).body == {
        "must_change_password": False, "user_id": a["id"]}
    r = await call(admin, "POST", url, json={"password": "second password here",
                                             "force_change": True})
    assert r.status == 200 and r.body == {}
    r = await call(admin, "POST", "/api/v1/auth/login",
                   json={"login": a["login"], "password": "second password here"})
    assert r.body["must_change_password"] is True
    r = await call(admin, "POST", url, json={"password": "short"})
    assert r.status == 422 and r.body["error"]["field"] == "password"
    assert (await call(admin, "POST", f"{AGENTS}/999999/password")).status == 404


async def test_sip_password_rotation(admin: aiohttp.ClientSession, pool) -> None:
    a = await create(admin)
    old = a["credentials"]["sip"]["password"]
    digest_before = await pool.fetchval("SELECT sip_ha1_md5 FROM users WHERE id = $1", a["id"])
    url = f"{AGENTS}/{a['id']}/sip-password"
    r = await call(admin, "POST", url)
    assert r.status == 200, r.body
    assert set(r.body) == {"sip"}
    assert r.body["sip"]["username"] == str(a["extension"])
    assert r.body["sip"]["password"] != old
    assert int(r.headers["X-Sipprov-Config-Version"]) > 1
    assert await pool.fetchval("SELECT sip_ha1_md5 FROM users WHERE id = $1", a["id"]) != digest_before
    r = await call(admin, "POST", url, json={"password": "GivenSipPass123"})
    assert r.status == 200 and r.body["sip"]["password"] == "GivenSipPass123"
    r = await call(admin, "POST", url, json={"password": "bad pass; with space"})
    assert r.status == 422 and r.body["error"]["field"] == "password"
    nosip = await create(admin, 2, is_agent=False)
    r = await call(admin, "POST", f"{AGENTS}/{nosip['id']}/sip-password")
    assert r.status == 422


# --- avatars ---------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 64
WEBP = b"RIFF\x10\0\0\0WEBPVP8 " + b"\0" * 64


async def test_avatar_upload_get_delete(admin: aiohttp.ClientSession,
                                        readonly: aiohttp.ClientSession) -> None:
    a = await create(admin)
    url = f"{AGENTS}/{a['id']}/avatar"
    assert (await call(admin, "GET", url)).status == 404
    for data, ctype in [(PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp")]:
        r = await call(admin, "PUT", url, data=data, headers={"Content-Type": ctype})
        assert r.status == 204, r.body
        got = await call(readonly, "GET", url)
        assert got.status == 200 and got.raw == data
        assert got.headers["Content-Type"] == ctype
    agent = (await call(admin, "GET", f"{AGENTS}/{a['id']}")).body
    assert agent["avatar_url"].startswith(f"/api/v1/avatars/{a['id']}?expires=")  # a signed link
    # Bytes decide, not the header.
    r = await call(admin, "PUT", url, data=b"<svg onload=alert(1)>", headers={"Content-Type": "image/png"})
    assert r.status == 415 and r.body["error"]["code"] == "unsupported_media_type"
    r = await call(admin, "PUT", url, data=JPEG, headers={"Content-Type": "image/png"})
    assert r.status == 415
    r = await call(admin, "PUT", url, data=PNG, headers={"Content-Type": "application/octet-stream"})
    assert r.status == 204
    assert (await call(admin, "GET", url)).headers["Content-Type"] == "image/png"
    exact = b"\x89PNG\r\n\x1a\n" + b"\0" * (8 * 1024 * 1024 - 8)
    assert (await call(admin, "PUT", url, data=exact, headers={"Content-Type": "image/png"})).status == 204
    assert (await call(admin, "DELETE", url)).status == 204
    assert (await call(admin, "GET", url)).status == 404
    agent = (await call(admin, "GET", f"{AGENTS}/{a['id']}")).body
    assert agent["avatar_url"].startswith("https://www.gravatar.com/avatar/")
    r = await call(admin, "PUT", f"{AGENTS}/999999/avatar", data=PNG,
                   headers={"Content-Type": "image/png"})
    assert r.status == 404


# --- ?wait=applied and status -------------------------------------------------------------


class FakeApplier:
    """Stands in for the Applier: applies whatever is asked after `delay` seconds."""

    def __init__(self, applies: bool) -> None:
        self.applies = applies
        self.waited: list[tuple[int, float]] = []
        self.stats = ApplyStats()  # what /metrics counts

    async def wait_applied(self, version: int, timeout: float) -> bool:
        self.waited.append((version, timeout))
        await asyncio.sleep(0)
        return self.applies

    def status(self) -> dict[str, Any]:
        return {"ami_connected": True, "asterisk_version": "22.5.2",
                "reloads": {"res_pjsip.so": 3}, "last_error": None}


@pytest.fixture
async def with_applier(services: Services, admin_token: str) -> AsyncIterator[tuple]:
    applier = FakeApplier(applies=True)
    services = Services(cfg=services.cfg, pool=services.pool, applier=applier)  # type: ignore[arg-type]
    server = TestServer(create_app(services), host="127.0.0.1")
    await server.start_server()
    session = aiohttp.ClientSession(base_url=str(server.make_url("")),
                                    headers={"Authorization": f"Bearer {admin_token}"})
    yield session, applier
    await session.close()
    await server.close()


async def test_wait_applied_without_applier_is_202_with_everything(
        admin: aiohttp.ClientSession) -> None:
    r = await call(admin, "POST", f"{AGENTS}?wait=applied&wait_timeout=0", json=agent_body())
    assert r.status == 202
    assert r.body["pending_version"] == int(r.headers["X-Sipprov-Config-Version"])
    assert r.body["credentials"]["sip"]["password"]  # shown once, even on 202
    assert r.headers["Location"] == f"{AGENTS}/{r.body['id']}"
    r2 = await call(admin, "DELETE", f"{AGENTS}/{r.body['id']}?wait=applied")
    assert r2.status == 202 and set(r2.body) == {"pending_version"}
    # Changes Asterisk does not see answer at once, whatever the wait.
    r3 = await call(admin, "POST", f"{AGENTS}?wait=applied", json=agent_body(2, is_agent=False))
    assert r3.status == 201


async def test_wait_applied_with_applier(with_applier: tuple) -> None:
    session, applier = with_applier
    r = await call(session, "POST", f"{AGENTS}?wait=applied&wait_timeout=2.5", json=agent_body())
    assert r.status == 201 and "pending_version" not in r.body
    url = r.headers["Location"]
    version = int(r.headers["X-Sipprov-Config-Version"])
    assert applier.waited == [(version, 2.5)]
    r = await call(session, "POST", f"{url}/sip-password?wait=applied")
    assert r.status == 200
    assert applier.waited[-1][1] == 30.0  # the configured default
    applier.applies = False
    r = await call(session, "PATCH", f"{url}?wait=applied", json={"priority": 9})
    assert r.status == 202 and r.body["priority"] == 9 and r.body["pending_version"] > version

    r = await call(session, "GET", "/api/v1/status")
    assert r.status == 200
    assert r.body["database"] == "ok"
    assert r.body["asterisk"] == {"connected": True, "version": "22.5.2"}
    assert r.body["config"]["version"] == r.body["config"]["pending"] + r.body["config"]["applied_version"]
    assert r.body["config"]["reloads"] == {"res_pjsip.so": 3}


async def test_status_without_applier(admin: aiohttp.ClientSession) -> None:
    await create(admin)
    r = await call(admin, "GET", "/api/v1/status")
    assert r.status == 200
    assert r.body["asterisk"] == {"connected": False, "version": None}
    cfg = r.body["config"]
    assert cfg["version"] == 1 and cfg["applied_version"] == 0 and cfg["pending"] == 1
    assert cfg["last_error"] is None and cfg["reloads"] == {}


# --- directory ----------------------------------------------------------------------------


async def test_roles(admin: aiohttp.ClientSession) -> None:
    r = await call(admin, "GET", "/api/v1/roles")
    names = {x["name"] for x in r.body["items"]}
    assert {"agent", "admin", "extension", "supervisor", "end-user"} <= names
    r = await call(admin, "POST", "/api/v1/roles",
                   json={"name": "night-shift", "label": "Night shift", "sip_allowed": True})
    assert r.status == 201 and r.headers["Location"] == "/api/v1/roles/night-shift"
    r = await call(admin, "PATCH", "/api/v1/roles/night-shift", json={"label": "Nights"})
    assert r.status == 200 and r.body["label"] == "Nights"
    assert (await call(admin, "GET", "/api/v1/roles/night-shift")).body["label"] == "Nights"
    assert (await call(admin, "POST", "/api/v1/roles", json={"name": "night-shift"})).status == 409
    assert (await call(admin, "PATCH", "/api/v1/roles/agent", json={"name": "x"})).status == 422
    assert (await call(admin, "DELETE", "/api/v1/roles/agent")).status == 409
    assert (await call(admin, "DELETE", "/api/v1/roles/night-shift")).status == 204
    assert (await call(admin, "GET", "/api/v1/roles/night-shift")).status == 404


async def test_departments_and_account_types(admin: aiohttp.ClientSession) -> None:
    r = await call(admin, "POST", "/api/v1/departments", json={"name": "Support"})
    assert r.status == 201 and r.body["user_count"] == 0
    await create(admin, department="Support")
    r = await call(admin, "PATCH", "/api/v1/departments/Support", json={"name": "Helpdesk"})
    assert r.status == 200 and r.body == {**r.body, "name": "Helpdesk", "user_count": 1}
    r = await call(admin, "GET", "/api/v1/departments")
    assert [d["name"] for d in r.body["items"]] == ["Helpdesk"]
    r = await call(admin, "DELETE", "/api/v1/departments/Helpdesk")
    assert r.status == 409 and r.body["error"]["lost"]["users"] == 1
    assert (await call(admin, "DELETE", "/api/v1/departments/Helpdesk?force=true")).status == 204
    assert (await call(admin, "GET", AGENTS)).body["items"][0]["department"] is None

    r = await call(admin, "GET", "/api/v1/account-types")
    assert [t["name"] for t in r.body["items"]] == ["standard"]
    r = await call(admin, "POST", "/api/v1/account-types", json={"name": "premium", "max_users": 5})
    assert r.status == 201 and r.body["max_users"] == 5
    r = await call(admin, "PATCH", "/api/v1/account-types/premium", json={"max_users": None})
    assert r.status == 200 and r.body["max_users"] is None
    r = await call(admin, "POST", "/api/v1/account-types", json={"name": "bad", "max_users": -1})
    assert r.status == 422 and r.body["error"]["field"] == "max_users"
    assert (await call(admin, "DELETE", "/api/v1/account-types/premium")).status == 405
