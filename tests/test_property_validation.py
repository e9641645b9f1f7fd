"""Property-based: for ANY string in ANY field of the API's input models, either the
service refuses it with a ValidationError (HTTP 422) that names that field, or what it
accepts renders into Asterisk config that reads back as exactly the intended sections,
keys and values - never a line, section, comment or directive more.

1,000 generated cases per field (hypothesis), run against the pure functions the API
and the service use (models.parse, the validators, naming, passwords, render) so they
stay fast; tests/test_security.py and the HTTP part at the end of this file send a few
hundred of them through the real HTTP API and database.

The service derives some values before its transaction (sipprov/agents/service.py create_agent:
the login from the names, the caller id and chat name defaults, the password policy);
`service_view` below does the same, in the same order, with the same functions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp
import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipprov.agents import naming, passwords, validation
from sipprov.agents.models import (
    AccountTypeCreate,
    AgentCreate,
    AgentUpdate,
    DepartmentCreate,
    QueueCreate,
    QueueUpdate,
    RoleCreate,
    parse,
)
from sipprov.apply import render, snapshot
from sipprov.apply.snapshot import AgentConf, QueueConf, QueueMemberConf, Snapshot
from sipprov.config import Config
from sipprov.errors import ValidationError
from tests.api_helpers import call
from tests.faults.expect import assert_files_mean
from tests.faults.strategies import each_field, hostile_text

pytest_plugins = ["tests.api_fixtures"]

EXAMPLES = 1000
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

CFG = Config()
CFG.asterisk.backend = "files"  # agents rendered into pjsip.conf, to read them back
CFG.asterisk.outbound_dial = "PJSIP/${EXTEN}@trunk"  # render the outbound-dial context too
REALM = CFG.asterisk.sip_realm

BASE: dict[str, Any] = {
    "first_name": "Jan",
    "last_name": "Kowalski",
    "email": "jan.kowalski@example.com",
    "outbound_allowed": True,  # so an outbound number is rendered
    "queues": [{"name": "support"}],
}

# field -> (how to put the value in the body, the fields a refusal may name).
# A name that folds to no Latin letters cannot give the default login: the service then
# asks for the login (field "login"), which is the right field to fix.
Setter = Any


def _top(field: str) -> Setter:
    def put(body: dict[str, Any], value: Any) -> None:
        body[field] = value
    return put


def _queue_name(body: dict[str, Any], value: Any) -> None:
    body["queues"] = [{"name": value}]


def _queue_penalty(body: dict[str, Any], value: Any) -> None:
    body["queues"] = [{"name": "support", "penalty": value}]


CREATE_FIELDS: dict[str, tuple[Setter, frozenset[str]]] = {
    "first_name": (_top("first_name"), frozenset({"first_name", "login"})),
    "last_name": (_top("last_name"), frozenset({"last_name", "login"})),
    "email": (_top("email"), frozenset({"email"})),
    "login": (_top("login"), frozenset({"login"})),
    "password": (_top("password"), frozenset({"password"})),
    "sip_password": (_top("sip_password"), frozenset({"sip_password"})),
    "role": (_top("role"), frozenset({"role"})),
    "department": (_top("department"), frozenset({"department"})),
    "phone": (_top("phone"), frozenset({"phone"})),
    "caller_id": (_top("caller_id"), frozenset({"caller_id"})),
    "chat_name": (_top("chat_name"), frozenset({"chat_name"})),
    "outbound_mode": (_top("outbound_mode"), frozenset({"outbound_mode"})),
    "outbound_number": (_top("outbound_number"), frozenset({"outbound_number"})),
    "default_ticket_queue": (_top("default_ticket_queue"), frozenset({"default_ticket_queue"})),
    "sender_email": (_top("sender_email"), frozenset({"sender_email"})),
    "sms_box": (_top("sms_box"), frozenset({"sms_box"})),
    "account_type": (_top("account_type"), frozenset({"account_type"})),
    "queues.0.name": (_queue_name, frozenset({"queues.0.name"})),
    # typed fields given a string: refused, or coerced to their type
    "extension": (_top("extension"), frozenset({"extension"})),
    "priority": (_top("priority"), frozenset({"priority"})),
    "outbound_allowed": (_top("outbound_allowed"), frozenset({"outbound_allowed"})),
    "mute_mic": (_top("mute_mic"), frozenset({"mute_mic"})),
    "autologin_phone": (_top("autologin_phone"), frozenset({"autologin_phone"})),
    "is_agent": (_top("is_agent"), frozenset({"is_agent"})),
    "queues.0.penalty": (_queue_penalty, frozenset({"queues.0.penalty"})),
    "unknown_field": (_top("unknown_field"), frozenset({"unknown_field"})),
}
# Values that reach an Asterisk file (directly or through a default derived from them).
CONFIG_REACHING = {"first_name", "last_name", "login", "caller_id", "outbound_number",
                   "queues.0.name"}
SECRET_FIELDS = {"password", "sip_password"}


@dataclasses.dataclass
class Accepted:
    data: AgentCreate
    login: str
    caller_id_name: str
    chat_name: str
    agent: AgentConf
    queues: list[QueueConf]


def service_view(data: AgentCreate, extension: int = 101) -> Accepted:
    """What create_agent derives and checks before it touches the database, and the row
    the snapshot then holds for this agent (sipprov/agents/service.py, sql/snapshot.py)."""
    sec = CFG.security
    base_login = data.login or naming.derive_login(data.first_name, data.last_name)
    if data.password is not None:
        passwords.check_web_password(data.password, min_length=sec.web_password_min_length,
                                     login=base_login, email=data.email)
    caller_id = data.caller_id or naming.default_caller_id_name(data.first_name, data.last_name)
    chat_name = data.chat_name or validation.chat_name(
        naming.default_chat_name(data.first_name, data.last_name))
    ext = data.extension if data.extension is not None else extension
    sip_password = passwords.generate_sip_password()
    if data.sip_password is not None:
        sip_password = passwords.check_sip_password(
            data.sip_password, min_length=sec.sip_password_min_length, username=str(ext),
            login=base_login)
    if data.password is not None and data.password.lower() == base_login.lower():
        raise validation.Refused("password", "must not be the login or the e-mail address")
    digests = passwords.sip_digests(str(ext), REALM, sip_password)
    caller_id_name = caller_id or base_login[: validation.CALLER_ID_MAX]
    agent = AgentConf(
        id=1, extension=ext, caller_id_name=caller_id_name, ha1_md5=digests.md5,
        ha1_sha256=digests.sha256, realm=digests.realm, outbound_allowed=data.outbound_allowed,
        outbound_number=data.outbound_number, mute_mic=data.mute_mic,
        autologin_phone=data.autologin_phone, priority=data.priority)
    queues = [
        QueueConf(i + 1, q.name, "ringall", 500 + i, (QueueMemberConf(
            ext, q.penalty if q.penalty is not None else data.priority - 1, caller_id_name),))
        for i, q in enumerate(data.queues)
    ]
    return Accepted(data, base_login, caller_id_name, chat_name, agent, queues)


def assert_refusal(exc: ValidationError, field: str, allowed: frozenset[str], value: Any) -> None:
    assert isinstance(exc, ValidationError) and exc.status == 422, exc
    assert exc.field in allowed, f"{field}={value!r} refused naming {exc.field!r}: {exc.message}"
    assert exc.message.startswith(f"{exc.field}: "), exc.message
    if field in SECRET_FIELDS and isinstance(value, str) and len(value.strip()) >= 8:
        assert value not in exc.message, "a refused password was echoed"


def assert_renders_exactly(accepted: Accepted) -> None:
    snap = Snapshot(version=1, agents=[accepted.agent], queues=accepted.queues)
    try:
        files = render.render(snap, CFG)
    except render.UnsafeValueError as exc:
        raise AssertionError(
            f"the service accepted a value the renderer refuses ({exc}): the applier would "
            f"stop applying everything; {accepted.data!r}") from None
    assert_files_mean(files, snap, CFG)


def _accepted_text_is_inert(field: str, accepted: Accepted) -> None:
    """Accepted text that reaches Asterisk has no control character and no config syntax
    (the whitelists), whatever the renderer would do with it."""
    values = [accepted.caller_id_name, accepted.login]
    values += [q.name for q in accepted.queues]
    if accepted.data.outbound_number is not None:
        values.append(accepted.data.outbound_number)
    for value in values:
        # Caller id names carry UTF-8 letters (issue 13); what must stay ASCII is derived.
        assert value.isascii() or value == accepted.caller_id_name, (field, value)
        assert not any(validation.is_control(ch) for ch in value), (field, value)
        assert not set(value) & set('\n\r[];#"\\$<>,|{}='), (field, value)


def check_create(field: str, value: Any) -> None:
    put, allowed = CREATE_FIELDS[field]
    body = {**BASE, "queues": list(BASE["queues"])}
    put(body, value)
    try:
        accepted = service_view(parse(AgentCreate, body))
    except ValidationError as exc:
        assert_refusal(exc, field, allowed, value)
        return
    # accepted values keep their type and carry no control characters
    data = accepted.data
    for name in ("extension", "priority"):
        value_now = getattr(data, name)
        assert value_now is None or type(value_now) is int
    for name in ("outbound_allowed", "mute_mic", "autologin_phone", "is_agent"):
        assert type(getattr(data, name)) is bool
    for text in (data.first_name, data.last_name, accepted.chat_name, data.department or "",
                 data.sms_box or "", data.role, data.account_type, data.phone or ""):
        assert not any(validation.is_control(ch) for ch in text), (field, text)
    _accepted_text_is_inert(field, accepted)
    assert_renders_exactly(accepted)


@PROPERTY
@given(values=st.fixed_dictionaries({f: hostile_text() for f in CREATE_FIELDS}))
def test_any_string_in_any_create_field(values: dict[str, str]) -> None:
    each_field(check_create, values)


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                        st.lists(st.integers(), max_size=2),
                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=300, deadline=None, database=None)
@given(values=st.fixed_dictionaries({f: JSON_VALUES for f in CREATE_FIELDS}))
def test_any_json_value_in_any_create_field(values: dict[str, Any]) -> None:
    """Not a string at all (null, numbers, lists, objects): refused naming the field, or
    coerced to the field's own type."""
    each_field(check_create, values)


UPDATE_FIELDS = ("first_name", "last_name", "login", "caller_id", "outbound_number",
                 "chat_name", "department", "phone", "role", "sms_box")


def check_update(field: str, value: Any) -> None:
    try:
        data = parse(AgentUpdate, {field: value})
    except ValidationError as exc:
        assert_refusal(exc, field, frozenset({field}), value)
        return
    got = data.changes()[field]
    if got is not None:
        assert not any(validation.is_control(ch) for ch in got)
        if field in ("login", "caller_id", "outbound_number"):
            assert got.isascii() or field == "caller_id"
            assert not set(got) & set('\n\r[];#"\\$<>,|{}=')


@PROPERTY
@given(values=st.fixed_dictionaries({f: st.one_of(hostile_text(), st.none())
                                     for f in UPDATE_FIELDS}))
def test_any_string_in_any_update_field(values: dict[str, Any]) -> None:
    """PATCH: refused naming the field, or every value accepted is inert."""
    each_field(check_update, values)


# --- queues: their names become [sections] of queues.conf and Queue() arguments ------


def check_queue(which: str, value: Any) -> None:
    model = QueueCreate if which == "create" else QueueUpdate
    body = {"name": value, "number": 500} if model is QueueCreate else {"name": value}
    try:
        data = parse(model, body)
    except ValidationError as exc:
        assert_refusal(exc, "name", frozenset({"name"}), value)
        return
    name = data.name
    assert name.isascii() and not any(validation.is_control(ch) for ch in name)
    member = QueueMemberConf(101, 0, "j.kowalski")
    digests = passwords.sip_digests("101", REALM, "x" * 24)
    agent = AgentConf(1, 101, "j.kowalski", digests.md5, digests.sha256, REALM, False, None,
                      False, False, 1)
    snap = Snapshot(1, [agent], [QueueConf(1, name, "ringall", 500, (member,)),
                                  QueueConf(2, "other", "rrmemory", None, ())])
    try:
        files = render.render(snap, CFG)
    except render.UnsafeValueError as exc:
        raise AssertionError(f"queue name {name!r} accepted by the API but refused by the "
                             f"renderer ({exc}): the applier would stop applying") from None
    assert_files_mean(files, snap, CFG)


_QUEUE_TEXT = hostile_text(legit=("support", "sales-2", "general", "globals", "Q_1"))


@PROPERTY
@given(values=st.fixed_dictionaries({"create": _QUEUE_TEXT, "update": _QUEUE_TEXT}))
def test_any_string_as_queue_name(values: dict[str, str]) -> None:
    each_field(check_queue, values)


@pytest.mark.parametrize("name", ["general", "GENERAL", "globals", "Globals"])
def test_section_names_asterisk_treats_specially_are_refused(name: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse(QueueCreate, {"name": name})
    assert exc.value.field == "name"


# --- directory: never rendered, but stored and shown; same rule ----------------------

DIRECTORY = {
    "department": (DepartmentCreate, "name"),
    "role.name": (RoleCreate, "name"),
    "role.label": (RoleCreate, "label"),
    "account_type": (AccountTypeCreate, "name"),
}


def check_directory(which: str, value: Any) -> None:
    model, field = DIRECTORY[which]
    body = {"name": "ok-name", field: value}
    try:
        data = parse(model, body)
    except ValidationError as exc:
        assert_refusal(exc, field, frozenset({field}), value)
        return
    got = getattr(data, field)
    assert not any(validation.is_control(ch) for ch in got)
    assert not set(got) & set('\n\r[];#"\\$<>=,|{}'), (which, got)


_DIRECTORY_TEXT = hostile_text(legit=("Sales", "qa-lead", "B2B & VIP", "standard"))


@PROPERTY
@given(values=st.fixed_dictionaries({which: _DIRECTORY_TEXT for which in DIRECTORY}))
def test_any_string_in_directory_names(values: dict[str, str]) -> None:
    each_field(check_directory, values)


# --- the same through the real HTTP API and database (a few hundred) ----------------

HTTP_FIELDS = ("first_name", "last_name", "login", "caller_id", "outbound_number", "phone",
               "chat_name", "department", "sms_box", "email", "queues.0.name", "extension",
               "priority", "password", "sip_password")
HTTP_CASES = 360


def _http_cases() -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = []

    @settings(max_examples=HTTP_CASES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(field=st.sampled_from(HTTP_FIELDS), value=hostile_text())
    def collect(field: str, value: str) -> None:
        # JSON cannot carry a lone surrogate through aiohttp's encoder; the pure tests
        # above cover them
        value = value.encode("utf-8", "replace").decode("utf-8")
        cases.append((field, value))

    collect()
    return cases


async def test_hostile_input_over_http_is_refused_or_rendered_exactly(
        admin: aiohttp.ClientSession, pool: asyncpg.Pool, cfg: Config) -> None:
    """POST /api/v1/agents with hostile values: 422 naming the field, or 201 - and then
    the database's snapshot renders, for every created agent, exactly what the API said
    it created. Agents without a web login (role extension) skip the argon2 cost."""
    r = await call(admin, "POST", "/api/v1/queues", json={"name": "support", "number": 990})
    assert r.status == 201, r.body
    r = await call(admin, "POST", "/api/v1/departments", json={"name": "Sales"})
    assert r.status == 201, r.body
    cases = _http_cases()
    assert len(cases) >= 300
    created: dict[int, dict[str, Any]] = {}
    statuses: dict[int, int] = {}
    for n, (field, value) in enumerate(cases):
        body: dict[str, Any] = {
            "first_name": "Anna", "last_name": "Nowak", "email": f"anna{n}@example.com",
            "login": f"anna.n{n}", "department": "Sales", "outbound_allowed": True,
            "queues": [{"name": "support"}],
            "role": "agent" if field == "password" else "extension",
        }
        CREATE_FIELDS[field][0](body, value)
        r = await call(admin, "POST", "/api/v1/agents", json=body)
        statuses[r.status] = statuses.get(r.status, 0) + 1
        assert r.status in (201, 409, 422), (field, value, r.status, r.body)
        if r.status == 201:
            created[r.body["id"]] = r.body
        elif r.status == 422:
            allowed = CREATE_FIELDS[field][1] | {"queues.0.name"} if field == "queues.0.name" \
                else CREATE_FIELDS[field][1]
            assert r.body["error"]["field"] in allowed, (field, value, r.body)
        else:  # a duplicate (e-mail or extension) is a conflict on that field
            assert r.body["error"]["field"] in (field, "extension", "email", "login"), r.body
    assert statuses.get(201, 0) >= 20 and statuses.get(422, 0) >= 100, statuses

    # What the database now holds renders exactly: every created agent's endpoint,
    # with the caller id the API returned, and no section or line more.
    async with pool.acquire() as conn:
        snap = await snapshot.load(conn)
    files = render.render(snap, cfg)
    assert_files_mean(files, snap, cfg)
    by_ext = {a.extension: a for a in snap.agents}
    for agent in created.values():
        row = by_ext[agent["extension"]]
        assert row.caller_id_name == agent["caller_id"]
        assert row.outbound_number == agent["outbound_number"]
