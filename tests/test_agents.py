"""The agent service against the real PostgreSQL: every rule of the user record."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
from typing import Any

import asyncpg
import pytest

from sipprov import audit
from sipprov.agents import extensions, naming, passwords
from sipprov.agents import service as agents
from sipprov.agents.models import (
    AccountTypeCreate,
    AgentCreated,
    AgentUpdate,
    DepartmentCreate,
    QueueCreate,
    QueueUpdate,
    parse,
)
from sipprov.config import Config, ExtensionsConfig
from sipprov.db.transaction import run
from sipprov.directory import lookups as directory
from sipprov.directory import queues
from sipprov.errors import AuthError, ConfirmationRequired, ConflictError, NotFoundError, ValidationError
from tests.service_helpers import ACTOR, agent_maker, version

# Every test here also checks that the audit log holds no secret (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("audit_guard")
new_agent = agent_maker("user")


def update(**fields: Any) -> AgentUpdate:
    return parse(AgentUpdate, fields)


async def stored(pool: asyncpg.Pool, agent_id: int) -> asyncpg.Record:
    return await pool.fetchrow("SELECT * FROM users WHERE id = $1", agent_id)


async def make_queue(pool: asyncpg.Pool, cfg: Config, name: str, kind: str = "voice", **kw: Any) -> None:
    await run(pool, queues.create_queue, cfg, parse(QueueCreate, {"name": name, "kind": kind, **kw}), ACTOR)


# --- create --------------------------------------------------------------------------


async def test_create_with_defaults(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    before = await version(agent_pool)
    created = await run(agent_pool, agents.create_agent,
            cfg, new_agent(first_name="Łukasz", last_name="Żółć"),
                                        ACTOR)
    a = created.agent
    assert (a.login, a.caller_id, a.chat_name) == ("lukasz.zolc", "l.zolc", "Łukasz Żółć")
    assert (a.role, a.is_agent, a.priority, a.account_type, a.department) == ("agent", True, 1, "standard",
                                                                              None)
    assert a.extension == cfg.extensions.first and a.has_sip
    assert a.avatar_url == naming.gravatar_url(a.email)
    assert (a.created_by, a.updated_by) == (ACTOR, ACTOR)
    assert a.campaigns == [] and a.queues == []

    # Both passwords generated and returned once; SIP username is the extension.
    assert created.web_password and len(created.web_password) == 23
    assert created.sip is not None
    assert created.sip.username == str(a.extension)
    assert (created.sip.realm, created.sip.server) == (cfg.asterisk.sip_realm, cfg.asterisk.sip_server)
    assert len(created.sip.password) == 24
    # Asterisk sees it: the version was bumped in the same transaction.
    assert created.config_version == before + 1 == await version(agent_pool)

    row = await stored(agent_pool, a.id)
    material = f"{a.extension}:{cfg.asterisk.sip_realm}:{created.sip.password}".encode()
    assert row["sip_ha1_md5"] == hashlib.md5(material).hexdigest()
    assert row["sip_ha1_sha256"] == hashlib.sha256(material).hexdigest()
    assert row["sip_realm"] == cfg.asterisk.sip_realm
    assert row["web_password_hash"].startswith("$argon2id$")
    assert (await agents.verify_login(agent_pool, "LUKASZ.ZOLC", created.web_password)).ok

    # The output never carries a secret and is JSON-ready.
    out = created.to_dict()
    json.dumps(out)
    assert out["credentials"]["sip"]["password"] == created.sip.password
    plain = a.to_dict()
    assert not {k for k in plain if audit.is_secret_key(k)}
    assert row["sip_ha1_md5"] not in json.dumps(plain)
    assert created.sip.password not in repr(created) and created.web_password not in repr(created)


async def test_create_with_every_field(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    await run(agent_pool, directory.create_department, cfg, DepartmentCreate(name="Obsługa klienta"), ACTOR)
    await make_queue(agent_pool, cfg, "sales")
    await make_queue(agent_pool, cfg, "chat-pl", kind="chat")
    await make_queue(agent_pool, cfg, "tickets", kind="ticket")
    data = new_agent(
        login="J.Kowalski",
        password="Horse-Battery-42",
        sip_password="Sip-Secret-123456",
        role="supervisor",
        extension=150,
        priority=5,
        department="obsługa KLIENTA",
        phone="+48 12 345 67 89",
        caller_id="Jan K (Sales)",
        chat_name="Janek",
        outbound_allowed=True,
        outbound_mode="automatic",
        outbound_number="+48 22 000 00 00",
        manual_dial_any=True,
        force_password_change=True,
        mute_mic=True,
        autologin_phone=True,
        default_ticket_queue="TICKETS",
        sender_email="support@example.com",
        sms_box="+48600100200",
        queues=[{"name": "sales"}, {"name": "chat-pl", "penalty": 0}],
    )
    created = await run(agent_pool, agents.create_agent, cfg, data, ACTOR)
    a = created.agent
    assert created.web_password is None  # given, not generated: never returned
    assert created.sip is not None and created.sip.password == "Sip-Secret-123456"
    assert (a.login, a.extension, a.role, a.department) == ("J.Kowalski", 150, "supervisor",
                                                            "Obsługa klienta")
    assert (a.phone, a.outbound_number) == ("+48123456789", "+48220000000")
    assert (a.caller_id, a.chat_name, a.default_ticket_queue) == ("Jan K (Sales)", "Janek", "tickets")
    assert a.outbound_allowed and a.outbound_mode == "automatic" and a.mute_mic and a.autologin_phone
    assert a.force_password_change and a.sender_email == "support@example.com" and a.sms_box == "+48600100200"
    assert a.campaigns == [agents.MANUAL_DIAL_CAMPAIGN]
    # penalty = priority - 1 unless the membership overrides it.
    assert a.queues == [
        {"name": "chat-pl", "kind": "chat", "penalty": 0, "penalty_override": 0},
        {"name": "sales", "kind": "voice", "penalty": 4, "penalty_override": None},
    ]
    result = await agents.verify_login(agent_pool, "j.kowalski", "Horse-Battery-42")
    assert result.ok and result.must_change_password and result.user_id == a.id


async def test_default_login_collisions_get_suffixes(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    logins = []
    for _ in range(3):
        logins.append((await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)).agent.login)
    assert logins == ["jan.kowalski", "jan.kowalski2", "jan.kowalski3"]
    # An explicit login equal to a derived one, in any case, is refused.
    with pytest.raises(ConflictError) as exc:
        await run(agent_pool, agents.create_agent, cfg, new_agent(login="JAN.Kowalski2"), ACTOR)
    assert (exc.value.field, exc.value.code) == ("login", "login_taken")
    # The lowest free suffix is used again after a delete.
    second = await agents.find_agent(agent_pool, "jan.kowalski2")
    assert second is not None
    await run(agent_pool, agents.delete_agent, cfg, second.id, ACTOR)
    again = await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)
    assert again.agent.login == "jan.kowalski2"
    # Someone explicitly took "jan.kowalski4": the derived sequence skips it.
    await run(agent_pool, agents.create_agent, cfg, new_agent(login="jan.kowalski4"), ACTOR)
    nxt = await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)
    assert nxt.agent.login == "jan.kowalski5"


async def test_email_unique_case_insensitively(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    await run(agent_pool, agents.create_agent, cfg, new_agent(email="Jan@Example.com"), ACTOR)
    with pytest.raises(ConflictError) as exc:
        await run(agent_pool, agents.create_agent, cfg, new_agent(email="jan@example.COM"), ACTOR)
    assert (exc.value.field, exc.value.code) == ("email", "email_taken")
    assert await agent_pool.fetchval("SELECT count(*) FROM users") == 1
    # The failed create gave its extension back.
    nxt = await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)
    assert nxt.agent.extension == cfg.extensions.first + 1


async def test_name_without_latin_letters_needs_a_login(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    with pytest.raises(ValidationError) as exc:
        await run(agent_pool, agents.create_agent,
                cfg, new_agent(first_name="Иван", last_name="Петров"), ACTOR)
    assert exc.value.field == "login"
    created = await run(
        agent_pool, agents.create_agent,
        cfg, new_agent(first_name="Иван", last_name="Петров", login="ivan.petrov"), ACTOR
    )
    assert created.agent.caller_id == "ivan.petrov"  # the ASCII fallback
    assert created.agent.chat_name == "Иван Петров"


async def test_explicit_extension_rules(cfg: Config, pool: asyncpg.Pool) -> None:
    cfg.extensions = ExtensionsConfig(first=100, last=199, reserved=[111])
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)
    a = await run(pool, agents.create_agent, cfg, new_agent(extension=120), ACTOR)
    assert a.agent.extension == 120
    cases = [
        (120, ConflictError, "extension_taken"),
        (111, ValidationError, "validation_error"),
        (99, ValidationError, "validation_error"),
        (200, ValidationError, "validation_error"),
    ]
    for number, error, code in cases:
        with pytest.raises(error) as exc:
            await run(pool, agents.create_agent, cfg, new_agent(extension=number), ACTOR)
        assert (exc.value.field, exc.value.code) == ("extension", code)
    # Automatic allocation skips the reserved number and the taken one.
    numbers = [(await run(pool, agents.create_agent,
            cfg, new_agent(), ACTOR)).agent.extension for _ in range(12)]
    assert numbers == [100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 112]


async def test_extension_unique_across_agents_and_queues(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    await make_queue(agent_pool, cfg, "support", number=100)
    a = await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)
    assert a.agent.extension == 101
    with pytest.raises(ConflictError) as exc:
        await run(agent_pool, agents.create_agent, cfg, new_agent(extension=100), ACTOR)
    assert exc.value.field == "extension"


async def test_pool_exhausted(cfg: Config, pool: asyncpg.Pool) -> None:
    cfg.extensions = ExtensionsConfig(first=100, last=101)
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)
    for _ in range(2):
        await run(pool, agents.create_agent, cfg, new_agent(), ACTOR)
    with pytest.raises(ConflictError) as exc:
        await run(pool, agents.create_agent, cfg, new_agent(), ACTOR)
    assert (exc.value.code, exc.value.field) == ("extension_pool_exhausted", "extension")
    assert "no free extension left in 100-101" in exc.value.message
    assert await pool.fetchval("SELECT count(*) FROM users") == 2
    # Users without SIP do not need a number.
    await run(pool, agents.create_agent, cfg, new_agent(role="end-user"), ACTOR)


# --- roles ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "is_agent"),
    [("end-user", True), ("ticket-only", True), ("qa", True), ("agent", False), ("admin", False)],
)
async def test_users_without_sip(cfg: Config, agent_pool: asyncpg.Pool, role: str, is_agent: bool) -> None:
    await make_queue(agent_pool, cfg, "sales")
    before = await version(agent_pool)
    created = await run(agent_pool, agents.create_agent, cfg, new_agent(role=role, is_agent=is_agent), ACTOR)
    a = created.agent
    assert a.extension is None and not a.has_sip and created.sip is None
    assert created.config_version is None and await version(agent_pool) == before
    assert created.web_password is not None  # these roles log in to the web
    row = await stored(agent_pool, a.id)
    assert row["sip_ha1_md5"] is None and row["sip_ha1_sha256"] is None
    for field, value in [
        ("extension", 150),
        ("sip_password", "Sip-Secret-123456"),
        ("queues", [{"name": "sales"}]),
        ("manual_dial_any", True),
    ]:
        with pytest.raises(ValidationError) as exc:
            await run(agent_pool, agents.create_agent, cfg, new_agent(role=role, is_agent=is_agent,
                                                                 **{field: value}), ACTOR)
        assert exc.value.field == field
        assert "SIP" in exc.value.message


async def test_extension_role_has_sip_but_no_web_login(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    created = await run(agent_pool, agents.create_agent, cfg, new_agent(role="extension"), ACTOR)
    assert created.sip is not None and created.agent.has_sip
    assert created.web_password is None
    assert (await stored(agent_pool, created.agent.id))["web_password_hash"] is None
    assert not (await agents.verify_login(agent_pool, created.agent.login, "anything")).ok
    for field, value in [("password", "Horse-Battery-42"), ("force_password_change", True),
                         ("send_credentials", True)]:
        with pytest.raises(ValidationError) as exc:
            await run(agent_pool, agents.create_agent,
                    cfg, new_agent(role="extension", **{field: value}), ACTOR)
        assert exc.value.field == field
    with pytest.raises(ValidationError) as exc:
        await run(agent_pool, agents.set_web_password, cfg, created.agent.id, None, None, ACTOR)
    assert exc.value.field == "password"


async def test_unknown_lookups_are_named(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    for field, value in [
        ("role", "wizard"),
        ("department", "Nowhere"),
        ("account_type", "gold"),
        ("default_ticket_queue", "nope"),
    ]:
        with pytest.raises(ValidationError) as exc:
            await run(agent_pool, agents.create_agent, cfg, new_agent(**{field: value}), ACTOR)
        assert exc.value.field == field
    with pytest.raises(ValidationError) as exc:
        await run(agent_pool, agents.create_agent, cfg, new_agent(queues=[{"name": "x"}, {"name": "ghost"}]),
                                  ACTOR)
    assert exc.value.field == "queues.0.name"
    await make_queue(agent_pool, cfg, "voice-q")
    with pytest.raises(ValidationError) as exc:  # a voice queue is no ticket queue
        await run(agent_pool, agents.create_agent, cfg, new_agent(default_ticket_queue="voice-q"), ACTOR)
    assert exc.value.field == "default_ticket_queue"
    assert await agent_pool.fetchval("SELECT count(*) FROM users") == 0


async def test_given_passwords_are_checked(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    for field, value in [
        ("password", "short1"),
        ("password", "jan.kowalski"),
        ("password", "alllowercaseletters"),
        ("sip_password", "short1"),
        ("sip_password", "has space in it 123"),
    ]:
        with pytest.raises(ValidationError) as exc:
            await run(agent_pool, agents.create_agent, cfg, new_agent(**{field: value}), ACTOR)
        assert exc.value.field == field
        assert value not in exc.value.message
    with pytest.raises(ValidationError) as exc:  # the SIP password may not be the extension
        await run(agent_pool, agents.create_agent, cfg, new_agent(extension=123, sip_password="123"), ACTOR)
    assert exc.value.field == "sip_password"
    cfg.security.sip_password_min_length = 3
    with pytest.raises(ValidationError) as exc:
        await run(agent_pool, agents.create_agent, cfg, new_agent(extension=123, sip_password="123"), ACTOR)
    assert exc.value.field == "sip_password" and "username" in exc.value.message


async def test_pbkdf2_scheme(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    cfg.security.web_hash_scheme = "pbkdf2_sha256"
    created = await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)
    assert (await stored(agent_pool, created.agent.id))["web_password_hash"].startswith("$pbkdf2-sha256$")
    cfg.security.web_hash_scheme = "argon2"  # switching back: the old hash still verifies
    assert (await agents.verify_login(agent_pool, created.agent.login, created.web_password)).ok


# --- licence limit -------------------------------------------------------------------


async def test_licence_limit(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    await run(agent_pool, directory.create_account_type,
            cfg, AccountTypeCreate(name="gold", max_users=2), ACTOR)
    for _ in range(2):
        await run(agent_pool, agents.create_agent, cfg, new_agent(account_type="gold"), ACTOR)
    with pytest.raises(ConflictError) as exc:
        await run(agent_pool, agents.create_agent, cfg, new_agent(account_type="GOLD"), ACTOR)
    assert (exc.value.code, exc.value.field) == ("licence_limit", "account_type")
    assert "allows 2 users" in exc.value.message
    # Moving a user into a full type is refused the same way.
    other = await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)
    with pytest.raises(ConflictError) as exc:
        await run(agent_pool, agents.update_agent, cfg, other.agent.id, update(account_type="gold"), ACTOR)
    assert exc.value.code == "licence_limit"


async def test_licence_limit_under_concurrency(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    await run(agent_pool, directory.create_account_type,
            cfg, AccountTypeCreate(name="gold", max_users=5), ACTOR)
    results = await asyncio.gather(
        *(run(agent_pool, agents.create_agent,
                cfg, new_agent(account_type="gold", password="Horse-Battery-42"),
                              ACTOR) for _ in range(30)),
        return_exceptions=True,
    )
    ok = [r for r in results if isinstance(r, AgentCreated)]
    refused = [r for r in results if isinstance(r, ConflictError) and r.code == "licence_limit"]
    assert (len(ok), len(refused)) == (5, 25)
    assert await agent_pool.fetchval(
        "SELECT count(*) FROM users u JOIN account_types a ON a.id = u.account_type_id WHERE a.name = 'gold'"
    ) == 5


# --- concurrency ---------------------------------------------------------------------


async def test_1000_concurrent_creates(cfg: Config) -> None:
    """1,000 concurrent creates over 20 connections, 200 of them with the same name:
    no duplicate extension, no duplicate login, generated argon2 passwords throughout."""
    cfg.extensions = ExtensionsConfig(first=1000, last=2999, reserved=[1500])
    pool = await asyncpg.create_pool(cfg.database.dsn, min_size=20, max_size=20)
    try:
        async with pool.acquire() as conn:
            await extensions.sync_pool(conn, cfg.extensions)
        start_version = await version(pool)
        datas = [new_agent(first_name="Anna", last_name="Nowak") for _ in range(200)]
        datas += [new_agent(first_name="Jan",
                            last_name=f"Kowalski-{'abcdefghij'[i % 10]}{'klmnopqrst'[i // 10 % 10]}"
                                      f"{'uvwxyzabcd'[i // 100]}")
                  for i in range(800)]
        t0 = time.perf_counter()
        results = await asyncio.gather(*(run(pool, agents.create_agent, cfg, d, ACTOR) for d in datas))
        elapsed = time.perf_counter() - t0
        print(f"\n1,000 concurrent creates (argon2, 20 connections): {elapsed:.1f} s")

        rows = await pool.fetch("SELECT login, extension FROM users")
        assert len(rows) == 1000
        logins = [r["login"].lower() for r in rows]
        numbers = [r["extension"] for r in rows]
        assert len(set(logins)) == 1000
        assert len(set(numbers)) == 1000 and None not in numbers
        assert 1500 not in numbers and all(1000 <= n <= 2999 for n in numbers)
        # Lowest free first: exactly 1000-2000 minus the reserved 1500.
        assert sorted(numbers) == [n for n in range(1000, 2001) if n != 1500]
        # Same-name creates got predictable suffixes: anna.nowak, anna.nowak2 .. anna.nowak200.
        nowak = {r.agent.login for r in results[:200]}
        assert nowak == {"anna.nowak"} | {f"anna.nowak{i}" for i in range(2, 201)}
        owners = await pool.fetchval(
            "SELECT count(*) FROM extension_pool p"
            " JOIN users u ON p.owner = 'user:' || u.id AND p.number = u.extension"
        )
        assert owners == 1000
        assert await version(pool) == start_version + 1000
        assert len({r.config_version for r in results}) == 1000
        assert elapsed < 180  # argon2 CPU dominates (~30 CPU-seconds); generous for busy machines
    finally:
        await pool.close()


async def test_explicit_and_derived_logins_racing(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    """Explicit logins are not under the derived-login lock: a derived insert that meets
    one gets a unique violation, rolls back its savepoint and takes the next suffix."""
    datas = [new_agent(first_name="Anna", last_name="Nowak", password="Horse-Battery-42") for _ in range(30)]
    datas += [new_agent(login=f"anna.nowak{n}", password="Horse-Battery-42") for n in (3, 3, 3, 7, 12)]
    results = await asyncio.gather(*(run(agent_pool, agents.create_agent, cfg, d, ACTOR) for d in datas),
                                   return_exceptions=True)
    derived = [r for r in results[:30]]
    assert all(isinstance(r, AgentCreated) for r in derived), derived
    explicit = results[30:]
    assert sum(isinstance(r, AgentCreated) for r in explicit[:3]) <= 1
    assert all(isinstance(r, (AgentCreated, ConflictError)) for r in explicit)
    assert all(r.field == "login" for r in explicit if isinstance(r, ConflictError))
    logins = [r.lower() for r in await agent_pool.fetchval("SELECT array_agg(login) FROM users")]
    assert len(logins) == len(set(logins))
    # Derived ones are the lowest free suffixes: together with the explicit winners they
    # fill anna.nowak, anna.nowak2 .. anna.nowakN without a gap.
    expected = {"anna.nowak"} | {f"anna.nowak{i}" for i in range(2, len(logins) + 1)}
    assert set(logins) == expected


async def test_concurrent_membership_changes_do_not_deadlock(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    for name in ("q1", "q2", "q3"):
        await make_queue(agent_pool, cfg, name)
    ids = [
        (await run(agent_pool, agents.create_agent,
                cfg, new_agent(password="Horse-Battery-42"), ACTOR)).agent.id
        for _ in range(10)
    ]
    ops = []
    for i, agent_id in enumerate(ids):
        for q in ("q1", "q2", "q3"):
            ops.append(run(agent_pool, queues.set_member, cfg, q, agent_id, i % 3, ACTOR))
        ops.append(run(agent_pool, agents.update_agent, cfg, agent_id, update(queues=[{"name": "q2"}],
                                                                         priority=2), ACTOR))
        ops.append(run(agent_pool, agents.rotate_sip_password, cfg, agent_id, None, ACTOR))
    ops.append(run(agent_pool, queues.update_queue,
            cfg, "q3", parse(QueueUpdate, {"strategy": "linear"}), ACTOR))
    results = await asyncio.gather(*ops, return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)]
    count = await agent_pool.fetchval("SELECT count(*) FROM queue_members")
    assert 10 <= count <= 30


# --- web passwords -------------------------------------------------------------------


async def test_web_password_lifecycle(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    created = await run(agent_pool, agents.create_agent, cfg, new_agent(force_password_change=True), ACTOR)
    a = created.agent
    first = created.web_password
    assert first is not None
    result = await agents.verify_login(agent_pool, a.login, first)
    assert result.ok and result.must_change_password and result.user_id == a.id

    # The user changes it: flag cleared, old refused.
    with pytest.raises(AuthError):
        await run(agent_pool, agents.change_own_password,
                cfg, a.login, "wrong-password-1", "New-Horse-Battery-1")
    with pytest.raises(ValidationError) as exc:
        await run(agent_pool, agents.change_own_password, cfg, a.login, first, "short")
    assert exc.value.field == "new_password"
    with pytest.raises(ValidationError) as exc:
        await run(agent_pool, agents.change_own_password, cfg, a.login, first, first)
    assert exc.value.field == "new_password"
    await run(agent_pool, agents.change_own_password, cfg, a.login, first, "New-Horse-Battery-1")
    assert not (await agents.verify_login(agent_pool, a.login, first)).ok
    result = await agents.verify_login(agent_pool, a.login, "New-Horse-Battery-1")
    assert result.ok and not result.must_change_password

    # The admin regenerates it and forces a change.
    generated = await run(agent_pool, agents.set_web_password, cfg, a.id, None, True, ACTOR)
    assert generated and generated != first
    assert not (await agents.verify_login(agent_pool, a.login, "New-Horse-Battery-1")).ok
    result = await agents.verify_login(agent_pool, a.login, generated)
    assert result.ok and result.must_change_password
    # ... or sets one; force_change None leaves the flag alone.
    assert await run(agent_pool, agents.set_web_password,
            cfg, a.id, "Admin-Given-Pass-9", None, ACTOR) is None
    assert (await agents.verify_login(agent_pool, a.login, "Admin-Given-Pass-9")).must_change_password
    with pytest.raises(ValidationError) as exc:
        await run(agent_pool, agents.set_web_password, cfg, a.id, a.login, None, ACTOR)
    assert exc.value.field == "password"
    with pytest.raises(NotFoundError):
        await run(agent_pool, agents.set_web_password, cfg, 999999, None, None, ACTOR)


async def test_verify_login_failures_take_a_hash_verification(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    created = await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)
    ext_only = await run(agent_pool, agents.create_agent, cfg, new_agent(role="extension"), ACTOR)
    await agents.verify_login(agent_pool, "warm-up", "x")
    timings = {}
    for name, login in [
        ("known", created.agent.login),
        ("unknown", "nobody.here"),
        ("no web login", ext_only.agent.login),
        ("garbage", "bad\x00login"),
    ]:
        t0 = time.perf_counter()
        result = await agents.verify_login(agent_pool, login, "Wrong-Password-1")
        timings[name] = time.perf_counter() - t0
        assert result == agents.LoginResult(ok=False, user_id=None, must_change_password=False)
    # Every failure verified one argon2 hash (~30 ms here), so it cannot be told apart cheaply.
    assert min(timings.values()) > 0.3 * timings["known"], timings


async def test_role_without_web_login_cannot_log_in(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    created = await run(agent_pool, agents.create_agent, cfg, new_agent(role="qa"), ACTOR)
    assert (await agents.verify_login(agent_pool, created.agent.login, created.web_password)).ok
    await agent_pool.execute("UPDATE roles SET web_login = false WHERE name = 'qa'")
    assert not (await agents.verify_login(agent_pool, created.agent.login, created.web_password)).ok


# --- SIP passwords -------------------------------------------------------------------


async def test_rotate_sip_password(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    created = await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)
    a = created.agent
    old = await stored(agent_pool, a.id)
    creds, v = await run(agent_pool, agents.rotate_sip_password, cfg, a.id, None, ACTOR)
    assert creds.username == str(a.extension) and creds.password != created.sip.password
    assert v == await version(agent_pool) and v > created.config_version
    row = await stored(agent_pool, a.id)
    assert row["sip_ha1_md5"] != old["sip_ha1_md5"]
    assert row["sip_ha1_md5"] == passwords.sip_digests(creds.username, cfg.asterisk.sip_realm,
                                                       creds.password).md5

    creds, _ = await run(agent_pool, agents.rotate_sip_password, cfg, a.id, "Given-Sip-Pass-77", ACTOR)
    assert creds.password == "Given-Sip-Pass-77"
    for bad in ["short", str(a.extension), "with space 12345"]:
        with pytest.raises(ValidationError) as exc:
            await run(agent_pool, agents.rotate_sip_password, cfg, a.id, bad, ACTOR)
        assert exc.value.field == "password"
    no_sip = await run(agent_pool, agents.create_agent, cfg, new_agent(role="end-user"), ACTOR)
    with pytest.raises(ValidationError, match="no SIP account"):
        await run(agent_pool, agents.rotate_sip_password, cfg, no_sip.agent.id, None, ACTOR)
    with pytest.raises(NotFoundError):
        await run(agent_pool, agents.rotate_sip_password, cfg, 999999, None, ACTOR)


# --- update --------------------------------------------------------------------------


async def test_update_simple_fields_and_visibility(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    created = await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)
    a = created.agent
    v0 = await version(agent_pool)
    # Not seen by Asterisk: no bump.
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(email="new@example.com", sms_box="b1"),
                                  "other-admin")
    assert r.config_version is None and await version(agent_pool) == v0
    assert (r.agent.email, r.agent.sms_box, r.agent.updated_by) == ("new@example.com", "b1", "other-admin")
    assert r.agent.updated_at > a.updated_at and r.sip is None and r.web_password is None
    # Seen by Asterisk (member penalties): bump.
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(priority=7), ACTOR)
    assert r.config_version == v0 + 1 and r.agent.priority == 7
    # A no-op changes nothing, not even the audit log.
    audit_rows = await agent_pool.fetchval("SELECT count(*) FROM audit_log")
    r = await run(agent_pool, agents.update_agent,
            cfg, a.id, update(priority=7, email="NEW@example.com".lower()),
                                  ACTOR)
    assert r.config_version is None
    assert await agent_pool.fetchval("SELECT count(*) FROM audit_log") == audit_rows
    assert (await run(agent_pool, agents.update_agent, cfg, a.id, update(), ACTOR)).config_version is None
    # Clearing optional fields.
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(sms_box=None, phone=None), ACTOR)
    assert r.agent.sms_box is None
    with pytest.raises(NotFoundError):
        await run(agent_pool, agents.update_agent, cfg, 999999, update(priority=2), ACTOR)


async def test_update_caller_id_and_chat_name_follow_the_name(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    a = (await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)).agent
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(last_name="Nowak"), ACTOR)
    assert (r.agent.caller_id, r.agent.chat_name, r.agent.login) == ("j.nowak", "Jan Nowak", "jan.kowalski")
    assert r.config_version is not None  # the caller id changed
    r = await run(agent_pool, agents.update_agent,
            cfg, a.id, update(caller_id="Hotline", chat_name="JN"), ACTOR)
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(first_name="Piotr"), ACTOR)
    assert (r.agent.caller_id, r.agent.chat_name) == ("Hotline", "JN")  # custom ones stay
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(caller_id=None, chat_name=None), ACTOR)
    assert (r.agent.caller_id, r.agent.chat_name) == ("p.nowak", "Piotr Nowak")


async def test_update_login_and_email_conflicts(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    a = (await run(agent_pool, agents.create_agent, cfg, new_agent(email="a@example.com"), ACTOR)).agent
    b = (await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)).agent
    with pytest.raises(ConflictError) as exc:
        await run(agent_pool, agents.update_agent, cfg, b.id, update(login=a.login.upper()), ACTOR)
    assert exc.value.field == "login"
    with pytest.raises(ConflictError) as exc:
        await run(agent_pool, agents.update_agent, cfg, b.id, update(email="A@EXAMPLE.com"), ACTOR)
    assert exc.value.field == "email"
    r = await run(agent_pool, agents.update_agent, cfg, b.id, update(login="jk.other"), ACTOR)
    assert r.agent.login == "jk.other"


async def test_changing_the_extension_rotates_the_sip_password(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    created = await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)
    a = created.agent
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(extension=555), ACTOR)
    assert r.agent.extension == 555
    assert r.sip is not None and r.sip.username == "555" and r.sip.password != created.sip.password
    row = await stored(agent_pool, a.id)
    assert row["sip_ha1_md5"] == passwords.sip_digests("555", cfg.asterisk.sip_realm, r.sip.password).md5
    assert r.config_version == await version(agent_pool)
    # The old number rests (its phone may still be registered), the new one is owned.
    other = await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)
    assert other.agent.extension not in (a.extension, 555)
    assert await agent_pool.fetchval(
        "SELECT owner IS NULL AND released_at IS NOT NULL FROM extension_pool WHERE number = $1",
        a.extension)
    assert await agent_pool.fetchval("SELECT owner FROM extension_pool WHERE number = 555") == f"user:{a.id}"
    # Same extension: nothing rotates; a taken one is refused and nothing changes.
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(extension=555), ACTOR)
    assert r.sip is None
    with pytest.raises(ConflictError) as exc:
        await run(agent_pool, agents.update_agent, cfg, a.id, update(extension=other.agent.extension), ACTOR)
    assert exc.value.field == "extension"
    assert (await stored(agent_pool, a.id))["sip_ha1_md5"] == row["sip_ha1_md5"]
    assert await agent_pool.fetchval("SELECT owner FROM extension_pool WHERE number = 555") == f"user:{a.id}"


async def test_losing_and_gaining_sip(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    await make_queue(agent_pool, cfg, "sales")
    created = await run(
        agent_pool, agents.create_agent,
        cfg, new_agent(queues=[{"name": "sales"}], manual_dial_any=True), ACTOR
    )
    a = created.agent
    number = a.extension
    # Nothing is dropped silently: refused, naming what would go, and nothing changed.
    with pytest.raises(ConfirmationRequired) as refused:
        await run(agent_pool, agents.update_agent, cfg, a.id, update(role="end-user"), ACTOR)
    assert (refused.value.status, refused.value.field) == (409, "role")
    assert refused.value.lost == {"extension": number, "queues": ["sales"], "campaigns": [999999]}
    assert "extension" in refused.value.message and "sales" in refused.value.message
    assert (await agents.get_agent(agent_pool, a.id)) == a
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(role="end-user"), ACTOR, force=True)
    b = r.agent
    assert (b.extension, b.has_sip, b.queues, b.campaigns, b.manual_dial_any) == (None, False, [], [], False)
    assert r.config_version is not None
    row = await stored(agent_pool, a.id)
    assert row["sip_ha1_md5"] is None and row["sip_realm"] is None
    assert await agent_pool.fetchval("SELECT owner FROM extension_pool WHERE number = $1", number) is None
    with pytest.raises(ValidationError) as exc:
        await run(agent_pool, agents.update_agent, cfg, a.id, update(queues=[{"name": "sales"}]), ACTOR)
    assert exc.value.field == "queues"
    with pytest.raises(ValidationError) as exc:
        await run(agent_pool, agents.update_agent, cfg, a.id, update(extension=300), ACTOR)
    assert exc.value.field == "extension"
    # Back to agent: a new extension and SIP password, returned once.
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(role="agent", extension=300), ACTOR)
    assert r.agent.extension == 300 and r.agent.has_sip and r.sip is not None and r.sip.username == "300"
    # is_agent false also removes SIP.
    with pytest.raises(ConfirmationRequired) as refused:
        await run(agent_pool, agents.update_agent, cfg, a.id, update(is_agent=False), ACTOR)
    assert (refused.value.field, refused.value.lost) == ("is_agent", {"extension": 300})
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(is_agent=False), ACTOR, force=True)
    assert r.agent.extension is None and r.config_version is not None


async def test_web_login_follows_the_role(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    created = await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)
    a = created.agent
    with pytest.raises(ConfirmationRequired) as refused:
        await run(agent_pool, agents.update_agent, cfg, a.id, update(role="extension"), ACTOR)
    assert refused.value.lost == {"web_password": True}
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(role="extension"), ACTOR, force=True)
    assert r.web_password is None and r.sip is None  # keeps its SIP account
    assert (await stored(agent_pool, a.id))["web_password_hash"] is None
    assert not (await agents.verify_login(agent_pool, a.login, created.web_password)).ok
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(role="agent"), ACTOR)
    assert r.web_password is not None
    assert (await agents.verify_login(agent_pool, a.login, r.web_password)).ok


async def test_update_queues_replaces_memberships(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    for name, kind in [("sales", "voice"), ("support", "voice"), ("chat", "chat"), ("mail", "ticket")]:
        await make_queue(agent_pool, cfg, name, kind=kind)
    a = (await run(agent_pool, agents.create_agent,
            cfg, new_agent(queues=[{"name": "sales"}, {"name": "chat"}]),
                                   ACTOR)).agent
    r = await run(
        agent_pool, agents.update_agent,
        cfg, a.id, update(queues=[{"name": "support", "penalty": 3}, {"name": "mail"}]), ACTOR
    )
    assert [(q["name"], q["penalty"], q["penalty_override"]) for q in r.agent.queues] == [
        ("mail", 0, None),
        ("support", 3, 3),
    ]
    assert r.config_version is not None
    # Only chat/ticket memberships change: Asterisk sees nothing.
    r = await run(
        agent_pool, agents.update_agent,
        cfg, a.id, update(queues=[{"name": "support", "penalty": 3}, {"name": "chat"}]), ACTOR
    )
    assert r.config_version is None
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(queues=[]), ACTOR)
    assert r.agent.queues == [] and r.config_version is not None


async def test_manual_dial_any_campaign(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    a = (await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)).agent
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(manual_dial_any=True), ACTOR)
    assert r.agent.campaigns == [999999]
    assert await agent_pool.fetchval("SELECT count(*) FROM campaign_members WHERE campaign = 999999") == 1
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(manual_dial_any=False), ACTOR)
    assert r.agent.campaigns == []


async def test_update_lookups(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    await run(agent_pool, directory.create_department, cfg, DepartmentCreate(name="Sales"), ACTOR)
    await make_queue(agent_pool, cfg, "mail", kind="ticket")
    a = (await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)).agent
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(department="sales",
                                                                default_ticket_queue="MAIL"), ACTOR)
    assert (r.agent.department, r.agent.default_ticket_queue) == ("Sales", "mail")
    r = await run(agent_pool, agents.update_agent, cfg, a.id, update(department=None), ACTOR)
    assert r.agent.department is None
    for field in ["department", "role", "account_type", "default_ticket_queue"]:
        with pytest.raises(ValidationError) as exc:
            await run(agent_pool, agents.update_agent, cfg, a.id, update(**{field: "ghost"}), ACTOR)
        assert exc.value.field == field


# --- delete --------------------------------------------------------------------------


async def test_delete(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    await make_queue(agent_pool, cfg, "sales")
    a = (await run(agent_pool, agents.create_agent, cfg, new_agent(queues=[{"name": "sales"}],
                                                              manual_dial_any=True), ACTOR)).agent
    v = await run(agent_pool, agents.delete_agent, cfg, a.id, ACTOR)
    assert v == await version(agent_pool)
    with pytest.raises(NotFoundError):
        await agents.get_agent(agent_pool, a.id)
    assert await agent_pool.fetchval("SELECT owner FROM extension_pool WHERE number = $1",
                                     a.extension) is None
    assert await agent_pool.fetchval("SELECT count(*) FROM queue_members") == 0
    assert await agent_pool.fetchval("SELECT count(*) FROM campaign_members") == 0
    e = (await run(agent_pool, agents.create_agent, cfg, new_agent(role="end-user"), ACTOR)).agent
    assert await run(agent_pool, agents.delete_agent, cfg, e.id, ACTOR) is None
    with pytest.raises(NotFoundError):
        await run(agent_pool, agents.delete_agent, cfg, e.id, ACTOR)


# --- read ----------------------------------------------------------------------------


async def test_get_find_search(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    await run(agent_pool, directory.create_department, cfg, DepartmentCreate(name="Sales"), ACTOR)
    people = [
        ("Łukasz", "Żółć", "agent", "Sales"),
        ("Anna", "Nowak", "supervisor", "Sales"),
        ("Piotr", "Nowak", "end-user", None),
        ("Ewa", "Adamska", "agent", None),
    ]
    made = {}
    for first, last, role, dept in people:
        made[last + first] = (
            await run(
                agent_pool, agents.create_agent, cfg, new_agent(first_name=first, last_name=last, role=role,
                                           department=dept), ACTOR
            )
        ).agent
    z = made["ŻółćŁukasz"]
    assert await agents.get_agent(agent_pool, z.id) == z
    assert await agents.find_agent(agent_pool, "LUKASZ.zolc") == z
    assert await agents.find_agent(agent_pool, z.email.upper()) == z
    assert await agents.find_agent(agent_pool, "nobody") is None
    assert await agents.find_agent(agent_pool, "bad\x00") is None
    with pytest.raises(NotFoundError):
        await agents.get_agent(agent_pool, 123456)

    async def names(**kw: Any) -> list[str]:
        return [f"{a.first_name} {a.last_name}" for a in (await agents.search_agents(agent_pool, **kw)).items]

    assert await names() == ["Ewa Adamska", "Anna Nowak", "Piotr Nowak", "Łukasz Żółć"]
    assert await names(q="nowak") == ["Anna Nowak", "Piotr Nowak"]
    assert await names(q="anna now") == ["Anna Nowak"]
    assert await names(q="Nowak Piotr") == ["Piotr Nowak"]
    assert await names(q="lukasz.z") == ["Łukasz Żółć"]  # by login
    assert await names(q=z.email) == ["Łukasz Żółć"]
    assert await names(q=str(z.extension)) == ["Łukasz Żółć"]  # by extension
    assert await names(q="%") == []  # LIKE wildcards are literal
    assert await names(role="SUPERVISOR") == ["Anna Nowak"]
    assert await names(department="sales") == ["Anna Nowak", "Łukasz Żółć"]
    assert await names(q="nowak", agents_only=True, role="end-user") == ["Piotr Nowak"]
    await run(agent_pool, agents.update_agent, cfg, made["NowakPiotr"].id, update(is_agent=False), ACTOR)
    assert await names(agents_only=True) == ["Ewa Adamska", "Anna Nowak", "Łukasz Żółć"]


async def test_search_pagination(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    for i in range(25):
        await run(
            agent_pool, agents.create_agent, cfg, new_agent(role="end-user", first_name="Jan",
                                       last_name=f"Kowalski{'abcdefghijklmnopqrstuvwxyz'[i]}"), ACTOR
        )
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = await agents.search_agents(agent_pool, limit=10, cursor=cursor)
        seen += [a.id for a in page.items]
        pages += 1
        json.dumps(page.to_dict())
        if page.next is None:
            break
        cursor = page.next
    assert pages == 3 and len(seen) == 25 and len(set(seen)) == 25
    last_names = [(await agents.get_agent(agent_pool, i)).last_name for i in seen]
    assert last_names == sorted(last_names)
    exact = await agents.search_agents(agent_pool, limit=25)
    assert exact.next is None
    for bad in ["garbage", "eyJ4IjoxfQ", "WyJhIiwiYiIsImMiXQ", "%%%"]:
        with pytest.raises(ValidationError) as exc:
            await agents.search_agents(agent_pool, cursor=bad)
        assert exc.value.field == "cursor"
    for limit in [0, 501]:
        with pytest.raises(ValidationError) as exc:
            await agents.search_agents(agent_pool, limit=limit)
        assert exc.value.field == "limit"


async def test_search_digit_like_query_is_not_an_error(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    """Characters str.isdigit() accepts but int() refuses (superscripts, circled digits)
    are searched as text, not taken for an extension (was a ValueError, an HTTP 500)."""
    made = (await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)).agent
    for q in ["\u00b2", "1\u00b2", "\u2460"]:
        assert (await agents.search_agents(agent_pool, q=q)).items == []
    assert [a.id for a in (await agents.search_agents(agent_pool, q=str(made.extension))).items] == [made.id]


# --- secrets -------------------------------------------------------------------------


async def test_database_holds_no_plaintext_password(cfg: Config, agent_pool: asyncpg.Pool,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Exercise every path that handles a password, then scan every text, json and
    bytea column of every table (and the log) for any of the plaintexts."""
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = []
    c1 = await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)
    secrets += [c1.web_password, c1.sip.password]
    c2 = await run(
        agent_pool, agents.create_agent,
        cfg, new_agent(password="Given-Web-Pass-1", sip_password="Given-Sip-Pass-22"), ACTOR
    )
    secrets += ["Given-Web-Pass-1", "Given-Sip-Pass-22"]
    c3 = await run(agent_pool, agents.create_agent, cfg, new_agent(role="extension"), ACTOR)
    secrets += [c3.sip.password]
    secrets.append(await run(agent_pool, agents.set_web_password, cfg, c1.agent.id, None, True, ACTOR))
    await run(agent_pool, agents.set_web_password, cfg, c2.agent.id, "Admin-Set-Pass-3", False, ACTOR)
    secrets.append("Admin-Set-Pass-3")
    await run(agent_pool, agents.change_own_password, cfg, c2.agent.login, "Admin-Set-Pass-3",
                                     "Self-Chosen-Pass-4")
    secrets.append("Self-Chosen-Pass-4")
    creds, _ = await run(agent_pool, agents.rotate_sip_password, cfg, c1.agent.id, None, ACTOR)
    secrets.append(creds.password)
    await run(agent_pool, agents.rotate_sip_password, cfg, c2.agent.id, "Rotated-Sip-Pass-5", ACTOR)
    secrets.append("Rotated-Sip-Pass-5")
    r = await run(agent_pool, agents.update_agent, cfg, c1.agent.id, update(extension=777), ACTOR)
    secrets.append(r.sip.password)
    r = await run(agent_pool, agents.update_agent, cfg, c3.agent.id, update(role="agent"), ACTOR)
    secrets.append(r.web_password)
    # Refused attempts must not leave the password behind either.
    with pytest.raises(ValidationError):
        await run(agent_pool, agents.create_agent, cfg, new_agent(password="alllowercaseonly"), ACTOR)
    secrets.append("alllowercaseonly")
    assert all(secrets) and len(set(secrets)) == len(secrets)

    columns = await agent_pool.fetch(
        """
        SELECT c.table_name, c.column_name, c.data_type
        FROM information_schema.columns c
        JOIN information_schema.tables t USING (table_schema, table_name)
        WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
          AND c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'bytea', 'ARRAY')
        """
    )
    tables = {c["table_name"] for c in columns}
    assert {"users", "audit_log", "extension_pool", "queues", "avatars", "api_tokens"} <= tables
    checked = 0
    for col in columns:
        table, column = col["table_name"], col["column_name"]
        expr = f'encode("{column}", \'escape\')' if col["data_type"] == "bytea" else f'"{column}"::text'
        values = await agent_pool.fetch(f'SELECT {expr} AS v FROM "{table}" WHERE "{column}" IS NOT NULL')
        for v in values:
            checked += 1
            for secret in secrets:
                assert secret not in v["v"], f"plaintext password in {table}.{column}"
    assert checked > 50
    # Whole rows as text too (covers any column type).
    for table in tables:
        for row in await agent_pool.fetch(f'SELECT t::text AS v FROM "{table}" t'):
            for secret in secrets:
                assert secret not in row["v"], f"plaintext password in {table}"
    for record in caplog.records:
        for secret in secrets:
            assert secret not in record.getMessage()


async def test_audit_log_records_every_mutation_without_secrets(cfg: Config,
                                                                agent_pool: asyncpg.Pool) -> None:
    dept = await run(agent_pool, directory.create_department, cfg, DepartmentCreate(name="Sales"), ACTOR)
    await make_queue(agent_pool, cfg, "sales")
    c = await run(agent_pool, agents.create_agent, cfg, new_agent(password="Given-Web-Pass-1",
                                                             department="Sales"), ACTOR)
    aid = c.agent.id
    await run(agent_pool, agents.update_agent,
            cfg, aid, update(priority=3, queues=[{"name": "sales"}]), ACTOR)
    generated = await run(agent_pool, agents.set_web_password, cfg, aid, None, None, ACTOR)
    await run(agent_pool, agents.change_own_password, cfg, c.agent.login, generated, "Self-Chosen-Pass-4")
    creds, _ = await run(agent_pool, agents.rotate_sip_password, cfg, aid, None, ACTOR)
    await run(agent_pool, agents.delete_agent, cfg, aid, "admin:other")

    entries = await audit.list_entries(agent_pool, entity="agent", entity_id=aid)
    assert [e.action for e in reversed(entries)] == [
        "create",
        "update",
        "set_web_password",
        "change_own_password",
        "rotate_sip_password",
        "delete",
    ]
    assert [e.actor for e in reversed(entries)] == [ACTOR] * 3 + [c.agent.login, ACTOR, "admin:other"]
    assert entries[-1].details["login"] == c.agent.login
    assert entries[-2].details["changed"] == {"priority": 3}
    assert entries[-2].details["queues"] == ["sales"]
    assert (await audit.list_entries(agent_pool, entity="department"))[0].entity_id == str(dept.id)

    secrets = [c.sip.password, "Given-Web-Pass-1", generated, "Self-Chosen-Pass-4", creds.password]
    text = json.dumps([e.to_dict() for e in await audit.list_entries(agent_pool, limit=1000)])
    for secret in secrets:
        assert secret not in text
    assert "$argon2" not in text

    def keys(value: Any) -> set[str]:
        if isinstance(value, dict):
            return set(value) | set().union(*(keys(v) for v in value.values()))
        if isinstance(value, list):
            return set().union(*(keys(v) for v in value)) if value else set()
        return set()

    for entry in await audit.list_entries(agent_pool, limit=1000):
        assert not {k for k in keys(entry.details) if audit.is_secret_key(k)}, entry


async def test_audit_scrub_and_append_only(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    details = {"login": "x", "password": "p", "nested": {"sip_password": "s", "web_password_hash": "h",
                                                         "ok": 1},
               "list": [{"token": "t", "keep": 2}], "HA1": "d", "secret": "s"}
    assert audit.scrub(details) == {"login": "x", "nested": {"ok": 1}, "list": [{"keep": 2}]}
    async with agent_pool.acquire() as conn:
        async with conn.transaction():
            await audit.record(conn, ACTOR, "test", "thing", 1, details)
    entry = (await audit.list_entries(agent_pool, entity="thing"))[0]
    assert entry.details == {"login": "x", "nested": {"ok": 1}, "list": [{"keep": 2}]}
    for statement in ["UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"]:
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await agent_pool.execute(statement)
    assert await agent_pool.fetchval("SELECT count(*) FROM audit_log") == 1


async def test_failed_mutations_leave_no_trace(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    await run(agent_pool, agents.create_agent, cfg, new_agent(email="taken@example.com"), ACTOR)
    v = await version(agent_pool)
    n = await agent_pool.fetchval("SELECT count(*) FROM audit_log")
    with pytest.raises(ConflictError):
        await run(agent_pool, agents.create_agent, cfg, new_agent(email="taken@example.com"), ACTOR)
    assert await version(agent_pool) == v
    assert await agent_pool.fetchval("SELECT count(*) FROM audit_log") == n
    assert await agent_pool.fetchval("SELECT count(*) FROM extension_pool WHERE owner IS NOT NULL") == 1


def test_agent_output_has_no_secret_fields() -> None:
    names = {f.name for f in dataclasses.fields(agents.Agent)}
    assert not {n for n in names if audit.is_secret_key(n)}


async def test_mutations_need_the_callers_transaction(agent_pool, cfg):
    """A service mutation runs in the caller's transaction (db/transaction.py); given a
    pool or a connection outside a transaction it refuses before changing anything."""
    with pytest.raises(RuntimeError, match="transaction"):
        await agents.create_agent(agent_pool, cfg, new_agent(), ACTOR)
    async with agent_pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="transaction"):
            await agents.create_agent(conn, cfg, new_agent(), ACTOR)
    assert (await agents.search_agents(agent_pool)).items == []
    # Inside a transaction that rolls back, the create goes with it.
    async with agent_pool.acquire() as conn:
        tr = conn.transaction()
        await tr.start()
        created = await agents.create_agent(conn, cfg, new_agent(), ACTOR)
        assert (await agents.get_agent(conn, created.agent.id)).login == created.agent.login
        await tr.rollback()
    assert (await agents.search_agents(agent_pool)).items == []
