"""Whitelists for every free-text value that can reach Asterisk config (or sits next to it).

Why whitelists and refusal instead of escaping: Asterisk's config parser has no quoting
that is safe for every file we write (a newline ends a line anywhere, `;` starts a
comment, `[` starts a section, `#include` includes a file), so a value that could become
config is either made of known-safe characters or refused, with the field named.

Every check returns the cleaned value (spaces trimmed, Unicode NFC) or raises `Refused`,
which is both our ValidationError (so the service layer and the HTTP/CLI error mapping
treat it like any other rule) and a ValueError (so pydantic validators may raise it).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from sipprov.errors import N_, ValidationError


class Refused(ValidationError, ValueError):
    """A value refused by a whitelist: `field` names the input, `reason` says why (in
    English; `template` % `params` is the same as a catalog message, for the console).
    A `what` parameter is itself a catalog message."""

    def __init__(self, field: str, template: str, **params: object):
        reason = template % params if params else template
        super().__init__(f"{field}: {reason}", field)
        self.reason = reason
        self.template = template
        self.params = params


PERSON_NAME_MAX = 64
CHAT_NAME_MAX = 130
CALLER_ID_MAX = 40
LOGIN_MAX = 64
QUEUE_NAME_MAX = 64
DEPARTMENT_NAME_MAX = 64
ROLE_NAME_MAX = 32
LABEL_MAX = 64
ACCOUNT_TYPE_NAME_MAX = 64
SMS_BOX_MAX = 64
PHONE_DIGITS_MIN = 3
PHONE_DIGITS_MAX = 20

# Apostrophes people type in names (O'Neil, O’Neil).
APOSTROPHES = "'\u2019"
_NAME_PUNCTUATION = " -." + APOSTROPHES
_CHAT_PUNCTUATION = " -._()" + APOSTROPHES
_DEPARTMENT_PUNCTUATION = " -_.&()/+" + APOSTROPHES
_CALLER_ID_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._@()+-"
)
_LOGIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_QUEUE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_ACCOUNT_TYPE_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-"
)
_ROLE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_SMS_BOX_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._+@-"
)
_PHONE_SEPARATORS = " -()."

_LOGIN_SHAPE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_ROLE_SHAPE = re.compile(r"^[a-z][a-z0-9-]*$")

# queues.conf has a [general] section of its own; a queue of that name would merge into it.
# The renderer also refuses [globals] (special in extensions.conf, and the renderer uses
# one list of reserved section names), so refusing it here keeps an accepted queue from
# stopping every apply.
RESERVED_QUEUE_NAMES = frozenset({"general", "globals"})


_CONTROL_NAMES = {
    "\x00": "NUL",
    "\t": "TAB",
    "\n": "LINE FEED",
    "\r": "CARRIAGE RETURN",
    "\x1b": "ESCAPE",
    "\x7f": "DELETE",
    "\x85": "NEXT LINE",
}


def describe_char(ch: str) -> str:
    """`'[' (U+005B LEFT SQUARE BRACKET)`: unambiguous even for invisible characters."""
    code = f"U+{ord(ch):04X}"
    name = unicodedata.name(ch, "") or _CONTROL_NAMES.get(ch, "")
    label = f"{code} {name}".strip()
    if ch.isprintable() and not ch.isspace():
        return f"{ch!r} ({label})"
    return label


def is_control(ch: str) -> bool:
    """Control, format, separator (U+2028/2029), surrogate, private or unassigned."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def _is_letter(ch: str) -> bool:
    return ch.isalpha() or unicodedata.category(ch).startswith("M")


def _check_chars(value: str, field: str, allowed: Callable[[str], bool], what: str) -> None:
    for ch in value:
        if is_control(ch):
            raise Refused(field, N_("control character %(char)s is not allowed"), char=describe_char(ch))
        if not allowed(ch):
            raise Refused(field, N_("character %(char)s is not allowed in %(what)s"), char=describe_char(ch),
                          what=what)


def _check_length(value: str, field: str, max_len: int, min_len: int = 1) -> None:
    if len(value) < min_len:
        if min_len == 1:
            raise Refused(field, N_("must not be empty"))
        raise Refused(field, N_("must be at least %(min)s characters"), min=min_len)
    if len(value) > max_len:
        raise Refused(field, N_("must be at most %(max)s characters"), max=max_len)


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise Refused(field, N_("must be a string"))
    return value


def _trim(value: str) -> str:
    """Trim and collapse plain spaces only: other whitespace is refused, never hidden."""
    return " ".join(part for part in value.split(" ") if part)


def person_name(value: object, field: str = "name") -> str:
    """First or last name: letters of any script, spaces, hyphens, apostrophes, dots."""
    text = unicodedata.normalize("NFC", _text(value, field))
    _check_chars(text, field, lambda ch: _is_letter(ch) or ch in _NAME_PUNCTUATION, N_("a name"))
    text = _trim(text)
    _check_length(text, field, PERSON_NAME_MAX)
    if not any(ch.isalpha() for ch in text):
        raise Refused(field, N_("must contain a letter"))
    return text


def chat_name(value: object, field: str = "chat_name") -> str:
    """Chat display name: letters of any script, digits, spaces and a little punctuation."""
    text = unicodedata.normalize("NFC", _text(value, field))
    _check_chars(
        text, field, lambda ch: _is_letter(ch) or ch.isdigit() or ch in _CHAT_PUNCTUATION, N_("a chat name")
    )
    text = _trim(text)
    _check_length(text, field, CHAT_NAME_MAX)
    return text


def caller_id_name(value: object, field: str = "caller_id") -> str:
    r"""Caller id name: letters of any script (`Ewa Żak`, `Trần Thị Hương`: SIP display
    names and Asterisk caller ids carry UTF-8), digits, space, apostrophes and
    . _ @ ( ) + -. It is written between quotes into Asterisk config, so `"` `\` `;`
    `<` `>` `#` `[` `]`, line breaks and control/format characters stay refused (here,
    and again by the renderer's finalize)."""
    text = unicodedata.normalize("NFC", _text(value, field))
    _check_chars(
        text,
        field,
        lambda ch: ch in _CALLER_ID_CHARS or ch in APOSTROPHES or _is_letter(ch),
        N_("a caller id name (letters, digits, space and ' . _ @ ( ) + - only)"),
    )
    text = _trim(text)
    _check_length(text, field, CALLER_ID_MAX)
    return text


def login(value: object, field: str = "login") -> str:
    """Login: ASCII letters, digits, `.`, `_`, `-`; starts and ends with a letter or digit."""
    text = _text(value, field)
    _check_chars(text, field, lambda ch: ch in _LOGIN_CHARS,
                 N_("a login (ASCII letters, digits, . _ - only)"))
    _check_length(text, field, LOGIN_MAX)
    if not _LOGIN_SHAPE.match(text):
        raise Refused(field, N_("must start and end with a letter or digit"))
    return text


def phone_number(value: object, field: str = "phone") -> str:
    """Phone or outbound number, returned normalised: an optional `+` and digits.

    Separators people type (spaces, hyphens, dots, parentheses) are accepted and removed,
    so what reaches the dialplan is only `+` and digits.
    """
    text = _text(value, field)
    _check_chars(
        text,
        field,
        lambda ch: ch in "0123456789+" or ch in _PHONE_SEPARATORS,
        N_("a phone number (digits, a leading +, spaces, - ( ) . only)"),
    )
    compact = "".join(ch for ch in text if ch not in _PHONE_SEPARATORS)
    if "+" in compact[1:]:
        raise Refused(field, N_("'+' is only allowed at the start"))
    digits = compact.lstrip("+")
    if not (PHONE_DIGITS_MIN <= len(digits) <= PHONE_DIGITS_MAX):
        raise Refused(field, N_("must have %(min)s to %(max)s digits"), min=PHONE_DIGITS_MIN,
                      max=PHONE_DIGITS_MAX)
    return compact


def queue_name(value: object, field: str = "name") -> str:
    """Queue name: becomes a `[section]` of queues.conf, so ASCII letters, digits, _ and -."""
    text = _text(value, field)
    _check_chars(text, field, lambda ch: ch in _QUEUE_CHARS,
                 N_("a queue name (ASCII letters, digits, _ - only)"))
    _check_length(text, field, QUEUE_NAME_MAX)
    if not text[0].isalnum():
        raise Refused(field, N_("must start with a letter or digit"))
    if text.lower() in RESERVED_QUEUE_NAMES:
        raise Refused(field, N_("'%(name)s' is reserved by Asterisk"), name=text)
    return text


def department_name(value: object, field: str = "name") -> str:
    """Department name: letters of any script, digits, spaces and a little punctuation."""
    text = unicodedata.normalize("NFC", _text(value, field))
    _check_chars(
        text,
        field,
        lambda ch: _is_letter(ch) or ch.isdigit() or ch in _DEPARTMENT_PUNCTUATION,
        N_("a department name"),
    )
    text = _trim(text)
    _check_length(text, field, DEPARTMENT_NAME_MAX)
    return text


def label(value: object, field: str = "label") -> str:
    """A display label (role labels): same whitelist as department names."""
    return department_name(value, field)


def role_name(value: object, field: str = "name") -> str:
    """Role key used by the API (`agent`, `qa-lead`): lower-case ASCII, digits, hyphens."""
    text = _text(value, field)
    _check_chars(text, field, lambda ch: ch in _ROLE_CHARS, N_("a role name (a-z, digits, - only)"))
    _check_length(text, field, ROLE_NAME_MAX)
    if not _ROLE_SHAPE.match(text):
        raise Refused(field, N_("must start with a letter"))
    return text


def account_type_name(value: object, field: str = "name") -> str:
    """Account type name: ASCII letters, digits, spaces, _ and -."""
    text = _text(value, field)
    _check_chars(
        text,
        field,
        lambda ch: ch in _ACCOUNT_TYPE_CHARS,
        N_("an account type name (ASCII letters, digits, space, _ - only)"),
    )
    text = _trim(text)
    _check_length(text, field, ACCOUNT_TYPE_NAME_MAX)
    if not text[0].isalnum():
        raise Refused(field, N_("must start with a letter or digit"))
    return text


def sms_box(value: object, field: str = "sms_box") -> str:
    """Default SMS box: an identifier or a number."""
    text = _text(value, field)
    _check_chars(
        text,
        field,
        lambda ch: ch in _SMS_BOX_CHARS,
        N_("an SMS box (ASCII letters, digits, space, . _ + @ - only)"),
    )
    text = _trim(text)
    _check_length(text, field, SMS_BOX_MAX)
    return text


def no_control(value: object, field: str, max_len: int = 1024) -> str:
    """Free text that never reaches Asterisk (e.g. passwords): only control chars refused."""
    text = _text(value, field)
    for ch in text:
        if is_control(ch):
            raise Refused(field, N_("must not contain control characters"))
    _check_length(text, field, max_len)
    return text
