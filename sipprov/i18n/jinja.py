"""Jinja2 templates that speak a language: `{% trans %}`, `_()`, `gettext()`, `ngettext()`
with new-style (named %(x)s) placeholders, autoescaped in HTML.

Templates are shared by all languages: the language is chosen per render by passing
`gettext_context(lang)` into the template's context (context values win over the
environment's globals), so one Environment (e.g. aiohttp-jinja2's) serves every
language at once without any shared mutable state.
"""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2.ext import _make_new_gettext, _make_new_ngettext, _make_new_npgettext, _make_new_pgettext

from sipprov.i18n.catalogs import translations
from sipprov.i18n.formatting import format_date, format_datetime, format_number


def jinja_environment(loader: jinja2.BaseLoader, **options: Any) -> jinja2.Environment:
    """An Environment with the i18n extension, new-style gettext and autoescape for
    .html/.xml templates; render with `**gettext_context(lang)`."""
    options.setdefault("autoescape", jinja2.select_autoescape(["html", "xml"]))
    options.setdefault("undefined", jinja2.StrictUndefined)
    env = jinja2.Environment(loader=loader, extensions=["jinja2.ext.i18n"], **options)
    prepare_environment(env)
    return env


def prepare_environment(env: jinja2.Environment) -> None:
    """Make an existing Environment (aiohttp-jinja2's) ready for `gettext_context`."""
    if "jinja2.ext.InternationalizationExtension" not in env.extensions:
        env.add_extension("jinja2.ext.i18n")
    # English until a render passes its language; sets new-style gettext.
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]


def gettext_context(language: str) -> dict[str, Any]:
    """Template context entries for one language: the gettext functions and the
    locale-aware formatters (`format_datetime(value)`, `format_number(value)`)."""
    t = translations(language)
    gettext = _make_new_gettext(t.gettext)
    return {
        "language": language,
        "_": gettext,
        "gettext": gettext,
        "ngettext": _make_new_ngettext(t.ngettext),
        "pgettext": _make_new_pgettext(t.pgettext),
        "npgettext": _make_new_npgettext(t.npgettext),
        "format_datetime": lambda value, format="medium", tz=None: format_datetime(
            value, language, format, tz),
        "format_date": lambda value, format="medium": format_date(value, language, format),
        "format_number": lambda value: format_number(value, language),
    }
