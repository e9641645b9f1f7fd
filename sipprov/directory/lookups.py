"""Roles, departments and account types: list, create, update (and delete where safe).

Only one mutation here reaches Asterisk: turning a role's sip_allowed off while its
users hold SIP accounts takes those accounts away (through the agent service, one bump
for all), and only when confirmed (force; else ConfirmationRequired naming them).
Turning it on while the role has users is refused (move them first): nobody gains a
SIP account behind the agent service.
Builtin roles (the seeded ones) may be edited but not renamed or deleted; the account
type `standard` (the default of every create) may not be deleted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar

import asyncpg

from sipprov import audit
from sipprov.agents import service as agent_service
from sipprov.agents import validation
from sipprov.agents.models import (
    AccountType,
    AccountTypeCreate,
    AccountTypeUpdate,
    Department,
    DepartmentCreate,
    DepartmentUpdate,
    Role,
    RoleCreate,
    RoleUpdate,
)
from sipprov.config import Config
from sipprov.db import transaction
from sipprov.db.sql import config_state
from sipprov.db.sql import directory as sql
from sipprov.db.sql.constraints import conflict_from
from sipprov.errors import ConfirmationRequired, ConflictError, NotFoundError

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
DEFAULT_ACCOUNT_TYPE = "standard"
# How many logins a confirmation names (the count is always complete).
NAMES_SHOWN = 20
T = TypeVar("T")


def _plain(value: object, field: str) -> str:
    """A name from a URL: NUL bytes would make PostgreSQL refuse the query."""
    return validation.no_control(value, field, max_len=200)


async def _found(lookup: Callable[[Conn, str], Awaitable[asyncpg.Record | None]], conn: Conn,
                 name: str, what: str) -> asyncpg.Record:
    """The row `lookup` finds for a name from a URL, or NotFoundError naming `what`."""
    row = await lookup(conn, _plain(name, "name"))
    if row is None:
        raise NotFoundError(f"{what} {name} not found", "name")
    return row


async def _unique(name: str, write: Awaitable[T]) -> T:
    """Await a write; a unique violation becomes the ConflictError naming `name`."""
    try:
        return await write
    except asyncpg.UniqueViolationError as exc:
        raise conflict_from(exc, name) from None


# --- roles ---------------------------------------------------------------------------


def _role(row: asyncpg.Record) -> Role:
    return Role(
        id=row["id"],
        name=row["name"],
        label=row["label"],
        sip_allowed=row["sip_allowed"],
        web_login=row["web_login"],
        calls_allowed=row["calls_allowed"],
        builtin=row["builtin"],
        user_count=row["user_count"],
    )


async def list_roles(conn: Conn) -> list[Role]:
    return [_role(r) for r in await sql.list_roles(conn)]


async def get_role(conn: Conn, name: str) -> Role:
    return _role(await _found(sql.get_role, conn, name, "role"))


async def create_role(conn: asyncpg.Connection, cfg: Config, data: RoleCreate, actor: str) -> Role:
    transaction.require(conn)
    label = data.label or data.name.replace("-", " ").title()
    role_id = await _unique(data.name, sql.insert_role(
        conn, data.name, label, data.sip_allowed, data.web_login, data.calls_allowed
    ))
    await audit.record(conn, actor, "create", "role", role_id, data.model_dump())
    return _role(await sql.get_role_by_id(conn, role_id))


async def update_role(conn: asyncpg.Connection, cfg: Config, name: str, data: RoleUpdate, actor: str,
                      *, force: bool = False) -> Role:
    """Only the fields sent change. sip_allowed off while users of the role hold SIP
    accounts: ConfirmationRequired (count and first logins) unless force, which takes
    their SIP accounts away; sip_allowed on while the role has users: refused."""
    transaction.require(conn)
    fields = data.model_fields_set
    # FOR UPDATE waits for creates/updates of users that share-lock this role.
    row = await _found(sql.lock_role, conn, name, "role")
    new = {
        key: getattr(data, key) if key in fields else row[key]
        for key in ("name", "label", "sip_allowed", "web_login", "calls_allowed")
    }
    if new["name"] != row["name"] and row["builtin"]:
        raise validation.Refused("name", f"builtin role {row['name']} cannot be renamed")
    holders: list[asyncpg.Record] = []
    if new["sip_allowed"] and not row["sip_allowed"] and row["user_count"]:
        raise ConflictError(
            f"sip_allowed: role {row['name']} has {row['user_count']} users; move them to"
            " another role before giving the role SIP accounts",
            "sip_allowed",
            "role_in_use",
        )
    if row["sip_allowed"] and not new["sip_allowed"] and row["user_count"]:
        holders = await sql.role_sip_holders(conn, row["id"])
        if holders and not force:
            raise sip_loss(row["name"], holders)
    changed = {k: v for k, v in new.items() if v != row[k]}
    if changed:
        await _unique(new["name"], sql.update_role(conn, row["id"], **new))
        await audit.record(
            conn, actor, "update", "role", row["id"],
            {"role": row["name"], "changed": changed, "sip_accounts_removed": len(holders)},
        )
    for holder in holders:
        await agent_service.follow_role(conn, cfg, holder["id"], actor)
    if holders:
        await config_state.bump(conn)
    return _role(await sql.get_role_by_id(conn, row["id"]))


def sip_loss(role: str, holders: list[asyncpg.Record]) -> ConfirmationRequired:
    """What turning off a role's sip_allowed would take away: all counted, the first
    NAMES_SHOWN named."""
    logins = [h["login"] for h in holders[:NAMES_SHOWN]]
    more = ", ..." if len(holders) > len(logins) else ""
    return ConfirmationRequired(
        f"sip_allowed: {len(holders)} agent(s) of role {role} would lose their SIP account"
        f" (extension, queue memberships): {', '.join(logins)}{more}",
        "sip_allowed",
        {"sip_accounts": len(holders), "logins": logins},
    )


async def delete_role(conn: asyncpg.Connection, cfg: Config, name: str, actor: str) -> None:
    """Custom roles without users only."""
    transaction.require(conn)
    row = await _found(sql.lock_role, conn, name, "role")
    if row["builtin"]:
        raise ConflictError(
            f"name: builtin role {row['name']} cannot be deleted", "name", "role_builtin"
        )
    if row["user_count"]:
        raise ConflictError(
            f"name: role {row['name']} still has {row['user_count']} user(s): move them to"
            " another role first", "name", "role_in_use"
        )
    await sql.delete_role(conn, row["id"])
    await audit.record(conn, actor, "delete", "role", row["id"], {"role": row["name"]})


# --- departments ---------------------------------------------------------------------


def _department(row: asyncpg.Record) -> Department:
    return Department(id=row["id"], name=row["name"], user_count=row["user_count"])


async def list_departments(conn: Conn) -> list[Department]:
    return [_department(r) for r in await sql.list_departments(conn)]


async def get_department(conn: Conn, name: str) -> Department:
    return _department(await _found(sql.get_department, conn, name, "department"))


async def create_department(
    conn: asyncpg.Connection, cfg: Config, data: DepartmentCreate, actor: str
) -> Department:
    transaction.require(conn)
    dept_id = await _unique(data.name, sql.insert_department(conn, data.name))
    await audit.record(conn, actor, "create", "department", dept_id, {"name": data.name})
    return _department(await sql.get_department(conn, data.name))


async def update_department(
    conn: asyncpg.Connection, cfg: Config, name: str, data: DepartmentUpdate, actor: str
) -> Department:
    transaction.require(conn)
    row = await _found(sql.lock_department, conn, name, "department")
    if data.name != row["name"]:
        await _unique(data.name, sql.rename_department(conn, row["id"], data.name))
        await audit.record(
            conn, actor, "update", "department", row["id"], {"old": row["name"], "new": data.name}
        )
    return _department(await sql.get_department(conn, data.name))


async def delete_department(
    conn: asyncpg.Connection, cfg: Config, name: str, actor: str, *, force: bool = False
) -> None:
    """Its users keep existing, without a department; a department in use is only
    deleted with force (else ConfirmationRequired naming its users)."""
    transaction.require(conn)
    row = await _found(sql.lock_department, conn, name, "department")
    if row["user_count"] and not force:
        logins = await sql.department_logins(conn, row["id"], NAMES_SHOWN)
        raise ConfirmationRequired(
            f"name: department {row['name']} has {row['user_count']} users"
            f" ({', '.join(logins)}{', ...' if row['user_count'] > len(logins) else ''})"
            " who would be left without a department",
            "name",
            {"users": row["user_count"], "logins": logins},
        )
    await sql.delete_department(conn, row["id"])
    await audit.record(
        conn,
        actor,
        "delete",
        "department",
        row["id"],
        {"name": row["name"], "users": row["user_count"]},
    )


# --- account types -------------------------------------------------------------------


def _account_type(row: asyncpg.Record) -> AccountType:
    return AccountType(
        id=row["id"], name=row["name"], max_users=row["max_users"], user_count=row["user_count"]
    )


async def list_account_types(conn: Conn) -> list[AccountType]:
    return [_account_type(r) for r in await sql.list_account_types(conn)]


async def get_account_type(conn: Conn, name: str) -> AccountType:
    return _account_type(await _found(sql.get_account_type, conn, name, "account type"))


async def create_account_type(
    conn: asyncpg.Connection, cfg: Config, data: AccountTypeCreate, actor: str
) -> AccountType:
    transaction.require(conn)
    type_id = await _unique(
        data.name, sql.insert_account_type(conn, data.name, data.max_users)
    )
    await audit.record(
        conn,
        actor,
        "create",
        "account_type",
        type_id,
        {"name": data.name, "max_users": data.max_users},
    )
    return _account_type(await sql.get_account_type(conn, data.name))


async def update_account_type(
    conn: asyncpg.Connection, cfg: Config, name: str, data: AccountTypeUpdate, actor: str
) -> AccountType:
    """A lower max_users than the current count keeps existing users and refuses new
    ones; the update waits for creates in flight (they share-lock the row)."""
    transaction.require(conn)
    fields = data.model_fields_set
    row = await _found(sql.lock_account_type, conn, name, "account type")
    new_name: str = data.name if data.name is not None else row["name"]  # never null when set
    max_users = data.max_users if "max_users" in fields else row["max_users"]
    if row["name"].lower() == DEFAULT_ACCOUNT_TYPE and new_name.lower() != DEFAULT_ACCOUNT_TYPE:
        raise validation.Refused(
            "name", f"{DEFAULT_ACCOUNT_TYPE} is the default account type and keeps its name"
        )
    if (new_name, max_users) != (row["name"], row["max_users"]):
        await _unique(
            new_name, sql.update_account_type(conn, row["id"], new_name, max_users)
        )
        await audit.record(
            conn,
            actor,
            "update",
            "account_type",
            row["id"],
            {
                "old": {"name": row["name"], "max_users": row["max_users"]},
                "new": {"name": new_name, "max_users": max_users},
            },
        )
    return _account_type(await sql.get_account_type(conn, new_name))
