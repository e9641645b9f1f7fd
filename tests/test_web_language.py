"""The console speaks the logged-in user's language (issue 16) unless they switch it,
and the add-agent form sets a user's language. Over real HTTP against the service's
app (no client needed for what is checked here: the page's `lang` and its texts)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate
from sipprov.config import Config
from sipprov.db.transaction import run
from sipprov.i18n import Language

pytest_plugins = ["tests.api_fixtures"]

PASSWORD = "Console-Lang-2026!"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
LANG = re.compile(r'<html lang="([a-z]+)">')


async def make_user(pool: asyncpg.Pool, cfg: Config, login: str, role: str,
                    language: Language) -> None:
    await run(pool, agents.create_agent, cfg, AgentCreate(
        first_name=login.title(), last_name="Test", email=f"{login}@example.com", login=login,
        password=PASSWORD, role=role, is_agent=False, language=language), "test")


class Browser:
    """A cookie-keeping HTTP client that reads what a client would: the page's lang
    and the CSRF token of its forms."""

    def __init__(self, server: TestServer, accept_language: str) -> None:
        self.session = aiohttp.ClientSession(
            base_url=str(server.make_url("")), cookie_jar=aiohttp.CookieJar(unsafe=True),
            headers={"Accept-Language": accept_language})
        self.token = ""

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(path) as resp:
            text = await resp.text()
        found = TOKEN.search(text)
        self.token = found.group(1) if found else self.token
        return resp.status, text

    async def post(self, path: str, **fields: str) -> tuple[int, str]:
        async with self.session.post(path, data={"csrf_token": self.token, **fields}) as resp:
            text = await resp.text()
        found = TOKEN.search(text)
        self.token = found.group(1) if found else self.token
        return resp.status, text

    async def login(self, login: str) -> str:
        await self.get("/login")
        status, page = await self.post("/login", login=login, password=PASSWORD)
        assert status == 200, page
        return page


def lang_of(page: str) -> str:
    found = LANG.search(page)
    assert found, page[:300]
    return found.group(1)


@pytest.fixture
async def client(api_server: TestServer) -> AsyncIterator[Browser]:
    b = Browser(api_server, "pl-PL,pl;q=0.9,en;q=0.5")
    yield b
    await b.session.close()


async def test_console_opens_in_the_users_language(client: Browser, pool: asyncpg.Pool,
                                                   cfg: Config, api_server: TestServer) -> None:
    await make_user(pool, cfg, "ngoc", "agent", "vi")
    # Before login: the client's Accept-Language.
    assert lang_of((await client.get("/login"))[1]) == "pl"
    # Logged in: the user's own language wins over the client's.
    page = await client.login("ngoc")
    assert lang_of(page) == "vi"
    assert "Đăng xuất" in page  # "Log out" in Vietnamese
    # Switching changes this session's pages...
    status, page = await client.post("/language", lang="en", next="/me")
    assert status == 200 and lang_of(page) == "en"
    assert lang_of((await client.get("/me"))[1]) == "en"
    # ...not the user's language: the next login opens in it again.
    await client.post("/logout")
    assert lang_of(await client.login("ngoc")) == "vi"
    assert await pool.fetchval("SELECT language FROM users WHERE login = 'ngoc'") == "vi"


async def test_add_agent_form_sets_the_language(client: Browser, pool: asyncpg.Pool,
                                                cfg: Config) -> None:
    cfg.defaults.language = "vi"
    await make_user(pool, cfg, "boss", "admin", "en")
    await client.login("boss")
    status, form = await client.get("/agents/new")
    assert status == 200
    # The configured default is preselected, every language offered by its own name.
    assert '<option value="vi" selected>Tiếng Việt</option>' in form
    assert '<option value="pl" >Polski</option>' in form or '<option value="pl">Polski</option>' in form
    fields = {"first_name": "Łukasz", "last_name": "Żółć", "email": "lz@example.com",
              "role": "agent", "account_type": "standard", "priority": "1",
              "outbound_mode": "manual"}
    status, page = await client.post("/agents/new", **fields, language="de")
    assert status == 422
    assert await pool.fetchval("SELECT count(*) FROM users WHERE email = 'lz@example.com'") == 0
    status, page = await client.post("/agents/new", **fields, language="pl")
    assert status == 200, page
    assert await pool.fetchval("SELECT language FROM users WHERE email = 'lz@example.com'") == "pl"
    agent_id = await pool.fetchval("SELECT id FROM users WHERE email = 'lz@example.com'")
    status, page = await client.post(f"/agents/{agent_id}/edit", **fields, login="lukasz.zolc",
                                      language="en")
    assert status == 200, page
    assert await pool.fetchval("SELECT language FROM users WHERE id = $1", agent_id) == "en"


async def test_add_agent_form_gives_the_reason_in_the_admins_language(
        client: Browser, pool: asyncpg.Pool, cfg: Config) -> None:
    """A field's reason is the service's catalog message, translated in the form as in
    the import preview (not the English of the API)."""
    await make_user(pool, cfg, "szef", "admin", "pl")
    await client.login("szef")
    fields = {"first_name": "Anna", "last_name": "Zła", "email": "not-an-address",
              "role": "agent", "account_type": "standard", "priority": "1",
              "outbound_mode": "manual", "language": "pl"}
    status, page = await client.post("/agents/new", **fields)
    assert status == 422
    assert "Musi być poprawnym adresem e-mail" in page, page
    assert await pool.fetchval("SELECT count(*) FROM users WHERE last_name = 'Zła'") == 0
