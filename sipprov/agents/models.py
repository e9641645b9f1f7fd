"""Input models (what the HTTP API and the CLI accept) and output records (what they return).

Input models use the exact field names of the HTTP API, refuse unknown fields, and call
validation.py for every free-text field so the whitelists live in one place. `parse`
turns pydantic's errors into our ValidationError naming the first failing field, so the
API and the CLI report input errors the same way as the service's own rules.

Output records are plain dataclasses with `to_dict()`; they never carry a password hash
or SIP digest, so returning one can never leak a secret.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, make_dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import ErrorDetails

from sipprov.agents import fields as agent_fields
from sipprov.agents import validation
from sipprov.errors import N_, ValidationError

OutboundMode = agent_fields.OutboundMode
QueueKind = Literal["voice", "chat", "ticket"]
QueueStrategy = Literal[
    "ringall", "leastrecent", "fewestcalls", "random", "rrmemory", "rrordered", "linear", "wrandom"
]
PRIORITY_MIN = agent_fields.PRIORITY_MIN
PRIORITY_MAX = agent_fields.PRIORITY_MAX
PENALTY_MAX = 1000
EXTENSION_MAX = agent_fields.EXTENSION_MAX


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


def _not_nullable_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Show PATCH fields that refuse null as non-nullable in the JSON schema (OpenAPI),
    so the document matches what is really accepted."""
    for name in getattr(model, "NOT_NULLABLE", ()):
        prop = schema.get("properties", {}).get(name)
        if not prop or "anyOf" not in prop:
            continue
        kept = [s for s in prop.pop("anyOf") if s.get("type") != "null"]
        if len(kept) == 1:
            prop.update(kept[0])
        else:
            prop["anyOf"] = kept
        prop.pop("default", None)


class _Patch(_Input):
    """PATCH input: only the fields present change; NOT_NULLABLE ones refuse null."""

    model_config = ConfigDict(
        extra="forbid", hide_input_in_errors=True, json_schema_extra=_not_nullable_schema
    )
    NOT_NULLABLE: ClassVar[tuple[str, ...]] = ()


# A site name (agents, queues): compared in SQL, never written as config.
SITE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"


def _none_or(check: Callable[[Any, str], Any], value: Any, field_name: str | None) -> Any:
    return None if value is None else check(value, field_name or "")


# --- agents --------------------------------------------------------------------------


class QueueAssignment(_Input):
    """One queue membership in an agent's `queues` list; penalty overrides priority - 1."""

    name: str
    penalty: int | None = Field(default=None, ge=0, le=PENALTY_MAX)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return validation.queue_name(v, "name")


def _canonical_number(value: Any, field_name: str) -> Any:
    """A number given as text (CSV, a lax client) must be written as the number it is:
    `"0123"` is refused rather than read as 123 (an extension or queue number with a
    leading zero is a different dial string). Other types go on to pydantic."""
    if isinstance(value, bool):
        raise validation.Refused(field_name, "must be a number, not true/false")
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()):
            raise validation.Refused(field_name, "must be an integer")
        if len(text) > 1 and text.startswith("0"):
            raise validation.Refused(field_name, "must not start with 0 (0123 is not 123)")
    return value


class _AgentFields(_Input):
    """Validators shared by create and update (fields are declared by each model)."""

    @field_validator("extension", mode="before", check_fields=False)
    @classmethod
    def _extension(cls, v: Any, info: pydantic.ValidationInfo) -> Any:
        return v if v is None else _canonical_number(v, info.field_name or "extension")

    @field_validator("first_name", "last_name", check_fields=False)
    @classmethod
    def _person_name(cls, v: str | None, info: pydantic.ValidationInfo) -> str | None:
        return _none_or(validation.person_name, v, info.field_name)

    @field_validator("login", check_fields=False)
    @classmethod
    def _login(cls, v: str | None, info: pydantic.ValidationInfo) -> str | None:
        return _none_or(validation.login, v, info.field_name)

    @field_validator("phone", "outbound_number", check_fields=False)
    @classmethod
    def _phone(cls, v: str | None, info: pydantic.ValidationInfo) -> str | None:
        return _none_or(validation.phone_number, v, info.field_name)

    @field_validator("caller_id", check_fields=False)
    @classmethod
    def _caller_id(cls, v: str | None, info: pydantic.ValidationInfo) -> str | None:
        return _none_or(validation.caller_id_name, v, info.field_name)

    @field_validator("chat_name", check_fields=False)
    @classmethod
    def _chat_name(cls, v: str | None, info: pydantic.ValidationInfo) -> str | None:
        return _none_or(validation.chat_name, v, info.field_name)

    @field_validator("department", check_fields=False)
    @classmethod
    def _department(cls, v: str | None, info: pydantic.ValidationInfo) -> str | None:
        return _none_or(validation.department_name, v, info.field_name)

    @field_validator("role", check_fields=False)
    @classmethod
    def _role(cls, v: str | None, info: pydantic.ValidationInfo) -> str | None:
        return _none_or(lambda x, f: validation.role_name(x.lower(), f), v, info.field_name)

    @field_validator("account_type", check_fields=False)
    @classmethod
    def _account_type(cls, v: str | None, info: pydantic.ValidationInfo) -> str | None:
        return _none_or(validation.account_type_name, v, info.field_name)

    @field_validator("default_ticket_queue", check_fields=False)
    @classmethod
    def _ticket_queue(cls, v: str | None, info: pydantic.ValidationInfo) -> str | None:
        return _none_or(validation.queue_name, v, info.field_name)

    @field_validator("sms_box", check_fields=False)
    @classmethod
    def _sms_box(cls, v: str | None, info: pydantic.ValidationInfo) -> str | None:
        return _none_or(validation.sms_box, v, info.field_name)

    @field_validator("language", mode="before", check_fields=False)
    @classmethod
    def _language_case(cls, v: Any) -> Any:
        """`PL` and ` pl ` mean `pl` (CSV files, hand-typed CLI values)."""
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("queues", check_fields=False)
    @classmethod
    def _unique_queues(cls, v: list[QueueAssignment] | None) -> list[QueueAssignment] | None:
        if v is None:
            return v
        seen: set[str] = set()
        for item in v:
            if item.name.lower() in seen:
                raise validation.Refused("queues", f"queue {item.name} is listed twice")
            seen.add(item.name.lower())
        return v


def _input_fields(*, update: bool) -> dict[str, Any]:
    """create_model field specs from the registry (fields.py): on create the registry's
    defaults (REQUIRED: must be given), on update every field optional (None = absent)."""
    specs: dict[str, Any] = {}
    for f in agent_fields.FIELDS:
        base: Any = list[QueueAssignment] if f.name == "queues" else f.type
        if update:
            specs[f.name] = (base | None, Field(default=None, description=f.doc, **f.constraints))
        elif f.default is agent_fields.REQUIRED:
            specs[f.name] = (base, Field(description=f.doc, **f.constraints))
        elif f.default is None:
            specs[f.name] = (base | None, Field(default=None, description=f.doc, **f.constraints))
        elif isinstance(f.default, list):
            specs[f.name] = (base, Field(default_factory=list, description=f.doc, **f.constraints))
        else:
            specs[f.name] = (base, Field(default=f.default, description=f.doc, **f.constraints))
    return specs


# Create-only inputs (never stored as they are, never returned).
_CREATE_ONLY: dict[str, Any] = {
    # Web password; None: generated (recommended) when the role may log in to the web.
    "password": (str | None, Field(default=None, repr=False)),
    # SIP password; None: generated (>= 128 bits) when the user gets a SIP account.
    "sip_password": (str | None, Field(default=None, repr=False)),
    "send_credentials": (bool, False),
}

# Fields an update may not set to null (the rest: null clears the value, or restores the
# default for caller_id and chat_name).
NOT_NULLABLE_ON_UPDATE = agent_fields.not_nullable_on_update()


class _AgentUpdateBase(_AgentFields, _Patch):
    NOT_NULLABLE: ClassVar[tuple[str, ...]] = NOT_NULLABLE_ON_UPDATE

    @field_validator(*NOT_NULLABLE_ON_UPDATE, mode="after", check_fields=False)
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        if v is None:
            raise ValueError("may not be null")
        return v

    def changes(self) -> dict[str, Any]:
        """The fields the caller sent, with their (validated) values."""
        return {name: getattr(self, name) for name in self.model_fields_set}


if TYPE_CHECKING:  # built from the registry below; to a type checker every field is Any

    class AgentCreate(_AgentFields):
        def __getattr__(self, name: str) -> Any: ...

    class AgentUpdate(_AgentUpdateBase):
        def __getattr__(self, name: str) -> Any: ...

else:
    AgentCreate = pydantic.create_model(
        "AgentCreate",
        __base__=_AgentFields,
        __module__=__name__,
        __doc__="POST /api/v1/agents. Omitted optional fields take the documented defaults.",
        **_input_fields(update=False),
        **_CREATE_ONLY,
    )
    AgentUpdate = pydantic.create_model(
        "AgentUpdate",
        __base__=_AgentUpdateBase,
        __module__=__name__,
        __doc__=(
            "PATCH /api/v1/agents/{id}: only the fields present change (`model_fields_set`).\n\n"
            "Passwords are not here: they have their own calls (set_web_password,\n"
            "rotate_sip_password), which return generated secrets once. `queues` replaces\n"
            "all memberships (voice, chat and ticket) when present."
        ),
        **_input_fields(update=True),
    )


class WebPasswordSet(_Input):
    """POST /api/v1/agents/{id}/password."""

    password: str | None = Field(default=None, repr=False)
    force_change: bool | None = None
    # E-mail the user the new password (after the commit; never read from storage).
    send_credentials: bool = False


class SipPasswordSet(_Input):
    """POST /api/v1/agents/{id}/sip-password."""

    password: str | None = Field(default=None, repr=False)
    # E-mail the user the new SIP credentials (after the commit; never read from storage).
    send_credentials: bool = False


# --- queues --------------------------------------------------------------------------


class QueueCreate(_Input):
    """A queue; only voice queues reach Asterisk and may have a number (extension).

    `label` is shown to people (any letters); `name` is what Asterisk sees (ASCII). Either
    may be omitted: no label shows the name, no name is derived from the label."""

    name: str | None = None
    label: str | None = None
    kind: QueueKind = "voice"
    strategy: QueueStrategy = "ringall"
    number: int | None = Field(default=None, ge=0, le=EXTENSION_MAX)
    # Served only by the Asterisk nodes of this site (docs/scale-out.md); none: all.
    site: str | None = Field(default=None, pattern=SITE_PATTERN)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return v if v is None else validation.queue_name(v, "name")

    @field_validator("label")
    @classmethod
    def _label(cls, v: str | None) -> str | None:
        return v if v is None else validation.label(v, "label")

    @field_validator("number", mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        return v if v is None else _canonical_number(v, "number")


class QueueUpdate(_Patch):
    """PATCH a queue; `number: null` removes the number, leaving kind voice releases it."""

    NOT_NULLABLE: ClassVar[tuple[str, ...]] = ("name", "label", "kind", "strategy")

    name: str | None = None
    label: str | None = None
    kind: QueueKind | None = None
    strategy: QueueStrategy | None = None
    number: int | None = Field(default=None, ge=0, le=EXTENSION_MAX)
    # null: every node serves it again
    site: str | None = Field(default=None, pattern=SITE_PATTERN)

    @field_validator("number", mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        return v if v is None else _canonical_number(v, "number")

    @field_validator("name", "label", "kind", "strategy", mode="after")
    @classmethod
    def _not_null(cls, v: Any, info: pydantic.ValidationInfo) -> Any:
        if v is None:
            raise ValueError("may not be null")
        if info.field_name == "name":
            return validation.queue_name(v, "name")
        return validation.label(v, "label") if info.field_name == "label" else v


class QueueMemberSet(_Input):
    """PUT /api/v1/queues/{name}/members/{agent_id}."""

    penalty: int | None = Field(default=None, ge=0, le=PENALTY_MAX)


# --- directory -----------------------------------------------------------------------


class RoleCreate(_Input):
    name: str
    label: str | None = None
    sip_allowed: bool = False
    web_login: bool = True
    calls_allowed: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return validation.role_name(v.lower(), "name")

    @field_validator("label")
    @classmethod
    def _label(cls, v: str | None) -> str | None:
        return _none_or(validation.label, v, "label")


class RoleUpdate(_Patch):
    """Builtin roles may be edited (label, flags) but not renamed or deleted."""

    NOT_NULLABLE: ClassVar[tuple[str, ...]] = ("name", "label", "sip_allowed", "web_login", "calls_allowed")

    name: str | None = None
    label: str | None = None
    sip_allowed: bool | None = None
    web_login: bool | None = None
    calls_allowed: bool | None = None

    @field_validator("name", "label", "sip_allowed", "web_login", "calls_allowed", mode="after")
    @classmethod
    def _check(cls, v: Any, info: pydantic.ValidationInfo) -> Any:
        if v is None:
            raise ValueError("may not be null")
        if info.field_name == "name":
            return validation.role_name(v.lower(), "name")
        if info.field_name == "label":
            return validation.label(v, "label")
        return v


class DepartmentCreate(_Input):
    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return validation.department_name(v, "name")


class DepartmentUpdate(DepartmentCreate):
    pass


class AccountTypeCreate(_Input):
    name: str
    # None: no licence limit.
    max_users: int | None = Field(default=None, ge=0)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return validation.account_type_name(v, "name")


class AccountTypeUpdate(_Patch):
    """`max_users: null` removes the limit; lowering it below the current count keeps
    existing users and refuses new ones."""

    NOT_NULLABLE: ClassVar[tuple[str, ...]] = ("name",)

    name: str | None = None
    max_users: int | None = Field(default=None, ge=0)

    @field_validator("name", mode="after")
    @classmethod
    def _name(cls, v: str | None) -> str:
        if v is None:
            raise ValueError("may not be null")
        return validation.account_type_name(v, "name")


# --- parsing -------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)

_MESSAGES = {
    "missing": N_("is required"),
    "extra_forbidden": N_("is not a known field"),
    "string_type": N_("must be a string"),
    "bool_type": N_("must be true or false"),
    "bool_parsing": N_("must be true or false"),
    "int_type": N_("must be an integer"),
    "int_parsing": N_("must be an integer"),
    "int_from_float": N_("must be an integer"),
    "list_type": N_("must be a list"),
    "model_type": N_("must be an object"),
    "model_attributes_type": N_("must be an object"),
    "dict_type": N_("must be an object"),
}
# pydantic's and email-validator's own words, replaced by ours (the API keeps their
# detail in English; the console shows ours, translated).
_EMAIL_INVALID = "value is not a valid email address"


def _message(err: ErrorDetails) -> tuple[str, str | None, dict[str, object] | None]:
    """(English reason, catalog template or None, its params) of one pydantic error."""
    ctx = err.get("ctx") or {}
    original = ctx.get("error")
    if isinstance(original, validation.Refused):
        return original.reason, original.template, original.params
    if err["type"] in _MESSAGES:
        return _MESSAGES[err["type"]], _MESSAGES[err["type"]], None
    msg = str(err.get("msg", "is not valid"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if msg.startswith(_EMAIL_INVALID):
        return msg, N_("must be a valid e-mail address"), None
    if msg.startswith("Input should be "):
        msg = "must be " + msg[len("Input should be ") :]
    return msg, None, None


def parse(model: type[M], data: Any) -> M:
    """Validate `data` into `model`; the first failing field becomes our ValidationError.

    Nested fields are named by dotted path (`queues.0.name`). Messages never quote the
    input, so a mistyped password is not echoed back.
    """
    if not isinstance(data, dict):
        raise ValidationError("the request body must be a JSON object", None)
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        path = ".".join(str(part) for part in err["loc"]) or None
        message, template, params = _message(err)
        error = ValidationError(f"{path}: {message}" if path else message, path)
        error.template, error.params = template, params
        raise error from None


# --- output records ------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _to_dict(obj: Any) -> dict[str, Any]:
    return {name: _jsonable(getattr(obj, name)) for name in obj.__dataclass_fields__}


def _agent_to_dict(self: Any) -> dict[str, Any]:
    return _to_dict(self)


# The output record: id, then every field of the registry, then what is computed.
_AGENT_COMPUTED: list[tuple[Any, ...]] = [
    ("campaigns", list[int]),
    ("has_sip", bool),
    ("avatar_url", str),
    ("created_at", datetime),
    ("updated_at", datetime),
    ("created_by", str),
    ("updated_by", str),
    # first_name and last_name in the user's name_order.
    ("full_name", str, field(default="")),
    # Set while the applier keeps this agent out of Asterisk because a stored value does
    # not render: {"reason": ..., "since": ISO date-time}; None otherwise.
    ("quarantine", dict[str, Any] | None, field(default=None)),
    # Settings that are stored but cannot work here, e.g. outbound_allowed without an
    # outbound route (filled by service.flagged; reads through the API always have it).
    ("warnings", list[str], field(default_factory=list)),
]

if TYPE_CHECKING:

    class Agent:
        """A user as the API returns it: every stored field by its API name, never a secret."""

        __dataclass_fields__: ClassVar[dict[str, Any]]

        def __init__(self, **values: Any) -> None: ...
        def __getattr__(self, name: str) -> Any: ...
        def to_dict(self) -> dict[str, Any]: ...

else:
    Agent = make_dataclass(
        "Agent",
        [("id", int)]
        + [
            # [{"name", "kind", "penalty" (effective), "penalty_override" (stored or None)}]
            (f.name, list[dict[str, Any]] if f.name == "queues" else f.output_type)
            for f in agent_fields.FIELDS
        ]
        + _AGENT_COMPUTED,
        frozen=True,
        namespace={
            "to_dict": _agent_to_dict,
            "__doc__": "A user as the API returns it: every stored field by its API name, never a secret.",
        },
    )
    Agent.__module__ = __name__


@dataclass(frozen=True)
class SipCredentials:
    """What a phone needs to register; returned once, at creation or rotation."""

    username: str
    password: str = field(repr=False)
    realm: str
    server: str

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass(frozen=True)
class AgentCreated:
    """Result of create/update: secrets appear only when generated (or rotated) now."""

    agent: Agent
    web_password: str | None = field(default=None, repr=False)
    sip: SipCredentials | None = None
    # Config version to wait for (?wait=applied); None when Asterisk sees no change.
    config_version: int | None = None
    # update_agent(bump=False): Asterisk sees a change and the caller must bump the
    # config version itself (config_version is then None).
    bump_needed: bool = False

    def credentials(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.web_password is not None:
            out["web_password"] = self.web_password
        if self.sip is not None:
            out["sip"] = self.sip.to_dict()
        return out

    def to_dict(self) -> dict[str, Any]:
        out = self.agent.to_dict()
        creds = self.credentials()
        if creds:
            out["credentials"] = creds
        return out


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    user_id: int | None
    must_change_password: bool
    # The right password of a deactivated account: refused, and told why.
    deactivated: bool = False


@dataclass(frozen=True)
class QueueMember:
    agent_id: int
    login: str
    extension: int | None
    penalty: int
    penalty_override: int | None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass(frozen=True)
class Queue:
    id: int
    name: str
    label: str
    kind: str
    strategy: str
    number: int | None
    # Several Asterisk nodes: only the nodes of this site serve the queue (None: all).
    site: str | None
    member_count: int
    created_at: datetime
    updated_at: datetime
    # Filled by get_queue; None from list_queues (not loaded).
    members: list[QueueMember] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: _jsonable(getattr(self, k)) for k in self.__dataclass_fields__ if k != "members"}
        if self.members is not None:
            out["members"] = [m.to_dict() for m in self.members]
        return out


@dataclass(frozen=True)
class Role:
    id: int
    name: str
    label: str
    sip_allowed: bool
    web_login: bool
    calls_allowed: bool
    builtin: bool
    user_count: int

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass(frozen=True)
class Department:
    id: int
    name: str
    user_count: int

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass(frozen=True)
class AccountType:
    id: int
    name: str
    max_users: int | None
    user_count: int

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass(frozen=True)
class Page:
    """One page of a keyset-paginated list; `next` is the opaque cursor or None."""

    items: list[Any]
    next: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [i.to_dict() if hasattr(i, "to_dict") else i for i in self.items],
            "next": self.next,
        }
