"""Which language a console page speaks (sipprov.i18n does the translating).

Order: the language picked in the console (stored in the session; before login a
cookie), then the browser's Accept-Language, then English. Issue 16's per-user
`language` joins this order as the user's own choice once the user record has it.
"""

from __future__ import annotations

from sipprov import i18n

LANG_COOKIE = "sipprov_lang"


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
