"""SQL for roles, departments and account types (the lookup tables of the user record)."""

from __future__ import annotations

import asyncpg

# --- roles ---------------------------------------------------------------------------

_ROLE_COLUMNS = """
r.id, r.name, r.label, r.sip_allowed, r.web_login, r.calls_allowed, r.builtin,
(SELECT count(*) FROM users u WHERE u.role_id = r.id) AS user_count
"""
LIST_ROLES = f"SELECT {_ROLE_COLUMNS} FROM roles r ORDER BY r.builtin DESC, r.id"
GET_ROLE = f"SELECT {_ROLE_COLUMNS} FROM roles r WHERE lower(r.name) = lower($1)"
LOCK_ROLE = f"SELECT {_ROLE_COLUMNS} FROM roles r WHERE lower(r.name) = lower($1) FOR UPDATE"
GET_ROLE_BY_ID = f"SELECT {_ROLE_COLUMNS} FROM roles r WHERE r.id = $1"
INSERT_ROLE = """
INSERT INTO roles (name, label, sip_allowed, web_login, calls_allowed, builtin)
VALUES ($1, $2, $3, $4, $5, false)
RETURNING id
"""
UPDATE_ROLE = """
UPDATE roles SET name = $2, label = $3, sip_allowed = $4, web_login = $5, calls_allowed = $6,
    updated_at = now()
WHERE id = $1
"""
DELETE_ROLE = "DELETE FROM roles WHERE id = $1"
# The users of a role who hold a SIP account (turning its sip_allowed off takes them away).
ROLE_SIP_HOLDERS = (
    "SELECT id, login FROM users WHERE role_id = $1 AND extension IS NOT NULL ORDER BY lower(login), id"
)
# Creates and updates of users share-lock their role, so a change of sip_allowed (which
# takes the row FOR UPDATE and checks the role's users) never races a user being given
# or losing a SIP account under the old rule.
SHARE_ROLE = (
    "SELECT id, name, sip_allowed, web_login FROM roles WHERE lower(name) = lower($1) FOR SHARE"
)


async def list_roles(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    return await conn.fetch(LIST_ROLES)


async def get_role(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(GET_ROLE, name)


async def get_role_by_id(conn: asyncpg.Connection | asyncpg.Pool, role_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(GET_ROLE_BY_ID, role_id)


async def lock_role(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(LOCK_ROLE, name)


async def share_role(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(SHARE_ROLE, name)


async def insert_role(
    conn: asyncpg.Connection, name: str, label: str, sip_allowed: bool, web_login: bool, calls_allowed: bool
) -> int:
    return await conn.fetchval(INSERT_ROLE, name, label, sip_allowed, web_login, calls_allowed)


async def update_role(
    conn: asyncpg.Connection,
    role_id: int,
    name: str,
    label: str,
    sip_allowed: bool,
    web_login: bool,
    calls_allowed: bool,
) -> None:
    await conn.execute(UPDATE_ROLE, role_id, name, label, sip_allowed, web_login, calls_allowed)


async def delete_role(conn: asyncpg.Connection, role_id: int) -> None:
    await conn.execute(DELETE_ROLE, role_id)


async def role_sip_holders(conn: asyncpg.Connection, role_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(ROLE_SIP_HOLDERS, role_id)


# --- departments ---------------------------------------------------------------------

_DEPARTMENT_COLUMNS = """
d.id, d.name, (SELECT count(*) FROM users u WHERE u.department_id = d.id) AS user_count
"""
LIST_DEPARTMENTS = f"SELECT {_DEPARTMENT_COLUMNS} FROM departments d ORDER BY lower(d.name)"
GET_DEPARTMENT = f"SELECT {_DEPARTMENT_COLUMNS} FROM departments d WHERE lower(d.name) = lower($1)"
LOCK_DEPARTMENT = (
    f"SELECT {_DEPARTMENT_COLUMNS} FROM departments d WHERE lower(d.name) = lower($1) FOR UPDATE"
)
INSERT_DEPARTMENT = "INSERT INTO departments (name) VALUES ($1) RETURNING id"
RENAME_DEPARTMENT = "UPDATE departments SET name = $2 WHERE id = $1"
DELETE_DEPARTMENT = "DELETE FROM departments WHERE id = $1"
# Who a department delete would detach (named in the confirmation it asks for).
DEPARTMENT_LOGINS = "SELECT login FROM users WHERE department_id = $1 ORDER BY lower(login) LIMIT $2"


async def list_departments(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    return await conn.fetch(LIST_DEPARTMENTS)


async def get_department(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(GET_DEPARTMENT, name)


async def lock_department(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(LOCK_DEPARTMENT, name)


async def insert_department(conn: asyncpg.Connection, name: str) -> int:
    return await conn.fetchval(INSERT_DEPARTMENT, name)


async def rename_department(conn: asyncpg.Connection, department_id: int, name: str) -> None:
    await conn.execute(RENAME_DEPARTMENT, department_id, name)


async def delete_department(conn: asyncpg.Connection, department_id: int) -> None:
    await conn.execute(DELETE_DEPARTMENT, department_id)


async def department_logins(conn: asyncpg.Connection, department_id: int, limit: int) -> list[str]:
    return [r[0] for r in await conn.fetch(DEPARTMENT_LOGINS, department_id, limit)]


# --- account types -------------------------------------------------------------------

_ACCOUNT_TYPE_COLUMNS = """
a.id, a.name, a.max_users, (SELECT count(*) FROM users u WHERE u.account_type_id = a.id) AS user_count
"""
LIST_ACCOUNT_TYPES = f"SELECT {_ACCOUNT_TYPE_COLUMNS} FROM account_types a ORDER BY a.id"
GET_ACCOUNT_TYPE = f"SELECT {_ACCOUNT_TYPE_COLUMNS} FROM account_types a WHERE lower(a.name) = lower($1)"
LOCK_ACCOUNT_TYPE = (
    f"SELECT {_ACCOUNT_TYPE_COLUMNS} FROM account_types a WHERE lower(a.name) = lower($1) FOR UPDATE"
)
ACCOUNT_TYPE_ID = "SELECT id FROM account_types WHERE lower(name) = lower($1)"
INSERT_ACCOUNT_TYPE = "INSERT INTO account_types (name, max_users) VALUES ($1, $2) RETURNING id"
UPDATE_ACCOUNT_TYPE = (
    "UPDATE account_types SET name = $2, max_users = $3, updated_at = now() WHERE id = $1"
)

# The licence check. Creates share-lock the type row, so a change of max_users waits
# for creates in flight (and creates after it see the new limit); creates of a type
# WITH a limit also take a per-type advisory lock, so counting and inserting is
# serialised among them. Types without a limit (the usual case) never serialise creates.
SHARE_ACCOUNT_TYPE = "SELECT id, name, max_users FROM account_types WHERE lower(name) = lower($1) FOR SHARE"
LICENCE_LOCK_NAMESPACE = 7261004
LICENCE_LOCK = f"SELECT pg_advisory_xact_lock({LICENCE_LOCK_NAMESPACE}, $1)"
COUNT_USERS_OF_TYPE = "SELECT count(*) FROM users WHERE account_type_id = $1"


async def list_account_types(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    return await conn.fetch(LIST_ACCOUNT_TYPES)


async def get_account_type(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(GET_ACCOUNT_TYPE, name)


async def account_type_id(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> int | None:
    return await conn.fetchval(ACCOUNT_TYPE_ID, name)


async def lock_account_type(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(LOCK_ACCOUNT_TYPE, name)


async def insert_account_type(conn: asyncpg.Connection, name: str, max_users: int | None) -> int:
    return await conn.fetchval(INSERT_ACCOUNT_TYPE, name, max_users)


async def update_account_type(
    conn: asyncpg.Connection, type_id: int, name: str, max_users: int | None
) -> None:
    await conn.execute(UPDATE_ACCOUNT_TYPE, type_id, name, max_users)


async def share_account_type(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(SHARE_ACCOUNT_TYPE, name)


async def licence_lock(conn: asyncpg.Connection, type_id: int) -> None:
    await conn.execute(LICENCE_LOCK, type_id)


async def count_users_of_type(conn: asyncpg.Connection, type_id: int) -> int:
    return await conn.fetchval(COUNT_USERS_OF_TYPE, type_id)
