"""Roles, departments and account types against the real PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest

from sipprov import audit
from sipprov.agents import service as agents
from sipprov.agents.models import (
    AccountTypeCreate,
    AccountTypeUpdate,
    DepartmentCreate,
    DepartmentUpdate,
    RoleCreate,
    RoleUpdate,
    parse,
)
from sipprov.config import Config
from sipprov.db.transaction import run
from sipprov.directory import lookups as directory
from sipprov.errors import ConfirmationRequired, ConflictError, NotFoundError, ValidationError
from tests.service_helpers import ACTOR, agent_maker

# Every test here also checks that the audit log holds no secret (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("audit_guard")
new_agent = agent_maker("d")


async def test_seeded_roles(pool: asyncpg.Pool) -> None:
    roles = {r.name: r for r in await directory.list_roles(pool)}
    assert set(roles) == {
        "agent", "admin", "supervisor", "sub-admin", "extension", "ticket-only", "qa", "qa-lead", "end-user",
    }
    assert all(r.builtin for r in roles.values())
    assert (roles["agent"].sip_allowed, roles["agent"].web_login) == (True, True)
    assert (roles["admin"].label, roles["qa-lead"].label) == ("Admin", "QA Lead")
    assert (roles["extension"].sip_allowed, roles["extension"].web_login) == (True, False)
    assert (roles["end-user"].sip_allowed, roles["end-user"].web_login) == (False, True)
    assert (roles["ticket-only"].sip_allowed, roles["ticket-only"].calls_allowed) == (False, False)
    assert (await directory.get_role(pool, "AGENT")).name == "agent"
    with pytest.raises(NotFoundError):
        await directory.get_role(pool, "wizard")


async def test_role_lifecycle(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    role = await run(
        agent_pool, directory.create_role,
        cfg, parse(RoleCreate, {"name": "Team-Lead", "sip_allowed": True}), ACTOR
    )
    assert (role.name, role.label, role.sip_allowed, role.web_login, role.builtin) == (
        "team-lead", "Team Lead", True, True, False,
    )
    with pytest.raises(ConflictError) as exc:
        await run(agent_pool, directory.create_role, cfg, parse(RoleCreate, {"name": "team-lead"}), ACTOR)
    assert exc.value.field == "name"

    # Users of the new role follow its rules.
    a = (await run(agent_pool, agents.create_agent, cfg, new_agent(role="team-lead"), ACTOR)).agent
    assert a.has_sip and a.role == "team-lead"

    # sip_allowed off would take its users' SIP accounts: only when confirmed (force);
    # other flags change freely.
    with pytest.raises(ConflictError) as exc:
        await run(agent_pool, directory.update_role,
                cfg, "team-lead", parse(RoleUpdate, {"sip_allowed": False}),
                                    ACTOR)
    assert (exc.value.field, exc.value.code) == ("sip_allowed", "confirmation_required")
    assert (await directory.get_role(agent_pool, "team-lead")).sip_allowed
    updated = await run(
        agent_pool, directory.update_role, cfg, "team-lead", parse(RoleUpdate, {"label": "Team leader",
                                                         "calls_allowed": False}), ACTOR
    )
    assert (updated.label, updated.calls_allowed, updated.user_count) == ("Team leader", False, 1)
    with pytest.raises(ConflictError) as exc:
        await run(agent_pool, directory.delete_role, cfg, "team-lead", ACTOR)
    assert exc.value.code == "role_in_use"

    await run(agent_pool, agents.delete_agent, cfg, a.id, ACTOR)
    renamed = await run(
        agent_pool, directory.update_role,
        cfg, "team-lead", parse(RoleUpdate, {"name": "lead", "sip_allowed": False}), ACTOR
    )
    assert (renamed.name, renamed.sip_allowed) == ("lead", False)
    await run(agent_pool, directory.delete_role, cfg, "lead", ACTOR)
    with pytest.raises(NotFoundError):
        await directory.get_role(agent_pool, "lead")
    assert [e.action for e in reversed(await audit.list_entries(agent_pool, entity="role"))] == [
        "create", "update", "update", "delete",
    ]


async def test_builtin_roles_editable_not_deletable(cfg: Config, pool: asyncpg.Pool) -> None:
    updated = await run(pool, directory.update_role, cfg, "agent", parse(RoleUpdate, {"label": "Konsultant"}),
                                          ACTOR)
    assert updated.label == "Konsultant" and updated.builtin
    with pytest.raises(ValidationError) as exc:
        await run(pool, directory.update_role, cfg, "agent", parse(RoleUpdate, {"name": "consultant"}), ACTOR)
    assert exc.value.field == "name"
    # No users yet: even a builtin role's flags may change.
    changed = await run(pool, directory.update_role,
            cfg, "qa", parse(RoleUpdate, {"sip_allowed": True}), ACTOR)
    assert changed.sip_allowed
    with pytest.raises(ConflictError) as exc:
        await run(pool, directory.delete_role, cfg, "admin", ACTOR)
    assert exc.value.code == "role_builtin"
    with pytest.raises(NotFoundError):
        await run(pool, directory.update_role, cfg, "ghost", parse(RoleUpdate, {"label": "x"}), ACTOR)


async def test_departments(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    d = await run(agent_pool, directory.create_department,
            cfg, DepartmentCreate(name="Obsługa klienta"), ACTOR)
    assert (d.name, d.user_count) == ("Obsługa klienta", 0)
    with pytest.raises(ConflictError) as exc:
        await run(agent_pool, directory.create_department,
                cfg, DepartmentCreate(name="OBSŁUGA KLIENTA"), ACTOR)
    assert exc.value.field == "name"
    with pytest.raises(ValidationError):
        parse(DepartmentCreate, {"name": "Sales\n[general]"})
    a = (await run(agent_pool, agents.create_agent,
            cfg, new_agent(department="obsługa klienta"), ACTOR)).agent
    renamed = await run(agent_pool, directory.update_department, cfg, "Obsługa klienta",
                                                DepartmentUpdate(name="Support"), ACTOR)
    assert (renamed.name, renamed.user_count) == ("Support", 1)
    assert (await agents.get_agent(agent_pool, a.id)).department == "Support"
    await run(agent_pool, directory.create_department, cfg, DepartmentCreate(name="Sales"), ACTOR)
    with pytest.raises(ConflictError):
        await run(agent_pool, directory.update_department,
                cfg, "Support", DepartmentUpdate(name="sales"), ACTOR)
    assert [x.name for x in await directory.list_departments(agent_pool)] == ["Sales", "Support"]
    with pytest.raises(ConfirmationRequired) as refused:
        await run(agent_pool, directory.delete_department, cfg, "support", ACTOR)
    assert refused.value.lost == {"users": 1, "logins": [a.login]}
    await run(agent_pool, directory.delete_department, cfg, "support", ACTOR, force=True)
    assert (await agents.get_agent(agent_pool, a.id)).department is None  # the user stays
    with pytest.raises(NotFoundError):
        await directory.get_department(agent_pool, "Support")
    assert [e.action for e in reversed(await audit.list_entries(agent_pool, entity="department"))] == [
        "create", "update", "create", "delete",
    ]


async def test_account_types(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    types = {t.name: t for t in await directory.list_account_types(agent_pool)}
    assert types["standard"].max_users is None
    gold = await run(agent_pool, directory.create_account_type,
            cfg, AccountTypeCreate(name="Gold", max_users=3),
                                               ACTOR)
    assert (gold.name, gold.max_users, gold.user_count) == ("Gold", 3, 0)
    with pytest.raises(ConflictError):
        await run(agent_pool, directory.create_account_type, cfg, AccountTypeCreate(name="gold"), ACTOR)
    for _ in range(2):
        await run(agent_pool, agents.create_agent, cfg, new_agent(account_type="gold"), ACTOR)

    # Lowering the limit below the count keeps the users and refuses new ones.
    lowered = await run(agent_pool, directory.update_account_type, cfg, "gold", parse(AccountTypeUpdate,
                                                                                 {"max_users": 1}), ACTOR)
    assert (lowered.max_users, lowered.user_count) == (1, 2)
    with pytest.raises(ConflictError) as exc:
        await run(agent_pool, agents.create_agent, cfg, new_agent(account_type="gold"), ACTOR)
    assert exc.value.code == "licence_limit"
    # No limit any more.
    unlimited = await run(agent_pool, directory.update_account_type, cfg, "gold",
                                                    parse(AccountTypeUpdate, {"max_users": None}), ACTOR)
    assert unlimited.max_users is None
    await run(agent_pool, agents.create_agent, cfg, new_agent(account_type="gold"), ACTOR)
    renamed = await run(agent_pool, directory.update_account_type, cfg, "gold", parse(AccountTypeUpdate,
                                                                                 {"name": "Premium"}), ACTOR)
    assert (renamed.name, renamed.user_count) == ("Premium", 3)
    with pytest.raises(ValidationError) as exc:
        await run(agent_pool, directory.update_account_type, cfg, "standard", parse(AccountTypeUpdate,
                                                                               {"name": "basic"}), ACTOR)
    assert exc.value.field == "name"
    with pytest.raises(NotFoundError):
        await directory.get_account_type(agent_pool, "gold")
    assert len(await audit.list_entries(agent_pool, entity="account_type")) == 4
