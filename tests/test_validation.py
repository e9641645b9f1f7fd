"""Whitelists for everything that can reach Asterisk config, and the input models.

Hostile input: newline, CR, tab, NUL, U+2028/2029/0085, '[', ']', ';', '#', '"', '\\',
'=', ',' must be refused with the field named, by the validators and through the
models (which is how the API and the CLI get them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipprov.agents import validation
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
from sipprov.errors import ValidationError

CONTROL = ["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\u2028", "\u2029", "\u0085", "\u200b", "\u202e"]
CONFIG_SYNTAX = ["[", "]", ";", "#", '"', "\\", "=", ","]
HOSTILE = CONTROL + CONFIG_SYNTAX

VALIDATORS: dict[str, tuple[Callable[..., str], str]] = {
    # name: (validator, a valid value to inject into)
    "person_name": (validation.person_name, "Jan"),
    "chat_name": (validation.chat_name, "Jan Kowalski"),
    "caller_id_name": (validation.caller_id_name, "j.kowalski"),
    "login": (validation.login, "jan.kowalski"),
    "phone_number": (validation.phone_number, "+48123456789"),
    "queue_name": (validation.queue_name, "sales"),
    "department_name": (validation.department_name, "Sales"),
    "role_name": (validation.role_name, "agent"),
    "account_type_name": (validation.account_type_name, "standard"),
    "sms_box": (validation.sms_box, "box1"),
}


@pytest.mark.parametrize("name", sorted(VALIDATORS))
@pytest.mark.parametrize("bad", HOSTILE, ids=[f"U+{ord(c):04X}" for c in HOSTILE])
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_hostile_characters_are_refused_with_the_field_named(name: str, bad: str, where: str) -> None:
    check, good = VALIDATORS[name]
    value = {"start": bad + good, "middle": good[:1] + bad + good[1:], "end": good + bad}[where]
    with pytest.raises(ValidationError) as exc:
        check(value, "the_field")
    assert exc.value.field == "the_field"
    assert exc.value.message.startswith("the_field: ")
    assert f"U+{ord(bad):04X}" in exc.value.message


@pytest.mark.parametrize(
    "value",
    ["[general]", "x\n[general]\ntype=endpoint", "#include /etc/passwd", "a;comment", 'x" <100>', "a\r\nb"],
)
def test_config_injection_attempts_are_refused(value: str) -> None:
    for name, (check, _) in VALIDATORS.items():
        with pytest.raises(ValidationError):
            check(value, name)


def test_refusal_names_the_character() -> None:
    with pytest.raises(validation.Refused) as exc:
        validation.person_name("Jan\u2028Kowalski", "first_name")
    assert exc.value.message == "first_name: control character U+2028 LINE SEPARATOR is not allowed"
    with pytest.raises(validation.Refused) as exc:
        validation.queue_name("sales[1]", "name")
    assert "'[' (U+005B LEFT SQUARE BRACKET)" in exc.value.message


@pytest.mark.parametrize(
    "name", ["Łukasz", "Żółć", "Nguyễn", "Đặng", "Anne-Marie", "O'Neil", "O’Brien", "José María", "Jr.", "李",
             "Ольга"]
)
def test_unicode_person_names_are_fine(name: str) -> None:
    assert validation.person_name(name, "first_name") == name


def test_names_are_trimmed_and_normalised() -> None:
    assert validation.person_name("  Jan   Maria ", "first_name") == "Jan Maria"
    decomposed = "Z\u0307o\u0301\u0142c\u0301"  # Żółć typed with combining marks
    assert validation.person_name(decomposed, "last_name") == "Żółć"
    with pytest.raises(validation.Refused, match="must not be empty"):
        validation.person_name("   ", "first_name")
    with pytest.raises(validation.Refused, match="must contain a letter"):
        validation.person_name("-", "first_name")
    with pytest.raises(validation.Refused, match="at most 64"):
        validation.person_name("a" * 65, "first_name")
    with pytest.raises(validation.Refused, match="not allowed"):
        validation.person_name("Jan2", "first_name")


def test_caller_id_name_takes_any_letters() -> None:
    assert validation.caller_id_name("J. Kowalski (Sales)", "caller_id") == "J. Kowalski (Sales)"
    for good in ["Ewa Żak", "Łukasz Żółć", "Trần Thị Hương", "Hỗ trợ", "O'Neil", "Ольга"]:
        assert validation.caller_id_name(good, "caller_id") == good
    # NFD input (macOS) is stored composed.
    assert validation.caller_id_name("Żak", "caller_id") == "Żak"
    with pytest.raises(validation.Refused) as exc:
        validation.caller_id_name('Ewa "Boss" Żak', "caller_id")
    assert exc.value.field == "caller_id"
    for bad in ["<100>", "a|b", "a;b", "a\\b", "a#b", "a[b]", "a\nb", "a\u200bb", "a" * 41]:
        with pytest.raises(validation.Refused):
            validation.caller_id_name(bad, "caller_id")


def test_login_shape() -> None:
    for good in ["jan.kowalski", "jan.kowalski2", "J_K", "a", "anne-marie.oneil"]:
        assert validation.login(good) == good
    for bad in ["", ".jan", "jan.", "-jan", "jan kowalski", "jan@example.com", "łukasz", "a" * 65]:
        with pytest.raises(validation.Refused) as exc:
            validation.login(bad)
        assert exc.value.field == "login"


def test_phone_numbers_are_normalised() -> None:
    assert validation.phone_number("+48 (12) 345-67-89", "phone") == "+4812345678" "9"
    assert validation.phone_number("0048.12.345", "phone") == "004812345"
    for bad in ["12+3", "++48123", "12", "1" * 21, "+48 123 abc", "123\n456"]:
        with pytest.raises(validation.Refused) as exc:
            validation.phone_number(bad, "outbound_number")
        assert exc.value.field == "outbound_number"


def test_queue_names() -> None:
    assert validation.queue_name("sales-1_pl") == "sales-1_pl"
    for bad in ["general", "GENERAL", "-x", "sales queue", "kolejka-ł", "a" * 65]:
        with pytest.raises(validation.Refused):
            validation.queue_name(bad)


def test_role_and_department_names() -> None:
    assert validation.role_name("qa-lead") == "qa-lead"
    for bad in ["QA", "1qa", "qa lead"]:
        with pytest.raises(validation.Refused):
            validation.role_name(bad)
    assert validation.department_name("Obsługa klienta / B2B & VIP") == "Obsługa klienta / B2B & VIP"


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=80))
def test_accepted_values_never_carry_config_syntax(text: str) -> None:
    """Whatever the input, an accepted value has no line break, control char or syntax."""
    for name, (check, _) in VALIDATORS.items():
        try:
            value = check(text, name)
        except ValidationError:
            continue
        assert not any(validation.is_control(ch) for ch in value)
        assert not set(value) & set(CONFIG_SYNTAX), (name, value)
        assert "\n" not in value and "\r" not in value


# --- models --------------------------------------------------------------------------

BASE: dict[str, Any] = {"first_name": "Jan", "last_name": "Kowalski", "email": "jan@example.com"}
AGENT_TEXT_FIELDS = {
    "first_name": "Jan",
    "last_name": "Kowalski",
    "login": "jan.k",
    "department": "Sales",
    "phone": "+48123456",
    "caller_id": "j.k",
    "chat_name": "Jan K",
    "outbound_number": "+48123456",
    "default_ticket_queue": "tickets",
    "sms_box": "box",
    "role": "agent",
    "account_type": "standard",
}


@pytest.mark.parametrize("field", sorted(AGENT_TEXT_FIELDS))
@pytest.mark.parametrize("bad", HOSTILE, ids=[f"U+{ord(c):04X}" for c in HOSTILE])
def test_agent_create_refuses_hostile_text(field: str, bad: str) -> None:
    data = {**BASE, field: AGENT_TEXT_FIELDS[field] + bad + "x"}
    with pytest.raises(ValidationError) as exc:
        parse(AgentCreate, data)
    assert exc.value.field == field
    assert exc.value.message.startswith(f"{field}: ")


@pytest.mark.parametrize("bad", HOSTILE, ids=[f"U+{ord(c):04X}" for c in HOSTILE])
def test_agent_update_refuses_hostile_text(bad: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse(AgentUpdate, {"caller_id": "j" + bad})
    assert exc.value.field == "caller_id"


def test_nested_fields_are_named_by_path() -> None:
    with pytest.raises(ValidationError) as exc:
        parse(AgentCreate, {**BASE, "queues": [{"name": "ok"}, {"name": "bad\n[x]"}]})
    assert exc.value.field == "queues.1.name"
    with pytest.raises(ValidationError) as exc:
        parse(AgentCreate, {**BASE, "queues": [{"name": "ok", "penalty": -1}]})
    assert exc.value.field == "queues.0.penalty"
    with pytest.raises(ValidationError) as exc:
        parse(AgentCreate, {**BASE, "queues": [{"name": "ok"}, {"name": "OK"}]})
    assert exc.value.field == "queues"


def test_agent_create_defaults_and_errors() -> None:
    data = parse(AgentCreate, BASE)
    assert (data.role, data.is_agent, data.priority, data.account_type) == ("agent", True, 1, "standard")
    assert (data.outbound_mode, data.queues, data.password) == ("manual", [], None)
    cases = [
        ({**BASE, "surprise": 1}, "surprise", "is not a known field"),
        ({"first_name": "Jan", "last_name": "K"}, "email", "is required"),
        ({**BASE, "email": "not-an-email"}, "email", "not a valid email"),
        ({**BASE, "priority": 0}, "priority", "greater than or equal to 1"),
        ({**BASE, "priority": 101}, "priority", "less than or equal to 100"),
        ({**BASE, "outbound_mode": "auto"}, "outbound_mode", "'automatic' or 'manual'"),
        ({**BASE, "extension": "abc"}, "extension", "must be an integer"),
        ({**BASE, "is_agent": "maybe"}, "is_agent", "true or false"),
        ({**BASE, "queues": "sales"}, "queues", "must be a list"),
    ]
    for data, field, text in cases:
        with pytest.raises(ValidationError) as exc:
            parse(AgentCreate, data)
        assert exc.value.field == field, data
        assert text in exc.value.message, exc.value.message
    with pytest.raises(ValidationError) as exc:
        parse(AgentCreate, ["not", "an", "object"])
    assert exc.value.field is None


def test_passwords_are_never_echoed() -> None:
    secret = "S3cret-\u2028-never-shown"
    with pytest.raises(ValidationError) as exc:
        parse(AgentCreate, {**BASE, "password": 12345, "sip_password": secret})
    assert "12345" not in exc.value.message
    data = parse(AgentCreate, {**BASE, "password": secret, "sip_password": secret})
    assert secret not in repr(data)


def test_agent_update_is_patch() -> None:
    data = parse(AgentUpdate, {"department": None, "caller_id": None, "priority": 5})
    assert data.changes() == {"department": None, "caller_id": None, "priority": 5}
    for field in ["first_name", "email", "role", "priority", "extension", "queues", "is_agent"]:
        with pytest.raises(ValidationError) as exc:
            parse(AgentUpdate, {field: None})
        assert exc.value.field == field
        assert "may not be null" in exc.value.message
    with pytest.raises(ValidationError) as exc:
        parse(AgentUpdate, {"password": "x"})
    assert exc.value.field == "password"


def test_queue_and_directory_models() -> None:
    assert parse(QueueCreate, {"name": "sales"}).kind == "voice"
    for data, field in [
        ({"name": "general"}, "name"),
        ({"name": "a;b"}, "name"),
        ({"name": "s", "kind": "sms"}, "kind"),
        ({"name": "s", "strategy": "roundrobin"}, "strategy"),
        ({"name": "s", "number": -1}, "number"),
    ]:
        with pytest.raises(ValidationError) as exc:
            parse(QueueCreate, data)
        assert exc.value.field == field
    assert parse(QueueUpdate, {"number": None}).model_fields_set == {"number"}
    with pytest.raises(ValidationError):
        parse(QueueUpdate, {"name": None})
    with pytest.raises(ValidationError) as exc:
        parse(RoleCreate, {"name": "qa\nlead"})
    assert exc.value.field == "name"
    with pytest.raises(ValidationError):
        parse(DepartmentCreate, {"name": "[x]"})
    with pytest.raises(ValidationError) as exc:
        parse(AccountTypeCreate, {"name": "gold", "max_users": -1})
    assert exc.value.field == "max_users"
