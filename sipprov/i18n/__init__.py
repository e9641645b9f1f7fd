"""Languages: the gettext catalogs every human-facing text uses (the credentials e-mail,
the web console), the negotiation of a person's language, and locale-aware formatting.

One gettext domain, `sipprov`, with one catalog per language in
sipprov/locale/<lang>/LC_MESSAGES/sipprov.po (docs/i18n.md: how to extract, update and
check them). English is the source language: its strings are the msgids.
"""

from __future__ import annotations

from sipprov.i18n.catalogs import DOMAIN, LOCALE_DIR, translations
from sipprov.i18n.formatting import format_date, format_datetime, format_decimal, format_number
from sipprov.i18n.jinja import gettext_context, jinja_environment
from sipprov.i18n.languages import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    Language,
    display_name,
    is_supported,
    require_language,
)
from sipprov.i18n.names import default_name_order, full_name, ordered_full_name
from sipprov.i18n.negotiation import negotiate, parse_accept_language

__all__ = [
    "DEFAULT_LANGUAGE",
    "DOMAIN",
    "LANGUAGES",
    "Language",
    "LOCALE_DIR",
    "display_name",
    "format_date",
    "format_datetime",
    "format_decimal",
    "format_number",
    "default_name_order",
    "full_name",
    "ordered_full_name",
    "gettext_context",
    "is_supported",
    "jinja_environment",
    "negotiate",
    "parse_accept_language",
    "require_language",
    "translations",
]
