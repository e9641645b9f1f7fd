"""The one list of the agent's fields: everything else derives from it.

Each AgentField says what the field is called in the API and CSV, its type and create
default, the users column it is stored in, whether it is a CSV column, whether a change
reaches Asterisk, and what it means. From this tuple come:

- the input models AgentCreate / AgentUpdate and the output record Agent (models.py);
- the CLI's field options (cli/commands/agents.py);
- the CSV columns (bulk/csvformat.py);
- the SQL: AGENT_SELECT's column list and INSERT_COLUMNS (db/sql/agents.py), the
  columns copied as they are (rules.PLAIN_FIELDS), the columns whose change bumps the
  config version (service.ASTERISK_COLUMNS);
- the columns of the render snapshot (db/sql/snapshot.py, apply/snapshot.AgentConf).

Adding a field: a migration adding the column, one AgentField here, and - only when it
needs a rule of its own (a lookup, a default derived from other fields) - that rule in
rules.py/service.py. tests/test_fields.py checks that every consumer follows the tuple.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import EmailStr

from sipprov.i18n.languages import Language
from sipprov.i18n.names import NameOrder

OutboundMode = Literal["automatic", "manual"]
PRIORITY_MIN = 1
PRIORITY_MAX = 100
EXTENSION_MAX = 999999


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

# How a field's value gets into the users row.
#  plain:   the API value is the column value (same name), on create and update;
#  lookup:  a name resolved to an id column (role, department, account type);
#  derived: stored, but the service computes it (login suffix, extension, defaults);
#  none:    not a users column (queue memberships live in queue_members).
Storage = Literal["plain", "lookup", "derived", "none"]


@dataclass(frozen=True)
class AgentField:
    name: str
    # The value as the API returns it (Agent) and as input accepts it (without None).
    type: Any
    doc: str
    storage: Storage = "plain"
    # The users column (None: storage "none"); defaults to the field's name.
    column: str | None = ""
    # The SQL expression AGENT_SELECT reads it with (default u.<column>).
    select: str = ""
    # Create: REQUIRED, or the default of an omitted field.
    default: Any = None
    # Extra pydantic Field() arguments (ge, le, ...), for create and update alike.
    constraints: dict[str, Any] = field(default_factory=dict)
    # May be null in the output record.
    nullable: bool = False
    # An update may send null (or an empty CSV cell): clears it, or restores the default.
    clearable: bool = False
    # An exported/imported CSV column.
    csv: bool = True
    # A change of the column is seen by Asterisk (bumps the config version).
    asterisk: bool = False
    # Written into the rendered config (a column of the render snapshot).
    rendered: bool = False

    @property
    def stored_column(self) -> str | None:
        if self.storage == "none":
            return None
        return self.column or self.name

    @property
    def select_expr(self) -> str:
        return self.select or f"u.{self.stored_column}"

    @property
    def output_type(self) -> Any:
        base = str if self.type is EmailStr else self.type
        return base | None if self.nullable else base


# Order: the CSV and CLI order (identity first), and the order of the API's output.
FIELDS: tuple[AgentField, ...] = (
    AgentField("login", str, "login (create default: firstname.lastname, diacritics folded)",
               storage="derived"),
    AgentField("first_name", str, "first name", default=REQUIRED),
    AgentField("last_name", str, "last name", default=REQUIRED),
    AgentField("email", EmailStr, "e-mail address", default=REQUIRED),
    AgentField("role", str, "role name (create default: agent)", storage="lookup",
               column="role_id", select="r.name", default="agent", asterisk=True),
    AgentField("is_agent", bool, "an agent gets a SIP endpoint, extension and queues"
               " (create default: yes)", default=True, asterisk=True),
    AgentField("extension", int, "internal number (create default: the lowest free one)",
               storage="derived", nullable=True, constraints={"ge": 0, "le": EXTENSION_MAX},
               asterisk=True, rendered=True),
    AgentField("priority", int, "1-100, lower receives calls first; queue penalty = priority - 1",
               default=1, constraints={"ge": PRIORITY_MIN, "le": PRIORITY_MAX},
               asterisk=True, rendered=True),
    AgentField("department", str, "department name (must exist)", storage="lookup",
               column="department_id", select="d.name", nullable=True, clearable=True),
    AgentField("phone", str, "phone number", nullable=True, clearable=True),
    AgentField("caller_id", str, "caller id name (default: j.kowalski from the name)",
               storage="derived", column="caller_id_name", clearable=True, asterisk=True,
               rendered=True),
    AgentField("chat_name", str, "chat display name (default: the full name)",
               storage="derived", clearable=True),
    AgentField("outbound_allowed", bool, "may call outside numbers", default=False,
               asterisk=True, rendered=True),
    AgentField("outbound_mode", OutboundMode, "outbound mode", default="manual", asterisk=True),
    AgentField("outbound_number", str, "caller id number for outside calls", nullable=True, clearable=True,
               asterisk=True, rendered=True),
    AgentField("manual_dial_any", bool, "may dial any number by hand (campaign 999999)",
               default=False, asterisk=True),
    AgentField("force_password_change", bool, "must change the web password at next login",
               default=False),
    AgentField("mute_mic", bool, "web softphone starts muted", default=False, asterisk=True,
               rendered=True),
    AgentField("autologin_phone", bool, "log in with the phone automatically", default=False,
               asterisk=True, rendered=True),
    AgentField("default_ticket_queue", str, "default ticket queue (a ticket queue's name)",
               storage="derived", nullable=True, clearable=True),
    AgentField("sender_email", EmailStr, "sender e-mail for tickets", nullable=True, clearable=True),
    AgentField("sms_box", str, "default SMS box", nullable=True, clearable=True),
    AgentField("account_type", str, "account type (licence; create default: standard)",
               storage="lookup", column="account_type_id", select="a.name", default="standard"),
    # What the person reads (credentials e-mail, console); None on create: [defaults] language.
    AgentField("language", Language, "language of the credentials e-mail and the console"
               " (create default: [defaults] language)"),
    # Deactivated: no web login, no SIP registration; extension and queues are kept.
    AgentField("active", bool, "may log in and register a phone; false deactivates the"
               " account but keeps its extension and queues (create default: yes)",
               default=True, asterisk=True),
    # first_name is always the given name; this only orders the full name. Stored NULL
    # (create default, or null in a PATCH) follows the language: vi -> family_first.
    AgentField("name_order", NameOrder, "how the full name is shown: given_first or"
               " family_first (default: from the language, vi: family_first)",
               select="COALESCE(u.name_order, CASE WHEN u.language = 'vi'"
                      " THEN 'family_first' ELSE 'given_first' END)",
               clearable=True),
    # Several Asterisk nodes (docs/scale-out.md): only the nodes of this site serve the
    # agent; none: every node. A plain word (compared in SQL, never written as config).
    AgentField("site", str, "site whose Asterisk nodes serve the agent (default: none,"
               " every node)", nullable=True, clearable=True, asterisk=True, rendered=True,
               constraints={"pattern": r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"}),
    AgentField("queues", list, "queue memberships (voice, chat, ticket)", storage="none",
               column=None, default=[]),
)

BY_NAME: dict[str, AgentField] = {f.name: f for f in FIELDS}

# Stored columns that are no API field: secrets (never returned) and bookkeeping.
SECRET_COLUMNS = ("web_password_hash", "sip_ha1_md5", "sip_ha1_sha256", "sip_realm")
SIP_COLUMNS = ("sip_ha1_md5", "sip_ha1_sha256", "sip_realm")


def stored() -> tuple[AgentField, ...]:
    return tuple(f for f in FIELDS if f.stored_column is not None)


def plain_names() -> tuple[str, ...]:
    """Fields copied as they are (API name == column name) on create and update."""
    return tuple(f.name for f in FIELDS if f.storage == "plain")


def insert_columns() -> tuple[str, ...]:
    """The users columns a create writes, in INSERT/COPY order."""
    columns = [f.stored_column for f in stored() if f.stored_column is not None]
    return ("id", *columns, *SECRET_COLUMNS, "created_by", "updated_by")


def asterisk_columns() -> frozenset[str]:
    """Columns whose change Asterisk sees for a user with a SIP account (the SIP digests
    always: they are the endpoint's password)."""
    return frozenset({f.stored_column for f in FIELDS if f.asterisk and f.stored_column}
                     | set(SIP_COLUMNS))


def csv_columns() -> tuple[str, ...]:
    return tuple(f.name for f in FIELDS if f.csv)


def not_nullable_on_update() -> tuple[str, ...]:
    """PATCH fields that refuse null (the rest: null clears, or restores a default)."""
    return tuple(f.name for f in FIELDS if not f.clearable)


def select_list() -> str:
    """AGENT_SELECT's columns of the fields, each named as the API names it."""
    return ", ".join(f"{f.select_expr} AS {f.name}" for f in stored())


def rendered_columns() -> tuple[str, ...]:
    """The users columns the renderer reads (besides id and the SIP digests)."""
    return tuple(f.stored_column for f in FIELDS if f.rendered and f.stored_column is not None)
