"""The console's pure pieces: safe redirects, language choice, the agent form's parsing
(every bad field reported next to itself), the Linphone provisioning XML (values
escaped, no password), the QR code, and the preview of what a create derives."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import asyncpg
import pytest
from multidict import MultiDict, MultiDictProxy

from sipprov.agents import preview, provisioning
from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate
from sipprov.config import Config
from sipprov.db.transaction import run
from sipprov.web import agentform, language, pages, qr


@pytest.mark.parametrize("value, expected", [
    ("/agents?q=x", "/agents?q=x"), ("/", "/"), ("", "/"), (None, "/"),
    ("//evil.example/x", "/"), ("https://evil.example/", "/"), ("/\\evil", "/"),
    ("javascript:alert(1)", "/"), ("agents", "/"),
])
def test_safe_next(value: str | None, expected: str) -> None:
    assert pages.safe_next(value) == expected


def test_language_choice() -> None:
    assert language.choose("vi", accept="pl") == "vi"
    assert language.choose(None, "de", accept="pl-PL,pl;q=0.9") == "pl"
    assert language.choose(None, accept="de, fr") == "en"
    assert language.choose("PL ", accept=None) == "pl"


def form(**fields: str) -> MultiDictProxy[str]:
    return MultiDictProxy(MultiDict(fields))


def ident(text: str) -> str:
    return text


def test_create_form_reports_every_bad_field_at_once() -> None:
    posted = agentform.read_create(form(
        first_name="Jan", last_name="", email="not-an-e-mail", role="agent", account_type="standard",
        language="vi",
        priority="first", outbound_mode="manual", extension="12x", phone="call me",
        **{"queue:support": "1", "penalty:support": "-3"}),
        ["support", "sales"], ident, lambda e: e.message)
    assert set(posted.errors) == {"last_name", "email", "priority", "extension", "phone", "queues"}
    assert posted.errors["last_name"] == "This field is required."
    assert posted.values["first_name"] == "Jan" and posted.values["queues"] == {"support": "-3"}


def test_create_form_builds_the_api_input() -> None:
    posted = agentform.read_create(form(
        first_name=" Łukasz ", last_name="Żółć", email="l@example.com", role="agent", language="pl",
        account_type="standard", priority="3", outbound_mode="automatic", outbound_allowed="1",
        password="", **{"queue:support": "1", "penalty:support": "", "queue:sales": "1",
                        "penalty:sales": "7"}),
        ["support", "sales", "other"], ident, lambda e: e.message)
    assert posted.errors == {}
    data = AgentCreate(**posted.data)
    assert data.first_name == "Łukasz" and data.priority == 3 and data.outbound_allowed
    assert data.password is None and data.mute_mic is False
    assert [(q.name, q.penalty) for q in data.queues] == [("support", None), ("sales", 7)]


async def test_update_form_sends_only_what_changed(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    agent = (await run(agent_pool, agents.create_agent, cfg, AgentCreate(
        first_name="Jan", last_name="Kowalski", email="j@example.com"), "t")).agent
    values = agentform.values_of(agent)
    fields = {k: v for k, v in values.items() if isinstance(v, str)}
    fields.update({k: "1" for k, v in values.items() if v is True})
    fields["phone"] = "+48 123 456 789"
    posted = agentform.read_update(form(**fields), agent, [], ident, lambda e: e.message)
    assert posted.errors == {} and posted.data == {"phone": "+48 123 456 789"}


def test_linphone_xml_escapes_and_holds_no_password(cfg: Config) -> None:
    account = provisioning.Account(username="101", ha1_md5="0" * 32, realm="sipprov",
                                   display_name='j.<kowalski> & "co"')
    text = provisioning.linphone_xml(cfg, account)
    root = ET.fromstring(text)  # well-formed
    entries = {(s.get("name"), e.get("name")): e.text for s in root for e in s}
    assert entries[("auth_info_0", "username")] == "101"
    assert entries[("auth_info_0", "ha1")] == "0" * 32
    assert entries[("proxy_0", "reg_identity")].startswith('"j.<kowalski> & "co"" <sip:101@')
    assert "password" not in text


def test_qr_code_is_an_svg_data_uri() -> None:
    uri = qr.data_uri("http://127.0.0.1:8080/provisioning/abc")
    assert uri.startswith("data:image/svg+xml;base64,")
    svg = base64.b64decode(uri.split(",", 1)[1]).decode()
    assert "<svg" in svg and "<path" in svg


async def test_preview_of_a_create(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    first = await preview.preview_create(agent_pool, cfg, "Łukasz", "Żółć")
    assert (first.login, first.caller_id, first.chat_name, first.extension) == (
        "lukasz.zolc", "l.zolc", "Łukasz Żółć", cfg.extensions.first)
    await run(agent_pool, agents.create_agent, cfg, AgentCreate(
        first_name="Łukasz", last_name="Żółć", email="l@example.com"), "t")
    second = await preview.preview_create(agent_pool, cfg, "Lukasz", "Zolc")
    assert second.login == "lukasz.zolc2" and second.extension == cfg.extensions.first + 1
    taken = await preview.preview_create(agent_pool, cfg, "X", "Y", login="Lukasz.Zolc")
    assert taken.login_taken
    cyrillic = await preview.preview_create(agent_pool, cfg, "Иван", "Петров")
    assert cyrillic.login is None


@pytest.mark.parametrize("secure_cookies, trust, proto, secure", [
    (False, False, None, False),
    (False, False, "https", False),   # an untrusted header changes nothing
    (False, True, "https", True),     # the operator's proxy ended TLS
    (False, True, "http", False),
    (True, False, None, True),        # always
])
async def test_console_cookies_and_headers(cfg: Config, pool: asyncpg.Pool, secure_cookies: bool,
                                           trust: bool, proto: str | None, secure: bool) -> None:
    import dataclasses

    from aiohttp.test_utils import TestClient, TestServer

    from sipprov.context import Services
    from sipprov.http import create_app

    cfg.http = dataclasses.replace(cfg.http, secure_cookies=secure_cookies, trust_forwarded_for=trust)
    headers = {"X-Forwarded-Proto": proto} if proto else {}
    async with TestClient(TestServer(create_app(Services(cfg=cfg, pool=pool)))) as client:
        reply = await client.get("/login", headers=headers)
        assert reply.status == 200
        cookie = reply.headers["Set-Cookie"]
        assert cookie.startswith("sipprov_csrf=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert ("Secure" in cookie) is secure
        assert "'unsafe-inline'" not in reply.headers["Content-Security-Policy"]
        assert reply.headers["Cache-Control"] == "no-store"
        assert reply.headers["X-Frame-Options"] == "DENY"
        # a POST without the token changes nothing and says why
        refused = await client.post("/login", data={"login": "x", "password": "y"}, headers=headers)
        assert refused.status == 403
