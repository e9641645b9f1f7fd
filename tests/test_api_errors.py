"""The error contract: one JSON shape, the right status, never a 500 for bad input,
never a stack trace or an echoed secret in a body; 503 when PostgreSQL is away."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from sipprov.config import Config
from sipprov.context import Services
from sipprov.db import database
from sipprov.http import create_app
from tests.api_helpers import agent_body, call

pytest_plugins = ["tests.api_fixtures"]

AGENTS = "/api/v1/agents"


def assert_error(reply, status: int, code: str | None = None, field: str | None = "-") -> None:
    assert reply.status == status, (reply.status, reply.body)
    assert set(reply.body) == {"error"}
    err = reply.body["error"]
    assert set(err) == {"code", "message", "field"}
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in reply.raw.decode("utf-8", "replace")
    if code is not None:
        assert err["code"] == code
    if field != "-":
        assert err["field"] == field


@pytest.mark.parametrize("raw", [
    b"{", b"{'a': 1}", b"not json", b"\xff\xfe{}", b'{"first_name": NaN}', b"[1,", b"   ",
])
async def test_malformed_json_is_400(admin: aiohttp.ClientSession, raw: bytes) -> None:
    r = await call(admin, "POST", AGENTS, data=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "malformed_json")


@pytest.mark.parametrize("raw", [b"[]", b"1", b'"x"', b"null", b"true"])
async def test_json_that_is_not_an_object_is_422(admin: aiohttp.ClientSession, raw: bytes) -> None:
    r = await call(admin, "POST", AGENTS, data=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 422, "validation_error", None)


async def test_deeply_nested_json_is_not_a_500(admin: aiohttp.ClientSession) -> None:
    raw = b'{"queues": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    r = await call(admin, "POST", AGENTS, data=raw, headers={"Content-Type": "application/json"})
    assert r.status in (400, 422)


@pytest.mark.parametrize("body, field", [
    ({"last_name": "Nowak", "email": "a@example.com"}, "first_name"),
    (agent_body(email="not-an-email"), "email"),
    (agent_body(first_name="Jan\n[evil]"), "first_name"),
    (agent_body(last_name="x;#include /etc/passwd"), "last_name"),
    (agent_body(caller_id="a\r\nb"), "caller_id"),
    (agent_body(priority=0), "priority"),
    (agent_body(priority="high"), "priority"),
    (agent_body(outbound_mode="sometimes"), "outbound_mode"),
    (agent_body(queues=[{"name": "sales]"}]), "queues.0.name"),
    (agent_body(unknown_field=1), "unknown_field"),
    (agent_body(is_agent="maybe"), "is_agent"),
])
async def test_validation_names_the_field(admin: aiohttp.ClientSession, body: dict,
                                          field: str) -> None:
    r = await call(admin, "POST", AGENTS, json=body)
    assert_error(r, 422, "validation_error", field)


async def test_a_refused_password_is_not_echoed(admin: aiohttp.ClientSession) -> None:
    secret = "short\x01pw"
    r = await call(admin, "POST", AGENTS, json=agent_body(password=secret))
    assert r.status == 422
    assert "short" not in r.raw.decode()


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=abc", "limit"), ("limit=100000", "limit"),
    ("agents_only=maybe", "agents_only"), ("q=%00", "q"),
])
async def test_bad_query_parameters_are_422(admin: aiohttp.ClientSession, query: str,
                                            field: str) -> None:
    assert_error(await call(admin, "GET", f"{AGENTS}?{query}"), 422, "validation_error", field)


@pytest.mark.parametrize("query, field", [
    ("wait=soon", "wait"), ("wait=applied&wait_timeout=-1", "wait_timeout"),
    ("wait=applied&wait_timeout=nan", "wait_timeout"), ("wait_timeout=x", "wait_timeout"),
])
async def test_bad_wait_options_are_422_and_change_nothing(admin: aiohttp.ClientSession,
                                                           query: str, field: str) -> None:
    assert_error(await call(admin, "POST", f"{AGENTS}?{query}", json=agent_body()),
                 422, "validation_error", field)
    assert (await call(admin, "GET", AGENTS)).body["items"] == []


async def test_conflicts_are_409(admin: aiohttp.ClientSession) -> None:
    first = await call(admin, "POST", AGENTS, json=agent_body(1, login="jan.k", extension=150))
    assert first.status == 201, first.body
    r = await call(admin, "POST", AGENTS, json=agent_body(2, email="jan.kowalski1@example.com"))
    assert_error(r, 409, field="email")
    r = await call(admin, "POST", AGENTS, json=agent_body(3, login="JAN.K"))
    assert_error(r, 409, field="login")
    r = await call(admin, "POST", AGENTS, json=agent_body(4, extension=150))
    assert_error(r, 409, field="extension")


async def test_licence_limit_is_409(admin: aiohttp.ClientSession) -> None:
    r = await call(admin, "POST", "/api/v1/account-types", json={"name": "trial", "max_users": 1})
    assert r.status == 201, r.body
    assert (await call(admin, "POST", AGENTS, json=agent_body(1, account_type="trial"))).status == 201
    r = await call(admin, "POST", AGENTS, json=agent_body(2, account_type="trial"))
    assert_error(r, 409)


@pytest.mark.parametrize("path", [
    f"{AGENTS}/999999", f"{AGENTS}/abc", f"{AGENTS}/0", f"{AGENTS}/-1",
    f"{AGENTS}/99999999999999999999999", f"{AGENTS}/1.5", "/api/v1/queues/nosuchqueue",
    "/api/v1/no-such-thing", f"{AGENTS}/999999/avatar",
])
async def test_not_found_is_404(admin: aiohttp.ClientSession, path: str) -> None:
    assert_error(await call(admin, "GET", path), 404)


async def test_wrong_method_is_405_in_our_shape(admin: aiohttp.ClientSession) -> None:
    r = await call(admin, "PUT", AGENTS, json={})
    assert_error(r, 405, "method_not_allowed")
    assert "POST" in r.headers["Allow"]


async def test_too_large_bodies_are_413(admin: aiohttp.ClientSession, cfg: Config) -> None:
    created = await call(admin, "POST", AGENTS, json=agent_body())
    avatar = f"{AGENTS}/{created.body['id']}/avatar"
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (8 * 1024 * 1024)
    r = await call(admin, "PUT", avatar, data=big, headers={"Content-Type": "image/png"})
    assert_error(r, 413, "payload_too_large")
    huge = b'{"x": "' + b"a" * (cfg.http.max_body_bytes + 10) + b'"}'
    r = await call(admin, "POST", AGENTS, data=huge, headers={"Content-Type": "application/json"})
    assert_error(r, 413, "payload_too_large")


async def test_unexpected_errors_are_a_generic_500_without_secrets(
        admin: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from sipprov.http import agents as agent_routes

    secret = "".join(["hun", "ter2"])  # built at run time: not in any source line

    async def boom(*args: object, **kw: object) -> None:
        raise RuntimeError(f"secret-password-{secret}")

    monkeypatch.setattr(agent_routes.agents, "get_agent", boom)
    with caplog.at_level(logging.INFO):
        r = await call(admin, "GET", f"{AGENTS}/1")
    assert_error(r, 500, "internal_error", None)
    assert "hunter2" not in r.raw.decode()
    assert "RuntimeError" in caplog.text and "hunter2" not in caplog.text


# --- the database is away ------------------------------------------------------------


@pytest.fixture
async def dead_server(cfg: Config) -> AsyncIterator[TestServer]:
    """The app over a pool whose server does not answer (nothing listens on the port)."""
    dead = await asyncpg.create_pool("postgresql://sipprov@127.0.0.1:9/sipprov", min_size=0,
                                     max_size=2, timeout=2)
    server = TestServer(create_app(Services(cfg=cfg, pool=dead)), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()
    await dead.close()


async def test_database_down_is_503(dead_server: TestServer, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    async with aiohttp.ClientSession(base_url=str(dead_server.make_url(""))) as s:
        r = await call(s, "GET", "/api/v1/health")
        assert r.status == 503
        assert r.body == {"status": "unavailable", "database": "unavailable",
                          "instance": r.body["instance"], "leader": False}
        for method, path, body in [("GET", AGENTS, None), ("POST", AGENTS, agent_body()),
                                   ("GET", "/api/v1/status", None)]:
            r = await call(s, method, path, json=body, headers=auth)
            assert_error(r, 503, "database_unavailable", None)
            assert r.headers["Retry-After"]


async def test_closed_pool_is_503(cfg: Config, admin_token: str) -> None:
    pool = await database.create_pool(cfg.database.dsn, cfg.database)
    server = TestServer(create_app(Services(cfg=cfg, pool=pool)), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession(base_url=str(server.make_url("")),
                                         headers={"Authorization": f"Bearer {admin_token}"}) as s:
            assert (await call(s, "GET", AGENTS)).status == 200
            await pool.close()  # PostgreSQL gone from the app's point of view
            assert_error(await call(s, "GET", AGENTS), 503, "database_unavailable")
            assert (await call(s, "GET", "/api/v1/health")).status == 503
    finally:
        await server.close()
