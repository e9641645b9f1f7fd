"""The agent service: every rule of the user record, enforced in one place.

The HTTP API and the CLI call only this module. Each mutation runs in one transaction,
writes one audit row, and - when it changes something Asterisk sees (a user with a SIP
account: endpoint, extension, caller id, queue memberships and their penalties) - bumps
the config version as its last statement; the version returned is what `?wait=applied`
waits for.

Secrets: generated web and SIP passwords are returned once (AgentCreated / the rotate
result) and are never stored, logged or written to the audit log. Slow hashing (argon2)
runs before the transaction opens, so no lock is held while it runs.

Who gets what:
- a SIP account (extension, digests, queue memberships, campaign 999999) only when the
  role has sip_allowed AND is_agent is true; asking for any of those otherwise is refused
  with the field named;
- a web password only when the role has web_login (the Extension role has SIP only).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

import asyncpg

from . import audit, extensions, naming, passwords, validation
from .config import Config
from .errors import AuthError, ConflictError, NotFoundError, ValidationError
from .models import (
    Agent,
    AgentCreate,
    AgentCreated,
    AgentUpdate,
    LoginResult,
    Page,
    QueueAssignment,
    SipCredentials,
)
from .sql import agents as sql
from .sql import config_state
from .sql import directory as dir_sql
from .sql import queues as queue_sql
from .sql.constraints import conflict_from

log = logging.getLogger(__name__)

MANUAL_DIAL_CAMPAIGN = 999999
LOGIN_ATTEMPTS = 50
SEARCH_LIMIT_MAX = 500

# Stored columns whose change Asterisk sees for a user with a SIP account: what the
# renderer reads (sql/snapshot.py: endpoint, auth digests, caller id, outbound
# settings, web-softphone flags, member penalties) plus what decides whether the user
# is rendered at all (role, is_agent) and the calling permissions. A change that
# renders to the same bytes costs the applier a render, never a reload.
ASTERISK_COLUMNS = frozenset(
    {
        "extension",
        "caller_id_name",
        "sip_ha1_md5",
        "sip_ha1_sha256",
        "sip_realm",
        "outbound_allowed",
        "outbound_mode",
        "outbound_number",
        "manual_dial_any",
        "mute_mic",
        "autologin_phone",
        "priority",
        "role_id",
        "is_agent",
    }
)

# API field -> stored column, where they differ.
_COLUMN_OF = {"caller_id": "caller_id_name"}
# Fields copied as they are (API name == column name) on create and update.
_PLAIN_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "is_agent",
    "outbound_allowed",
    "outbound_mode",
    "outbound_number",
    "manual_dial_any",
    "force_password_change",
    "mute_mic",
    "autologin_phone",
    "sender_email",
    "sms_box",
    "priority",
)


# --- reading -------------------------------------------------------------------------

Conn = asyncpg.Connection | asyncpg.Pool


def _agent_from_row(row: asyncpg.Record) -> Agent:
    avatar = (
        f"/api/v1/agents/{row['id']}/avatar" if row["has_avatar"] else naming.gravatar_url(row["email"])
    )
    return Agent(
        id=row["id"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        login=row["login"],
        email=row["email"],
        phone=row["phone"],
        department=row["department"],
        role=row["role"],
        account_type=row["account_type"],
        is_agent=row["is_agent"],
        extension=row["extension"],
        caller_id=row["caller_id_name"],
        chat_name=row["chat_name"],
        outbound_allowed=row["outbound_allowed"],
        outbound_mode=row["outbound_mode"],
        outbound_number=row["outbound_number"],
        manual_dial_any=row["manual_dial_any"],
        default_ticket_queue=row["default_ticket_queue"],
        sender_email=row["sender_email"],
        sms_box=row["sms_box"],
        mute_mic=row["mute_mic"],
        autologin_phone=row["autologin_phone"],
        force_password_change=row["force_password_change"],
        priority=row["priority"],
        queues=json.loads(row["queues"]),
        campaigns=list(row["campaigns"]),
        has_sip=row["has_sip"],
        avatar_url=avatar,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        created_by=row["created_by"],
        updated_by=row["updated_by"],
    )


async def get_agent(conn: Conn, agent_id: int) -> Agent:
    row = await sql.get(conn, agent_id)
    if row is None:
        raise NotFoundError(f"agent {agent_id} not found", "id")
    return _agent_from_row(row)


async def find_agent(conn: Conn, login_or_email: str) -> Agent | None:
    """By login or e-mail, case-insensitively."""
    if not isinstance(login_or_email, str) or "\x00" in login_or_email:
        return None
    row = await sql.find(conn, login_or_email)
    return None if row is None else _agent_from_row(row)


def _encode_cursor(row: asyncpg.Record) -> str:
    raw = json.dumps([row["sort_last"], row["sort_first"], row["id"]], ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        last, first, last_id = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not (isinstance(last, str) and isinstance(first, str) and isinstance(last_id, int)):
            raise ValueError
        return last, first, last_id
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise ValidationError("cursor: not a cursor returned by this list", "cursor") from None


async def search_agents(
    conn: Conn,
    *,
    q: str | None = None,
    role: str | None = None,
    department: str | None = None,
    agents_only: bool = False,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    """Users in name order; `q` matches name, login, e-mail (substring) or extension (exact).

    Keyset pagination: `next` is an opaque cursor for the following page, or None.
    """
    if not (1 <= limit <= SEARCH_LIMIT_MAX):
        raise ValidationError(f"limit: must be between 1 and {SEARCH_LIMIT_MAX}", "limit")
    after = _decode_cursor(cursor) if cursor else None
    if role is not None:
        role = validation.no_control(role, "role", max_len=validation.ROLE_NAME_MAX)
    if department is not None:
        department = validation.no_control(department, "department", max_len=validation.DEPARTMENT_NAME_MAX)
    pattern = extension = None
    if q is not None and q.strip():
        text = validation.no_control(q.strip(), "q", max_len=200)
        pattern = sql.like_contains(text)
        if text.isdigit() and len(text) <= 9:
            extension = int(text)
    rows = await sql.search(
        conn,
        pattern=pattern,
        extension=extension,
        role=role,
        department=department,
        agents_only=agents_only,
        after=after,
        limit=limit + 1,
    )
    items = [_agent_from_row(r) for r in rows[:limit]]
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return Page(items=items, next=next_cursor)


# --- shared rule helpers -------------------------------------------------------------


def _no_sip_reason(role: asyncpg.Record) -> str:
    if not role["sip_allowed"]:
        return f"role {role['name']} has no SIP account"
    return "only agents (is_agent true) get a SIP account"


async def _role(conn: asyncpg.Connection, name: str) -> asyncpg.Record:
    row = await dir_sql.share_role(conn, name)
    if row is None:
        raise ValidationError(f"role: unknown role {name}", "role")
    return row


async def _account_type_id(conn: asyncpg.Connection, name: str) -> int:
    """Resolve the type and enforce its licence limit for one more user.

    Must run inside the transaction that inserts (or moves) the user: see
    sql/directory.py for the locking that makes the count exact under concurrency.
    """
    row = await dir_sql.share_account_type(conn, name)
    if row is None:
        raise ValidationError(f"account_type: unknown account type {name}", "account_type")
    if row["max_users"] is not None:
        await dir_sql.licence_lock(conn, row["id"])
        used = await dir_sql.count_users_of_type(conn, row["id"])
        if used >= row["max_users"]:
            raise ConflictError(
                f"account_type: the licence of {row['name']} allows {row['max_users']} users"
                f" and all are in use",
                "account_type",
                "licence_limit",
            )
    return row["id"]


async def _department_id(conn: asyncpg.Connection, name: str | None) -> int | None:
    if name is None:
        return None
    row = await dir_sql.get_department(conn, name)
    if row is None:
        raise ValidationError(f"department: unknown department {name}", "department")
    return row["id"]


async def _ticket_queue(conn: asyncpg.Connection, name: str | None) -> str | None:
    if name is None:
        return None
    row = await queue_sql.get(conn, name)
    if row is None or row["kind"] != "ticket":
        raise ValidationError(
            f"default_ticket_queue: {name} is not a ticket queue", "default_ticket_queue"
        )
    return row["name"]


async def _resolve_queues(
    conn: asyncpg.Connection, items: list[QueueAssignment]
) -> list[tuple[int, str, int | None]]:
    """[(queue_id, kind, penalty override)] in the order given; unknown names refused."""
    if not items:
        return []
    found = {r["name"].lower(): r for r in await queue_sql.by_names(conn, [i.name for i in items])}
    out = []
    for index, item in enumerate(items):
        row = found.get(item.name.lower())
        if row is None:
            raise ValidationError(f"queues.{index}.name: unknown queue {item.name}", f"queues.{index}.name")
        out.append((row["id"], row["kind"], item.penalty))
    return out


async def _insert_user(
    conn: asyncpg.Connection, values: dict[str, Any], explicit: str | None, base: str
) -> str:
    """Insert the user row and return its login.

    An explicit login that is taken is refused; a derived one takes the lowest free
    suffix (`jan.kowalski`, `jan.kowalski2`, ...). Derived logins of one base are
    serialised by an advisory lock, and a unique violation (a concurrent explicit login)
    is retried in a savepoint with the next candidate.
    """
    if explicit is not None:
        values["login"] = explicit
        try:
            await sql.insert(conn, values)
        except asyncpg.UniqueViolationError as exc:
            raise conflict_from(exc) from None
        return explicit
    await sql.lock_login_base(conn, base)
    for _ in range(LOGIN_ATTEMPTS):
        values["login"] = naming.first_free_login(base, await sql.logins_like(conn, base))
        try:
            async with conn.transaction():
                await sql.insert(conn, values)
            return values["login"]
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "users_login_key":
                raise conflict_from(exc) from None
    raise ConflictError(f"login: no free login found for {base}", "login", "login_taken")


def _sip_credentials(cfg: Config, extension: int, password: str) -> SipCredentials:
    return SipCredentials(
        username=str(extension),
        password=password,
        realm=cfg.asterisk.sip_realm,
        server=cfg.asterisk.sip_server,
    )


def _sip_columns(cfg: Config, extension: int, password: str) -> dict[str, Any]:
    digests = passwords.sip_digests(str(extension), cfg.asterisk.sip_realm, password)
    return {"sip_ha1_md5": digests.md5, "sip_ha1_sha256": digests.sha256, "sip_realm": digests.realm}


_NO_SIP_COLUMNS = {"extension": None, "sip_ha1_md5": None, "sip_ha1_sha256": None, "sip_realm": None}


# --- create --------------------------------------------------------------------------


def _check_create(data: AgentCreate, role: asyncpg.Record, can_sip: bool) -> None:
    """Rules that depend only on the input and the role."""
    if not can_sip:
        reason = _no_sip_reason(role)
        if data.extension is not None:
            raise validation.Refused("extension", reason)
        if data.sip_password is not None:
            raise validation.Refused("sip_password", reason)
        if data.queues:
            raise validation.Refused("queues", f"{reason}, so no queue memberships")
        if data.manual_dial_any:
            raise validation.Refused("manual_dial_any", reason)
    if not role["web_login"]:
        reason = f"role {role['name']} has no web login"
        if data.password is not None:
            raise validation.Refused("password", reason)
        if data.force_password_change:
            raise validation.Refused("force_password_change", reason)
        if data.send_credentials:
            raise validation.Refused(
                "send_credentials", f"credentials are never e-mailed for role {role['name']} (no web login)"
            )


async def create_agent(pool: asyncpg.Pool, cfg: Config, data: AgentCreate, actor: str) -> AgentCreated:
    """Create a user; generated passwords are in the result, once.

    Raises ValidationError (input/rule, field named), ConflictError (login/e-mail/
    extension taken, licence_limit, extension_pool_exhausted).
    """
    sec = cfg.security
    role = await dir_sql.role_flags(pool, data.role)
    if role is None:
        raise ValidationError(f"role: unknown role {data.role}", "role")
    can_sip = role["sip_allowed"] and data.is_agent
    _check_create(data, role, can_sip)
    base_login = data.login or naming.derive_login(data.first_name, data.last_name)

    web_password = generated_web = password_hash = None
    if role["web_login"]:
        if data.password is None:
            web_password = generated_web = passwords.generate_web_password()
        else:
            web_password = passwords.check_web_password(
                data.password, min_length=sec.web_password_min_length, login=base_login, email=data.email
            )
        password_hash = await passwords.hash_web_password(web_password, sec.web_hash_scheme)

    caller_id = data.caller_id or naming.default_caller_id_name(data.first_name, data.last_name)
    chat_name = data.chat_name or validation.chat_name(
        naming.default_chat_name(data.first_name, data.last_name)
    )

    async with pool.acquire() as conn:
        async with conn.transaction():
            locked_role = await _role(conn, data.role)
            flags = ("sip_allowed", "web_login")
            if [locked_role[f] for f in flags] != [role[f] for f in flags]:
                raise ConflictError(f"role: role {data.role} changed meanwhile; try again", "role")
            type_id = await _account_type_id(conn, data.account_type)
            department_id = await _department_id(conn, data.department)
            ticket_queue = await _ticket_queue(conn, data.default_ticket_queue)
            memberships = await _resolve_queues(conn, data.queues)
            user_id = await sql.next_id(conn)

            values: dict[str, Any] = {name: getattr(data, name) for name in _PLAIN_FIELDS}
            values.update(
                id=user_id,
                department_id=department_id,
                role_id=role["id"],
                account_type_id=type_id,
                caller_id_name=caller_id or base_login[: validation.CALLER_ID_MAX],
                chat_name=chat_name,
                default_ticket_queue=ticket_queue,
                web_password_hash=password_hash,
                created_by=actor,
                updated_by=actor,
                **_NO_SIP_COLUMNS,
            )
            if not role["web_login"]:
                values["force_password_change"] = False

            sip = None
            if can_sip:
                owner = extensions.user_owner(user_id)
                if data.extension is not None:
                    extension = await extensions.allocate_exact(conn, cfg.extensions, data.extension, owner)
                else:
                    extension = await extensions.allocate(conn, cfg.extensions, owner)
                if data.sip_password is not None:
                    sip_password = passwords.check_sip_password(
                        data.sip_password,
                        min_length=sec.sip_password_min_length,
                        username=str(extension),
                        login=base_login,
                    )
                else:
                    sip_password = passwords.generate_sip_password()
                values["extension"] = extension
                values.update(_sip_columns(cfg, extension, sip_password))
                sip = _sip_credentials(cfg, extension, sip_password)

            login = await _insert_user(conn, values, data.login, base_login)
            if data.password is not None and data.password.lower() == login.lower():
                raise validation.Refused("password", "must not be the login or the e-mail address")

            if memberships:
                await queue_sql.replace_user_memberships(
                    conn, user_id, [m[0] for m in memberships], [m[2] for m in memberships]
                )
            if can_sip and data.manual_dial_any:
                await sql.add_campaign(conn, MANUAL_DIAL_CAMPAIGN, user_id)

            await audit.record(
                conn,
                actor,
                "create",
                "agent",
                user_id,
                {
                    "login": login,
                    "email": data.email,
                    "role": role["name"],
                    "extension": values["extension"],
                    "queues": [q.name for q in data.queues],
                    "web_generated": generated_web is not None,
                    "sip_generated": can_sip and data.sip_password is None,
                },
            )
            agent = _agent_from_row(await sql.get(conn, user_id))
            version = await config_state.bump(conn) if can_sip else None

    log.info("agent %s created (id %d, extension %s) by %s", login, user_id, agent.extension, actor)
    return AgentCreated(agent=agent, web_password=generated_web, sip=sip, config_version=version)


# --- update --------------------------------------------------------------------------


async def update_agent(
    pool: asyncpg.Pool, cfg: Config, agent_id: int, data: AgentUpdate, actor: str
) -> AgentCreated:
    """PATCH semantics: only the fields present change.

    - `queues` replaces all memberships (voice, chat and ticket).
    - `caller_id: null` / `chat_name: null` restore the default; a caller id or chat name
      that still equals the default of the old name follows a name change.
    - Changing the extension changes the SIP username, and the stored digests
      (md5/sha256 of `username:realm:password`) depend on it, while the old password
      is not known to us: the SIP password is rotated and returned in `sip`.
    - A user who becomes able to have SIP (role/is_agent) gets an extension and a
      generated SIP password (`sip`); one who no longer can loses extension, digests,
      queue memberships and campaign 999999.
    - A user who moves to a role with web login and has no web password gets a
      generated one (`web_password`); a role without web login clears the hash.
    """
    changes = data.changes()
    if not changes:
        return AgentCreated(agent=await get_agent(pool, agent_id))
    sec = cfg.security

    async with pool.acquire() as conn:
        async with conn.transaction():
            row = await sql.lock(conn, agent_id)
            if row is None:
                raise NotFoundError(f"agent {agent_id} not found", "id")
            role = await _role(conn, changes.get("role", row["role_name"]))
            is_agent = changes.get("is_agent", row["is_agent"])
            had_sip = row["extension"] is not None
            can_sip = role["sip_allowed"] and is_agent

            if not can_sip:
                reason = _no_sip_reason(role)
                if "extension" in changes:
                    raise validation.Refused("extension", reason)
                if changes.get("queues"):
                    raise validation.Refused("queues", f"{reason}, so no queue memberships")
                if changes.get("manual_dial_any"):
                    raise validation.Refused("manual_dial_any", reason)
            if not role["web_login"] and changes.get("force_password_change"):
                raise validation.Refused("force_password_change", f"role {role['name']} has no web login")

            new: dict[str, Any] = {name: changes[name] for name in _PLAIN_FIELDS if name in changes}
            if "login" in changes:
                new["login"] = changes["login"]
            if "role" in changes:
                new["role_id"] = role["id"]
            if "department" in changes:
                new["department_id"] = await _department_id(conn, changes["department"])
            if "account_type" in changes:
                current = await dir_sql.account_type_id(conn, changes["account_type"])
                if current != row["account_type_id"]:
                    new["account_type_id"] = await _account_type_id(conn, changes["account_type"])
            if "default_ticket_queue" in changes:
                new["default_ticket_queue"] = await _ticket_queue(conn, changes["default_ticket_queue"])

            # Caller id and chat name: explicit, reset to default, or following the name.
            first = new.get("first_name", row["first_name"])
            last = new.get("last_name", row["last_name"])
            login_now = new.get("login", row["login"])
            old_caller_default = (
                naming.default_caller_id_name(row["first_name"], row["last_name"]) or row["login"]
            )[: validation.CALLER_ID_MAX]
            new_caller_default = (
                naming.default_caller_id_name(first, last) or login_now
            )[: validation.CALLER_ID_MAX]
            if "caller_id" in changes:
                new["caller_id_name"] = changes["caller_id"] or new_caller_default
            elif row["caller_id_name"] == old_caller_default:
                new["caller_id_name"] = new_caller_default
            old_chat_default = naming.default_chat_name(row["first_name"], row["last_name"])
            new_chat_default = validation.chat_name(naming.default_chat_name(first, last))
            if "chat_name" in changes:
                new["chat_name"] = changes["chat_name"] or new_chat_default
            elif row["chat_name"] == old_chat_default:
                new["chat_name"] = new_chat_default

            # SIP account.
            sip = None
            sip_password = None
            extension = row["extension"]
            owner = extensions.user_owner(agent_id)
            if can_sip and not had_sip:
                if "extension" in changes:
                    extension = await extensions.allocate_exact(
                        conn, cfg.extensions, changes["extension"], owner
                    )
                else:
                    extension = await extensions.allocate(conn, cfg.extensions, owner)
                sip_password = passwords.generate_sip_password()
            elif can_sip and "extension" in changes and changes["extension"] != row["extension"]:
                # Release first: an owner holds one number at a time. Our row lock keeps
                # the old number from being taken before we commit.
                await extensions.release(conn, row["extension"], owner)
                extension = await extensions.allocate_exact(conn, cfg.extensions, changes["extension"], owner)
                sip_password = passwords.generate_sip_password()
            elif had_sip and not can_sip:
                await extensions.release(conn, row["extension"], owner)
                new.update(_NO_SIP_COLUMNS)
                new["manual_dial_any"] = False
                extension = None
            if sip_password is not None:
                new["extension"] = extension
                new.update(_sip_columns(cfg, extension, sip_password))
                sip = _sip_credentials(cfg, extension, sip_password)

            # Web login.
            generated_web = None
            if not role["web_login"]:
                if row["web_password_hash"] is not None:
                    new["web_password_hash"] = None
                new["force_password_change"] = False
            elif not row["web_login"] and row["web_password_hash"] is None:
                # Moving from a role without web login: the user needs a first password.
                generated_web = passwords.generate_web_password()
                new["web_password_hash"] = await passwords.hash_web_password(
                    generated_web, sec.web_hash_scheme
                )

            # Only what really changes.
            new = {col: value for col, value in new.items() if row[col] != value}

            # Queue memberships and campaign 999999.
            old_members = {
                (m["queue_id"], m["penalty"], m["kind"])
                for m in await queue_sql.user_memberships(conn, agent_id)
            }
            new_members = old_members
            if had_sip and not can_sip:
                new_members = set()
            elif "queues" in changes:
                resolved = await _resolve_queues(conn, changes["queues"])
                new_members = {(qid, penalty, kind) for qid, kind, penalty in resolved}
            members_changed = new_members != old_members
            if members_changed:
                ordered = sorted(new_members)
                await queue_sql.replace_user_memberships(
                    conn, agent_id, [m[0] for m in ordered], [m[1] for m in ordered]
                )
            voice_members_changed = any(m[2] == "voice" for m in new_members ^ old_members)

            if not new and not members_changed:
                return AgentCreated(agent=_agent_from_row(await sql.get(conn, agent_id)))

            if new:
                try:
                    await sql.update(conn, agent_id, new, actor)
                except asyncpg.UniqueViolationError as exc:
                    raise conflict_from(exc) from None
            manual = new.get("manual_dial_any", row["manual_dial_any"])
            if can_sip and manual:
                await sql.add_campaign(conn, MANUAL_DIAL_CAMPAIGN, agent_id)
            else:
                await sql.remove_campaign(conn, MANUAL_DIAL_CAMPAIGN, agent_id)

            await audit.record(
                conn,
                actor,
                "update",
                "agent",
                agent_id,
                {
                    "changed": {k: v for k, v in changes.items() if k != "queues"},
                    "queues": [q.name for q in changes["queues"]] if "queues" in changes else None,
                    "columns": sorted(new),
                    "extension": {"old": row["extension"], "new": extension},
                    "sip_rotated": sip is not None,
                    "web_generated": generated_web is not None,
                },
            )
            agent = _agent_from_row(await sql.get(conn, agent_id))
            visible = (had_sip or can_sip) and (bool(set(new) & ASTERISK_COLUMNS) or voice_members_changed)
            version = await config_state.bump(conn) if visible else None

    return AgentCreated(agent=agent, web_password=generated_web, sip=sip, config_version=version)


# --- delete --------------------------------------------------------------------------


async def delete_agent(pool: asyncpg.Pool, cfg: Config, agent_id: int, actor: str) -> int | None:
    """Delete a user (memberships, campaigns and avatar go with it) and free its extension.

    Returns the config version when Asterisk had the user (a SIP account), else None.
    """
    async with pool.acquire() as conn:
        async with conn.transaction():
            row = await sql.lock(conn, agent_id)
            if row is None:
                raise NotFoundError(f"agent {agent_id} not found", "id")
            await sql.delete(conn, agent_id)
            if row["extension"] is not None:
                await extensions.release(conn, row["extension"], extensions.user_owner(agent_id))
            await audit.record(
                conn,
                actor,
                "delete",
                "agent",
                agent_id,
                {"login": row["login"], "email": row["email"], "extension": row["extension"]},
            )
            return await config_state.bump(conn) if row["extension"] is not None else None


# --- web passwords -------------------------------------------------------------------


async def set_web_password(
    pool: asyncpg.Pool,
    cfg: Config,
    agent_id: int,
    password: str | None,
    force_change: bool | None,
    actor: str,
) -> str | None:
    """Admin sets (or generates, when password is None) a user's web password.

    Returns the generated password, else None. force_change None leaves the flag as is.
    """
    sec = cfg.security
    row = await sql.get(pool, agent_id)
    if row is None:
        raise NotFoundError(f"agent {agent_id} not found", "id")
    generated = None
    if password is None:
        password = generated = passwords.generate_web_password()
    else:
        passwords.check_web_password(
            password, min_length=sec.web_password_min_length, login=row["login"], email=row["email"]
        )
    password_hash = await passwords.hash_web_password(password, sec.web_hash_scheme)

    async with pool.acquire() as conn:
        async with conn.transaction():
            locked = await sql.lock(conn, agent_id)
            if locked is None:
                raise NotFoundError(f"agent {agent_id} not found", "id")
            if not locked["web_login"]:
                raise validation.Refused("password", f"role {locked['role_name']} has no web login")
            if generated is None:
                passwords.check_web_password(
                    password,
                    min_length=sec.web_password_min_length,
                    login=locked["login"],
                    email=locked["email"],
                )
            await sql.set_web_password(conn, agent_id, password_hash, force_change, actor)
            await audit.record(
                conn,
                actor,
                "set_web_password",
                "agent",
                agent_id,
                {"generated": generated is not None, "force_change": force_change},
            )
    return generated


def _plausible_login(login: object) -> bool:
    """Could be a stored login (a NUL byte would make PostgreSQL refuse the query)."""
    try:
        validation.login(login)
    except validation.Refused:
        return False
    return True


async def _authenticate(conn: Conn, login: str, password: str) -> tuple[LoginResult, asyncpg.Record | None]:
    row = await sql.auth_row(conn, login) if _plausible_login(login) else None
    usable = row is not None and row["web_login"] and row["web_password_hash"] is not None
    if not isinstance(password, str) or len(password) > 4 * passwords.WEB_PASSWORD_MAX:
        password, usable = "", False
    ok = await passwords.verify_web_password(password, row["web_password_hash"] if usable else None)
    if not (ok and usable):
        return LoginResult(ok=False, user_id=None, must_change_password=False), None
    return LoginResult(ok=True, user_id=row["id"], must_change_password=row["force_password_change"]), row


async def verify_login(conn: Conn, login: str, password: str) -> LoginResult:
    """Check a web login. Unknown logins, users without a web password and roles without
    web login verify against a dummy hash, so all failures take about as long."""
    result, _ = await _authenticate(conn, login, password)
    return result


async def change_own_password(
    pool: asyncpg.Pool, cfg: Config, login: str, old_password: str, new_password: str
) -> None:
    """A user changes their own password (AuthError if the old one is wrong); clears the
    force-change flag. The actor in the audit log is the user's login."""
    result, row = await _authenticate(pool, login, old_password)
    if not result.ok or row is None:
        raise AuthError("login or password is wrong")
    passwords.check_web_password(
        new_password,
        min_length=cfg.security.web_password_min_length,
        login=row["login"],
        email=row["email"],
        field="new_password",
    )
    if new_password == old_password:
        raise validation.Refused("new_password", "must differ from the old password")
    password_hash = await passwords.hash_web_password(new_password, cfg.security.web_hash_scheme)
    async with pool.acquire() as conn:
        async with conn.transaction():
            locked = await sql.lock(conn, row["id"])
            # Someone (an admin) changed the password meanwhile: the old one is no longer it.
            if locked is None or locked["web_password_hash"] != row["web_password_hash"]:
                raise AuthError("login or password is wrong")
            await sql.set_web_password(conn, row["id"], password_hash, False, row["login"])
            await audit.record(conn, row["login"], "change_own_password", "agent", row["id"], {})


# --- SIP passwords -------------------------------------------------------------------


async def rotate_sip_password(
    pool: asyncpg.Pool, cfg: Config, agent_id: int, password: str | None, actor: str
) -> tuple[SipCredentials, int]:
    """New SIP password (generated when None): returns the credentials, once, and the
    config version that makes Asterisk refuse the old one."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            row = await sql.lock(conn, agent_id)
            if row is None:
                raise NotFoundError(f"agent {agent_id} not found", "id")
            if row["extension"] is None:
                raise ValidationError(f"agent {agent_id} has no SIP account", None)
            username = str(row["extension"])
            if password is None:
                password = passwords.generate_sip_password()
                generated = True
            else:
                passwords.check_sip_password(
                    password,
                    min_length=cfg.security.sip_password_min_length,
                    username=username,
                    login=row["login"],
                    field="password",
                )
                generated = False
            cols = _sip_columns(cfg, row["extension"], password)
            await sql.set_sip(
                conn, agent_id, cols["sip_ha1_md5"], cols["sip_ha1_sha256"], cols["sip_realm"], actor
            )
            await audit.record(
                conn,
                actor,
                "rotate_sip_password",
                "agent",
                agent_id,
                {"generated": generated, "username": username},
            )
            version = await config_state.bump(conn)
    return _sip_credentials(cfg, row["extension"], password), version
