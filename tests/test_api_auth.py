"""Tokens (created, verified, readonly, revoked, CLI), and the web-login calls with the
failed-login rate limiter driven by an injected clock."""

from __future__ import annotations

import argparse
import hashlib

import aiohttp
import asyncpg
import pytest

from sipprov.access import tokens
from sipprov.access.ratelimit import LoginRateLimiter
from sipprov.cli.commands import tokens as token_cmd
from sipprov.config import SecurityConfig
from sipprov.errors import RateLimitedError
from tests.api_helpers import FakeClock, agent_body, call

pytest_plugins = ["tests.api_fixtures"]


# --- tokens ---------------------------------------------------------------------------


async def test_token_is_stored_only_as_sha256(pool: asyncpg.Pool) -> None:
    info, token = await tokens.create_token(pool, "ci", "admin")
    prefix, token_id, secret = token.split("_", 2)
    assert prefix == "spv" and int(token_id) == info.id
    row = await pool.fetchrow("SELECT * FROM api_tokens WHERE id = $1", info.id)
    assert row["token_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(dict(row))
    assert (await tokens.verify_token(pool, token)).role == "admin"
    assert await tokens.verify_token(pool, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert await tokens.verify_token(pool, f"spv_{info.id + 1}_{secret}") is None
    assert await tokens.verify_token(pool, f"spv_99999999999_{secret}") is None
    assert await tokens.verify_token(pool, "not-a-token") is None


async def test_health_needs_no_token(anon: aiohttp.ClientSession) -> None:
    r = await call(anon, "GET", "/api/v1/health")
    assert r.status == 200
    assert r.body == {"status": "ok", "database": "ok", "instance": r.body["instance"],
                      "leader": False}  # no applier in this test service


@pytest.mark.parametrize("header", [
    None, "Bearer", "Bearer ", "Basic dXNlcjpwdw==", "Bearer spv_1_short",
    "Bearer spv_1_" + "A" * 43, "Bearer " + "x" * 5000,
])
async def test_missing_or_bad_token_is_401(anon: aiohttp.ClientSession, header: str | None,
                                           admin_token: str) -> None:
    headers = {"Authorization": header} if header is not None else {}
    r = await call(anon, "GET", "/api/v1/agents", headers=headers)
    assert r.status == 401
    assert r.body["error"]["code"] == "unauthorized"
    assert r.headers["WWW-Authenticate"] == "Bearer"


async def test_unknown_path_without_token_is_401_not_404(anon: aiohttp.ClientSession) -> None:
    assert (await call(anon, "GET", "/api/v1/nothing-here")).status == 401


async def test_readonly_may_only_read(readonly: aiohttp.ClientSession,
                                      admin: aiohttp.ClientSession) -> None:
    assert (await call(readonly, "GET", "/api/v1/agents")).status == 200
    assert (await call(readonly, "GET", "/api/v1/status")).status == 200
    r = await call(readonly, "POST", "/api/v1/agents", json=agent_body())
    assert r.status == 403
    assert r.body["error"]["code"] == "forbidden"
    for method, path in [("PATCH", "/api/v1/agents/1"), ("DELETE", "/api/v1/agents/1"),
                         ("PUT", "/api/v1/queues/q1/members/1"), ("POST", "/api/v1/roles")]:
        assert (await call(readonly, method, path, json={})).status == 403, (method, path)
    # Nothing was created by the refused call.
    listed = await call(admin, "GET", "/api/v1/agents")
    assert listed.body["items"] == []


async def test_revoked_token_is_refused(pool: asyncpg.Pool,
                                        anon: aiohttp.ClientSession) -> None:
    _, token = await tokens.create_token(pool, "short-lived", "readonly")
    auth = {"Authorization": f"Bearer {token}"}
    assert (await call(anon, "GET", "/api/v1/status", headers=auth)).status == 200
    await tokens.revoke_token(pool, "short-lived")
    assert (await call(anon, "GET", "/api/v1/status", headers=auth)).status == 401
    # The name is free again once revoked.
    await tokens.create_token(pool, "short-lived", "readonly")


async def test_token_names_are_unique_and_checked(pool: asyncpg.Pool) -> None:
    from sipprov.errors import ConflictError, NotFoundError, ValidationError

    await tokens.create_token(pool, "dup", "admin")
    with pytest.raises(ConflictError):
        await tokens.create_token(pool, "DUP", "readonly")
    with pytest.raises(ValidationError):
        await tokens.create_token(pool, "bad\nname", "admin")
    with pytest.raises(ValidationError):
        await tokens.create_token(pool, "ok", "root")
    with pytest.raises(NotFoundError):
        await tokens.revoke_token(pool, "nobody")


async def test_token_cli_create_list_revoke(cfg, pool: asyncpg.Pool, capsys,
                                            anon: aiohttp.ClientSession) -> None:
    parser = argparse.ArgumentParser()
    token_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["token", "create", "--role", "admin", "--name", "deploy"])
    assert await args.func(cfg, args) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("spv_") and "shown only once" in out.err
    r = await call(anon, "GET", "/api/v1/status", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200

    args = parser.parse_args(["token", "list"])
    assert await args.func(cfg, args) == 0
    listing = capsys.readouterr().out
    assert "deploy" in listing and "admin" in listing
    assert token.split("_", 2)[2] not in listing

    args = parser.parse_args(["token", "revoke", "deploy"])
    assert await args.func(cfg, args) == 0
    r = await call(anon, "GET", "/api/v1/status", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 401


# --- the rate limiter alone -------------------------------------------------------------


async def test_rate_limiter_slows_then_locks_then_forgets(pool: asyncpg.Pool) -> None:
    cfg = SecurityConfig(login_free_attempts=3, login_lockout_attempts=10, login_lockout_s=900)
    clock = FakeClock()
    rl = LoginRateLimiter(cfg, pool, clock)
    for _ in range(3):
        await rl.check("jan", "10.0.0.1")
        await rl.failure("jan", "10.0.0.1")
    with pytest.raises(RateLimitedError) as exc:
        await rl.check("jan", "10.0.0.1")
    assert exc.value.retry_after == pytest.approx(1.0)
    # Another login from another address is not affected.
    await rl.check("anna", "10.0.0.2")
    delays = []
    for _ in range(6):
        clock.advance(61)
        await rl.check("jan", "10.0.0.1")
        await rl.failure("jan", "10.0.0.1")
        with pytest.raises(RateLimitedError) as exc:
            await rl.check("JAN", None)
        delays.append(exc.value.retry_after)
    assert delays == sorted(delays) and delays[-1] == 60.0
    clock.advance(61)
    await rl.failure("jan", "10.0.0.1")  # the 10th failure: locked
    clock.advance(600)
    with pytest.raises(RateLimitedError) as exc:
        await rl.check("jan", None)
    assert exc.value.retry_after == pytest.approx(300)
    clock.advance(301)
    await rl.check("jan", None)
    await rl.success("jan")
    # The address's count stays; nothing readable is stored (the keys are digests).
    stored = await pool.fetch("SELECT kind, key FROM login_failures")
    assert [r["kind"] for r in stored] == ["address"]
    assert "10.0.0.1" not in str(stored)
    # Forgotten login_lockout_s after the last failure, and pruned then.
    await rl.prune()
    await rl.failure("piotr", None)
    assert await rl.count() == 1
    clock.advance(899)
    await rl.prune()
    assert await rl.count() == 1
    clock.advance(1)
    await rl.prune()
    assert await rl.count() == 0


async def test_rate_limiter_counts_per_address_across_logins(pool: asyncpg.Pool) -> None:
    cfg = SecurityConfig(login_free_attempts=3, login_lockout_attempts=10, login_lockout_s=900)
    rl = LoginRateLimiter(cfg, pool, FakeClock())
    for i in range(12):  # 4x the per-login allowance, each on a different login
        await rl.check(f"user{i}", "10.0.0.9")
        await rl.failure(f"user{i}", "10.0.0.9")
    with pytest.raises(RateLimitedError):
        await rl.check("someone-else", "10.0.0.9")
    await rl.check("someone-else", "10.0.0.10")


async def test_rate_limiter_state_is_shared_and_survives_a_restart(pool: asyncpg.Pool) -> None:
    """Two limiters (two instances, or one before and after a restart) on one database
    see the same counts, on the database's own clock; concurrent failures all count."""
    import asyncio

    cfg = SecurityConfig(login_free_attempts=3, login_lockout_attempts=10, login_lockout_s=900)
    a, b = LoginRateLimiter(cfg, pool), LoginRateLimiter(cfg, pool)
    await asyncio.gather(*(lim.failure("shared", None) for lim in (a, b) * 5))
    assert await pool.fetchval("SELECT failures FROM login_failures") == 10
    for lim in (a, b, LoginRateLimiter(cfg, pool)):
        with pytest.raises(RateLimitedError) as exc:
            await lim.check("Shared ", None)
        assert 899 < exc.value.retry_after <= 900


# --- login and change-password over HTTP --------------------------------------------------


async def _agent_with_password(admin: aiohttp.ClientSession, password: str,
                               **over: object) -> dict:
    r = await call(admin, "POST", "/api/v1/agents",
                   json=agent_body(password=password, **over))
    assert r.status == 201, r.body
    return r.body


async def test_login_and_change_password(admin: aiohttp.ClientSession) -> None:
    agent = await _agent_with_password(admin, "correct horse battery", force_password_change=True)
    login = agent["login"]
    r = await call(admin, "POST", "/api/v1/auth/login",
                   json={"login": login, "password": "correct horse battery"})
    assert r.status == 200
    assert r.body["must_change_password"] is True
    assert r.body["user_id"] == agent["id"]

    r = await call(admin, "POST", "/api/v1/auth/login",
                   json={"login": login, "password": "wrong password!"})
    assert r.status == 401
    assert r.body["error"]["code"] == "invalid_credentials"
    assert "WWW-Authenticate" not in r.headers

    r = await call(admin, "POST", "/api/v1/auth/change-password",
                   json={"login": login, "old_password": "not it at all",
                         "new_password": "a brand new secret"})
    assert r.status == 401
    r = await call(admin, "POST", "/api/v1/auth/change-password",
                   json={"login": login, "old_password": "correct horse battery",
                         "new_password": "a brand new secret"})
    assert r.status == 204, r.body
    r = await call(admin, "POST", "/api/v1/auth/login",
                   json={"login": login, "password": "a brand new secret"})
    assert r.status == 200 and r.body["must_change_password"] is False
    r = await call(admin, "POST", "/api/v1/auth/login",
                   json={"login": login, "password": "correct horse battery"})
    assert r.status == 401


async def test_login_body_is_validated(admin: aiohttp.ClientSession) -> None:
    r = await call(admin, "POST", "/api/v1/auth/login", json={"login": "x"})
    assert r.status == 422 and r.body["error"]["field"] == "password"
    r = await call(admin, "POST", "/api/v1/auth/login",
                   json={"login": "x", "password": "y", "extra": 1})
    assert r.status == 422 and r.body["error"]["field"] == "extra"


async def test_failed_logins_are_slowed_then_locked(admin: aiohttp.ClientSession,
                                                    clock: FakeClock) -> None:
    agent = await _agent_with_password(admin, "correct horse battery")
    good = {"login": agent["login"], "password": "correct horse battery"}
    bad = {"login": agent["login"], "password": "guess guess guess"}
    for _ in range(3):
        assert (await call(admin, "POST", "/api/v1/auth/login", json=bad)).status == 401
    r = await call(admin, "POST", "/api/v1/auth/login", json=good)
    assert r.status == 429  # too early: even the right password is not checked
    assert r.body["error"]["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1
    clock.advance(1.5)
    assert (await call(admin, "POST", "/api/v1/auth/login", json=good)).status == 200

    for _ in range(10):  # each failure waits out its delay, until the lockout
        r = await call(admin, "POST", "/api/v1/auth/login", json=bad)
        assert r.status == 401
        clock.advance(61)
    r = await call(admin, "POST", "/api/v1/auth/login", json=good)
    assert r.status == 429
    assert 800 < int(r.headers["Retry-After"]) <= 900
    clock.advance(900)
    assert (await call(admin, "POST", "/api/v1/auth/login", json=good)).status == 200


async def test_change_password_is_rate_limited_too(admin: aiohttp.ClientSession) -> None:
    agent = await _agent_with_password(admin, "correct horse battery")
    bad = {"login": agent["login"], "old_password": "nope nope nope",
           "new_password": "whatever it is 123"}
    for _ in range(3):
        assert (await call(admin, "POST", "/api/v1/auth/change-password", json=bad)).status == 401
    r = await call(admin, "POST", "/api/v1/auth/change-password", json=bad)
    assert r.status == 429 and "Retry-After" in r.headers
