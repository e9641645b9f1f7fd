"""The add/edit agent form: every field of the user record, grouped as an admin thinks
of them, and the parsing of a posted form into the API's own input models.

The form is only a way to fill AgentCreate / AgentUpdate: every rule stays in the
models and the agent service. Parsing collects an error for every bad field at once
(not just the first), so each error can stand next to its field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from multidict import MultiDictProxy

from sipprov.agents import validation
from sipprov.agents.models import (
    PENALTY_MAX,
    PRIORITY_MAX,
    PRIORITY_MIN,
    Agent,
    AgentCreate,
    AgentUpdate,
    parse,
)
from sipprov.errors import ValidationError


def N_(message: str) -> str:
    """Mark a label for translation; it is translated when the page is rendered."""
    return message


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str = "text"          # text, email, number, checkbox, select, password
    required: bool = False
    options: str | None = None  # roles, departments, account_types, ticket_queues, outbound_modes, languages
    hint: str | None = None
    create_only: bool = False
    maxlength: int | None = None
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class Group:
    key: str
    title: str
    fields: tuple[Field, ...] = field(default_factory=tuple)


GROUPS = (
    Group("identity", N_("Identity"), (
        Field("first_name", N_("First name"), required=True, maxlength=validation.PERSON_NAME_MAX),
        Field("last_name", N_("Last name"), required=True, maxlength=validation.PERSON_NAME_MAX),
        Field("login", N_("Login"), maxlength=validation.LOGIN_MAX,
              hint=N_("Empty: derived from the name (firstname.lastname).")),
        Field("email", N_("E-mail"), kind="email", required=True),
        Field("phone", N_("Phone number"), kind="tel"),
        Field("department", N_("Department"), kind="select", options="departments"),
        Field("role", N_("Role"), kind="select", options="roles", required=True),
        Field("account_type", N_("Account type"), kind="select", options="account_types",
              required=True),
        Field("language", N_("Language"), kind="select", options="languages", required=True,
              hint=N_("The credentials e-mail and the console speak it to this user.")),
    )),
    Group("telephony", N_("Telephony"), (
        Field("is_agent", N_("User is an agent (gets a SIP account, extension and queues)"),
              kind="checkbox"),
        Field("extension", N_("Internal number (extension)"), kind="number", minimum=0,
              maximum=999999, hint=N_("Empty: the next free number.")),
        Field("priority", N_("Priority"), kind="number", minimum=PRIORITY_MIN,
              maximum=PRIORITY_MAX, required=True,
              hint=N_("Lower receives calls first; the queue penalty is priority - 1.")),
        Field("caller_id", N_("Caller ID name"), maxlength=validation.CALLER_ID_MAX,
              hint=N_("Empty: first letter of the first name + . + last name.")),
        Field("mute_mic", N_("Mute microphone by default (web softphone)"), kind="checkbox"),
        Field("autologin_phone", N_("Log in automatically with the phone"), kind="checkbox"),
        Field("site", N_("Site"), maxlength=32,
              hint=N_("Empty: every Asterisk node serves this agent; else only the nodes "
                      "of this site.")),
    )),
    Group("outbound", N_("Outbound calls"), (
        Field("outbound_allowed", N_("Outbound calling allowed"), kind="checkbox"),
        Field("outbound_mode", N_("Outbound mode"), kind="select", options="outbound_modes",
              required=True),
        Field("outbound_number", N_("Default outbound number (caller ID for outside calls)"),
              kind="tel"),
        Field("manual_dial_any", N_("Allow manual dialling of any number (campaign 999999)"),
              kind="checkbox"),
    )),
    Group("chat", N_("Chat and tickets"), (
        Field("chat_name", N_("Chat display name"), maxlength=validation.CHAT_NAME_MAX,
              hint=N_("Empty: the full name.")),
        Field("default_ticket_queue", N_("Default ticket queue"), kind="select",
              options="ticket_queues"),
        Field("sender_email", N_("Sender e-mail for tickets"), kind="email"),
        Field("sms_box", N_("Default SMS box"), maxlength=validation.SMS_BOX_MAX),
    )),
    Group("access", N_("Passwords and permissions"), (
        Field("password", N_("Web password"), kind="password", create_only=True,
              hint=N_("Empty: generated (recommended) and shown once.")),
        Field("force_password_change", N_("Force password change at next login"),
              kind="checkbox"),
        Field("sip_password", N_("SIP (IP phone) password"), kind="password", create_only=True,
              hint=N_("Empty: generated (recommended) and shown once.")),
        Field("send_credentials", N_("E-mail the credentials to the user"), kind="checkbox",
              create_only=True),
    )),
)
ALL_FIELDS = {f.name: f for g in GROUPS for f in g.fields}
DEFAULTS: dict[str, Any] = {"role": "agent", "account_type": "standard", "is_agent": True,
                            "priority": "1", "outbound_mode": "manual"}
# Queue kinds as the pages show them.
KIND_LABELS = (N_("voice"), N_("chat"), N_("ticket"))


@dataclass
class Posted:
    """A posted form: what to show again (`values`), the errors by field, and the
    model input it makes when there are none."""

    values: dict[str, Any]
    errors: dict[str, str]
    data: dict[str, Any]


def queue_field(name: str) -> str:
    return "queue:" + name


def penalty_field(name: str) -> str:
    return "penalty:" + name


def values_of(agent: Agent) -> dict[str, Any]:
    """An agent as form values (what the edit form shows)."""
    values: dict[str, Any] = {}
    for name, spec in ALL_FIELDS.items():
        if spec.create_only:
            continue
        value = getattr(agent, name, None)
        values[name] = value if spec.kind == "checkbox" else ("" if value is None else str(value))
    values["queues"] = {q["name"]: "" if q.get("penalty_override") is None else str(q["penalty_override"])
                        for q in agent.queues}
    return values


def _read(form: MultiDictProxy, queue_names: list[str], create: bool,
          _: Callable[[str], str]) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    data: dict[str, Any] = {}
    for name, spec in ALL_FIELDS.items():
        if spec.create_only and not create:
            continue
        if spec.kind == "checkbox":
            values[name] = data[name] = form.get(name) is not None
            continue
        raw = form.get(name, "")
        raw = raw if isinstance(raw, str) else ""
        value = raw if spec.kind == "password" else raw.strip()
        values[name] = "" if spec.kind == "password" else value
        if not value:
            if spec.required:
                errors[name] = _("This field is required.")
            elif not create:
                data[name] = None
            continue
        if spec.kind == "number":
            try:
                data[name] = int(value)
            except ValueError:
                errors[name] = _("Enter a whole number.")
            continue
        data[name] = value
    queues: dict[str, str] = {}
    chosen = []
    for qname in queue_names:
        if form.get(queue_field(qname)) is None:
            continue
        penalty = form.get(penalty_field(qname), "")
        penalty = penalty.strip() if isinstance(penalty, str) else ""
        queues[qname] = penalty
        item: dict[str, Any] = {"name": qname}
        if penalty:
            try:
                item["penalty"] = int(penalty)
                if not 0 <= item["penalty"] <= PENALTY_MAX:
                    raise ValueError
            except ValueError:
                errors["queues"] = _("A penalty is a whole number from 0 to %(max)s.") % {"max": PENALTY_MAX}
        chosen.append(item)
    values["queues"] = queues
    data["queues"] = chosen
    return values, errors, data


def _check_all(model: type, data: dict[str, Any], errors: dict[str, str],
               message: Callable[[ValidationError], str]) -> None:
    """Every bad field gets its error: each field alone against AgentUpdate (the same
    validators, all optional), then the whole input against `model`."""
    for name, value in data.items():
        if name in errors or name not in AgentUpdate.model_fields:
            continue
        try:
            parse(AgentUpdate, {name: value})
        except ValidationError as exc:
            errors[name] = message(exc)
    if errors:
        return
    try:
        parse(model, data)
    except ValidationError as exc:
        errors[(exc.field or "_form").split(".")[0]] = message(exc)


def read_create(form: MultiDictProxy, queue_names: list[str], _: Callable[[str], str],
                message: Callable[[ValidationError], str]) -> Posted:
    values, errors, data = _read(form, queue_names, True, _)
    _check_all(AgentCreate, data, errors, message)
    return Posted(values, errors, data)


def read_update(form: MultiDictProxy, agent: Agent, queue_names: list[str],
                _: Callable[[str], str], message: Callable[[ValidationError], str]) -> Posted:
    """Only what differs from the agent as stored becomes the update (so a caller id
    that follows the name keeps following it)."""
    values, errors, data = _read(form, queue_names, False, _)
    current = values_of(agent)
    changes: dict[str, Any] = {}
    for name, value in data.items():
        if name == "queues":
            want = {q["name"].lower(): q.get("penalty") for q in value}
            have = {q["name"].lower(): q.get("penalty_override") for q in agent.queues}
            if want != have:
                changes[name] = value
            continue
        was = current.get(name)
        now = value if isinstance(value, bool) else ("" if value is None else str(value))
        if now != was:
            changes[name] = value
    _check_all(AgentUpdate, changes, errors, message)
    return Posted(values, errors, changes)
