"""The agent service: every rule of the user record, enforced in one place.

The HTTP API and the CLI call only this module; the rules it shares with the bulk
import (defaults, refusals, lookups, licences) live in rules.py. Each mutation takes a
connection inside the CALLER's transaction (db/transaction.py: `run(pool, fn, ...)`
for a single call; the bulk import runs many in one), writes one audit row, and - when
it changes something
Asterisk sees (a user with a SIP account: endpoint, extension, caller id, queue
memberships and their penalties) - bumps the config version as its last statement;
the version returned is what `?wait=applied` waits for (update_agent and
rotate_sip_password take bump=False for a caller that bumps once for many).

Secrets: generated web and SIP passwords are returned once (AgentCreated / the rotate
result) and are never stored, logged or written to the audit log. Slow hashing (argon2)
runs before the first lock is taken, so no row or role stays locked while it runs.

Who gets what:
- a SIP account (extension, digests, queue memberships, campaign 999999) only when the
  role has sip_allowed AND is_agent is true; asking for any of those otherwise is refused
  with the field named;
- a web password only when the role has web_login (the Extension role has SIP only).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import asyncpg

from sipprov import audit, i18n
from sipprov.agents import extensions, naming, passwords, validation
from sipprov.agents import fields as agent_fields
from sipprov.agents import rules as agentrules
from sipprov.agents.models import (
    Agent,
    AgentCreate,
    AgentCreated,
    AgentUpdate,
    LoginResult,
    Page,
    SipCredentials,
)
from sipprov.agents.rules import MANUAL_DIAL_CAMPAIGN
from sipprov.config import Config
from sipprov.db import transaction
from sipprov.db.sql import agents as sql
from sipprov.db.sql import config_state
from sipprov.db.sql import directory as dir_sql
from sipprov.db.sql import queues as queue_sql
from sipprov.db.sql.constraints import conflict_from
from sipprov.errors import (
    AuthError,
    ConfirmationRequired,
    ConflictError,
    NotFoundError,
    ValidationError,
)

log = logging.getLogger(__name__)

LOGIN_ATTEMPTS = 50
SEARCH_LIMIT_MAX = 500

# Stored columns whose change Asterisk sees for a user with a SIP account (the registry's
# `asterisk` fields and the SIP digests): what the renderer reads plus what decides
# whether the user is rendered at all (role, is_agent) and the calling permissions. A
# change that renders to the same bytes costs the applier a render, never a reload.
ASTERISK_COLUMNS = agent_fields.asterisk_columns()


# --- reading -------------------------------------------------------------------------

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


def agent_from_row(row: asyncpg.Record) -> Agent:
    """An Agent from a row of sql/agents.py AGENT_SELECT (what every read returns): the
    registry's fields by their API names, then what is computed."""
    avatar = (
        f"/api/v1/agents/{row['id']}/avatar" if row["has_avatar"] else naming.gravatar_url(row["email"])
    )
    values = {f.name: row[f.name] for f in agent_fields.stored()}
    return Agent(
        id=row["id"],
        **values,
        queues=json.loads(row["queues"]),
        campaigns=list(row["campaigns"]),
        has_sip=row["has_sip"],
        avatar_url=avatar,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        created_by=row["created_by"],
        updated_by=row["updated_by"],
        full_name=i18n.ordered_full_name(row["first_name"], row["last_name"], row["name_order"]),
        quarantine=json.loads(row["quarantine"]) if row.get("quarantine") else None,
    )


def flagged(cfg: Config, agent: Agent) -> Agent:
    """The agent with `warnings`: settings stored but unable to work here (an outbound
    permission without an outbound route)."""
    return dataclasses.replace(
        agent, warnings=agentrules.outbound_warnings(cfg, agent.outbound_allowed, agent.has_sip)
    )


async def get_agent(conn: Conn, agent_id: int) -> Agent:
    row = await sql.get(conn, agent_id)
    if row is None:
        raise NotFoundError(f"agent {agent_id} not found", "id")
    return agent_from_row(row)


async def find_agent(conn: Conn, login_or_email: str) -> Agent | None:
    """By login or e-mail, case-insensitively."""
    if not isinstance(login_or_email, str) or "\x00" in login_or_email:
        return None
    row = await sql.find(conn, login_or_email)
    return None if row is None else agent_from_row(row)


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
    queue: str | None = None,
    agents_only: bool = False,
    limit: int = 50,
    cursor: str | None = None,
    active: bool | None = None,
) -> Page:
    """Users in name order. Every word of `q` must appear in the name, login or e-mail
    (substring; case and diacritics ignored: `Nguyen Van` finds `Nguyễn Văn An`), or
    `q` is an extension (exact). A role, department or queue filter that names nothing
    is an error naming the value, not an empty page.

    Keyset pagination: `next` is an opaque cursor for the following page, or None.
    """
    if not (1 <= limit <= SEARCH_LIMIT_MAX):
        raise ValidationError(f"limit: must be between 1 and {SEARCH_LIMIT_MAX}", "limit")
    after = _decode_cursor(cursor) if cursor else None
    if role is not None:
        role = validation.no_control(role, "role", max_len=validation.ROLE_NAME_MAX)
        if await dir_sql.get_role(conn, role) is None:
            raise ValidationError(f"role: unknown role {role}", "role")
    if department is not None:
        department = validation.no_control(department, "department", max_len=validation.DEPARTMENT_NAME_MAX)
        if await dir_sql.get_department(conn, department) is None:
            raise ValidationError(f"department: unknown department {department}", "department")
    if queue is not None:
        queue = validation.no_control(queue, "queue", max_len=validation.QUEUE_NAME_MAX)
        if await queue_sql.get(conn, queue) is None:
            raise ValidationError(f"queue: unknown queue {queue}", "queue")
    words: list[str] = []
    extension = None
    if q is not None and q.strip():
        text = validation.no_control(q.strip(), "q", max_len=200)
        words = text.split()
        if len(words) > sql.SEARCH_MAX_WORDS:
            raise ValidationError(f"q: at most {sql.SEARCH_MAX_WORDS} words", "q")
        if text.isdecimal() and len(text) <= 9:  # isdigit() takes "²", which int() refuses
            extension = int(text)
    rows = await sql.search(
        conn,
        words=words,
        extension=extension,
        role=role,
        department=department,
        queue=queue,
        agents_only=agents_only,
        after=after,
        limit=limit + 1,
        active=active,
    )
    items = [agent_from_row(r) for r in rows[:limit]]
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return Page(items=items, next=next_cursor)


# --- create --------------------------------------------------------------------------


async def _insert_user(
    conn: asyncpg.Connection, values: dict[str, Any], explicit: str | None, base: str
) -> str:
    """Insert the user row and return its login.

    An explicit login that is taken is refused; a derived one takes the lowest free
    suffix (`jan.kowalski`, `jan.kowalski2`, ...). Derived logins of one base are
    serialised by an advisory lock, and a login taken meanwhile (a concurrent explicit
    login) inserts nothing and the next candidate is tried.
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
            if await sql.insert_unless_login_taken(conn, values):
                return values["login"]
        except asyncpg.UniqueViolationError as exc:
            raise conflict_from(exc) from None
    raise ConflictError(f"login: no free login found for {base}", "login", "login_taken")


async def create_agent(conn: asyncpg.Connection, cfg: Config, data: AgentCreate, actor: str) -> AgentCreated:
    """Create a user; generated passwords are in the result, once.

    Raises ValidationError (input/rule, field named), ConflictError (login/e-mail/
    extension taken, licence_limit, extension_pool_exhausted).
    """
    transaction.require(conn)
    # share-locked until commit: its flags cannot change under the user being created
    # (the slow web-password hash below holds it a little longer, blocking only a
    # change of that role)
    role = await agentrules.share_role(conn, data.role)
    plan = agentrules.plan_create(cfg, data, role)
    password_hash = None
    if plan.web_password is not None:
        password_hash = await passwords.hash_web_password(plan.web_password, cfg.security.web_hash_scheme)
    type_id = await agentrules.account_type_id(conn, data.account_type)
    department_id = await agentrules.department_id(conn, data.department)
    ticket_queue = await agentrules.ticket_queue(conn, data.default_ticket_queue)
    memberships = await agentrules.resolve_queues(conn, data.queues)
    user_id = await sql.next_id(conn)

    sip = extension = sip_password = None
    if plan.can_sip:
        owner = extensions.user_owner(user_id)
        if data.extension is not None:
            extension = await extensions.allocate_exact(conn, cfg.extensions, data.extension, owner)
        else:
            extension = await extensions.allocate(conn, cfg.extensions, owner)
        # Checked against the login base: the login is chosen by the insert below
        # (bulk import, which chooses logins first, passes the final one).
        sip_password = plan.sip_password(cfg, extension, plan.base_login)
        sip = agentrules.sip_credentials(cfg, extension, sip_password)
    values = plan.user_values(
        cfg,
        user_id=user_id,
        login=None,  # _insert_user chooses it
        department_id=department_id,
        account_type_id=type_id,
        ticket_queue=ticket_queue,
        web_password_hash=password_hash,
        actor=actor,
        extension=extension,
        sip_password=sip_password,
    )

    login = await _insert_user(conn, values, data.login, plan.base_login)
    plan.check_login(login)

    if memberships:
        await queue_sql.replace_user_memberships(
            conn, user_id, [m[0] for m in memberships], [m[2] for m in memberships]
        )
    if plan.manual_dial:
        await sql.add_campaign(conn, MANUAL_DIAL_CAMPAIGN, user_id)

    await audit.record(conn, actor, "create", "agent", user_id, plan.audit_details(login, extension))
    agent = agent_from_row(await sql.get(conn, user_id))
    version = await config_state.bump(conn) if plan.can_sip else None

    log.info("agent %s created (id %d, extension %s) by %s", login, user_id, agent.extension, actor)
    generated_web = plan.web_password if plan.web_generated else None
    return AgentCreated(agent=agent, web_password=generated_web, sip=sip, config_version=version)


# --- update --------------------------------------------------------------------------


async def update_agent(
    conn: asyncpg.Connection,
    cfg: Config,
    agent_id: int,
    data: AgentUpdate,
    actor: str,
    *,
    bump: bool = True,
    force: bool = False,
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

    bump=False: a change Asterisk sees does not bump the config version; the result
    has `bump_needed` set instead and the caller bumps once for many updates in its
    transaction (bulk import).

    force: a role/is_agent change that would drop the extension, queue memberships,
    campaign 999999 or the web password is refused (ConfirmationRequired, 409, saying
    what would be lost) unless force is true.
    """
    transaction.require(conn)
    changes = data.changes()
    if not changes:
        return AgentCreated(agent=await get_agent(conn, agent_id))
    up = await _start_update(conn, cfg, agent_id, changes, force=force)
    await _stored_columns(up)
    _names_and_defaults(up)
    sip = await _sip_account(up)
    generated_web = await _web_login(up)
    up.new = {col: value for col, value in up.new.items() if up.row[col] != value}  # only real changes
    voice_members_changed = await _memberships(up)
    if not up.new and not up.members_changed:
        return AgentCreated(agent=agent_from_row(await sql.get(conn, agent_id)))

    await _write_update(up, actor)
    await audit.record(conn, actor, "update", "agent", agent_id, {
        "changed": {k: v for k, v in changes.items() if k != "queues"},
        "queues": [q.name for q in changes["queues"]] if "queues" in changes else None,
        "columns": sorted(up.new),
        "extension": {"old": up.row["extension"], "new": up.extension},
        "sip_rotated": sip is not None,
        "web_generated": generated_web is not None,
    })
    agent = agent_from_row(await sql.get(conn, agent_id))
    visible = (up.had_sip or up.can_sip) and (bool(set(up.new) & ASTERISK_COLUMNS) or voice_members_changed)
    version = await config_state.bump(conn) if visible and bump else None
    return AgentCreated(
        agent=agent,
        web_password=generated_web,
        sip=sip,
        config_version=version,
        bump_needed=visible and not bump,
    )


@dataclass
class _Update:
    """One update_agent call as it goes through its steps: the locked row, the target
    role, and the column values collected so far (`new`)."""

    conn: asyncpg.Connection
    cfg: Config
    agent_id: int
    changes: dict[str, Any]
    row: asyncpg.Record
    role: asyncpg.Record
    had_sip: bool
    can_sip: bool
    new: dict[str, Any] = field(default_factory=dict)
    extension: int | None = None
    members_changed: bool = False


async def _start_update(
    conn: asyncpg.Connection, cfg: Config, agent_id: int, changes: dict[str, Any], *, force: bool
) -> _Update:
    """Lock the user and its (new) role, and refuse what the role does not allow."""
    row = await sql.lock(conn, agent_id)
    if row is None:
        raise NotFoundError(f"agent {agent_id} not found", "id")
    role = await agentrules.share_role(conn, changes.get("role", row["role_name"]))
    had_sip = row["extension"] is not None
    can_sip = agentrules.sip_applies(role, changes.get("is_agent", row["is_agent"]))
    if not can_sip:
        agentrules.refuse_sip_fields(
            role,
            extension="extension" in changes,
            queues=bool(changes.get("queues")),
            manual_dial_any=bool(changes.get("manual_dial_any")),
        )
    if not role["web_login"] and changes.get("force_password_change"):
        raise validation.Refused("force_password_change", agentrules.no_web_login_reason(role))
    if not force:
        await _refuse_silent_loss(conn, row, role, changes, had_sip=had_sip, can_sip=can_sip)
    return _Update(conn, cfg, agent_id, changes, row, role, had_sip, can_sip,
                   extension=row["extension"])



async def _stored_columns(up: _Update) -> None:
    """The fields stored as they are, and the names resolved to ids (role, department,
    account type within its licence, ticket queue)."""
    changes, conn, row = up.changes, up.conn, up.row
    up.new.update({name: changes[name] for name in agentrules.PLAIN_FIELDS if name in changes})
    agentrules.check_outbound(
        up.new.get("outbound_allowed", row["outbound_allowed"]),
        up.new.get("outbound_number", row["outbound_number"]),
        cause="outbound_number" if "outbound_number" in changes else "outbound_allowed",
    )
    if "login" in changes:
        up.new["login"] = changes["login"]
    if "role" in changes:
        up.new["role_id"] = up.role["id"]
    if "department" in changes:
        up.new["department_id"] = await agentrules.department_id(conn, changes["department"])
    if "account_type" in changes:
        current = await dir_sql.account_type_id(conn, changes["account_type"])
        if current != up.row["account_type_id"]:
            up.new["account_type_id"] = await agentrules.account_type_id(conn, changes["account_type"])
    if "default_ticket_queue" in changes:
        up.new["default_ticket_queue"] = await agentrules.ticket_queue(conn, changes["default_ticket_queue"])


def _names_and_defaults(up: _Update) -> None:
    """Caller id and chat name: explicit, reset to the default (null), or following the
    name when they still equal the default of the old one."""
    row, new, changes = up.row, up.new, up.changes
    first = new.get("first_name", row["first_name"])
    last = new.get("last_name", row["last_name"])
    old_caller_default = agentrules.default_caller_id(row["first_name"], row["last_name"], row["login"])
    new_caller_default = agentrules.default_caller_id(first, last, new.get("login", row["login"]))
    if "caller_id" in changes:
        new["caller_id_name"] = changes["caller_id"] or new_caller_default
    elif row["caller_id_name"] == old_caller_default:
        new["caller_id_name"] = new_caller_default
    # The old default as composed, not validated: a stored explicit chat name may
    # sit beside names whose default would not be a valid chat name.
    old_chat_default = naming.default_chat_name(row["first_name"], row["last_name"])
    new_chat_default = agentrules.default_chat_name(first, last)
    if "chat_name" in changes:
        new["chat_name"] = changes["chat_name"] or new_chat_default
    elif row["chat_name"] == old_chat_default:
        new["chat_name"] = new_chat_default


async def _sip_account(up: _Update) -> SipCredentials | None:
    """Give, move or take away the SIP account; a new extension needs a new password
    (the digests include the username), returned once."""
    conn, ext_cfg, row, changes = up.conn, up.cfg.extensions, up.row, up.changes
    owner = extensions.user_owner(up.agent_id)
    sip_password = None
    if up.can_sip and not up.had_sip:
        if "extension" in changes:
            up.extension = await extensions.allocate_exact(conn, ext_cfg, changes["extension"], owner)
        else:
            up.extension = await extensions.allocate(conn, ext_cfg, owner)
        sip_password = passwords.generate_sip_password()
    elif up.can_sip and "extension" in changes and changes["extension"] != row["extension"]:
        # Release first: an owner holds one number at a time. Our row lock keeps
        # the old number from being taken before we commit.
        await extensions.release(conn, row["extension"], owner)
        up.extension = await extensions.allocate_exact(conn, ext_cfg, changes["extension"], owner)
        sip_password = passwords.generate_sip_password()
    elif up.had_sip and not up.can_sip:
        await extensions.release(conn, row["extension"], owner)
        up.new.update(agentrules.NO_SIP_COLUMNS)
        up.new["manual_dial_any"] = False
        up.extension = None
    if sip_password is None:
        return None
    assert up.extension is not None
    up.new["extension"] = up.extension
    up.new.update(agentrules.sip_columns(up.cfg, up.extension, sip_password))
    return agentrules.sip_credentials(up.cfg, up.extension, sip_password)


async def _web_login(up: _Update) -> str | None:
    """A role without web login clears the hash; moving to one with web login and no
    password yet generates one (returned once)."""
    row = up.row
    if not up.role["web_login"]:
        if row["web_password_hash"] is not None:
            up.new["web_password_hash"] = None
        up.new["force_password_change"] = False
        return None
    if not row["web_login"] and row["web_password_hash"] is None:
        generated = passwords.generate_web_password()
        up.new["web_password_hash"] = await passwords.hash_web_password(
            generated, up.cfg.security.web_hash_scheme)
        return generated
    return None


async def _memberships(up: _Update) -> bool:
    """Replace the queue memberships when they change; True when a voice queue's
    members changed (Asterisk sees that)."""
    old = {(m["queue_id"], m["penalty"], m["kind"])
           for m in await queue_sql.user_memberships(up.conn, up.agent_id)}
    wanted = old
    if up.had_sip and not up.can_sip:
        wanted = set()
    elif "queues" in up.changes:
        resolved = await agentrules.resolve_queues(up.conn, up.changes["queues"])
        wanted = {(qid, penalty, kind) for qid, kind, penalty in resolved}
    up.members_changed = wanted != old
    if up.members_changed:
        ordered = sorted(wanted)
        await queue_sql.replace_user_memberships(
            up.conn, up.agent_id, [m[0] for m in ordered], [m[1] for m in ordered])
    return any(m[2] == "voice" for m in wanted ^ old)


async def _write_update(up: _Update, actor: str) -> None:
    """The users row, and campaign 999999 following manual_dial_any."""
    if up.new:
        try:
            await sql.update(up.conn, up.agent_id, up.new, actor)
        except asyncpg.UniqueViolationError as exc:
            raise conflict_from(exc) from None
    if up.can_sip and up.new.get("manual_dial_any", up.row["manual_dial_any"]):
        await sql.add_campaign(up.conn, MANUAL_DIAL_CAMPAIGN, up.agent_id)
    else:
        await sql.remove_campaign(up.conn, MANUAL_DIAL_CAMPAIGN, up.agent_id)


async def _refuse_silent_loss(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    role: asyncpg.Record,
    changes: dict[str, Any],
    *,
    had_sip: bool,
    can_sip: bool,
) -> None:
    """A role or is_agent change must not quietly take away what the caller did not
    name: the extension, queue memberships, campaign 999999, the web password.
    Raises ConfirmationRequired listing them (the caller confirms with force)."""
    lost: dict[str, Any] = {}
    if had_sip and not can_sip:
        lost["extension"] = row["extension"]
        members = await queue_sql.user_memberships(conn, row["id"])
        if members and "queues" not in changes:
            lost["queues"] = sorted(m["name"] for m in members)
        if row["manual_dial_any"]:
            lost["campaigns"] = [MANUAL_DIAL_CAMPAIGN]
    if not role["web_login"] and row["web_password_hash"] is not None:
        lost["web_password"] = True
    if not lost:
        return
    cause = "role" if "role" in changes else "is_agent"
    parts = []
    if "extension" in lost:
        parts.append(f"extension {lost['extension']}")
    if "queues" in lost:
        parts.append(f"{len(lost['queues'])} queue memberships ({', '.join(lost['queues'])})")
    if "campaigns" in lost:
        parts.append(f"campaign {MANUAL_DIAL_CAMPAIGN}")
    if "web_password" in lost:
        parts.append("the web password (no web login)")
    raise ConfirmationRequired(f"{cause}: this change removes {', '.join(parts)}", cause, lost)


async def follow_role(conn: asyncpg.Connection, cfg: Config, agent_id: int, actor: str) -> bool:
    """Take away the SIP account (extension, digests, queue memberships, campaign
    999999) of a user whose role no longer allows one: the role's sip_allowed was just
    turned off, confirmed by the admin (directory.update_role with force). The same steps
    as an update_agent that moves the user to such a role. No bump: the role change
    bumps once for all its users. True when the user had a SIP account."""
    transaction.require(conn)
    up = await _start_update(conn, cfg, agent_id, {}, force=True)
    if not up.had_sip or up.can_sip:
        return False
    await _sip_account(up)
    up.new = {col: value for col, value in up.new.items() if up.row[col] != value}
    await _memberships(up)
    await _write_update(up, actor)
    await audit.record(conn, actor, "update", "agent", agent_id, {
        "cause": f"role {up.row['role_name']}: sip_allowed turned off",
        "columns": sorted(up.new),
        "extension": {"old": up.row["extension"], "new": None},
    })
    return True


# --- delete --------------------------------------------------------------------------


async def delete_agent(
    conn: asyncpg.Connection, cfg: Config, agent_id: int, actor: str, *, bump: bool = True
) -> int | None:
    """Delete a user (memberships, campaigns and avatar go with it) and free its extension.

    Returns the config version when Asterisk had the user (a SIP account), else None;
    bump=False (bulk import) leaves the bump to the caller and returns None.
    """
    transaction.require(conn)
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
    return await config_state.bump(conn) if row["extension"] is not None and bump else None


# --- web passwords -------------------------------------------------------------------


async def set_web_password(
    conn: asyncpg.Connection,
    cfg: Config,
    agent_id: int,
    password: str | None,
    force_change: bool | None,
    actor: str,
) -> str | None:
    """Admin sets (or generates, when password is None) a user's web password.

    Returns the generated password, else None. force_change None leaves the flag as is.
    """
    transaction.require(conn)
    sec = cfg.security
    row = await sql.get(conn, agent_id)
    if row is None:
        raise NotFoundError(f"agent {agent_id} not found", "id")
    given = password
    password = agentrules.new_web_password(cfg, given, login=row["login"], email=row["email"])
    generated = password if given is None else None
    password_hash = await passwords.hash_web_password(password, sec.web_hash_scheme)

    locked = await sql.lock(conn, agent_id)
    if locked is None:
        raise NotFoundError(f"agent {agent_id} not found", "id")
    if not locked["web_login"]:
        raise validation.Refused("password", f"role {locked['role_name']} has no web login")
    if given is not None:  # against the login and e-mail as they are now
        agentrules.new_web_password(cfg, given, login=locked["login"], email=locked["email"])
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
    ok = await passwords.verify_web_password(
        password, row["web_password_hash"] if usable and row is not None else None)
    if not (ok and usable) or row is None:
        return LoginResult(ok=False, user_id=None, must_change_password=False), None
    if not row["active"]:
        return LoginResult(ok=False, user_id=None, must_change_password=False,
                           deactivated=True), None
    return LoginResult(ok=True, user_id=row["id"], must_change_password=row["force_password_change"]), row


async def verify_login(conn: Conn, login: str, password: str) -> LoginResult:
    """Check a web login. Unknown logins, users without a web password and roles without
    web login verify against a dummy hash, so all failures take about as long."""
    result, _ = await _authenticate(conn, login, password)
    return result


async def change_own_password(
    conn: asyncpg.Connection, cfg: Config, login: str, old_password: str, new_password: str
) -> None:
    """A user changes their own password (AuthError if the old one is wrong); clears the
    force-change flag. The actor in the audit log is the user's login."""
    transaction.require(conn)
    result, row = await _authenticate(conn, login, old_password)
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
    locked = await sql.lock(conn, row["id"])
    # Someone (an admin) changed the password meanwhile: the old one is no longer it.
    if locked is None or locked["web_password_hash"] != row["web_password_hash"]:
        raise AuthError("login or password is wrong")
    await sql.set_web_password(conn, row["id"], password_hash, False, row["login"])
    await audit.record(conn, row["login"], "change_own_password", "agent", row["id"], {})


# --- SIP passwords -------------------------------------------------------------------


async def rotate_sip_password(
    conn: asyncpg.Connection,
    cfg: Config,
    agent_id: int,
    password: str | None,
    actor: str,
    *,
    bump: bool = True,
) -> tuple[SipCredentials, int | None]:
    """New SIP password (generated when None): returns the credentials, once, and the
    config version that makes Asterisk refuse the old one.

    bump=False (bulk import): no version is bumped (None is returned) and the caller
    must bump once in the same transaction.
    """
    transaction.require(conn)
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
    cols = agentrules.sip_columns(cfg, row["extension"], password)
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
    version = await config_state.bump(conn) if bump else None
    return agentrules.sip_credentials(cfg, row["extension"], password), version
