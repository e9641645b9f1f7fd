"""The rules of one user record shared by the agent service (agents.py) and the bulk
import (bulk.py): each rule lives here once, so a single create and a row of a CSV
file get the same defaults, the same refusals and the same messages.

- `plan_create` turns an AgentCreate and its role into a CreatePlan: every value a
  create derives without the database (login base, caller id, chat name, whether the
  user gets a SIP account, the web password to generate or the checked given one, the
  force-change flag), the stored columns and the audit details.
- `share_role`, `department_id`, `ticket_queue`, `resolve_queues` (`queues_by_name`
  + `memberships` for many users at once): names to rows/ids, with the errors the API
  returns (field named).
- `check_licence`: how many of n new users an account type's licence admits.

Nothing here opens a transaction: the lookups run in the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from sipprov.agents import fields as agent_fields
from sipprov.agents import naming, passwords, validation
from sipprov.agents.models import AgentCreate, QueueAssignment, SipCredentials
from sipprov.config import Config
from sipprov.db.sql import directory as dir_sql
from sipprov.db.sql import queues as queue_sql
from sipprov.errors import N_, ConflictError, ValidationError

MANUAL_DIAL_CAMPAIGN = 999999

# Fields copied as they are (API name == column name) on create and update.
PLAIN_FIELDS = agent_fields.plain_names()

# The SIP columns of a user without a SIP account.
NO_SIP_COLUMNS: dict[str, Any] = {
    "extension": None,
    "sip_ha1_md5": None,
    "sip_ha1_sha256": None,
    "sip_realm": None,
}

PASSWORD_IS_LOGIN = "must not be the login or the e-mail address"


# --- who gets what ---------------------------------------------------------------------


def sip_applies(role: asyncpg.Record, is_agent: bool) -> bool:
    """A SIP account (extension, digests, queues, campaign 999999): only when the role
    has sip_allowed AND the user is an agent."""
    return bool(role["sip_allowed"] and is_agent)


def no_sip_reason(role: asyncpg.Record) -> str:
    """Why a user of this role (or a non-agent) has no SIP account, for refusals."""
    if not role["sip_allowed"]:
        return f"role {role['name']} has no SIP account"
    return "only agents (is_agent true) get a SIP account"


def no_web_login_reason(role: asyncpg.Record) -> str:
    return f"role {role['name']} has no web login"


def refuse_sip_fields(
    role: asyncpg.Record,
    *,
    extension: bool,
    queues: bool,
    manual_dial_any: bool,
    sip_password: bool = False,
) -> None:
    """For a user without a SIP account: refuse the SIP-only fields that were asked for
    (True = given), the first one named."""
    reason = no_sip_reason(role)
    if extension:
        raise validation.Refused("extension", reason)
    if sip_password:
        raise validation.Refused("sip_password", reason)
    if queues:
        raise validation.Refused("queues", f"{reason}, so no queue memberships")
    if manual_dial_any:
        raise validation.Refused("manual_dial_any", reason)


OUTBOUND_NUMBER_REASON = "only an agent who may call out (outbound_allowed) has an outbound number"


def check_outbound(outbound_allowed: bool, outbound_number: str | None, *, cause: str) -> None:
    """An outbound number (caller id for outside calls) is refused on an agent who may
    not call out: it could never be used. `cause` names the field that made it so."""
    if outbound_number is not None and not outbound_allowed:
        hint = "" if cause == "outbound_number" else "; clear outbound_number too"
        raise validation.Refused(cause, OUTBOUND_NUMBER_REASON + hint)


def outbound_warnings(cfg: Config, outbound_allowed: bool, has_sip: bool) -> list[str]:
    """Why an agent's outbound settings cannot work, for people to fix (not refused: the
    route may be configured after the agents)."""
    if outbound_allowed and has_sip and not cfg.asterisk.outbound_dial:
        return ["outbound_allowed: no outbound route is configured (asterisk.outbound_dial),"
                " so this agent's outside calls fail"]
    return []


def check_create(data: AgentCreate, role: asyncpg.Record, can_sip: bool) -> None:
    """The create rules that depend only on the input and the role."""
    check_outbound(data.outbound_allowed, data.outbound_number, cause="outbound_number")
    if not can_sip:
        refuse_sip_fields(
            role,
            extension=data.extension is not None,
            sip_password=data.sip_password is not None,
            queues=bool(data.queues),
            manual_dial_any=data.manual_dial_any,
        )
    if not role["web_login"]:
        reason = no_web_login_reason(role)
        if data.password is not None:
            raise validation.Refused("password", reason)
        if data.force_password_change:
            raise validation.Refused("force_password_change", reason)
        if data.send_credentials:
            raise validation.Refused(
                "send_credentials", f"credentials are never e-mailed for role {role['name']} (no web login)"
            )


# --- defaults derived from the name ------------------------------------------------------


def default_caller_id(first_name: str, last_name: str, login: str) -> str:
    """`j.kowalski`; the login when the name has no Latin letters (what reaches Asterisk
    is always ASCII)."""
    return (naming.default_caller_id_name(first_name, last_name) or login)[: validation.CALLER_ID_MAX]


def default_chat_name(first_name: str, last_name: str) -> str:
    """`Jan Kowalski`, as a valid chat name (ValidationError when the name cannot be one)."""
    return validation.chat_name(naming.default_chat_name(first_name, last_name))


def new_web_password(cfg: Config, given: str | None, *, login: str, email: str) -> str:
    """A user's new web password: the given one checked against the policy, the login
    and the e-mail, or a generated one when none is given (handed out once)."""
    if given is None:
        return passwords.generate_web_password()
    return passwords.check_web_password(
        given, min_length=cfg.security.web_password_min_length, login=login, email=email
    )


def check_password_not_login(password: str | None, login: str) -> None:
    """A given web password must not be the login the user finally got (a derived login
    is only known once its suffix is chosen)."""
    if password is not None and password.lower() == login.lower():
        raise validation.Refused("password", PASSWORD_IS_LOGIN)


# --- SIP -----------------------------------------------------------------------------------


def sip_columns(cfg: Config, extension: int, password: str) -> dict[str, Any]:
    """The stored digests of a SIP password (the username is the extension)."""
    digests = passwords.sip_digests(str(extension), cfg.asterisk.sip_realm, password)
    return {"sip_ha1_md5": digests.md5, "sip_ha1_sha256": digests.sha256, "sip_realm": digests.realm}


def sip_credentials(cfg: Config, extension: int, password: str) -> SipCredentials:
    """What a phone needs, returned once to whoever created or rotated the password."""
    return SipCredentials(
        username=str(extension),
        password=password,
        realm=cfg.asterisk.sip_realm,
        server=cfg.asterisk.sip_server,
    )


# --- the create plan -----------------------------------------------------------------------


@dataclass(frozen=True)
class CreatePlan:
    """Everything a create derives from its input and role, before the database."""

    data: AgentCreate
    role: asyncpg.Record
    # A SIP account: sip_allowed role and is_agent.
    can_sip: bool
    # The explicit login, or firstname.lastname (a suffix may be added when taken).
    base_login: str
    caller_id: str
    chat_name: str
    # The web password to hash: generated or the checked given one; None without web login.
    web_password: str | None = field(repr=False)
    web_generated: bool
    # False for a role without web login (nobody to ask), else as given.
    force_password_change: bool

    @property
    def sip_generated(self) -> bool:
        """A SIP account whose password we generate (and hand out once)."""
        return self.can_sip and self.data.sip_password is None

    @property
    def manual_dial(self) -> bool:
        """In campaign 999999 (manual dialling of any number)."""
        return self.can_sip and self.data.manual_dial_any

    def sip_password(self, cfg: Config, extension: int, login: str) -> str:
        """The given SIP password, checked against the username (extension) and login,
        or a generated one."""
        if self.data.sip_password is None:
            return passwords.generate_sip_password()
        return passwords.check_sip_password(
            self.data.sip_password,
            min_length=cfg.security.sip_password_min_length,
            username=str(extension),
            login=login,
        )

    def check_login(self, login: str) -> None:
        """The rules that need the final login (see check_password_not_login)."""
        check_password_not_login(self.data.password, login)

    def user_values(
        self,
        cfg: Config,
        *,
        user_id: int,
        login: str | None,
        department_id: int | None,
        account_type_id: int,
        ticket_queue: str | None,
        web_password_hash: str | None,
        actor: str,
        extension: int | None = None,
        sip_password: str | None = None,
    ) -> dict[str, Any]:
        """The users row (sql/agents.py INSERT_COLUMNS); SIP columns only with can_sip."""
        data = self.data
        values: dict[str, Any] = {name: getattr(data, name) for name in PLAIN_FIELDS}
        values.update(
            id=user_id,
            login=login,
            department_id=department_id,
            role_id=self.role["id"],
            account_type_id=account_type_id,
            caller_id_name=self.caller_id,
            chat_name=self.chat_name,
            default_ticket_queue=ticket_queue,
            web_password_hash=web_password_hash,
            created_by=actor,
            updated_by=actor,
            force_password_change=self.force_password_change,
            language=data.language or cfg.defaults.language,
            **NO_SIP_COLUMNS,
        )
        if self.can_sip:
            assert extension is not None and sip_password is not None
            values["extension"] = extension
            values.update(sip_columns(cfg, extension, sip_password))
        return values

    def audit_details(self, login: str, extension: int | None) -> dict[str, Any]:
        """The audit row of the create (no secret: only whether one was generated)."""
        return {
            "login": login,
            "email": self.data.email,
            "role": self.role["name"],
            "extension": extension if self.can_sip else None,
            "queues": [q.name for q in self.data.queues],
            "web_generated": self.web_generated,
            "sip_generated": self.sip_generated,
        }


def plan_create(cfg: Config, data: AgentCreate, role: asyncpg.Record) -> CreatePlan:
    """Apply the create rules that need no database; raises ValidationError (field
    named). A missing web password is generated here (returned once, never stored)."""
    can_sip = sip_applies(role, data.is_agent)
    check_create(data, role, can_sip)
    base_login = data.login or naming.derive_login(data.first_name, data.last_name)
    web_password = None
    if role["web_login"]:
        web_password = new_web_password(cfg, data.password, login=base_login, email=data.email)
    return CreatePlan(
        data=data,
        role=role,
        can_sip=can_sip,
        base_login=base_login,
        caller_id=data.caller_id or default_caller_id(data.first_name, data.last_name, base_login),
        chat_name=data.chat_name or default_chat_name(data.first_name, data.last_name),
        web_password=web_password,
        web_generated=web_password is not None and data.password is None,
        force_password_change=data.force_password_change if role["web_login"] else False,
    )


# --- lookups (inside the caller's transaction) -------------------------------------------


def _known_role(row: asyncpg.Record | None, name: str) -> asyncpg.Record:
    if row is None:
        raise ValidationError.because("role", N_("unknown role %(name)s"), name=name)
    return row


async def share_role(conn: asyncpg.Connection, name: str) -> asyncpg.Record:
    """The role, share-locked until commit (its flags cannot change under a user being
    created or moved); ValidationError when unknown."""
    return _known_role(await dir_sql.share_role(conn, name), name)


async def department_id(conn: asyncpg.Connection, name: str | None) -> int | None:
    """The department's id (None for none); ValidationError when unknown."""
    if name is None:
        return None
    row = await dir_sql.get_department(conn, name)
    if row is None:
        raise ValidationError.because("department", N_("unknown department %(name)s"), name=name)
    return row["id"]


async def ticket_queue(conn: asyncpg.Connection, name: str | None) -> str | None:
    """The ticket queue's stored name (None for none); ValidationError when there is no
    ticket queue of that name."""
    if name is None:
        return None
    row = await queue_sql.get(conn, name)
    if row is None or row["kind"] != "ticket":
        raise ValidationError.because("default_ticket_queue", N_("%(name)s is not a ticket queue"),
                                      name=name)
    return row["name"]


async def queues_by_name(conn: asyncpg.Connection, names: list[str]) -> dict[str, asyncpg.Record]:
    """The queues of these names (any case) by lower-case name, key-share locked until
    commit; unknown names are simply missing."""
    if not names:
        return {}
    return {r["name"].lower(): r for r in await queue_sql.by_names(conn, names)}


def memberships(
    items: list[QueueAssignment], found: dict[str, asyncpg.Record]
) -> list[tuple[int, str, int | None]]:
    """[(queue_id, kind, penalty override)] in the order given, from queues_by_name;
    the first unknown name refused."""
    out = []
    for index, item in enumerate(items):
        row = found.get(item.name.lower())
        if row is None:
            raise ValidationError.because(f"queues.{index}.name", N_("unknown queue %(name)s"),
                                          name=item.name)
        out.append((row["id"], row["kind"], item.penalty))
    return out


async def resolve_queues(
    conn: asyncpg.Connection, items: list[QueueAssignment]
) -> list[tuple[int, str, int | None]]:
    """[(queue_id, kind, penalty override)] in the order given; unknown names refused."""
    if not items:
        return []
    return memberships(items, await queues_by_name(conn, [i.name for i in items]))


# --- licences ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Licence:
    """An account type's room for a batch of new users."""

    type_id: int
    name: str
    max_users: int | None
    # How many of the users asked for fit (all of them when the type has no limit).
    allowed: int

    def refusal(self) -> ConflictError:
        """The error for each user past `allowed`."""
        return ConflictError.because(
            "account_type", N_("the licence of %(name)s allows %(max)s users and all are in use"),
            code="licence_limit", name=self.name, max=self.max_users)


async def check_licence(conn: asyncpg.Connection, account_type: str, n: int = 1) -> Licence:
    """Resolve the account type (ValidationError when unknown) and count how many of n
    more users its licence admits.

    Must run inside the transaction that inserts (or moves) the users: see
    sql/directory.py for the locking that makes the count exact under concurrency.
    """
    row = await dir_sql.share_account_type(conn, account_type)
    if row is None:
        raise ValidationError.because("account_type", N_("unknown account type %(name)s"),
                                      name=account_type)
    allowed = n
    if row["max_users"] is not None:
        await dir_sql.licence_lock(conn, row["id"])
        used = await dir_sql.count_users_of_type(conn, row["id"])
        allowed = min(n, max(0, row["max_users"] - used))
    return Licence(row["id"], row["name"], row["max_users"], allowed)


async def account_type_id(conn: asyncpg.Connection, name: str) -> int:
    """The type's id for one more user; ConflictError(licence_limit) when it is full."""
    licence = await check_licence(conn, name, 1)
    if licence.allowed < 1:
        raise licence.refusal()
    return licence.type_id
