"""Which language a console page speaks (sipprov.i18n does the translating).

Logged in: the language switched to in this session, else the user's own `language`
(the user record's; the console opens in it). Before login: the language picked on
these pages (a cookie), then the browser's Accept-Language, then English.
"""

from __future__ import annotations

from sipprov import i18n

LANG_COOKIE = "sipprov_lang"
DEFAULT = i18n.DEFAULT_LANGUAGE


def valid(code: str | None) -> str | None:
    code = (code or "").strip().lower()[:8]
    return code if i18n.is_supported(code) else None


def choose(*candidates: str | None, accept: str | None = None) -> str:
    """The first supported candidate, else Accept-Language, else English."""
    for candidate in candidates:
        found = valid(candidate)
        if found:
            return found
    return i18n.negotiate(None, (accept or "")[:1000], None)
