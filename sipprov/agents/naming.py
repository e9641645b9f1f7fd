"""Default logins, caller id names, chat names and avatar URLs derived from a person.

Folding is plain (`ä` -> `a`, not `ae`): the brief's own example `Łukasz Żółć` ->
`lukasz.zolc` folds letter by letter, and admins expect the login to look like the name
with the accents dropped. Letters that Unicode does not decompose (Polish `ł`, Vietnamese
and Croatian `đ`, German `ß`, French/Danish `œ`, `æ`, `ø`, Icelandic `þ`, `ð`, Turkish
dotless `ı`, ...) are mapped explicitly before NFKD, because NFKD leaves them alone.

Logins and caller id names are derived the same way (lower-case ASCII), so what reaches
Asterisk from a name is always ASCII; chat names keep the name as typed (they are shown
in the web UI only).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import urlencode

from sipprov.agents.validation import CALLER_ID_MAX, LOGIN_MAX, Refused
from sipprov.errors import N_

# Letters NFKD does not decompose into an ASCII base letter + combining marks.
_FOLD_TABLE = str.maketrans(
    {
        "ł": "l", "Ł": "L",
        "đ": "d", "Đ": "D",
        "ð": "d", "Ð": "D",
        "ß": "ss", "ẞ": "SS",
        "æ": "ae", "Æ": "AE",
        "œ": "oe", "Œ": "OE",
        "ø": "o", "Ø": "O",
        "þ": "th", "Þ": "Th",
        "ı": "i",
        "ħ": "h", "Ħ": "H",
        "ŀ": "l", "Ŀ": "L",
        "ŧ": "t", "Ŧ": "T",
        "ŋ": "n", "Ŋ": "N",
        "ĸ": "k",
        "ſ": "s",
        "ƒ": "f",
    }
)
# Apostrophes vanish (O'Neil -> oneil) rather than split the name.
_APOSTROPHES = str.maketrans({ch: None for ch in "'\u2019\u02bc\u2018`\u00b4"})
_NON_LOGIN = re.compile(r"[^a-z0-9]+")

# Room left at the end of a derived login for a collision suffix (`jan.kowalski12345`).
SUFFIX_ROOM = 6
GRAVATAR_BASE = "https://www.gravatar.com/avatar/"


def fold_ascii(text: str) -> str:
    """Fold to ASCII letter by letter; characters with no ASCII form are dropped."""
    text = text.translate(_FOLD_TABLE)
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return kept.encode("ascii", "ignore").decode("ascii")


def login_part(name: str) -> str:
    """One name as it appears in a login: `Anne-Marie` -> `anne-marie`, `de la Cruz` -> `de-la-cruz`.

    Spaces and any other separators become a single hyphen, so word boundaries stay
    visible and the result only has [a-z0-9-].
    """
    folded = fold_ascii(name.translate(_APOSTROPHES)).lower()
    return _NON_LOGIN.sub("-", folded).strip("-")


def derive_login(first_name: str, last_name: str) -> str:
    """`firstname.lastname`, lower-case ASCII, short enough to take a collision suffix.

    A name with no Latin letters (e.g. Cyrillic) folds to nothing: the admin must then
    give the login explicitly, rather than us inventing `user123`.
    """
    first, last = login_part(first_name), login_part(last_name)
    if not first or not last:
        raise Refused(
            "login",
            N_("cannot derive a login from this name (no Latin letters); give the login explicitly"),
        )
    base = f"{first}.{last}"[: LOGIN_MAX - SUFFIX_ROOM]
    return base.rstrip(".-")


def with_suffix(base: str, n: int) -> str:
    """The n-th login for a base: n=1 is the base itself, then `base2`, `base3`, ..."""
    return base if n <= 1 else f"{base}{n}"


def first_free_login(base: str, taken: set[str]) -> str:
    """The lowest free login for `base` given the taken (lower-case) logins."""
    n = 1
    while with_suffix(base, n).lower() in taken:
        n += 1
    return with_suffix(base, n)


def default_caller_id_name(first_name: str, last_name: str) -> str:
    """`j.kowalski`: first letter of the first name + `.` + last name, folded to ASCII.

    Folded because the caller id name is written into Asterisk config between quotes and
    shown on every desk phone; empty when the name has no Latin letters (the service then
    falls back to the login).
    """
    first, last = login_part(first_name), login_part(last_name)
    if first and last:
        return f"{first[0]}.{last}"[:CALLER_ID_MAX]
    return (first or last)[:CALLER_ID_MAX]


def default_chat_name(first_name: str, last_name: str) -> str:
    """`Jan Kowalski`: the name as typed (chat is shown in the web UI, never in Asterisk)."""
    return f"{first_name} {last_name}"


def gravatar_url(email: str, size: int = 80) -> str:
    """Gravatar URL from the trimmed, lower-cased e-mail (SHA-256, which Gravatar accepts)."""
    digest = hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()
    return GRAVATAR_BASE + digest + "?" + urlencode({"s": size, "d": "identicon"})
